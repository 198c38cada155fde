#include "ecomla/kv_cache.h"

#include <ATen/ops/zeros.h>

#include <stdexcept>
#include <string>

namespace ecomla {

KvCache::KvCache(const ModelConfig& config, int64_t batch, int64_t capacity, at::ScalarType dtype,
                 at::Device device)
    : batch_(batch), capacity_(capacity) {
  if (batch <= 0 || capacity <= 0) {
    throw std::invalid_argument("KvCache: batch and capacity must be positive");
  }
  const auto options = at::TensorOptions().dtype(dtype).device(device);
  for (const GqaSpec& a : config.attention) {
    k_.push_back(at::zeros({batch, a.n_head_kv, capacity, a.head_dim}, options));
    v_.push_back(at::zeros({batch, a.n_head_kv, capacity, a.head_dim}, options));
  }
}

std::pair<at::Tensor, at::Tensor> KvCache::append(int64_t layer, const at::Tensor& k,
                                                  const at::Tensor& v) {
  const int64_t t = k.size(2);
  if (length_ + t > capacity_) {
    throw std::length_error("KV cache full: " + std::to_string(length_) + " + " +
                            std::to_string(t) + " tokens exceed the capacity of " +
                            std::to_string(capacity_));
  }
  at::Tensor& ks = k_.at(layer);
  at::Tensor& vs = v_.at(layer);
  ks.narrow(2, length_, t).copy_(k);
  vs.narrow(2, length_, t).copy_(v);
  return {ks.narrow(2, 0, length_ + t), vs.narrow(2, 0, length_ + t)};
}

void KvCache::advance(int64_t n_tokens) { length_ += n_tokens; }

void KvCache::truncate(int64_t n) {
  if (n < 0 || n > length_) throw std::invalid_argument("KvCache::truncate: bad length");
  length_ = n;
}

int64_t KvCache::bytes_used() const {
  int64_t bytes = 0;
  for (size_t i = 0; i < k_.size(); ++i) {
    bytes += 2 * batch_ * k_[i].size(1) * length_ * k_[i].size(3) *
             static_cast<int64_t>(k_[i].element_size());
  }
  return bytes;
}

}  // namespace ecomla
