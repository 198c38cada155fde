// Token sampling: greedy, temperature, top-k and top-p (nucleus), in that order, with a
// seeded generator: the same seed gives the same tokens with the same build.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <random>

namespace ecomla {

struct SamplerOptions {
  double temperature = 0.8;  // 0 = greedy
  int64_t top_k = 40;        // 0 = off
  double top_p = 0.95;       // 1 = off
  uint64_t seed = 0;
};

class Sampler {
public:
  explicit Sampler(const SamplerOptions& options);
  // logits [V] (any float dtype) -> token id.
  int32_t sample(const at::Tensor& logits);

private:
  SamplerOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace ecomla
