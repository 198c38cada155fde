// What the initialisations share: rank selection (X-EcoMLA's compute_svd rule) and the
// finishing of a layer's weights.
#include <ATen/ATen.h>

#include <stdexcept>
#include <string>

#include "convert/mla_init.h"

namespace ecomla::convert {

int64_t choose_rank(const at::Tensor& singular_values, const RankChoice& choice, bool use_energy,
                    int64_t multiple, const std::string& what) {
  const int64_t available = singular_values.size(0);
  int64_t rank = choice.rank;
  if (use_energy && choice.energy) {
    // The number of leading singular values whose cumulative share of sum(sigma^2) does not
    // exceed the ratio (X-EcoMLA's count, one fewer than "the first to reach it"), at least 1.
    const at::Tensor energy = singular_values.square().cumsum(0);
    const at::Tensor share = energy / energy[-1];
    rank = std::max<int64_t>(1, (share <= *choice.energy).sum().item<int64_t>());
    rank = (rank + multiple - 1) / multiple * multiple;
    return std::min(rank, available);  // rounding up may pass the matrix's rank
  }
  rank = (rank + multiple - 1) / multiple * multiple;
  if (rank > available) {
    throw std::invalid_argument(what + " rank " + std::to_string(rank) +
                                " exceeds the rank of the matrix it factors (at most " +
                                std::to_string(available) + ")");
  }
  return rank;
}

double energy_kept(const at::Tensor& singular_values, int64_t rank) {
  const at::Tensor energy = singular_values.square();
  const double total = energy.sum().item<double>();
  return total > 0 ? energy.narrow(0, 0, rank).sum().item<double>() / total : 1.0;
}

void finish(MlaLayerInit& init) {
  if (init.spec.latent_norm) {
    init.weights["kv_a_layernorm.weight"] = at::ones({init.spec.rank_kv}, at::kDouble);
    if (init.spec.rank_q > 0) {
      init.weights["q_a_layernorm.weight"] = at::ones({init.spec.rank_q}, at::kDouble);
    }
  }
  for (auto& [name, t] : init.weights) t = t.to(at::kFloat).contiguous();
}

namespace {

// Scales row i of `left` (one side of a product, [n, *]) up by s_i and row i of `right` (the
// other, [n, *]) down by s_i, with s_i = sqrt(|right_i| / |left_i|): both rows end with norm
// sqrt(|left_i| |right_i|). Both are views into the weights.
void balance_rows(at::Tensor left, at::Tensor right) {
  const at::Tensor l = left.norm(2, 1, true), r = right.norm(2, 1, true);
  const at::Tensor usable = (l > 0) & (r > 0);
  const at::Tensor s = at::where(usable, at::sqrt(r / l.clamp_min(1e-30)), at::ones_like(l));
  left.mul_(s);
  right.div_(s);
}

}  // namespace

void balance_factors(std::map<std::string, at::Tensor>& weights, const MlaSpec& spec) {
  const int64_t h = spec.n_head, r = spec.rank_kv, dn = spec.dim_nope, dr = spec.dim_rope,
                dv = spec.dim_v;
  const at::Tensor kv_b = weights.at("kv_b_proj.weight");  // [h (dn + dv), r]
  const at::Tensor kv_b_heads = kv_b.view({h, dn + dv, r});
  const at::Tensor q =
      weights.at(spec.rank_q > 0 ? "q_b_proj.weight" : "q_proj.weight").view({h, dn + dr, -1});
  const at::Tensor out = weights.at("out_proj.weight");  // [D, h dv]
  // The latent's columns of kv_b also hold the nope-key and value rows: a few rounds settle
  // all three balances together.
  for (int round = 0; round < 3; ++round) {
    for (int64_t head = 0; head < h; ++head) {
      balance_rows(q[head].narrow(0, 0, dn), kv_b_heads[head].narrow(0, 0, dn));
      balance_rows(kv_b_heads[head].narrow(0, dn, dv), out.narrow(1, head * dv, dv).t());
    }
    if (!spec.latent_norm) {
      balance_rows(weights.at("kv_a_proj_with_mqa.weight").narrow(0, 0, r), kv_b.t());
    }
  }
}

}  // namespace ecomla::convert
