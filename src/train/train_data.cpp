#include "ecomla/train_data.h"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "ecomla/error.h"
#include "util/data_files.h"

namespace ecomla {
namespace fs = std::filesystem;
using namespace data_files;

namespace {

// A record as the conversation it holds, or an empty list when it is plain text.
std::vector<ChatMessage> conversation_of(const Record& r) {
  const nlohmann::json& v = r.value;
  auto text = [&](const char* key) { return text_of(v, key, r.origin); };
  if (v.contains("messages")) {
    std::vector<ChatMessage> messages;
    if (!v.at("messages").is_array()) throw FormatError(r.origin + ": 'messages' must be a list");
    for (const auto& m : v.at("messages")) {
      messages.push_back({text_of(m, "role", r.origin), text_of(m, "content", r.origin)});
    }
    return messages;
  }
  if (v.contains("instruction") && v.contains("output")) {
    const std::string input = v.value("input", "");
    return {{"user", text("instruction") + (input.empty() ? "" : "\n\n" + input)},
            {"assistant", text("output")}};
  }
  if (v.contains("question") && v.contains("answer")) {
    return {{"user", text("question")}, {"assistant", text("answer")}};
  }
  if (v.contains("prompt") && v.contains("completion")) {
    return {{"user", text("prompt")}, {"assistant", text("completion")}};
  }
  return {};
}

}  // namespace

std::vector<std::string> read_training_documents(const fs::path& path, const Tokenizer& tokenizer) {
  if (path.extension() == ".txt" || path.extension() == ".tokens") return {read_text(path)};
  std::vector<std::string> documents;
  for (const Record& r : read_records(path)) {
    const std::vector<ChatMessage> conversation = conversation_of(r);
    if (!conversation.empty()) {
      documents.push_back(tokenizer.apply_chat_template(conversation, false));
    } else if (r.value.contains("text")) {
      documents.push_back(text_of(r.value, "text", r.origin));
    } else {
      throw FormatError(r.origin +
                        ": expected 'text', 'messages', 'instruction'/'output', "
                        "'question'/'answer' or 'prompt'/'completion'");
    }
  }
  return documents;
}

PackedData pack_training_data(const std::vector<DataSource>& sources, const Tokenizer& tokenizer,
                              int64_t length, int64_t held_out, uint64_t seed) {
  if (length < 2) throw std::invalid_argument("max_seq_length must be at least 2");
  const std::optional<int32_t> eos = tokenizer.eos_id();
  if (!eos) throw std::invalid_argument("packing needs a tokenizer with an EOS token");
  std::mt19937_64 rng(seed);
  std::vector<std::string> documents;
  for (const DataSource& source : sources) {
    if (source.ratio <= 0) {
      throw std::invalid_argument(
          fmt::format("dataset_mixer: the ratio of {} must be positive", source.path.string()));
    }
    std::vector<std::string> docs = read_training_documents(source.path, tokenizer);
    std::shuffle(docs.begin(), docs.end(), rng);
    const auto wanted = static_cast<size_t>(std::llround(source.ratio * double(docs.size())));
    for (size_t i = 0; i < wanted && !docs.empty(); ++i) documents.push_back(docs[i % docs.size()]);
  }
  std::shuffle(documents.begin(), documents.end(), rng);
  PackedData data;
  data.documents = static_cast<int64_t>(documents.size());
  std::vector<int32_t> stream;
  for (const std::string& doc : documents) {
    const std::vector<int32_t> ids = tokenizer.encode(doc);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(*eos);
  }
  data.tokens = static_cast<int64_t>(stream.size());
  const int64_t n = data.tokens / length;
  if (n < held_out + 1) {
    throw std::invalid_argument(fmt::format(
        "the training data packs into {} sequences of {} tokens; at least {} are needed "
        "({} held out for evaluation)",
        n, length, held_out + 1, held_out));
  }
  for (int64_t i = 0; i < n; ++i) {
    auto& target = i < n - held_out ? data.train : data.held_out;
    target.emplace_back(stream.begin() + i * length, stream.begin() + (i + 1) * length);
  }
  return data;
}

}  // namespace ecomla
