// Dequantisation of ggml blocks. Layouts and formulas follow ggml/src/ggml-common.h (block
// structs) and ggml/src/ggml-quants.c (dequantize_row_*); each function says which block it
// decodes. All multi-byte fields are little-endian, as GGUF requires.
#include "ecomla/ggml_types.h"

#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ecomla {
namespace {

constexpr int64_t kQK = 32;     // elements per block of the legacy quants
constexpr int64_t kQK_K = 256;  // elements per super-block of the k-quants

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
float load_f16(const uint8_t* p) { return fp16_to_fp32(load_u16(p)); }

// block_q4_0 {f16 d; u8 qs[16]}: x = (nibble - 8) * d; low nibbles first, then high.
void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + kQK / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// block_q4_1 {f16 d; f16 m; u8 qs[16]}: x = nibble * d + m.
void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + kQK / 2] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// block_q5_0 {f16 d; u8 qh[4]; u8 qs[16]}: 5th bit of element j in bit j of qh;
// x = (q - 16) * d.
void dequant_q5_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>(((qs[j] & 0x0F) | xh0) - 16) * d;
    y[j + kQK / 2] = static_cast<float>(((qs[j] >> 4) | xh1) - 16) * d;
  }
}

// block_q5_1 {f16 d; f16 m; u8 qh[4]; u8 qs[16]}: x = q * d + m.
void dequant_q5_1(const uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    const int xh0 = static_cast<int>(((qh >> j) << 4) & 0x10);
    const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
    y[j] = static_cast<float>((qs[j] & 0x0F) | xh0) * d + m;
    y[j + kQK / 2] = static_cast<float>((qs[j] >> 4) | xh1) * d + m;
  }
}

// block_q8_0 {f16 d; i8 qs[32]}: x = q * d.
void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// The 6-bit scale and min of sub-block j, packed into 12 bytes (get_scale_min_k4).
void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// block_q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32, each
// x = d*scale * nibble - dmin*min.
void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0, is = 0; j < kQK_K; j += 64, is += 2, q += 32) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

// block_q5_K {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as q4_K with a fifth
// bit per element taken from qh, two bit planes per 64 elements.
void dequant_q5_k(const uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < kQK_K; j += 64, is += 2, ql += 32) {
    uint8_t sc, m;
    scale_min_k4(is, scales, sc, m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(is + 1, scales, sc, m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l)
      *y++ = d1 * static_cast<float>((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    u1 = static_cast<uint8_t>(u1 << 2);
    u2 = static_cast<uint8_t>(u2 << 2);
  }
}

// block_q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: 6-bit values (4 low bits in ql,
// 2 high bits in qh), x = d * scale * (q - 32), 16 sub-blocks of 16.
void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * static_cast<float>(q1);
      y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
      y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
      y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
    }
  }
}

using BlockDecoder = void (*)(const uint8_t*, float*);

BlockDecoder block_decoder(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return dequant_q4_0;
    case GgmlType::Q4_1: return dequant_q4_1;
    case GgmlType::Q5_0: return dequant_q5_0;
    case GgmlType::Q5_1: return dequant_q5_1;
    case GgmlType::Q8_0: return dequant_q8_0;
    case GgmlType::Q4_K: return dequant_q4_k;
    case GgmlType::Q5_K: return dequant_q5_k;
    case GgmlType::Q6_K: return dequant_q6_k;
    default: return nullptr;
  }
}

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t type_id) {
  switch (static_cast<GgmlType>(type_id)) {
    case GgmlType::F32: return GgmlTypeTraits{"F32", 1, 4, true};
    case GgmlType::F16: return GgmlTypeTraits{"F16", 1, 2, true};
    case GgmlType::BF16: return GgmlTypeTraits{"BF16", 1, 2, true};
    case GgmlType::Q4_0: return GgmlTypeTraits{"Q4_0", kQK, 18, true};
    case GgmlType::Q4_1: return GgmlTypeTraits{"Q4_1", kQK, 20, true};
    case GgmlType::Q5_0: return GgmlTypeTraits{"Q5_0", kQK, 22, true};
    case GgmlType::Q5_1: return GgmlTypeTraits{"Q5_1", kQK, 24, true};
    case GgmlType::Q8_0: return GgmlTypeTraits{"Q8_0", kQK, 34, true};
    case GgmlType::Q8_1: return GgmlTypeTraits{"Q8_1", kQK, 36, false};
    case GgmlType::Q2_K: return GgmlTypeTraits{"Q2_K", kQK_K, 84, false};
    case GgmlType::Q3_K: return GgmlTypeTraits{"Q3_K", kQK_K, 110, false};
    case GgmlType::Q4_K: return GgmlTypeTraits{"Q4_K", kQK_K, 144, true};
    case GgmlType::Q5_K: return GgmlTypeTraits{"Q5_K", kQK_K, 176, true};
    case GgmlType::Q6_K: return GgmlTypeTraits{"Q6_K", kQK_K, 210, true};
    case GgmlType::Q8_K: return GgmlTypeTraits{"Q8_K", kQK_K, 292, false};
  }
  return std::nullopt;
}

GgmlTypeTraits ggml_type_traits(GgmlType type) {
  auto traits = ggml_type_traits(static_cast<uint32_t>(type));
  if (!traits) throw std::invalid_argument("unknown ggml type " + std::to_string(int(type)));
  return *traits;
}

void dequantize(GgmlType type, std::span<const uint8_t> src, std::span<float> dst) {
  const GgmlTypeTraits traits = ggml_type_traits(type);
  const auto n = static_cast<int64_t>(dst.size());
  if (n % traits.block_size != 0 ||
      src.size() != static_cast<uint64_t>(n / traits.block_size) * traits.block_bytes) {
    throw std::invalid_argument("dequantize " + std::string(traits.name) + ": " +
                                std::to_string(src.size()) + " bytes do not hold " +
                                std::to_string(n) + " values");
  }
  switch (type) {
    case GgmlType::F32: std::memcpy(dst.data(), src.data(), src.size()); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = load_f16(src.data() + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(load_u16(src.data() + 2 * i));
      return;
    default: break;
  }
  const BlockDecoder decode = block_decoder(type);
  if (!decode) {
    throw std::invalid_argument("dequantize: ggml type " + std::string(traits.name) +
                                " is not supported");
  }
  const int64_t n_blocks = n / traits.block_size;
  for (int64_t i = 0; i < n_blocks; ++i) {
    decode(src.data() + i * traits.block_bytes, dst.data() + i * traits.block_size);
  }
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf / nan
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // signed zero
  } else {        // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mantissa <<= 1;
    } while ((mantissa & 0x400) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mantissa & 0x3FF) << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t fp32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t abs = x & 0x7FFFFFFF;
  if (abs > 0x7F800000) return static_cast<uint16_t>(sign | 0x7E00);   // nan
  if (abs >= 0x477FF000) return static_cast<uint16_t>(sign | 0x7C00);  // overflow -> inf
  if (abs < 0x38800000) {  // subnormal or zero in half precision
    if (abs < 0x33000000) return static_cast<uint16_t>(sign);
    const uint32_t mantissa = (abs & 0x7FFFFF) | 0x800000;
    const int shift = 126 - static_cast<int>(abs >> 23);  // value = mantissa * 2^-shift * 2^-24
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((abs - 0x38000000) >> 13);
  const uint32_t rest = abs & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;
  return static_cast<uint16_t>(sign | half);
}

float bf16_to_fp32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t fp32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // nan
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

}  // namespace ecomla
