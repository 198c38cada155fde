// Chunked perplexity with the definition of llama.cpp's llama-perplexity
// (tools/perplexity/perplexity.cpp, perplexity()): the token stream is cut into chunks of
// `ctx` tokens; each chunk is evaluated on its own (no carried context) and only its second
// half is scored: the tokens at positions [ctx/2 + 1, ctx) given everything before them.
// With add_bos, the first token of every chunk is replaced by BOS, as llama.cpp does.
#pragma once

#include <ATen/core/ScalarType.h>

#include <cstdint>
#include <vector>

#include "ecomla/model.h"
#include "ecomla/progress.h"

namespace ecomla {

struct PerplexityOptions {
  int64_t ctx = 512;
  int64_t max_chunks = -1;        // -1: every full chunk
  int64_t batch_chunks = 4;       // chunks per forward pass
  std::optional<int32_t> bos_id;  // set to replace each chunk's first token by BOS
  ProgressCallback progress;
};

struct PerplexityResult {
  double ppl = 0;
  double nll = 0;         // mean negative log-likelihood (nats per scored token)
  double nll_stderr = 0;  // standard error of that mean
  int64_t chunks = 0;
  int64_t tokens_scored = 0;
  int64_t tokens_evaluated = 0;
  double seconds = 0;
  std::vector<double> running_ppl;  // after each chunk, as llama-perplexity prints
};

// Runs the model in the dtype of its weights. Throws std::invalid_argument when the text is
// shorter than two chunks (llama-perplexity's requirement) or ctx < 2.
PerplexityResult perplexity(LlamaForCausalLM& model, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& options);

}  // namespace ecomla
