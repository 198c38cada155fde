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

// An Alpaca record's user turn: the instruction, and its input after a blank line.
std::string instruction_of(const Record& r) {
  const std::string input = r.value.value("input", "");
  return text_of(r.value, "instruction", r.origin) + (input.empty() ? "" : "\n\n" + input);
}

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
    return {{"user", instruction_of(r)}, {"assistant", text("output")}};
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

std::vector<std::vector<ChatMessage>> read_prompts(const fs::path& path) {
  std::vector<std::vector<ChatMessage>> prompts;
  if (path.extension() == ".txt") {
    for (const std::string& line : read_lines(path)) {
      if (!strip(line).empty()) prompts.push_back({{"user", line}});
    }
    return prompts;
  }
  for (const Record& r : read_records(path)) {
    const nlohmann::json& v = r.value;
    std::vector<ChatMessage> conversation;
    if (v.contains("messages")) {
      conversation = conversation_of(r);
      while (!conversation.empty() && conversation.back().role != "user") conversation.pop_back();
    } else if (v.contains("instruction")) {
      conversation = {{"user", instruction_of(r)}};
    } else {
      for (const char* key : {"question", "prompt"}) {
        if (v.contains(key)) {
          conversation = {{"user", text_of(v, key, r.origin)}};
          break;
        }
      }
    }
    if (conversation.empty()) {
      throw FormatError(r.origin +
                        ": expected a prompt: 'messages' with a user turn, 'instruction', "
                        "'question' or 'prompt'");
    }
    prompts.push_back(std::move(conversation));
  }
  return prompts;
}

PackedData pack_training_data(const std::vector<DataSource>& sources, const Tokenizer& tokenizer,
                              int64_t length, int64_t held_out, uint64_t seed) {
  if (length < 2) throw std::invalid_argument("max_seq_length must be at least 2");
  const std::optional<int32_t> eos = tokenizer.eos_id();
  if (!eos) throw std::invalid_argument("packing needs a tokenizer with an EOS token");
  std::mt19937_64 rng(seed);
  std::vector<std::string> documents;
  for (const DataSource& source : sources) {
    const std::vector<std::string> docs = mixer_share(source, rng, [&](const fs::path& path) {
      return read_training_documents(path, tokenizer);
    });
    documents.insert(documents.end(), docs.begin(), docs.end());
  }
  std::shuffle(documents.begin(), documents.end(), rng);
  PackedData data;
  data.documents = static_cast<int64_t>(documents.size());
  std::vector<int32_t> stream;
  for (const std::string& doc : documents) {
    // Control tokens written in the text become their ids, as Hugging Face tokenizers do by
    // default: a chat-rendered document's <|im_start|> is one token, not seven.
    const std::vector<int32_t> ids = tokenizer.encode(doc, false, /*parse_special=*/true);
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
