// Block dequantisation against gguf-py's independent numpy implementation
// (tests/data/quant_golden.json, made by tests/reference/make_quant_golden.py), and the
// half/bfloat16 conversions against known bit patterns.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ecomla/ggml_types.h"

namespace ecomla {
namespace {

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

class DequantizeGolden : public testing::TestWithParam<std::pair<const char*, GgmlType>> {};

TEST_P(DequantizeGolden, MatchesGgufPy) {
  std::ifstream in(std::string(ECOMLA_TEST_DATA) + "/quant_golden.json");
  ASSERT_TRUE(in) << "missing tests/data/quant_golden.json";
  const auto golden = nlohmann::json::parse(in);
  const auto& [name, type] = GetParam();
  ASSERT_TRUE(golden.contains(name));
  const auto bytes = from_hex(golden[name]["hex"].get<std::string>());
  const auto expected = golden[name]["values"].get<std::vector<float>>();
  ASSERT_GT(expected.size(), 0u);
  std::vector<float> got(expected.size());
  dequantize(type, bytes, got);
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_NEAR(got[i], expected[i], 1e-6f * std::max(1.0f, std::fabs(expected[i])))
        << name << " element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, DequantizeGolden,
    testing::Values(std::pair{"F16", GgmlType::F16}, std::pair{"BF16", GgmlType::BF16},
                    std::pair{"Q4_0", GgmlType::Q4_0}, std::pair{"Q4_1", GgmlType::Q4_1},
                    std::pair{"Q5_0", GgmlType::Q5_0}, std::pair{"Q5_1", GgmlType::Q5_1},
                    std::pair{"Q8_0", GgmlType::Q8_0}, std::pair{"Q4_K", GgmlType::Q4_K},
                    std::pair{"Q5_K", GgmlType::Q5_K}, std::pair{"Q6_K", GgmlType::Q6_K}),
    [](const auto& info) { return std::string(info.param.first); });

TEST(Dequantize, RejectsSizeMismatchAndUnsupportedTypes) {
  std::vector<uint8_t> bytes(20);
  std::vector<float> out(31);
  EXPECT_THROW(dequantize(GgmlType::Q4_1, bytes, out), std::invalid_argument);
  std::vector<uint8_t> q2k(84);
  std::vector<float> out256(256);
  EXPECT_THROW(dequantize(GgmlType::Q2_K, q2k, out256), std::invalid_argument);
  EXPECT_FALSE(ggml_type_traits(uint32_t{99}).has_value());
}

TEST(HalfPrecision, KnownBitPatterns) {
  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(fp16_to_fp32(0x7C00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7E00)));
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3C00);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);  // rounds to infinity
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -24)), 0x0002);  // tie to even
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -26)), 0x0000);
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie to even (down)
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie to even (up)
}

TEST(HalfPrecision, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(BFloat16, RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::nanf("")))));
}

}  // namespace
}  // namespace ecomla
