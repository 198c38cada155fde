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
  for (const AttentionSpec& spec : config.attention) {
    if (const auto* a = std::get_if<GqaSpec>(&spec)) {
      k_.push_back(at::zeros({batch, a->n_head_kv, capacity, a->head_dim}, options));
      v_.push_back(at::zeros({batch, a->n_head_kv, capacity, a->head_dim}, options));
      mla_.emplace_back();
    } else {
      k_.emplace_back();
      v_.emplace_back();
      mla_.emplace_back(std::in_place, std::get<MlaSpec>(spec), batch, capacity, dtype, device);
    }
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

MlaLayerCache& KvCache::mla_layer(int64_t layer) {
  std::optional<MlaLayerCache>& cache = mla_.at(layer);
  if (!cache)
    throw std::invalid_argument("KvCache: layer " + std::to_string(layer) + " is not MLA");
  return *cache;
}

void KvCache::advance(int64_t n_tokens) { length_ += n_tokens; }

void KvCache::fill_with_noise(int64_t n) {
  if (n < 0 || n > capacity_) throw std::invalid_argument("KvCache::fill_with_noise: bad length");
  for (size_t i = 0; i < k_.size(); ++i) {
    if (mla_[i]) {
      mla_[i]->latent.narrow(1, 0, n).normal_();
      mla_[i]->k_pe.narrow(1, 0, n).normal_();
    } else {
      k_[i].narrow(2, 0, n).normal_();
      v_[i].narrow(2, 0, n).normal_();
    }
  }
  length_ = n;
  truncate(n);  // sets every MLA layer's own length
}

void KvCache::truncate(int64_t n) {
  if (n < 0 || n > length_) throw std::invalid_argument("KvCache::truncate: bad length");
  length_ = n;
  for (auto& cache : mla_) {
    if (cache) cache->length = n;
  }
}

int64_t KvCache::bytes_used() const {
  int64_t bytes = 0;
  for (size_t i = 0; i < k_.size(); ++i) {
    if (mla_[i]) {
      const int64_t width = mla_[i]->latent.size(2) + mla_[i]->k_pe.size(2);
      bytes += batch_ * length_ * width * static_cast<int64_t>(mla_[i]->latent.element_size());
    } else {
      bytes += 2 * batch_ * k_[i].size(1) * length_ * k_[i].size(3) *
               static_cast<int64_t>(k_[i].element_size());
    }
  }
  return bytes;
}

}  // namespace ecomla
