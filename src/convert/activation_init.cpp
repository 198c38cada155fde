// ecomla's activation-aware MLA initialisation; the derivation is in docs/mla-init.md.
//
// Notation: H query heads in groups of G = H / Hkv per KV head g, head dim Dh, pairs
// i = 0..Dh/2-1 of rows (i, i + Dh/2) rotated at the model's frequency w_i (Hugging Face
// layout), C = E[x x^T] of the attention input. Everything is computed in fp64.
//
//  1. Sensitivities. An error dv in head h's value moves the output by W_o,h dv; an error dk
//     in its key moves the score by q.dk / sqrt(Dh), and the output by about that times
//     |W_o,h v|. So key errors of head h weigh nu_h = E|W_o,h v|^2 / Dh times E[q_h q_h^T].
//  2. RoPE key. The MLA RoPE slot j rotates at theta^(-2j/Dr), which is the model's own pair
//     i = j * Dh / Dr: the slot keeps that pair at its original frequency (the standard
//     DeepSeek layout when Dr = Dh / 2). Across KV heads, read a pair as a complex number
//     z_g = k_a + i k_b: RoPE multiplies every z_g by the same e^(i w_i t), so any complex
//     combination of them commutes with it. The slot holds the top eigenvector of the
//     query-weighted complex covariance of (z_1..z_Hkv), k_pe = sum_g conj(u_g) s_g z_g, and
//     each head's query is turned to match (TransMLA's RoRoPE, generalised from real
//     rotations to complex ones).
//  3. The latent. All that is left of the keys (the other pairs and the residuals of the
//     slot pairs, now without rotation) and the values is stacked as T = [sqrt(Gk_g) K_g;
//     sqrt(Gv_g) V_g] with the metrics of step 1, and c = A x minimises E|T x - B A x|^2:
//     A = U_r^T T from the SVD of T C^(1/2) (reduced-rank regression).
//  4. The up projections undo the metrics (pseudo-inverses: directions no query reads
//     need no key), and queries absorb the per-head nope factor so that Dn can be as small
//     as min(nope rows, rank) while staying exact; all queries are scaled by
//     sqrt((Dn + Dr) / Dh) to keep the original softmax temperature.
#include <ATen/ATen.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "convert/mla_init.h"

