// safetensors reading and writing, and bad input: every truncation, broken headers, offsets
// outside the file, sizes that do not match shapes.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "ecomla/error.h"
#include "ecomla/ggml_types.h"
#include "ecomla/safetensors.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

std::vector<uint8_t> file_with_header(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out(8 + header.size() + data_bytes, 0);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
  test::expect_format_error([&] { SafetensorsFile::parse(bytes, "bad.safetensors"); },
                            {needle, "bad.safetensors"});
}

TEST(Safetensors, RoundTripsDtypesShapesAndMetadata) {
  test::TempDir dir;
  const std::vector<float> f32 = {1, -2, 3.5f, 4, 5, 6};
  std::vector<uint16_t> f16, bf16;
  for (float v : {0.5f, -1.0f}) f16.push_back(fp32_to_fp16(v));
  for (float v : {2.0f, -8.0f, 0.25f}) bf16.push_back(fp32_to_bf16(v));
  auto span_of = [](const auto& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()),
                                    v.size() * sizeof(v[0]));
  };
  write_safetensors(dir / "m.safetensors",
                    {{"z.weight", "F32", {2, 3}, span_of(f32)},
                     {"a.half", "F16", {2}, span_of(f16)},
                     {"m.bf", "BF16", {3, 1}, span_of(bf16)}},
                    {{"format", "pt"}});
  const SafetensorsFile f = SafetensorsFile::open(dir / "m.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.find("z.weight")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.to_f32(*f.find("z.weight")), f32);
  EXPECT_EQ(f.to_f32(*f.find("a.half")), (std::vector<float>{0.5f, -1.0f}));
  EXPECT_EQ(f.to_f32(*f.find("m.bf")), (std::vector<float>{2.0f, -8.0f, 0.25f}));
  // The data section starts 8-byte aligned.
  const auto bytes = test::read_file(dir / "m.safetensors");
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
}

TEST(Safetensors, EveryTruncationIsAFormatError) {
  test::TempDir dir;
  const std::vector<float> values(10, 1.0f);
  write_safetensors(dir / "m.safetensors",
                    {{"w", "F32", {10}, {reinterpret_cast<const uint8_t*>(values.data()), 40}}});
  const auto bytes = test::read_file(dir / "m.safetensors");
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(SafetensorsFile::parse({bytes.data(), n}, "prefix"), FormatError) << n;
  }
  EXPECT_NO_THROW(SafetensorsFile::parse(bytes, "whole"));
}

TEST(Safetensors, FlippedBitsNeverCrash) {
  test::TempDir dir;
  const std::vector<float> values(6, 2.0f);
  write_safetensors(dir / "m.safetensors",
                    {{"w", "F32", {2, 3}, {reinterpret_cast<const uint8_t*>(values.data()), 24}}});
  const auto bytes = test::read_file(dir / "m.safetensors");
  std::mt19937 rng(3);
  for (int trial = 0; trial < 2000; ++trial) {
    auto corrupt = bytes;
    corrupt[rng() % corrupt.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      const auto f = SafetensorsFile::parse(corrupt, "corrupt");
      for (const auto& [name, info] : f.tensors()) {
        if (info.dtype == "F32" || info.dtype == "F16" || info.dtype == "BF16")
          (void)f.to_f32(info);
      }
    } catch (const FormatError&) {
    }
  }
}

TEST(Safetensors, BadHeaders) {
  expect_error(file_with_header("{not json", 0), "not valid JSON");
  expect_error(file_with_header("[1,2]", 0), "not a JSON object");
  expect_error(file_with_header(R"({"w":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", 4),
               "unsupported dtype");
  expect_error(file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4),
               "4 bytes for 2 F32 values");
  expect_error(file_with_header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,400]}})", 4),
               "outside the data section");
  expect_error(file_with_header(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
               "non-negative");
  expect_error(file_with_header(R"({"w":{"dtype":"F32","shape":[1]}})", 4), "data_offsets");
  expect_error(
      file_with_header(
          R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
      "larger than the file");
  std::vector<uint8_t> huge(16, 0xFF);
  expect_error(huge, "header length");
}

}  // namespace
}  // namespace ecomla
