#include "ecomla/hf_checkpoint.h"

#include <ATen/ops/from_blob.h>
#include <torch/nn/module.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ecomla/error.h"
#include "ecomla/safetensors.h"
#include "io/json_util.h"

namespace ecomla {
namespace {

using io::get;
using io::get_or;
using io::json;
using io::read_json;
using io::write_json;
namespace fs = std::filesystem;

class HfWeightSource : public WeightSource {
public:
  HfWeightSource(const fs::path& folder, const ModelConfig& config) : folder_(folder) {
    const fs::path index = folder / "model.safetensors.index.json";
    std::vector<fs::path> shards;
    if (fs::exists(index)) {
      const json j = read_json(index);
      if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
        throw FormatError(index.string() + ": no weight_map object");
      }
      for (const auto& [name, file] : j["weight_map"].items()) {
        const fs::path relative = file.is_string() ? fs::path(file.get<std::string>()) : fs::path();
        if (relative.empty() || relative.is_absolute() || relative.filename() != relative) {
          throw FormatError(index.string() + ": entry for '" + name +
                            "' must name a file in the same folder");
        }
        const fs::path shard = folder / relative;
        if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
      }
    } else {
      shards.push_back(folder / "model.safetensors");
    }
    for (const fs::path& shard : shards) {
      files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(shard)));
      for (const auto& [name, info] : files_.back()->tensors()) {
        // Tied heads are sometimes stored anyway; rotary tables are derived, not weights.
        if ((config.tie_word_embeddings && name == "lm_head.weight") ||
            name.ends_with("rotary_emb.inv_freq")) {
          continue;
        }
        if (!by_name_.emplace(name, std::make_pair(files_.back().get(), &info)).second) {
          throw FormatError(shard.string() + ": tensor '" + name + "' also in another shard");
        }
      }
    }
  }

  std::string origin() const override { return folder_.string(); }

  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [name, entry] : by_name_) out.push_back(name);
    return out;
  }

  std::optional<std::vector<int64_t>> shape(const std::string& name) const override {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return std::nullopt;
    return it->second.second->shape;
  }

  at::Tensor load(const std::string& name) const override {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) throw FormatError(origin() + ": no tensor '" + name + "'");
    const auto& [file, info] = it->second;
    std::vector<float> values = file->to_f32(*info);
    return at::from_blob(values.data(), info->shape, at::kFloat).clone();
  }

private:
  fs::path folder_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const SafetensorsTensorInfo*>> by_name_;
};

at::ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "F32") return at::kFloat;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "BF16") return at::kBFloat16;
  throw std::invalid_argument("save dtype must be F32, F16 or BF16, got '" + dtype + "'");
}

std::string torch_dtype_name(const std::string& dtype) {
  return dtype == "F32" ? "float32" : dtype == "F16" ? "float16" : "bfloat16";
}

// X-EcoMLA's layout of a hybrid/MLA model (mla/hybrid_wrapper.py, save_config): config.json is
// the teacher's Llama config, MLA_config.json the MLAConfig dataclass (which layers stay
// attention) and mla_layer_config.json the DeepseekV3Config of the MLA layers.
constexpr const char* kMlaConfigName = "MLA_config.json";
constexpr const char* kMlaLayerConfigName = "mla_layer_config.json";

json rope_scaling_json(const RopeConfig& rope) {
  if (rope.scaling == RopeScaling::Linear) {
    return {{"rope_type", "linear"}, {"factor", rope.factor}};
  }
  if (rope.scaling == RopeScaling::Llama3) {
    return {{"rope_type", "llama3"},
            {"factor", rope.factor},
            {"low_freq_factor", rope.low_freq_factor},
            {"high_freq_factor", rope.high_freq_factor},
            {"original_max_position_embeddings", rope.original_context}};
  }
  return nullptr;
}

// ---- writing ----------------------------------------------------------------------------------

std::string layer_values(const std::vector<std::pair<int64_t, std::string>>& values) {
  std::string out;
  for (const auto& [layer, value] : values) {
    out += (out.empty() ? "" : ", ") + std::string("layer ") + std::to_string(layer) + ": " + value;
  }
  return out;
}

