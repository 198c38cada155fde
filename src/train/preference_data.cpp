#include "ecomla/preference_data.h"

#include <fmt/format.h>
#include <algorithm>

#include "ecomla/error.h"
#include "util/data_files.h"

namespace ecomla {
namespace fs = std::filesystem;
using namespace data_files;

namespace {

bool same(const ChatMessage& a, const ChatMessage& b) {
  return a.role == b.role && a.content == b.content;
}

std::vector<ChatMessage> messages_of(const nlohmann::json& list, const std::string& key,
                                     const std::string& origin) {
  std::vector<ChatMessage> messages;
  for (const auto& m : list) {
    if (!m.is_object()) throw FormatError(fmt::format("{}: '{}' must hold messages", origin, key));
    messages.push_back({text_of(m, "role", origin), text_of(m, "content", origin)});
  }
  return messages;
}

// Anthropic HH-RLHF's transcript "\n\nHuman: ...\n\nAssistant: ..." as turns.
std::vector<ChatMessage> hh_turns(const std::string& text, const std::string& origin) {
  static const std::vector<std::pair<std::string, std::string>> markers = {
      {"\n\nHuman:", "user"}, {"\n\nAssistant:", "assistant"}};
  std::vector<ChatMessage> turns;
  size_t at = 0;
  std::string role;
  while (true) {
    size_t next = std::string::npos;
    const std::pair<std::string, std::string>* found = nullptr;
    for (const auto& m : markers) {
      const size_t p = text.find(m.first, at);
      if (p < next) next = p, found = &m;
    }
    const std::string piece = text.substr(at, next == std::string::npos ? next : next - at);
    if (role.empty()) {
      if (!strip(piece).empty()) {
        throw FormatError(origin + ": an HH-RLHF transcript starts with \"\\n\\nHuman:\"");
      }
    } else {
      turns.push_back({role, strip(piece)});
    }
    if (!found) break;
    role = found->second;
    at = next + found->first.size();
  }
  return turns;
}

// Two whole conversations as a prompt (the turns both start with, up to a user turn) and the
// two responses after it.
PreferencePair split_shared_prompt(const std::vector<ChatMessage>& chosen,
                                   const std::vector<ChatMessage>& rejected,
                                   const std::string& origin) {
  size_t shared = 0;
  while (shared + 1 < chosen.size() && shared + 1 < rejected.size() &&
         same(chosen[shared], rejected[shared])) {
    ++shared;
  }
  while (shared > 0 && chosen[shared].role != "assistant") --shared;
  if (shared == 0 || rejected[shared].role != "assistant") {
    throw FormatError(origin +
                      ": chosen and rejected must be conversations that share their prompt and "
                      "differ from an assistant turn on");
  }
  return {{chosen.begin(), chosen.begin() + static_cast<std::ptrdiff_t>(shared)},
          {chosen.begin() + static_cast<std::ptrdiff_t>(shared), chosen.end()},
          {rejected.begin() + static_cast<std::ptrdiff_t>(shared), rejected.end()},
          origin};
}

// A response given as messages, with the prompt in front of it or not.
std::vector<ChatMessage> after_prompt(const std::vector<ChatMessage>& prompt,
                                      std::vector<ChatMessage> response) {
  if (response.size() > prompt.size() &&
      std::equal(prompt.begin(), prompt.end(), response.begin(), same)) {
    response.erase(response.begin(), response.begin() + static_cast<std::ptrdiff_t>(prompt.size()));
  }
  return response;
}

PreferencePair pair_of(const Record& r) {
  const nlohmann::json& v = r.value;
  if (!v.is_object() || !v.contains("chosen") || !v.contains("rejected")) {
    throw FormatError(r.origin + ": a preference record needs 'chosen' and 'rejected'");
  }
  const nlohmann::json &chosen = v.at("chosen"), &rejected = v.at("rejected");
  PreferencePair pair;
  if (chosen.is_array() && rejected.is_array()) {
    const std::vector<ChatMessage> c = messages_of(chosen, "chosen", r.origin),
                                   d = messages_of(rejected, "rejected", r.origin);
    if (!v.contains("prompt") || v.at("prompt").is_string())
      return split_shared_prompt(c, d, r.origin);
    if (!v.at("prompt").is_array())
      throw FormatError(r.origin + ": 'prompt' must be text or messages");
    pair.prompt = messages_of(v.at("prompt"), "prompt", r.origin);
    pair.chosen = after_prompt(pair.prompt, c);
    pair.rejected = after_prompt(pair.prompt, d);
  } else if (chosen.is_string() && rejected.is_string()) {
    const std::string c = chosen.get<std::string>(), d = rejected.get<std::string>();
    if (v.contains("instruction")) {
      const std::string input = v.contains("input") ? text_of(v, "input", r.origin) : "";
      pair.prompt = {
          {"user", text_of(v, "instruction", r.origin) + (input.empty() ? "" : "\n\n" + input)}};
    } else if (v.contains("prompt")) {
      pair.prompt = {{"user", text_of(v, "prompt", r.origin)}};
    } else if (c.starts_with("\n\nHuman:") && d.starts_with("\n\nHuman:")) {
      return split_shared_prompt(hh_turns(c, r.origin), hh_turns(d, r.origin), r.origin);
    } else {
      throw FormatError(r.origin +
                        ": 'chosen' and 'rejected' as text need a 'prompt' or an 'instruction', "
                        "or HH-RLHF's \"\\n\\nHuman: ... \\n\\nAssistant: ...\" transcripts");
    }
    pair.chosen = {{"assistant", c}};
    pair.rejected = {{"assistant", d}};
  } else {
    throw FormatError(r.origin + ": 'chosen' and 'rejected' must both be text or both messages");
  }
  if (pair.prompt.empty() || pair.prompt.back().role != "user" || pair.chosen.empty() ||
      pair.rejected.empty() || pair.chosen.front().role != "assistant" ||
      pair.rejected.front().role != "assistant") {
    throw FormatError(r.origin +
                      ": the prompt must end in a user turn and both responses start "
                      "with an assistant turn");
  }
  pair.origin = r.origin;
  return pair;
}

// The text the chat template adds after the rendered prompt for `response`.
std::string rendered_response(const Tokenizer& tokenizer, const PreferencePair& pair,
                              const std::string& prompt_text,
                              const std::vector<ChatMessage>& response) {
  std::vector<ChatMessage> conversation = pair.prompt;
  conversation.insert(conversation.end(), response.begin(), response.end());
  const std::string whole = tokenizer.apply_chat_template(conversation, false);
  if (!whole.starts_with(prompt_text)) {
    throw FormatError(pair.origin +
                      ": the chat template does not render the response after the "
                      "prompt's generation prompt");
  }
  return whole.substr(prompt_text.size());
}

}  // namespace

std::vector<PreferencePair> read_preference_pairs(const fs::path& path, bool skip_malformed,
                                                  int64_t* skipped) {
  std::vector<PreferencePair> pairs;
  int64_t bad = 0;
  for (const Record& r : read_records(path)) {
    try {
      pairs.push_back(pair_of(r));
    } catch (const FormatError&) {
      if (!skip_malformed) throw;
      ++bad;
    }
  }
  if (skipped) *skipped = bad;
  return pairs;
}

TokenizedPair tokenize_pair(const PreferencePair& pair, const Tokenizer& tokenizer,
                            int64_t max_length, int64_t max_prompt_length) {
  // Control tokens in the rendered text (<|im_start|>) become their ids, as in training text.
  auto encode = [&](const std::string& text) { return tokenizer.encode(text, false, true); };
  const std::string prompt_text = tokenizer.apply_chat_template(pair.prompt, true);
  TokenizedPair t{encode(prompt_text),
                  encode(rendered_response(tokenizer, pair, prompt_text, pair.chosen)),
                  encode(rendered_response(tokenizer, pair, prompt_text, pair.rejected))};
  const auto too_long = [&] {
    const auto longer = static_cast<int64_t>(std::max(t.chosen.size(), t.rejected.size()));
    return static_cast<int64_t>(t.prompt.size()) + longer > max_length;
  };
  if (too_long() && static_cast<int64_t>(t.prompt.size()) > max_prompt_length) {
    t.prompt.erase(t.prompt.begin(), t.prompt.end() - max_prompt_length);
  }
  if (too_long()) {
    const auto keep = static_cast<size_t>(max_length - max_prompt_length);
    if (t.chosen.size() > keep) t.chosen.resize(keep);
    if (t.rejected.size() > keep) t.rejected.resize(keep);
  }
  return t;
}

}  // namespace ecomla
