// Multi-head Latent Attention. Shape legend: see include/ecomla/mla_attention.h.
#include "ecomla/mla_attention.h"

#include <ATen/ops/baddbmm.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/scaled_dot_product_attention.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ecomla {

MlaLayerCache::MlaLayerCache(const MlaSpec& spec, int64_t batch, int64_t capacity,
                             at::ScalarType dtype, at::Device device)
    : latent(at::zeros({batch, capacity, spec.rank_kv}, at::TensorOptions(dtype).device(device))),
      k_pe(at::zeros({batch, capacity, spec.dim_rope}, at::TensorOptions(dtype).device(device))) {}

torch::Tensor apply_interleaved_rope(const torch::Tensor& x, const RopeTables& rope) {
  const int64_t d = x.size(-1);
  auto shape = x.sizes().vec();
  shape.back() = d / 2;
  shape.push_back(2);
  const torch::Tensor halves = x.reshape(shape).transpose(-1, -2).reshape(x.sizes());
  return apply_rope(halves, rope);
}

MlaAttentionImpl::MlaAttentionImpl(const MlaSpec& spec, int64_t hidden_size, const RopeConfig& rope)
    : spec_(spec), rotary_(spec.dim_rope, rope) {
  spec.validate();
  const int64_t h = spec.n_head, dqk = spec.dim_nope + spec.dim_rope;
  if (spec.rank_q == 0) {
    q_proj = register_module("q_proj", Projection(hidden_size, h * dqk));
  } else {
    q_a_proj = register_module("q_a_proj", Projection(hidden_size, spec.rank_q));
    if (spec.latent_norm) {
      q_a_layernorm = register_module("q_a_layernorm", RmsNorm(spec.rank_q, spec.latent_norm_eps));
    }
    q_b_proj = register_module("q_b_proj", Projection(spec.rank_q, h * dqk));
  }
  kv_a_proj_with_mqa =
      register_module("kv_a_proj_with_mqa", Projection(hidden_size, spec.rank_kv + spec.dim_rope));
  if (spec.latent_norm) {
    kv_a_layernorm = register_module("kv_a_layernorm", RmsNorm(spec.rank_kv, spec.latent_norm_eps));
  }
  kv_b_proj =
      register_module("kv_b_proj", Projection(spec.rank_kv, h * (spec.dim_nope + spec.dim_v)));
  out_proj = register_module("out_proj", Projection(h * spec.dim_v, hidden_size));
}

// Training and prefill: expand the latents to per-head keys and values (kv_b_proj) and run
// causal attention; query i sees keys j <= past + i.
torch::Tensor MlaAttentionImpl::expanded_attention(const torch::Tensor& q_nope,
                                                   const torch::Tensor& q_pe,
                                                   const torch::Tensor& latent,
                                                   const torch::Tensor& k_pe, int64_t past,
                                                   double scale, const TokenTree* tree) {
  const int64_t b = q_nope.size(0), h = spec_.n_head, t = q_nope.size(2), s = latent.size(1);
  const int64_t dn = spec_.dim_nope, dr = spec_.dim_rope, dv = spec_.dim_v;
  const torch::Tensor kv = kv_b_proj(latent).view({b, s, h, dn + dv}).transpose(1, 2);
  torch::Tensor key = torch::cat({kv.narrow(-1, 0, dn), k_pe.unsqueeze(1).expand({b, h, s, dr})},
                                 -1);                    // [B, H, S, Dn+Dr]
  torch::Tensor query = torch::cat({q_nope, q_pe}, -1);  // [B, H, T, Dn+Dr]
  torch::Tensor value = kv.narrow(-1, dn, dv);           // [B, H, S, Dv]
  if (tree || past > 0) {
    const torch::Tensor mask =
        tree ? tree->mask : torch::arange(s).unsqueeze(0) <= (torch::arange(t) + past).unsqueeze(1);
    return at::scaled_dot_product_attention(query, key, value, mask, 0.0, false, scale);
  }
  // Plain causal attention (training, prefill of an empty cache): libtorch's CPU flash kernel,
  // which needs one head dim for queries, keys and values. Zero dims change no score (the
  // scale is explicit) and add zero outputs, so pad to the larger dim and cut back. Otherwise
  // SDPA falls back to its math path, which keeps the [B, H, T, S] probabilities for backward:
  // 150 MB a layer in fp32 for one 2048-token sequence of this model, 4.5 GB over 30 layers.
  const int64_t d = std::max(dn + dr, dv);
  if (dn + dr < d) {
    query = at::constant_pad_nd(query, {0, d - dn - dr});
    key = at::constant_pad_nd(key, {0, d - dn - dr});
  }
  if (dv < d) value = at::constant_pad_nd(value, {0, d - dv});
  return at::scaled_dot_product_attention(query, key, value, {}, 0.0, /*is_causal=*/t > 1, scale)
      .narrow(-1, 0, dv);  // [B, H, T, Dv]
}

