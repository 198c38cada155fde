#include "ecomla/projection.h"

#include <ATen/ops/_convert_weight_to_int4pack_for_cpu.h>
#include <ATen/ops/_weight_int4pack_mm_for_cpu.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace ecomla {

ProjectionImpl::ProjectionImpl(int64_t in_features, int64_t out_features) {
  // nn.Linear's default initialisation: U(-1/sqrt(in), 1/sqrt(in)).
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
  weight = register_parameter("weight",
                              torch::empty({out_features, in_features}).uniform_(-bound, bound));
}

bool ProjectionImpl::int4_usable(const torch::Tensor& x) const {
  if (!int4_weight_.defined() || c10::GradMode::is_enabled()) return false;
  if (x.scalar_type() != at::kBFloat16 || !x.is_cpu()) return false;
  if (x.numel() / x.size(-1) > kMaxInt4Rows) return false;
  const int64_t version = weight.is_inference() ? 0 : static_cast<int64_t>(weight._version());
  return weight.data_ptr() == packed_from_ && version == packed_version_;
}

torch::Tensor ProjectionImpl::forward(const torch::Tensor& x) {
  if (!int4_usable(x)) return at::linear(x, weight);
  const int64_t out = weight.size(0);
  auto shape = x.sizes().vec();
  shape.back() = out;
  const torch::Tensor rows = x.reshape({-1, x.size(-1)}).contiguous();  // [M, in]
  return at::_weight_int4pack_mm_for_cpu(rows, int4_weight_, group_size_, scale_zeros_).view(shape);
}

bool ProjectionImpl::pack_int4(int64_t group_size) {
  const int64_t out = weight.size(0), in = weight.size(1);
  if (!weight.is_cpu() || in % group_size != 0 || in % 2 != 0) return false;
  torch::NoGradGuard no_grad;
  const torch::Tensor groups = weight.to(at::kFloat).view({out, in / group_size, group_size});
  const torch::Tensor lo = std::get<0>(groups.min(-1));  // [out, in/G]
  const torch::Tensor hi = std::get<0>(groups.max(-1));
  const torch::Tensor scale = (hi - lo) / 15;  // [out, in/G]
  const torch::Tensor safe = torch::where(scale > 0, scale, torch::ones_like(scale));
  const torch::Tensor q = ((groups - lo.unsqueeze(-1)) / safe.unsqueeze(-1))
                              .round()
                              .clamp(0, 15)
                              .to(at::kInt)
                              .view({out, in});  // [out, in] in 0..15
  int4_weight_ = at::_convert_weight_to_int4pack_for_cpu(q, /*innerKTiles=*/1);
  // The kernel computes w = (q - 8) * scale + zero, so zero = lo + 8 * scale.
  scale_zeros_ = torch::stack({scale.t(), (lo + 8 * scale).t()}, -1)
                     .to(at::kBFloat16)
                     .contiguous();  // [in/G, out, 2]
  group_size_ = group_size;
  packed_from_ = weight.data_ptr();
  packed_version_ = weight.is_inference() ? 0 : static_cast<int64_t>(weight._version());
  return true;
}

}  // namespace ecomla
