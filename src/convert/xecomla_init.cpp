// The X-EcoMLA initialisation (reference: AMD-AGI/AMD-Hybrid-Models, X-EcoMLA/mla/
// hybrid_mla_layer.py, re_init_q and re_init_kv; summarised in docs/x-ecomla-reference.md,
// section 2). Reproduced as the reference computes it, quirks included:
//  - all of Sigma goes into the down projections (q_a_proj, the latent rows of
//    kv_a_proj_with_mqa); the up projections are the orthonormal U_r;
//  - the "rope" rows are the last dim_rope rows of every Hugging Face-layout head, which
//    the MLA then rotates at new frequencies theta^(-2j/dim_rope): not function-preserving
//    even at full rank;
//  - K and V heads are repeated to one per query head before one joint SVD of [K; V];
//  - the shared RoPE key is the mean over the (unrepeated) KV heads of those last rows.
#include <ATen/ATen.h>

#include "convert/mla_init.h"

namespace ecomla::convert {
namespace {

// Rows [0, dim_nope) and the last dim_rope rows of every head of `m` [H * Dh, C], stacked per
// head as [nope; rope] -> [H * (Dn + Dr), C].
at::Tensor nope_and_last_rows(const at::Tensor& m, int64_t n_head, int64_t head_dim,
                              int64_t dim_nope, int64_t dim_rope) {
  const at::Tensor heads = m.reshape({n_head, head_dim, m.size(1)});
  return at::cat({heads.narrow(1, 0, dim_nope), heads.narrow(1, head_dim - dim_rope, dim_rope)}, 1)
      .reshape({n_head * (dim_nope + dim_rope), m.size(1)});
}

}  // namespace

MlaLayerInit xecomla_init(const GqaLayerWeights& w, const MlaTarget& target) {
  const int64_t h = w.spec.n_head, hkv = w.spec.n_head_kv, dh = w.spec.head_dim;
  const int64_t dn = target.dim_nope, dr = target.dim_rope, d = w.q.size(1);
  MlaLayerInit init;
  init.spec = {h, 0, 0, dr, dn, dh, target.latent_norm, 1e-6};

  // Query: W_q ~ U_r (Sigma_r V_r^T); q_b_proj = U_r re-arranged per head.
  if (target.q.rank > 0 || target.q.energy) {
    const auto [u, s, vh] = at::linalg_svd(w.q, /*full_matrices=*/false);
    const int64_t r = choose_rank(s, target.q, target.energy_ranks, target.rank_multiple, "q");
    init.spec.rank_q = r;
    init.q_energy = energy_kept(s, r);
    init.weights["q_a_proj.weight"] = s.narrow(0, 0, r).unsqueeze(1) * vh.narrow(0, 0, r);
    init.weights["q_b_proj.weight"] = nope_and_last_rows(u.narrow(1, 0, r), h, dh, dn, dr);
  } else {
    init.weights["q_proj.weight"] = nope_and_last_rows(w.q, h, dh, dn, dr);
  }

  // Keys and values: one head per query head, one joint SVD of [K; V] [2 * H * Dh, D].
  const int64_t group = h / hkv;
  const at::Tensor k_heads = w.k.reshape({hkv, dh, d});
  const at::Tensor k_mean = k_heads.mean(0);  // [Dh, D], over the unrepeated heads
  const at::Tensor k_rep = k_heads.repeat_interleave(group, 0).reshape({h * dh, d});
  const at::Tensor v_rep =
      w.v.reshape({hkv, dh, d}).repeat_interleave(group, 0).reshape({h * dh, d});
  const auto [u, s, vh] = at::linalg_svd(at::cat({k_rep, v_rep}, 0), /*full_matrices=*/false);
  const int64_t r = choose_rank(s, target.kv, target.energy_ranks, target.rank_multiple, "kv");
  init.spec.rank_kv = r;
  init.kv_energy = energy_kept(s, r);
  init.rope_energy = 0.0;  // the original positional structure is not kept
  init.weights["kv_a_proj_with_mqa.weight"] =
      at::cat({s.narrow(0, 0, r).unsqueeze(1) * vh.narrow(0, 0, r), k_mean.narrow(0, dh - dr, dr)});
  const at::Tensor u_r = u.narrow(1, 0, r);
  const at::Tensor uk = u_r.narrow(0, 0, h * dh).reshape({h, dh, r}).narrow(1, 0, dn);
  const at::Tensor uv = u_r.narrow(0, h * dh, h * dh).reshape({h, dh, r});
  init.weights["kv_b_proj.weight"] = at::cat({uk, uv}, 1).reshape({h * (dn + dh), r});
  init.weights["out_proj.weight"] = w.o;
  finish(init);
  return init;
}

}  // namespace ecomla::convert