// Decoding one token: W_UK is absorbed into the query and W_UV applied after the weighted sum
// of latents (DeepSeek-V2, section 2.1.2), so the cached latents are never expanded:
//   score_h(j) = (q_nope,h W_UK,h) . c_j + q_pe,h . k_pe,j      out_h = (sum_j p_hj c_j) W_UV,h^T
// With one query token the H heads are the rows of one [H, Rkv] x [Rkv, S] product per
// sequence (every head reads the same latents, as in MQA). Broadcasting the latents over a
// head dim instead makes at::matmul copy the whole cache H times per layer and step.
torch::Tensor MlaAttentionImpl::absorbed_attention(const torch::Tensor& q_nope,
                                                   const torch::Tensor& q_pe,
                                                   const torch::Tensor& latent,
                                                   const torch::Tensor& k_pe, double scale) {
  const int64_t h = spec_.n_head, dn = spec_.dim_nope, dv = spec_.dim_v;
  const torch::Tensor w = kv_b_proj->weight.view({h, dn + dv, spec_.rank_kv});
  const torch::Tensor w_uk = w.narrow(1, 0, dn);   // [H, Dn, Rkv]
  const torch::Tensor w_uv = w.narrow(1, dn, dv);  // [H, Dv, Rkv]
  // Per head over the batch: [H, B, Dn] x [H, Dn, Rkv] -> [H, B, Rkv], then back to [B, H, Rkv].
  const torch::Tensor q_absorbed = at::bmm(q_nope.squeeze(2).transpose(0, 1), w_uk).transpose(0, 1);
  const torch::Tensor scores = at::baddbmm(at::bmm(q_absorbed, latent.transpose(1, 2)),
                                           q_pe.squeeze(2), k_pe.transpose(1, 2));  // [B, H, S]
  const torch::Tensor p = (scores * scale).softmax(-1);
  const torch::Tensor mixed = at::bmm(p, latent);              // [B, H, Rkv]
  return at::bmm(mixed.transpose(0, 1), w_uv.transpose(1, 2))  // [H, B, Dv]
      .transpose(0, 1)
      .unsqueeze(2);  // [B, H, 1, Dv]
}

torch::Tensor MlaAttentionImpl::forward(const torch::Tensor& x, MlaLayerCache* cache,
                                        const TokenTree* tree) {
  return out_proj(head_outputs(x, cache, tree));
}

torch::Tensor MlaAttentionImpl::head_outputs(const torch::Tensor& x, MlaLayerCache* cache,
                                             const TokenTree* tree) {
  if (cache && tree) throw std::invalid_argument("MLA attention: a token tree takes no cache");
  const int64_t b = x.size(0), t = x.size(1), h = spec_.n_head;
  const int64_t dn = spec_.dim_nope, dr = spec_.dim_rope, dv = spec_.dim_v;
  const int64_t past = cache ? cache->length : 0;
  const RopeTables rope = rotary_.tables(
      tree ? tree->positions
           : torch::arange(past, past + t, torch::TensorOptions().dtype(torch::kLong)),
      x.scalar_type());

  torch::Tensor q_latent = spec_.rank_q == 0 ? x : q_a_proj(x);  // [B, T, Rq]
  if (q_a_layernorm) q_latent = q_a_layernorm(q_latent);
  const torch::Tensor q = (spec_.rank_q == 0 ? q_proj(x) : q_b_proj(q_latent))
                              .view({b, t, h, dn + dr})
                              .transpose(1, 2);  // [B, H, T, Dn+Dr]
  const torch::Tensor q_pe = apply_interleaved_rope(q.narrow(-1, dn, dr), rope);

  const torch::Tensor compressed = kv_a_proj_with_mqa(x);  // [B, T, Rkv+Dr]
  torch::Tensor latent = compressed.narrow(-1, 0, spec_.rank_kv);
  if (kv_a_layernorm) latent = kv_a_layernorm(latent);
  // k_pe [B, T, Dr] is rotated as one head, so that per-row tables [B, 1, T, Dr] broadcast.
  torch::Tensor k_pe =
      apply_interleaved_rope(compressed.narrow(-1, spec_.rank_kv, dr).unsqueeze(1), rope)
          .squeeze(1);
  if (cache) {  // only the latent and the shared RoPE key are kept
    if (past + t > cache->latent.size(1)) {
      throw std::length_error("KV cache full: " + std::to_string(past) + " + " + std::to_string(t) +
                              " tokens exceed the capacity of " +
                              std::to_string(cache->latent.size(1)));
    }
    cache->latent.narrow(1, past, t).copy_(latent);
    cache->k_pe.narrow(1, past, t).copy_(k_pe);
    cache->length += t;
    latent = cache->latent.narrow(1, 0, past + t);  // [B, S, Rkv]
    k_pe = cache->k_pe.narrow(1, 0, past + t);      // [B, S, Dr]
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(dn + dr));
  const torch::Tensor q_nope = q.narrow(-1, 0, dn);  // [B, H, T, Dn]
  const torch::Tensor out = t == 1 && !tree
                                ? absorbed_attention(q_nope, q_pe, latent, k_pe, scale)
                                : expanded_attention(q_nope, q_pe, latent, k_pe, past, scale, tree);
  return out.transpose(1, 2).reshape({b, t, h * dv});
}

}  // namespace ecomla