// X-EcoMLA varies only the ranks per layer (layer_rank_list); every other MLA size is one key
// of mla_layer_config.json, so the MLA layers must agree on it.
template <typename Field>
void require_global(const std::vector<std::pair<int64_t, const MlaSpec*>>& mla, const char* key,
                    Field field) {
  const std::string first = field(*mla.front().second);
  std::vector<std::pair<int64_t, std::string>> values;
  bool differ = false;
  for (const auto& [layer, spec] : mla) {
    values.emplace_back(layer, field(*spec));
    differ = differ || values.back().second != first;
  }
  if (differ) {
    throw std::invalid_argument(std::string("write_hf_config: MLA layers disagree on ") + key +
                                " (" + layer_values(values) + "), which " + kMlaLayerConfigName +
                                " holds once for all layers");
  }
}

std::string text(int64_t v) { return std::to_string(v); }
std::string text(bool v) { return v ? "true" : "false"; }
std::string text(double v) { return json(v).dump(); }

struct HfLayout {
  json config;                                // config.json
  std::optional<json> mla_config, mla_layer;  // MLA_config.json, mla_layer_config.json
};

HfLayout hf_layout(const ModelConfig& c, const Tokenizer& tokenizer,
                   const std::string& torch_dtype) {
  std::vector<std::pair<int64_t, const GqaSpec*>> gqa;
  std::vector<std::pair<int64_t, const MlaSpec*>> mla;
  for (int64_t i = 0; i < static_cast<int64_t>(c.attention.size()); ++i) {
    if (const auto* a = std::get_if<GqaSpec>(&c.attention[i])) {
      gqa.emplace_back(i, a);
    } else {
      mla.emplace_back(i, &std::get<MlaSpec>(c.attention[i]));
    }
  }
  if (gqa.empty() && mla.empty()) throw std::invalid_argument("write_hf_config: no layers");
  auto describe = [](const GqaSpec& a) {
    return "heads " + std::to_string(a.n_head) + ", kv heads " + std::to_string(a.n_head_kv) +
           ", head_dim " + std::to_string(a.head_dim);
  };
  // config.json holds one attention shape: the GQA layers' (which are the teacher's), else the
  // recorded source attention, else an MHA stand-in of the MLA query/key width.
  GqaSpec teacher;
  if (!gqa.empty()) {
    teacher = *gqa.front().second;
    for (const auto& [layer, a] : gqa) {
      if (*a != teacher) {
        throw std::invalid_argument(
            "write_hf_config: config.json holds one attention shape, but "
            "GQA layers " +
            std::to_string(gqa.front().first) + " (" + describe(teacher) + ") and " +
            std::to_string(layer) + " (" + describe(*a) + ") differ");
      }
    }
    if (c.source_attention && *c.source_attention != teacher) {
      throw std::invalid_argument("write_hf_config: source_attention (" +
                                  describe(*c.source_attention) +
                                  ") differs from the GQA layers (" + describe(teacher) + ")");
    }
  } else if (c.source_attention) {
    teacher = *c.source_attention;
  } else {
    const MlaSpec& m = *mla.front().second;
    teacher = {m.n_head, m.n_head, m.dim_nope + m.dim_rope};
  }
  if (!c.rope.freq_factors.empty()) {
    throw std::invalid_argument(
        "write_hf_config: GGUF rope_freqs factors have no config.json equivalent");
  }

  HfLayout out;
  out.config = {{"architectures", {"LlamaForCausalLM"}},
                {"model_type", "llama"},
                {"vocab_size", c.vocab_size},
                {"hidden_size", c.hidden_size},
                {"intermediate_size", c.intermediate_size},
                {"num_hidden_layers", c.n_layer},
                {"num_attention_heads", teacher.n_head},
                {"num_key_value_heads", teacher.n_head_kv},
                {"head_dim", teacher.head_dim},
                {"hidden_act", "silu"},
                {"max_position_embeddings", c.max_position_embeddings},
                {"rms_norm_eps", c.rms_norm_eps},
                {"rope_theta", c.rope.theta},
                {"rope_scaling", rope_scaling_json(c.rope)},
                {"tie_word_embeddings", c.tie_word_embeddings},
                {"attention_bias", false},
                {"mlp_bias", false},
                {"torch_dtype", torch_dtype}};
  if (tokenizer.bos_id()) out.config["bos_token_id"] = *tokenizer.bos_id();
  if (tokenizer.eos_id()) out.config["eos_token_id"] = *tokenizer.eos_id();
  if (mla.empty()) return out;

  require_global(mla, "num_attention_heads", [](const MlaSpec& m) { return text(m.n_head); });
  require_global(mla, "qk_rope_head_dim", [](const MlaSpec& m) { return text(m.dim_rope); });
  require_global(mla, "qk_nope_head_dim", [](const MlaSpec& m) { return text(m.dim_nope); });
  require_global(mla, "v_head_dim", [](const MlaSpec& m) { return text(m.dim_v); });
  require_global(mla, "use_lora_layer_norm", [](const MlaSpec& m) { return text(m.latent_norm); });
  require_global(mla, "lora_layer_norm_eps",
                 [](const MlaSpec& m) { return text(m.latent_norm_eps); });
  auto q_rank = [](const MlaSpec& m) { return m.rank_q == 0 ? json(nullptr) : json(m.rank_q); };
  json attn_layers = json::array();
  for (const auto& [layer, a] : gqa) attn_layers.push_back(layer);
  json ranks = json::object();
  for (const auto& [layer, m] : mla) {
    ranks[std::to_string(layer)] = {{"q_rank", q_rank(*m)}, {"kv_rank", m->rank_kv}};
  }
  const MlaSpec& m = *mla.front().second;
  out.mla_config = {{"d_model", c.hidden_size},
                    {"rms_norm_eps", c.rms_norm_eps},
                    {"vocab_size", c.vocab_size},
                    {"d_inner", nullptr},
                    {"d_xb", teacher.n_head_kv * teacher.head_dim},
                    {"intermediate_size", c.intermediate_size},
                    {"hidden_act", "silu"},
                    {"n_layer", c.n_layer},
                    {"attn_layers", attn_layers}};
  // q_lora_rank/kv_lora_rank are the first MLA layer's: X-EcoMLA takes every layer's ranks
  // from layer_rank_list and these only as the fallback.
  out.mla_layer = {{"model_type", "deepseek_v3"},
                   {"vocab_size", c.vocab_size},
                   {"hidden_size", c.hidden_size},
                   {"intermediate_size", c.intermediate_size},
                   {"num_hidden_layers", c.n_layer},
                   {"num_attention_heads", m.n_head},
                   {"llama_num_key_value_heads", teacher.n_head_kv},
                   {"kv_lora_rank", m.rank_kv},
                   {"q_lora_rank", q_rank(m)},
                   {"use_lora_layer_norm", m.latent_norm},
                   {"lora_layer_norm_eps", m.latent_norm_eps},
                   {"use_fixed_rank_for_first_and_last_block", false},
                   {"layer_rank_list", ranks},
                   {"qk_rope_head_dim", m.dim_rope},
                   {"qk_nope_head_dim", m.dim_nope},
                   {"v_head_dim", m.dim_v},
                   {"hidden_act", "silu"},
                   {"max_position_embeddings", c.max_position_embeddings},
                   {"rope_theta", c.rope.theta},
                   {"rope_scaling", rope_scaling_json(c.rope)},
                   {"rms_norm_eps", c.rms_norm_eps},
                   {"attention_bias", false},
                   {"tie_word_embeddings", c.tie_word_embeddings}};
  return out;
}

