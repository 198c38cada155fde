// ggml tensor types and their block layouts (ggml/src/ggml-common.h), and dequantisation.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace ecomla {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct GgmlTypeTraits {
  std::string_view name;
  int64_t block_size;    // elements per block
  uint64_t block_bytes;  // bytes per block
  bool can_dequantize;   // whether dequantize() supports it
};

// Traits of a known type id, or nullopt for ids this reader does not know.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type_id);
GgmlTypeTraits ggml_type_traits(GgmlType type);

// Dequantises `n` values (a multiple of the block size) from `src` into `dst`.
// Throws std::invalid_argument for unsupported types or mismatched sizes.
void dequantize(GgmlType type, std::span<const uint8_t> src, std::span<float> dst);

// IEEE half and bfloat16 conversions (round to nearest even for float -> 16 bit).
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t b);
uint16_t fp32_to_bf16(float f);

}  // namespace ecomla
