// Decode speed as the recipe reports it, measured the same way for every model: tokens/s of
// single-token steps of `batch` sequences after a context of `context` tokens, with the
// model's own cache (full keys and values for GQA layers, only the latent for MLA layers).
#pragma once

#include <cstdint>

#include "ecomla/model.h"

namespace ecomla {

struct DecodeSpeed {
  int64_t batch = 0, context = 0, steps = 0;
  double tokens_per_s = 0;  // batch * steps / seconds
  int64_t cache_bytes = 0;  // KV cache held at the context, all rows
};

// The cache is filled with noise rather than by a prefill (KvCache::fill_with_noise): a step's
// cost does not depend on what the cache holds, and the prefill of 8 x 4096 tokens would take
// far longer than the steps measured. One untimed step first warms the allocator. Runs in the
// dtype of the model's weights.
DecodeSpeed measure_decode_speed(LlamaForCausalLM& model, int64_t batch, int64_t context,
                                 int64_t steps);

}  // namespace ecomla
