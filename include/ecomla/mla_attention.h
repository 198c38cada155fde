// Multi-head Latent Attention (DeepSeek-V2/V3), with the parameter names and RoPE convention of
// the X-EcoMLA reference code (mla/hybrid_mla_layer.py; see docs/x-ecomla-reference.md), so
// that checkpoints move between the two.
//
// Per token the cache holds one latent c = kv_a_layernorm(kv_a_proj_with_mqa(x)[:rank_kv]) and
// one RoPE key k_pe shared by all heads: rank_kv + dim_rope values per layer, instead of
// 2 * n_head_kv * head_dim for grouped-query attention.
//
// Shape legend: B batch, T new tokens, S cached + new tokens, D hidden, H heads, Rq q rank,
// Rkv kv rank, Dn nope dim, Dr rope dim, Dv value dim.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "ecomla/config.h"
#include "ecomla/layers.h"
#include "ecomla/projection.h"

namespace ecomla {

// The latent cache of one MLA layer: [B, capacity, Rkv] latents and [B, capacity, Dr] rotated
// RoPE keys; all rows share one length.
struct MlaLayerCache {
  MlaLayerCache(const MlaSpec& spec, int64_t batch, int64_t capacity, at::ScalarType dtype,
                at::Device device = at::kCPU);
  at::Tensor latent, k_pe;
  int64_t length = 0;
};

class MlaAttentionImpl : public torch::nn::Module {
public:
  // RoPE on the Dr part uses the model's theta with frequencies theta^(-2j/Dr), as X-EcoMLA.
  MlaAttentionImpl(const MlaSpec& spec, int64_t hidden_size, const RopeConfig& rope);
  // x [B, T, D] -> [B, T, D]; positions start at the cache length (0 without a cache), or
  // are the token tree's (then without a cache).
  torch::Tensor forward(const torch::Tensor& x, MlaLayerCache* cache = nullptr,
                        const TokenTree* tree = nullptr);
  // The attention output of every head before out_proj, [B, T, H * Dv] (conversion fits
  // out_proj to it).
  torch::Tensor head_outputs(const torch::Tensor& x, MlaLayerCache* cache = nullptr,
                             const TokenTree* tree = nullptr);
  const MlaSpec& spec() const { return spec_; }

  Projection q_proj{nullptr};                               // rank_q == 0
  Projection q_a_proj{nullptr}, q_b_proj{nullptr};          // rank_q > 0
  RmsNorm q_a_layernorm{nullptr}, kv_a_layernorm{nullptr};  // latent_norm only
  Projection kv_a_proj_with_mqa{nullptr}, kv_b_proj{nullptr}, out_proj{nullptr};

private:
  torch::Tensor expanded_attention(const torch::Tensor& q_nope, const torch::Tensor& q_pe,
                                   const torch::Tensor& latent, const torch::Tensor& k_pe,
                                   int64_t past, double scale, const TokenTree* tree);
  torch::Tensor absorbed_attention(const torch::Tensor& q_nope, const torch::Tensor& q_pe,
                                   const torch::Tensor& latent, const torch::Tensor& k_pe,
                                   double scale);

  MlaSpec spec_;
  RotaryEmbedding rotary_;
};
TORCH_MODULE(MlaAttention);

// DeepSeek's interleaved RoPE as X-EcoMLA applies it: the pairs (x[2j], x[2j+1]) are rotated,
// and the result comes out de-interleaved ([even..., odd...]), identically for q and k.
torch::Tensor apply_interleaved_rope(const torch::Tensor& x, const RopeTables& rope);

}  // namespace ecomla
