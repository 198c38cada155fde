// tokenizer.json and tokenizer_config.json (Hugging Face tokenizers' serialisation).
#include "io/hf_tokenizer.h"

#include "ecomla/error.h"
#include "ecomla/hf_tokenizer.h"
#include "io/json_util.h"

namespace ecomla {
namespace {

using io::get;
using io::get_or;
using io::json;
namespace fs = std::filesystem;

// A token given as a string or as {"content": ...} in tokenizer_config.json.
std::optional<std::string> token_text(const json& j, const std::string& key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (j[key].is_string()) return j[key].get<std::string>();
  if (j[key].is_object() && j[key].contains("content")) return j[key]["content"].get<std::string>();
  return std::nullopt;
}

// Pre-tokenizer regexes from a tokenizers PreTokenizer object.
void collect_pre_patterns(const json& pre, const std::string& origin,
                          std::vector<std::string>& out) {
  if (pre.is_null()) return;
  const std::string type = get<std::string>(pre, "type", origin);
  if (type == "Sequence") {
    for (const json& p : get<json>(pre, "pretokenizers", origin))
      collect_pre_patterns(p, origin, out);
  } else if (type == "ByteLevel") {
    if (get_or<bool>(pre, "add_prefix_space", false, origin)) {
      throw FormatError(origin + ": ByteLevel add_prefix_space is not supported");
    }
    if (get_or<bool>(pre, "use_regex", true, origin)) {
      const auto gpt2 = pre_tokenizer_patterns("gpt2");
      out.insert(out.end(), gpt2.begin(), gpt2.end());
    }
  } else if (type == "Digits") {
    out.push_back(get_or<bool>(pre, "individual_digits", false, origin) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Split") {
    const json& pattern = get<json>(pre, "pattern", origin);
    const std::string behavior = get_or<std::string>(pre, "behavior", "Isolated", origin);
    if (!pattern.contains("Regex") || behavior != "Isolated" ||
        get_or<bool>(pre, "invert", false, origin)) {
      throw FormatError(origin +
                        ": only Split pre-tokenizers with an isolated Regex are supported");
    }
    out.push_back(pattern["Regex"].get<std::string>());
  } else {
    throw FormatError(origin + ": pre-tokenizer type '" + type + "' is not supported");
  }
}

// The special tokens a TemplateProcessing post-processor puts around a single sequence
// ({"SpecialToken": {"id": "<|begin_of_text|>"}}, {"Sequence": {"id": "A"}}): Llama 3 adds its
// BOS this way rather than through tokenizer_config.json.
struct SequenceTemplate {
  std::optional<std::string> before, after;
};

std::optional<SequenceTemplate> template_processing(const json& post) {
  if (!post.is_object()) return std::nullopt;
  const std::string type = post.value("type", "");
  if (type == "Sequence") {
    for (const json& p : post.value("processors", json::array())) {
      if (auto t = template_processing(p)) return t;
    }
    return std::nullopt;
  }
  if (type != "TemplateProcessing" || !post.contains("single") || !post["single"].is_array()) {
    return std::nullopt;
  }
  SequenceTemplate t;
  bool seen_sequence = false;
  for (const json& piece : post["single"]) {
    if (piece.contains("Sequence")) {
      seen_sequence = true;
    } else if (piece.contains("SpecialToken")) {
      (seen_sequence ? t.after : t.before) = piece["SpecialToken"].at("id").get<std::string>();
    }
  }
  return t;
}

}  // namespace

namespace io {

TokenizerSpec parse_hf_tokenizer(const json& j, const json& tc, const std::string& path) try {
  const json& model = get<json>(j, "model", path);
  if (get_or<std::string>(model, "type", "BPE", path) != "BPE") {
    throw FormatError(path + ": only BPE tokenizer models are supported");
  }
  TokenizerSpec spec;
  const json vocab = get<json>(model, "vocab", path);  // items() must not outlive it
  const json added_tokens = get_or<json>(j, "added_tokens", json::array(), path);
  // Ids are dense: none can exceed the number of entries (a small file cannot claim 2^24).
  const auto max_id = static_cast<int64_t>(vocab.size() + added_tokens.size());
  for (const auto& [token, id_json] : vocab.items()) {
    const auto id = id_json.get<int64_t>();
    if (id < 0 || id >= max_id) throw FormatError(path + ": bad id for '" + token + "'");
    if (spec.tokens.size() <= static_cast<size_t>(id)) spec.tokens.resize(id + 1);
    spec.tokens[id] = token;
  }
  for (const json& merge : get<json>(model, "merges", path)) {
    if (merge.is_string()) {
      spec.merges.push_back(split_merge(merge.get<std::string>(), path));
    } else if (merge.is_array() && merge.size() == 2) {
      spec.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      throw FormatError(path + ": merges must be strings or pairs");
    }
  }
  spec.types.assign(spec.tokens.size(), TokenType::Normal);
  for (const json& added : added_tokens) {
    const auto id = get<int64_t>(added, "id", path);
    if (id < 0 || id >= max_id) throw FormatError(path + ": bad added token id");
    if (spec.tokens.size() <= static_cast<size_t>(id)) {
      spec.tokens.resize(id + 1);
      spec.types.resize(id + 1, TokenType::Normal);
    }
    spec.tokens[id] = get<std::string>(added, "content", path);
    spec.types[id] =
        get_or<bool>(added, "special", false, path) ? TokenType::Control : TokenType::UserDefined;
  }
  collect_pre_patterns(get_or<json>(j, "pre_tokenizer", json(), path), path, spec.pre_patterns);
  spec.pre_type = pre_tokenizer_name(spec.pre_patterns).value_or("tokenizer.json");
  spec.ignore_merges = get_or<bool>(model, "ignore_merges", false, path);

  auto find_id = [&](const std::optional<std::string>& text) -> std::optional<int32_t> {
    if (!text) return std::nullopt;
    for (size_t id = 0; id < spec.tokens.size(); ++id) {
      if (spec.tokens[id] == *text) return static_cast<int32_t>(id);
    }
    return std::nullopt;
  };
  if (auto t = template_processing(j.value("post_processor", json()))) {
    spec.bos_id = find_id(t->before);
    spec.eos_id = find_id(t->after);
    spec.add_bos = spec.bos_id.has_value();
    spec.add_eos = spec.eos_id.has_value();
  }
  if (!tc.is_null()) {
    // tokenizer_config.json's explicit settings win over the post-processor.
    const std::string config_path = path + " (tokenizer_config.json)";
    spec.add_bos = get_or<bool>(tc, "add_bos_token", spec.add_bos, config_path);
    spec.add_eos = get_or<bool>(tc, "add_eos_token", spec.add_eos, config_path);
    spec.chat_template = get_or<std::string>(tc, "chat_template", "", config_path);
    if (auto bos = find_id(token_text(tc, "bos_token"))) spec.bos_id = bos;
    if (auto eos = find_id(token_text(tc, "eos_token"))) spec.eos_id = eos;
    spec.unk_id = find_id(token_text(tc, "unk_token"));
    spec.pad_id = find_id(token_text(tc, "pad_token"));
  }
  return spec;
} catch (const json::exception& e) {
  throw FormatError(path + ": " + e.what());
}

}  // namespace io

TokenizerSpec read_hf_tokenizer(const fs::path& folder) {
  const fs::path config = folder / "tokenizer_config.json";
  return io::parse_hf_tokenizer(io::read_json(folder / "tokenizer.json"),
                                fs::exists(config) ? io::read_json(config) : json(),
                                (folder / "tokenizer.json").string());
}

void write_hf_tokenizer(const fs::path& folder, const Tokenizer& tokenizer) {
  const TokenizerSpec& spec = tokenizer.spec();
  json vocab = json::object();
  json added = json::array();
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    vocab[spec.tokens[id]] = id;
    if (spec.types[id] != TokenType::Normal) {
      added.push_back({{"id", id},
                       {"content", spec.tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", spec.types[id] == TokenType::Control}});
    }
  }
  json merges = json::array();
  for (const auto& [left, right] : spec.merges) merges.push_back({left, right});
  // Each regex becomes an isolating Split; ByteLevel then only maps bytes.
  json pre = json::array();
  for (const std::string& pattern : spec.pre_patterns) {
    pre.push_back({{"type", "Split"},
                   {"pattern", {{"Regex", pattern}}},
                   {"behavior", "Isolated"},
                   {"invert", false}});
  }
  pre.push_back({{"type", "ByteLevel"},
                 {"add_prefix_space", false},
                 {"trim_offsets", true},
                 {"use_regex", false}});
  const json tokenizer_json = {{"version", "1.0"},
                               {"truncation", nullptr},
                               {"padding", nullptr},
                               {"added_tokens", added},
                               {"normalizer", nullptr},
                               {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", pre}}},
                               {"post_processor", nullptr},
                               {"decoder",
                                {{"type", "ByteLevel"},
                                 {"add_prefix_space", true},
                                 {"trim_offsets", true},
                                 {"use_regex", true}}},
                               {"model",
                                {{"type", "BPE"},
                                 {"dropout", nullptr},
                                 {"unk_token", nullptr},
                                 {"continuing_subword_prefix", nullptr},
                                 {"end_of_word_suffix", nullptr},
                                 {"fuse_unk", false},
                                 {"byte_fallback", false},
                                 {"ignore_merges", false},
                                 {"vocab", vocab},
                                 {"merges", merges}}}};
  io::write_json(folder / "tokenizer.json", tokenizer_json);

  json config = {{"add_bos_token", spec.add_bos},
                 {"add_eos_token", spec.add_eos},
                 {"tokenizer_class", "GPT2Tokenizer"}};
  auto put_token = [&](const char* key, const std::optional<int32_t>& id) {
    if (id) config[key] = spec.tokens.at(*id);
  };
  put_token("bos_token", spec.bos_id);
  put_token("eos_token", spec.eos_id);
  put_token("unk_token", spec.unk_id);
  put_token("pad_token", spec.pad_id);
  if (!spec.chat_template.empty()) config["chat_template"] = spec.chat_template;
  io::write_json(folder / "tokenizer_config.json", config);
}

}  // namespace ecomla
