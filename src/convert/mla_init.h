// The per-layer initialisations behind convert_to_mla (include/ecomla/convert.h): each turns
// one GQA layer's weights into the weights of an MLA layer.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "ecomla/config.h"
#include "ecomla/convert.h"

namespace ecomla::convert {

// One GQA layer's projections, fp64, [out, in], Hugging Face (rotate_half) row order.
struct GqaLayerWeights {
  GqaSpec spec;
  at::Tensor q, k, v, o;
};

// What one layer should become.
struct MlaTarget {
  RankChoice q, kv;
  bool energy_ranks = true;  // false: the fixed ranks even when energies are given
  int64_t dim_rope = 0, dim_nope = 0, dim_v = 0;
  bool latent_norm = false;
  int64_t rank_multiple = 8;
  double key_weight = 1.0;
};

struct MlaLayerInit {
  MlaSpec spec;
  std::map<std::string, at::Tensor> weights;  // fp32, names below "mla." (e.g. "kv_b_proj.weight")
  double q_energy = 1.0, kv_energy = 1.0, rope_energy = 1.0;
};

// The rank `choice` asks for given the singular values of the matrix it truncates: the fixed
// rank, or (when `use_energy`) X-EcoMLA's energy rule; rounded up to `multiple`. Throws
// std::invalid_argument naming `what` when it exceeds the number of singular values.
int64_t choose_rank(const at::Tensor& singular_values, const RankChoice& choice, bool use_energy,
                    int64_t multiple, const std::string& what);
// Share of sum(sigma^2) in the first `rank` singular values.
double energy_kept(const at::Tensor& singular_values, int64_t rank);
// Adds the latent RMSNorm weights the spec asks for (ones: neither init rescales them) and
// casts every weight to fp32.
void finish(MlaLayerInit& init);

// Rescales the factors of each product the layer computes so that both sides have equal norms,
// leaving the function unchanged: latent dim j of kv_a_proj (row j) and kv_b_proj (column j),
// unless the latent is normalised; nope dim i of each head's query row and key row (q . k is
// invariant); value dim i of each head's kv_b_proj row and out_proj column. Least-squares
// fits leave them far apart (kv_a and out_proj weights near 50 against kv_b near 0.01), and
// AdamW, which moves every weight by about the learning rate whatever its size, then perturbs
// the small side relatively far more: a factorisation is only trainable when balanced.
// `weights` holds the layer's MLA weights by their names below "mla.".
void balance_factors(std::map<std::string, at::Tensor>& weights, const MlaSpec& spec);

// X-EcoMLA's weight-SVD initialisation (docs/x-ecomla-reference.md, section 2), exactly.
MlaLayerInit xecomla_init(const GqaLayerWeights& w, const MlaTarget& target);

// ecomla's activation-aware initialisation (docs/mla-init.md). `cov` is E[x x^T] of the
// layer's attention input [D, D] fp64 (identity without calibration); `inv_freq` the model's
// RoPE inverse frequencies for the head dim and `rope_inv_freq` those the MLA RoPE uses.
MlaLayerInit activation_init(const GqaLayerWeights& w, const at::Tensor& cov,
                             const at::Tensor& inv_freq, const at::Tensor& rope_inv_freq,
                             const MlaTarget& target);

}  // namespace ecomla::convert
