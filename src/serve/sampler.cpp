#include "ecomla/sampler.h"

#include <ATen/ops/argmax.h>
#include <ATen/ops/sort.h>

#include <stdexcept>
#include <string>

namespace ecomla {

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {
  if (options.temperature < 0) throw std::invalid_argument("temperature must be >= 0");
  if (options.top_k < 0) throw std::invalid_argument("top_k must be >= 0");
  if (!(options.top_p > 0 && options.top_p <= 1)) {
    throw std::invalid_argument("top_p must be in (0, 1], got " + std::to_string(options.top_p));
  }
}

int32_t Sampler::sample(const at::Tensor& logits) {
  const at::Tensor x = logits.to(at::kCPU, at::kFloat).reshape({-1});  // [V]
  if (options_.temperature == 0) return static_cast<int32_t>(x.argmax().item<int64_t>());

  auto [sorted, order] = (x / options_.temperature).sort(/*dim=*/0, /*descending=*/true);
  int64_t keep = sorted.size(0);
  if (options_.top_k > 0) keep = std::min(keep, options_.top_k);
  const at::Tensor probs = sorted.narrow(0, 0, keep).softmax(0).contiguous();  // [keep]
  const float* p = probs.data_ptr<float>();
  if (options_.top_p < 1) {  // smallest prefix whose mass reaches top_p
    double mass = 0;
    for (int64_t i = 0; i < keep; ++i) {
      mass += p[i];
      if (mass >= options_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += p[i];
  double u = std::uniform_real_distribution<double>(0.0, total)(rng_);
  int64_t pick = keep - 1;
  for (int64_t i = 0; i < keep; ++i) {
    u -= p[i];
    if (u < 0) {
      pick = i;
      break;
    }
  }
  return static_cast<int32_t>(order[pick].item<int64_t>());
}

}  // namespace ecomla