// ---- reading ----------------------------------------------------------------------------------

// An integer key in [lo, hi]. X-EcoMLA writes mla_layer_config.json as a diff against
// DeepseekV3Config's defaults (to_json_file(use_diff=True)), so most keys fall back to those.
int64_t get_int(const json& j, const std::string& key, std::optional<int64_t> fallback, int64_t lo,
                int64_t hi, const std::string& origin) {
  const bool absent = !j.contains(key) || j.at(key).is_null();
  if (absent && fallback) return *fallback;
  const int64_t v = get<int64_t>(j, key, origin);
  if (v < lo || v > hi) {
    throw FormatError(origin + ": key '" + key + "' is " + std::to_string(v) + ", outside [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

// A q rank: null means a plain q_proj (rank 0).
int64_t get_q_rank(const json& j, const std::string& key, std::optional<int64_t> fallback,
                   const std::string& origin) {
  if (j.contains(key) && j.at(key).is_null()) return 0;
  return get_int(j, key, fallback, 1, ModelConfig::kMaxDim, origin);
}

// A key that repeats a config.json value must agree with it when present.
void expect_same(const json& j, const std::string& key, int64_t expected,
                 const std::string& config_key, const std::string& origin) {
  if (!j.contains(key) || j.at(key).is_null()) return;
  const int64_t v = get<int64_t>(j, key, origin);
  if (v != expected) {
    throw FormatError(origin + ": key '" + key + "' is " + std::to_string(v) +
                      " but config.json has " + config_key + " " + std::to_string(expected));
  }
}

// Turns the layers that MLA_config.json does not keep as attention into MLA layers.
void read_mla_layers(const fs::path& folder, const json& config_json, ModelConfig& c) {
  const fs::path mla_path = folder / kMlaConfigName;
  const fs::path layer_path = folder / kMlaLayerConfigName;
  const std::string mo = mla_path.string();
  const std::string lo = layer_path.string();
  const json m = read_json(mla_path);
  const json l = read_json(layer_path);
  const GqaSpec teacher = std::get<GqaSpec>(c.attention.front());

  // MLA_config.json (the MLAConfig dataclass, written whole by asdict).
  if (!m.is_object()) throw FormatError(mo + ": not a JSON object");
  const int64_t n_layer = get<int64_t>(m, "n_layer", mo);
  if (n_layer != c.n_layer) {
    throw FormatError(mo + ": key 'n_layer' is " + std::to_string(n_layer) +
                      " but config.json has num_hidden_layers " + std::to_string(c.n_layer));
  }
  expect_same(m, "d_model", c.hidden_size, "hidden_size", mo);
  expect_same(m, "vocab_size", c.vocab_size, "vocab_size", mo);
  expect_same(m, "intermediate_size", c.intermediate_size, "intermediate_size", mo);
  if (get_or<std::string>(m, "hidden_act", "silu", mo) != "silu") {
    throw FormatError(mo + ": key 'hidden_act' must be 'silu'");
  }
  if (!m.contains("attn_layers")) throw FormatError(mo + ": missing key 'attn_layers'");
  if (!m["attn_layers"].is_array()) {
    throw FormatError(mo + ": key 'attn_layers' must be a list of layer indices");
  }
  std::vector<bool> is_mla(static_cast<size_t>(c.n_layer), true);
  for (const json& index : m["attn_layers"]) {
    if (!index.is_number_integer() || index.get<int64_t>() < 0 ||
        index.get<int64_t>() >= c.n_layer) {
      throw FormatError(mo + ": key 'attn_layers' holds " + index.dump() +
                        ", not a layer index in [0, " + std::to_string(c.n_layer) + ")");
    }
    is_mla[index.get<size_t>()] = false;
  }

  // mla_layer_config.json (DeepseekV3Config); fallbacks are its class defaults.
  if (!l.is_object()) throw FormatError(lo + ": not a JSON object");
  if (get_or<std::string>(l, "model_type", "deepseek_v3", lo) != "deepseek_v3") {
    throw FormatError(lo + ": key 'model_type' must be 'deepseek_v3'");
  }
  expect_same(l, "vocab_size", c.vocab_size, "vocab_size", lo);
  expect_same(l, "hidden_size", c.hidden_size, "hidden_size", lo);
  expect_same(l, "intermediate_size", c.intermediate_size, "intermediate_size", lo);
  expect_same(l, "num_hidden_layers", c.n_layer, "num_hidden_layers", lo);
  expect_same(l, "llama_num_key_value_heads", teacher.n_head_kv, "num_key_value_heads", lo);
  if (get_or<bool>(l, "attention_bias", false, lo)) {
    throw FormatError(lo + ": key 'attention_bias' must be false (MLA biases are not supported)");
  }
  // ecomla's MLA layers rotate with the model's RoPE (config.json); X-EcoMLA with this file's.
  if (get_or<double>(l, "rope_theta", 10000.0, lo) != c.rope.theta) {
    throw FormatError(lo + ": key 'rope_theta' differs from config.json's");
  }
  const json mla_scaling = l.contains("rope_scaling") ? l["rope_scaling"] : json(nullptr);
  const json scaling =
      config_json.contains("rope_scaling") ? config_json["rope_scaling"] : json(nullptr);
  if (mla_scaling != scaling) {
    throw FormatError(lo + ": key 'rope_scaling' (" + mla_scaling.dump() +
                      ") differs from config.json's (" + scaling.dump() +
                      "); MLA layers with their own RoPE scaling (YaRN) are not supported");
  }
  constexpr int64_t kMax = ModelConfig::kMaxDim;
  MlaSpec base;
  base.n_head = get_int(l, "num_attention_heads", 128, 1, kMax, lo);
  base.rank_q = get_q_rank(l, "q_lora_rank", 1536, lo);
  base.rank_kv = get_int(l, "kv_lora_rank", 512, 1, kMax, lo);
  base.dim_rope = get_int(l, "qk_rope_head_dim", 64, 1, kMax, lo);
  base.dim_nope = get_int(l, "qk_nope_head_dim", 128, 0, kMax, lo);
  base.dim_v = get_int(l, "v_head_dim", 128, 1, kMax, lo);
  base.latent_norm = get_or<bool>(l, "use_lora_layer_norm", false, lo);
  base.latent_norm_eps = get_or<double>(l, "lora_layer_norm_eps", 1e-6, lo);
  if (!(base.latent_norm_eps > 0)) {
    throw FormatError(lo + ": key 'lora_layer_norm_eps' must be positive");
  }

  std::vector<MlaSpec> specs(static_cast<size_t>(c.n_layer), base);
  const json ranks = l.contains("layer_rank_list") && !l["layer_rank_list"].is_null()
                         ? l["layer_rank_list"]
                         : json::object();
  if (!ranks.is_object()) throw FormatError(lo + ": key 'layer_rank_list' must be an object");
  for (const auto& [key, entry] : ranks.items()) {
    const std::string where = lo + ": layer_rank_list[\"" + key + "\"]";
    const bool digits =
        !key.empty() && key.size() <= 7 && key.find_first_not_of("0123456789") == std::string::npos;
    const int64_t layer = digits ? std::stoll(key) : -1;
    if (layer < 0 || layer >= c.n_layer) {
      throw FormatError(lo + ": key 'layer_rank_list' has an entry \"" + key +
                        "\", not a layer index in [0, " + std::to_string(c.n_layer) + ")");
    }
    if (!entry.is_object()) throw FormatError(where + ": must be an object");
    // Entries for layers kept as attention do not describe any module; they are ignored.
    specs[static_cast<size_t>(layer)].rank_q = get_q_rank(entry, "q_rank", std::nullopt, where);
    specs[static_cast<size_t>(layer)].rank_kv =
        get_int(entry, "kv_rank", std::nullopt, 1, kMax, where);
  }
  bool any = false;
  for (int64_t i = 0; i < c.n_layer; ++i) {
    if (!is_mla[static_cast<size_t>(i)]) continue;
    try {
      specs[static_cast<size_t>(i)].validate();
    } catch (const std::invalid_argument& e) {
      throw FormatError(lo + ": layer " + std::to_string(i) + ": " + e.what());
    }
    c.attention[static_cast<size_t>(i)] = specs[static_cast<size_t>(i)];
    any = true;
  }
  if (any) c.source_attention = teacher;
}

}  // namespace

ModelConfig read_hf_config(const fs::path& path) {
  const json j = read_json(path);
  const std::string model_type = get_or<std::string>(j, "model_type", "", path);
  if (model_type != "llama") {
    throw FormatError(path.string() + ": model_type '" + model_type +
                      "' is not supported (Llama-family models, model_type 'llama', are)");
  }
  if (get_or<std::string>(j, "hidden_act", "silu", path) != "silu" ||
      get_or<bool>(j, "attention_bias", false, path) || get_or<bool>(j, "mlp_bias", false, path)) {
    throw FormatError(path.string() + ": only silu MLPs without biases are supported");
  }
  ModelConfig c;
  c.vocab_size = get<int64_t>(j, "vocab_size", path);
  c.hidden_size = get<int64_t>(j, "hidden_size", path);
  c.intermediate_size = get<int64_t>(j, "intermediate_size", path);
  c.n_layer = get<int64_t>(j, "num_hidden_layers", path);
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 2048, path);
  c.rms_norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, path);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false, path);
  c.rope.theta = get_or<double>(j, "rope_theta", 10000.0, path);
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& s = j["rope_scaling"];
    const std::string type = s.contains("rope_type") ? get<std::string>(s, "rope_type", path)
                                                     : get_or<std::string>(s, "type", "", path);
    if (type == "linear") {
      c.rope.scaling = RopeScaling::Linear;
      c.rope.factor = get<double>(s, "factor", path);
    } else if (type == "llama3") {
      c.rope.scaling = RopeScaling::Llama3;
      c.rope.factor = get<double>(s, "factor", path);
      c.rope.low_freq_factor = get<double>(s, "low_freq_factor", path);
      c.rope.high_freq_factor = get<double>(s, "high_freq_factor", path);
      c.rope.original_context = get<int64_t>(s, "original_max_position_embeddings", path);
    } else if (type != "default") {
      throw FormatError(path.string() + ": rope_scaling type '" + type + "' is not supported");
    }
  }
  GqaSpec a;
  a.n_head = get<int64_t>(j, "num_attention_heads", path);
  a.n_head_kv = get_or<int64_t>(j, "num_key_value_heads", a.n_head, path);
  if (a.n_head <= 0) throw FormatError(path.string() + ": num_attention_heads must be positive");
  a.head_dim = get_or<int64_t>(j, "head_dim", c.hidden_size / a.n_head, path);
  if (c.n_layer <= 0 || c.n_layer > ModelConfig::kMaxLayers) {
    throw FormatError(path.string() + ": num_hidden_layers " + std::to_string(c.n_layer) +
                      " outside [1, " + std::to_string(ModelConfig::kMaxLayers) + "]");
  }
  c.attention.assign(static_cast<size_t>(c.n_layer), a);
  const fs::path folder = path.parent_path();
  const bool has_mla = fs::exists(folder / kMlaConfigName);
  if (has_mla != fs::exists(folder / kMlaLayerConfigName)) {
    throw FormatError((folder / (has_mla ? kMlaLayerConfigName : kMlaConfigName)).string() +
                      ": missing, but " + (has_mla ? kMlaConfigName : kMlaLayerConfigName) +
                      " is there (an X-EcoMLA folder needs both)");
  }
  if (has_mla) read_mla_layers(folder, j, c);
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw FormatError(path.string() + ": " + e.what());
  }
  return c;
}

