// Autoregressive generation with a KV cache: prefill the prompt once, then one token per step.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ecomla/model.h"
#include "ecomla/sampler.h"
#include "ecomla/tokenizer.h"

namespace ecomla {

struct GenerateOptions {
  int64_t max_tokens = 128;
  SamplerOptions sampler;
  bool stop_at_eos = true;  // EOS and the chat end token (<|im_end|>) end generation
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens only
  std::string text;
  double prefill_seconds = 0, decode_seconds = 0;
  std::string stop_reason;  // "eos", "max_tokens", "context", "cancelled"
};

class Generator {
public:
  // Keeps a reference to `tokenizer`, which must outlive the generator.
  Generator(LlamaForCausalLM model, const Tokenizer& tokenizer);
  // on_text receives text as it becomes complete UTF-8; returning false stops generation.
  GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                          const std::function<bool(const std::string&)>& on_text = {});
  // `n` samples of one prompt, decoded together as a batch of n rows (the rows share every
  // weight read, which is what bounds decoding on a CPU). Row r draws its tokens in turn from
  // one sampler seeded by options.sampler.seed, so the same seed gives the same samples; a row
  // that has stopped is carried along until every row has.
  std::vector<GenerateResult> generate_samples(const std::vector<int32_t>& prompt, int64_t n,
                                               const GenerateOptions& options);

private:
  struct Row;
  bool is_stop_token(int32_t id) const;
  std::vector<GenerateResult> decode(const std::vector<int32_t>& prompt, int64_t n,
                                     const GenerateOptions& options,
                                     const std::function<bool(const std::string&)>& on_text);

  LlamaForCausalLM model_;
  const Tokenizer& tokenizer_;
  std::vector<int32_t> stop_ids_;
};

}  // namespace ecomla
