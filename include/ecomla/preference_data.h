// Preference pairs for DPO: local files in the layouts preference sets come in, turned into a
// prompt and two responses, rendered with the model's chat template, tokenized and truncated as
// the common DPO trainers do (TRL's DPOTrainer).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ecomla/tokenizer.h"

namespace ecomla {

struct PreferencePair {
  std::vector<ChatMessage> prompt;            // the conversation so far, ending in a user turn
  std::vector<ChatMessage> chosen, rejected;  // the responses, starting with an assistant turn
  std::string origin;                         // "file:line"
};

// The pairs of one .jsonl / .json file. Each record is one of:
// - {"prompt": str, "chosen": str, "rejected": str}: a user prompt and two answers;
// - {"instruction": str, "input": str (optional), "chosen": str, "rejected": str}
//   (LLMs-from-scratch): the instruction (and its input after a blank line) is the prompt;
// - {"chosen": [messages], "rejected": [messages]} (UltraFeedback-binarized; a "prompt" string
//   beside them is ignored): two whole conversations, the prompt being the turns they share;
// - {"prompt": [messages], "chosen": [messages], "rejected": [messages]}: the prompt given,
//   the responses with or without it in front;
// - {"chosen": str, "rejected": str} in Anthropic HH-RLHF's "\n\nHuman: ... \n\nAssistant: ..."
//   layout: parsed into turns, the prompt being the turns they share.
// A malformed record throws FormatError naming file and line, or with `skip_malformed` is left
// out and counted in *skipped.
std::vector<PreferencePair> read_preference_pairs(const std::filesystem::path& path,
                                                  bool skip_malformed = false,
                                                  int64_t* skipped = nullptr);

// A pair as token ids: the rendered prompt (chat template with the generation prompt) and each
// response as the template continues it (through its end-of-turn marker).
struct TokenizedPair {
  std::vector<int32_t> prompt, chosen, rejected;
};

// Truncation as TRL's DPOTrainer: when the prompt and the longer response exceed max_length,
// the prompt keeps its last max_prompt_length tokens; if that is still too long, both
// responses keep their first max_length - max_prompt_length tokens.
TokenizedPair tokenize_pair(const PreferencePair& pair, const Tokenizer& tokenizer,
                            int64_t max_length, int64_t max_prompt_length);

}  // namespace ecomla
