// A bias-free linear projection y = x W^T whose weight is the Hugging Face parameter
// ("...q_proj.weight"), with an optional 4-bit copy for decoding.
//
// Decoding multiplies one token's activations by every weight, so it is bound by the bytes of
// weights read: the 4-bit copy (groups of 32 along the input dimension, a scale and a zero per
// group, libtorch's int4pack CPU kernel) reads about a quarter of bf16's bytes. For GGUF models
// stored as Q4_1 the min/max grid is the file's own, so the copy is (up to bf16 rounding of the
// scales) the same weights; other weights are quantised (lossy). It serves only small inference
// batches; training, prefill and anything with gradients use the dense weight.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace ecomla {

class ProjectionImpl : public torch::nn::Module {
public:
  ProjectionImpl(int64_t in_features, int64_t out_features);
  // x [..., in] -> [..., out]
  torch::Tensor forward(const torch::Tensor& x);

  // Builds the 4-bit copy from the current weight (asymmetric min/max per group of
  // `group_size` inputs). Returns false, keeping only the dense path, when the shape does not
  // fit the kernel or the weight is not on the CPU.
  bool pack_int4(int64_t group_size = 32);
  bool has_int4() const { return int4_weight_.defined(); }

  torch::Tensor weight;  // [out, in]

  // At most this many rows (tokens) use the 4-bit kernel; larger inputs are faster dense
  // (measured: 512 rows take 2.5x longer through int4 than through bf16 GEMM on this CPU).
  static constexpr int64_t kMaxInt4Rows = 16;

private:
  bool int4_usable(const torch::Tensor& x) const;

  torch::Tensor int4_weight_;  // packed nibbles, libtorch's layout
  torch::Tensor scale_zeros_;  // [in / group, out, 2] bf16: w = (q - 8) * scale + zero
  int64_t group_size_ = 0;
  // The dense weight the copy was made from; any change to it retires the copy.
  const void* packed_from_ = nullptr;
  int64_t packed_version_ = -1;
};
TORCH_MODULE(Projection);

}  // namespace ecomla
