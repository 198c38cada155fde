// Training text sampled from the teacher (ecomla synth): responses to prompts, written as chat
// records that a distillation dataset_mixer reads back. Little public text is at hand, and
// text from the teacher's own distribution is what KD matches best (sequence-level KD, Kim &
// Rush 2016).
#pragma once

#include <filesystem>
#include <vector>

#include "ecomla/generator.h"
#include "ecomla/progress.h"

namespace ecomla {

struct SynthOptions {
  int64_t samples_per_prompt = 4;  // decoded together as one batch
  GenerateOptions generate = {.max_tokens = 256,
                              .sampler = {.temperature = 1.0, .top_k = 0, .top_p = 0.95},
                              .stop_at_eos = true};
  bool resume = false;  // keep the complete prompts already in the output and continue
};

struct SynthResult {
  int64_t prompts = 0;  // sampled by this run
  int64_t skipped = 0;  // already in the output (resume)
  int64_t samples = 0, tokens = 0;
  double seconds = 0;
};

// For each prompt, samples_per_prompt responses of `model`, appended to `output` as jsonl lines
// {"messages": [...prompt, {"role": "assistant", "content": response}]}, one prompt's lines at a
// time. Prompt i samples with seed generate.sampler.seed + i, so a resumed run writes what an
// uninterrupted one would. An existing output is an error unless `resume`.
SynthResult synthesize(LlamaForCausalLM model, const Tokenizer& tokenizer,
                       const std::vector<std::vector<ChatMessage>>& prompts,
                       const std::filesystem::path& output, const SynthOptions& options,
                       const ProgressCallback& progress = {});

}  // namespace ecomla