namespace ecomla::convert {
namespace {

using at::indexing::Slice;

// Symmetric PSD square root and pseudo-inverse square root.
struct SqrtPair {
  at::Tensor root, inverse_root;
};
SqrtPair psd_sqrt(const at::Tensor& m) {
  const auto [values, vectors] = at::linalg_eigh(m);
  const double tol = 1e-12 * std::max(values.max().item<double>(), 0.0);
  const at::Tensor kept = values > tol;
  const at::Tensor root = at::where(kept, values.clamp_min(0).sqrt(), at::zeros_like(values));
  const at::Tensor inverse = at::where(kept, values.clamp_min(tol).rsqrt(), at::zeros_like(values));
  return {at::matmul(vectors * root, vectors.t()), at::matmul(vectors * inverse, vectors.t())};
}

// The model's pair index for every MLA RoPE slot; throws when a slot's frequency is not one of
// the model's (then the rotation could not be kept).
std::vector<int64_t> slot_pairs(const at::Tensor& inv_freq, const at::Tensor& rope_inv_freq) {
  std::vector<int64_t> pairs;
  for (int64_t j = 0; j < rope_inv_freq.size(0); ++j) {
    const at::Tensor diff = (inv_freq - rope_inv_freq[j]).abs() / rope_inv_freq[j];
    const int64_t i = diff.argmin().item<int64_t>();
    if (diff[i].item<double>() > 1e-5) {
      throw std::invalid_argument(
          "rope dim " + std::to_string(2 * rope_inv_freq.size(0)) +
          " rotates at frequencies the model does not have: the activation init keeps the "
          "original RoPE pairs, so the rope dim must divide the head dim " +
          std::to_string(2 * inv_freq.size(0)) + " by a whole number (e.g. 32 or 64)");
    }
    pairs.push_back(i);
  }
  return pairs;
}

}  // namespace

MlaLayerInit activation_init(const GqaLayerWeights& w, const at::Tensor& cov,
                             const at::Tensor& inv_freq, const at::Tensor& rope_inv_freq,
                             const MlaTarget& target) {
  const int64_t h = w.spec.n_head, hkv = w.spec.n_head_kv, dh = w.spec.head_dim, half = dh / 2;
  const int64_t group = h / hkv, d = w.q.size(1), dr = target.dim_rope;
  const at::Tensor k_heads = w.k.view({hkv, dh, d});
  auto q_head = [&](int64_t head) { return w.q.narrow(0, head * dh, dh); };  // [Dh, D]
  auto k_head = [&](int64_t g) { return k_heads[g]; };
  auto v_head = [&](int64_t g) { return w.v.narrow(0, g * dh, dh); };
  auto o_head = [&](int64_t head) { return w.o.narrow(1, head * dh, dh); };  // [D, Dh]

  // 1. Sensitivities: nu_h and the query energy of every (head, row).
  std::vector<double> nu(h);
  std::vector<at::Tensor> q_energy(h);  // [Dh] E[q^2] per row
  std::vector<at::Tensor> out_gram(h);  // [Dh, Dh] W_o,h^T W_o,h
  for (int64_t head = 0; head < h; ++head) {
    const at::Tensor vh = v_head(head / group);
    const at::Tensor value_cov = at::matmul(at::matmul(vh, cov), vh.t());
    out_gram[head] = at::matmul(o_head(head).t(), o_head(head));
    nu[head] = (value_cov * out_gram[head]).sum().item<double>() / static_cast<double>(dh);
    q_energy[head] = (at::matmul(q_head(head), cov) * q_head(head)).sum(1);
  }

  // 2. The shared RoPE key, one original pair per slot.
  const std::vector<int64_t> pairs = slot_pairs(inv_freq, rope_inv_freq);
  at::Tensor k_pe = at::zeros({dr, d}, at::kDouble);
  at::Tensor q_pe = at::zeros({h, dr, d}, at::kDouble);
  std::vector<at::Tensor> nope_keys(hkv, w.k.new_empty({0, d}));  // rows per KV head
  std::vector<int64_t> nope_rows;                                 // matching query rows
  double rope_kept = 0, rope_total = 0;
  std::vector<bool> in_slot(half, false);
  for (size_t j = 0; j < pairs.size(); ++j) {
    const int64_t i = pairs[j];
    in_slot[i] = true;
    const at::Tensor a = k_heads.select(1, i), b = k_heads.select(1, i + half);  // [Hkv, D]
    // E[z_g conj(z_g')] = E[a a'] + E[b b'] + i (E[b a'] - E[a b']).
    const at::Tensor ca = at::matmul(a, cov), cb = at::matmul(b, cov);
    const at::Tensor z_cov = at::complex(at::matmul(ca, a.t()) + at::matmul(cb, b.t()),
                                         at::matmul(cb, a.t()) - at::matmul(ca, b.t()));
    at::Tensor weight = at::zeros({hkv}, at::kDouble);
    for (int64_t head = 0; head < h; ++head) {
      weight[head / group] += nu[head] * (q_energy[head][i] + q_energy[head][i + half]);
    }
    const at::Tensor s = weight.sqrt();
    const at::Tensor m = z_cov * at::outer(s, s);
    const auto [values, vectors] = at::linalg_eigh(m);
    rope_kept += values[-1].item<double>();
    rope_total += values.sum().item<double>();
    const at::Tensor u = vectors.index({Slice(), -1});                   // [Hkv] complex
    const at::Tensor alpha = u.conj() * s;                               // k_pe = sum_g alpha_g z_g
    const at::Tensor beta = at::where(s > 0, u / s, at::zeros_like(u));  // z_g ~ beta_g k_pe
    const at::Tensor ar = at::real(alpha).unsqueeze(1), ai = at::imag(alpha).unsqueeze(1);
    const at::Tensor pa = (ar * a - ai * b).sum(0), pb = (ar * b + ai * a).sum(0);
    k_pe[2 * j] = pa;
    k_pe[2 * j + 1] = pb;
    for (int64_t g = 0; g < hkv; ++g) {
      const double br = at::real(beta[g]).item<double>(), bi = at::imag(beta[g]).item<double>();
      // Residual of the shared key, kept (without rotation) with the other nope rows.
      nope_keys[g] = at::cat({nope_keys[g], (a[g] - (br * pa - bi * pb)).unsqueeze(0),
                              (b[g] - (br * pb + bi * pa)).unsqueeze(0)});
      // q . R k_pe beta = (conj(beta) q) . R k_pe.
      for (int64_t head = g * group; head < (g + 1) * group; ++head) {
        const at::Tensor qa = q_head(head)[i], qb = q_head(head)[i + half];
        q_pe[head][2 * j] = br * qa + bi * qb;
        q_pe[head][2 * j + 1] = br * qb - bi * qa;
      }
    }
    nope_rows.push_back(i);
    nope_rows.push_back(i + half);
  }
  // 3. The pairs without a slot lose their rotation and join the latent.
  for (int64_t i = 0; i < half; ++i) {
    if (in_slot[i]) continue;
    for (int64_t g = 0; g < hkv; ++g) {
      nope_keys[g] =
          at::cat({nope_keys[g], k_head(g)[i].unsqueeze(0), k_head(g)[i + half].unsqueeze(0)});
    }
    nope_rows.push_back(i);
    nope_rows.push_back(i + half);
  }
  const int64_t n = static_cast<int64_t>(nope_rows.size());
  const at::Tensor row_index = at::tensor(nope_rows, at::kLong);

  // Joint target T = [sqrt(Gk_g) K_g ...; sqrt(Gv_g) V_g ...] and its metrics.
  std::vector<at::Tensor> blocks, key_inverse_root(hkv), value_inverse_root(hkv);
  for (int64_t g = 0; g < hkv; ++g) {
    at::Tensor gram = at::zeros({n, n}, at::kDouble);
    for (int64_t head = g * group; head < (g + 1) * group; ++head) {
      const at::Tensor qn = q_head(head).index_select(0, row_index);
      gram += nu[head] * at::matmul(at::matmul(qn, cov), qn.t());
    }
    const SqrtPair root = psd_sqrt(gram * target.key_weight);
    key_inverse_root[g] = root.inverse_root;
    blocks.push_back(at::matmul(root.root, nope_keys[g]));
  }
  for (int64_t g = 0; g < hkv; ++g) {
    at::Tensor gram = at::zeros({dh, dh}, at::kDouble);
    for (int64_t head = g * group; head < (g + 1) * group; ++head) {
      gram += out_gram[head];
    }
    const SqrtPair root = psd_sqrt(gram);
    value_inverse_root[g] = root.inverse_root;
    blocks.push_back(at::matmul(root.root, v_head(g)));
  }
  const at::Tensor t = at::cat(blocks);
  const at::Tensor cov_root = psd_sqrt(cov).root;
  const auto [u, s, vh] = at::linalg_svd(at::matmul(t, cov_root), false);
  const int64_t r = choose_rank(s, target.kv, target.energy_ranks, target.rank_multiple, "kv");
  const at::Tensor u_r = u.narrow(1, 0, r);
  const at::Tensor latent = at::matmul(u_r.t(), t);  // A [r, D]

  // 4. Up projections, nope factorisation and the query.
  const int64_t dn = target.dim_nope;
  const double scale_fix = std::sqrt(static_cast<double>(dn + dr) / static_cast<double>(dh));
  at::Tensor kv_b = at::zeros({h, dn + dh, r}, at::kDouble);
  at::Tensor q_nope = at::zeros({h, dn, d}, at::kDouble);
  for (int64_t g = 0; g < hkv; ++g) {
    const at::Tensor w_uk = at::matmul(key_inverse_root[g], u_r.narrow(0, g * n, n));  // [n, r]
    const at::Tensor w_uv = at::matmul(value_inverse_root[g], u_r.narrow(0, hkv * n + g * dh, dh));
    // score = (Qn x)^T W_uk c = ((U_k^T Qn) x)^T (S V^T) c with W_uk = U S V^T.
    const auto [fu, fs, fvh] = at::linalg_svd(w_uk, false);
    const int64_t k = std::min<int64_t>(dn, fs.size(0));
    for (int64_t head = g * group; head < (g + 1) * group; ++head) {
      const at::Tensor qn = q_head(head).index_select(0, row_index);
      q_nope[head].narrow(0, 0, k).copy_(at::matmul(fu.narrow(1, 0, k).t(), qn));
      kv_b[head].narrow(0, 0, k).copy_(fs.narrow(0, 0, k).unsqueeze(1) * fvh.narrow(0, 0, k));
      kv_b[head].narrow(0, dn, dh).copy_(w_uv);
    }
  }
  const at::Tensor q = at::cat({q_nope, q_pe}, 1).reshape({h * (dn + dr), d}) * scale_fix;

  MlaLayerInit init;
  init.spec = {h, 0, r, dr, dn, dh, target.latent_norm, 1e-6};
  init.kv_energy = energy_kept(s, r);
  init.rope_energy = rope_total > 0 ? rope_kept / rope_total : 1.0;
  if (target.q.rank > 0 || target.q.energy) {
    const auto [qu, qs, qvh] = at::linalg_svd(at::matmul(q, cov_root), false);
    const int64_t rq = choose_rank(qs, target.q, target.energy_ranks, target.rank_multiple, "q");
    init.spec.rank_q = rq;
    init.q_energy = energy_kept(qs, rq);
    init.weights["q_a_proj.weight"] = at::matmul(qu.narrow(1, 0, rq).t(), q);
    init.weights["q_b_proj.weight"] = qu.narrow(1, 0, rq);
  } else {
    init.weights["q_proj.weight"] = q;
  }
  init.weights["kv_a_proj_with_mqa.weight"] = at::cat({latent, k_pe});
  init.weights["kv_b_proj.weight"] = kv_b.reshape({h * (dn + dh), r});
  init.weights["out_proj.weight"] = w.o;
  finish(init);
  return init;
}

}  // namespace ecomla::convert
