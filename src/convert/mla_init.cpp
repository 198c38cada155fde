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

}  // namespace ecomla::convert
