// Per-layer cache for incremental decoding: full keys and values for GQA layers, the latent and
// the shared RoPE key for MLA layers. Every row of the batch shares one length.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "ecomla/config.h"
#include "ecomla/mla_attention.h"

namespace ecomla {

class KvCache {
public:
  // Preallocates [B, Hkv, capacity, Dh] keys and values per GQA layer and the latent cache
  // of each MLA layer.
  KvCache(const ModelConfig& config, int64_t batch, int64_t capacity, at::ScalarType dtype,
          at::Device device = at::kCPU);

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }

  // Writes k, v [B, Hkv, T, Dh] at positions [length, length + T) of GQA `layer` and returns
  // the keys and values of positions [0, length + T). The length itself moves on in advance().
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  // The cache of MLA `layer` (MlaAttention appends to it itself).
  MlaLayerCache& mla_layer(int64_t layer);
  // Called once per forward pass, after every layer has appended its T positions.
  void advance(int64_t n_tokens);
  // Fills positions [0, n) of every layer with N(0, 1) values and sets the length to n: the
  // state after a context of n tokens as far as the cost of the next decode step goes (it
  // reads every cached position whatever they hold), without the prefill.
  void fill_with_noise(int64_t n);
  // Forgets everything after the first n positions.
  void truncate(int64_t n);
  // Bytes held by the cached positions (not the preallocated capacity).
  int64_t bytes_used() const;

private:
  std::vector<at::Tensor> k_, v_;                  // undefined for MLA layers
  std::vector<std::optional<MlaLayerCache>> mla_;  // set for MLA layers
  int64_t batch_, capacity_, length_ = 0;
};

}  // namespace ecomla
