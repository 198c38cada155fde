// Building blocks shared by the attention kinds and the decoder: RMSNorm and rotary embeddings.
//
// Shape legend: B batch, T tokens, Dh head (or RoPE) dim.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "ecomla/config.h"

namespace ecomla {

// RMSNorm as Hugging Face's LlamaRMSNorm: normalise in fp32, cast back, then scale.
class RmsNormImpl : public torch::nn::Module {
public:
  RmsNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

private:
  double eps_;
};
TORCH_MODULE(RmsNorm);

// cos/sin tables for the positions of one forward pass, [T, Dh] each, in the compute dtype.
struct RopeTables {
  torch::Tensor cos, sin;
};

// Inverse frequencies with the configured scaling; rotate_half convention.
class RotaryEmbedding {
public:
  RotaryEmbedding(int64_t head_dim, const RopeConfig& config);
  RopeTables tables(const torch::Tensor& positions, torch::ScalarType dtype) const;
  const torch::Tensor& inv_freq() const { return inv_freq_; }  // [Dh/2] fp32

private:
  torch::Tensor inv_freq_;
};

// x * cos + rotate_half(x) * sin; x [B, heads, T, Dh].
torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& rope);

}  // namespace ecomla
