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

// cos/sin tables for the positions of one forward pass in the compute dtype: [T, Dh] each for
// positions [T], [B, 1, T, Dh] for per-row positions [B, T] (broadcast over the heads).
struct RopeTables {
  torch::Tensor cos, sin;
};

// Sequences that share prefixes, packed as one prefix tree per batch row so that a shared
// prefix is computed once (evaluation scores every choice of a question on one context). Each
// token sits at its depth in the tree and attends to its ancestors and itself only, which gives
// every leaf exactly the attention of its own sequence run alone.
struct TokenTree {
  torch::Tensor positions;  // [B, T] int64
  torch::Tensor mask;       // [B, 1, T, T] bool: query token i may attend key token j
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