void write_hf_config(const fs::path& path, const ModelConfig& c, const Tokenizer& tokenizer,
                     const std::string& torch_dtype) {
  const HfLayout layout = hf_layout(c, tokenizer, torch_dtype);  // checks before writing
  const fs::path folder = path.parent_path();
  write_json(path, layout.config);
  if (layout.mla_config) {
    write_json(folder / kMlaConfigName, *layout.mla_config);
    write_json(folder / kMlaLayerConfigName, *layout.mla_layer);
  } else {  // a stale pair would turn this model's layers into MLA when read back
    fs::remove(folder / kMlaConfigName);
    fs::remove(folder / kMlaLayerConfigName);
  }
}

std::unique_ptr<WeightSource> hf_weight_source(const fs::path& folder, const ModelConfig& config) {
  return std::make_unique<HfWeightSource>(folder, config);
}

void save_hf_checkpoint(const fs::path& folder, const torch::nn::Module& model,
                        const ModelConfig& config, const Tokenizer& tokenizer,
                        const SaveOptions& options) {
  fs::create_directories(folder);
  const at::ScalarType dtype = scalar_type(options.dtype);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, t] : state_dict(model)) {
    tensors.emplace_back(name, t.detach().to(at::kCPU, dtype).contiguous());
  }
  // Greedy shards in name order, each at most max_shard_bytes (a larger tensor gets its own).
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t n = tensors[i].second.nbytes();
    if (!shards.back().empty() && shard_bytes + n > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += n;
  }
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = shards.size() == 1
                                 ? "model.safetensors"
                                 : "model-" + std::to_string(s + 1) + "-of-" +
                                       std::to_string(shards.size()) + ".safetensors";
    std::vector<SafetensorsWriteTensor> entries;
    for (size_t i : shards[s]) {
      const at::Tensor& t = tensors[i].second;
      entries.push_back({tensors[i].first,
                         options.dtype,
                         t.sizes().vec(),
                         {static_cast<const uint8_t*>(t.data_ptr()), t.nbytes()}});
      weight_map[tensors[i].first] = file;
    }
    write_safetensors(folder / file, entries, {{"format", "pt"}});
  }
  if (shards.size() > 1) {
    uint64_t total = 0;
    for (const auto& [name, t] : tensors) total += t.nbytes();
    write_json(folder / "model.safetensors.index.json",
               {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
  } else {
    fs::remove(folder / "model.safetensors.index.json");
  }
  write_hf_config(folder / "config.json", config, tokenizer, torch_dtype_name(options.dtype));
  write_hf_tokenizer(folder, tokenizer);
}

}  // namespace ecomla
