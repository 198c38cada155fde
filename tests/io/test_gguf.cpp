// GGUF reading and writing: every metadata type, tensors, alignment; and bad input of every
// kind (each truncation length, flipped bits, absurd counts) gives FormatError, never a crash.
#include <gtest/gtest.h>

#include <random>

#include "ecomla/error.h"
#include "ecomla/gguf.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

std::vector<std::pair<std::string, GgufValue>> every_metadata_type() {
  GgufArray nested{GgufValueType::Array, {}};
  nested.values.push_back({GgufArray{GgufValueType::Int32, {{int32_t{1}}, {int32_t{-2}}}}});
  nested.values.push_back({GgufArray{GgufValueType::Int32, {}}});
  return {
      {"general.architecture", {std::string("llama")}},
      {"t.u8", {uint8_t{200}}},
      {"t.i8", {int8_t{-100}}},
      {"t.u16", {uint16_t{60000}}},
      {"t.i16", {int16_t{-30000}}},
      {"t.u32", {uint32_t{4000000000u}}},
      {"t.i32", {int32_t{-2000000000}}},
      {"t.f32", {1.5f}},
      {"t.bool", {true}},
      {"t.str", {std::string("héllo")}},
      {"t.u64", {uint64_t{1} << 40}},
      {"t.i64", {int64_t{-1} << 40}},
      {"t.f64", {0.1}},
      {"t.arr", {GgufArray{GgufValueType::String, {{std::string("a")}, {std::string("")}}}}},
      {"t.nested", {nested}},
  };
}

std::vector<GgufWriteTensor> two_tensors() {
  return {{"a", {3, 2}, GgmlType::F32, {1, 2, 3, 4, 5, 6}},
          {"b", {4}, GgmlType::F16, {0.5f, -1.0f, 2.0f, 65504.0f}},
          {"c", {2}, GgmlType::BF16, {1.0f, -3.0f}}};
}

class GgufFiles : public testing::Test {
protected:
  void SetUp() override {
    path_ = dir_ / "t.gguf";
    write_gguf(path_, every_metadata_type(), two_tensors());
    bytes_ = test::read_file(path_);
  }
  test::TempDir dir_;
  std::filesystem::path path_;
  std::vector<uint8_t> bytes_;
};

TEST_F(GgufFiles, RoundTripsEveryMetadataTypeAndTensor) {
  const GgufFile f = GgufFile::open(path_);
  EXPECT_EQ(f.version(), 3u);
  for (const auto& [key, value] : every_metadata_type()) {
    ASSERT_NE(f.find(key), nullptr) << key;
    EXPECT_EQ(f.at(key).type(), value.type()) << key;
  }
  EXPECT_EQ(f.at("t.u8").as_int("t.u8"), 200);
  EXPECT_EQ(f.at("t.u32").as_int("t.u32"), 4000000000LL);
  EXPECT_EQ(f.at("t.i64").as_int("t.i64"), -(int64_t{1} << 40));
  EXPECT_DOUBLE_EQ(f.at("t.f64").as_float("t.f64"), 0.1);
  EXPECT_TRUE(f.at("t.bool").as_bool("t.bool"));
  EXPECT_EQ(f.at("t.str").as_string("t.str"), "héllo");
  const GgufArray& nested = f.at("t.nested").as_array("t.nested");
  ASSERT_EQ(nested.values.size(), 2u);
  EXPECT_EQ(nested.values[0].as_array("x").values[1].as_int("x"), -2);
  EXPECT_EQ(nested.values[1].as_array("x").element_type, GgufValueType::Int32);
  EXPECT_THROW(f.at("t.str").as_int("t.str"), FormatError);
  EXPECT_THROW(f.at("missing"), FormatError);

  ASSERT_EQ(f.tensors().size(), 3u);
  const GgufTensorInfo* a = f.find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->torch_shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.tensor_to_f32(*a), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(f.tensor_to_f32(*f.find_tensor("b")), (std::vector<float>{0.5f, -1, 2, 65504}));
  EXPECT_EQ(f.tensor_to_f32(*f.find_tensor("c")), (std::vector<float>{1, -3}));
  for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % f.alignment(), 0u);
}

TEST_F(GgufFiles, EveryTruncationIsAFormatError) {
  // Only the padding after the last tensor may be cut without harm.
  const GgufFile whole = GgufFile::parse(bytes_, "whole");
  size_t data_end = 0;
  for (const auto& t : whole.tensors()) {
    const auto data = whole.tensor_data(t);
    data_end = std::max<size_t>(data_end, data.data() + data.size() - bytes_.data());
  }
  ASSERT_GT(data_end, bytes_.size() - whole.alignment());
  for (size_t n = 0; n < data_end; ++n) {
    const std::span<const uint8_t> prefix(bytes_.data(), n);
    EXPECT_THROW(GgufFile::parse(prefix, "prefix"), FormatError) << "prefix length " << n;
  }
  EXPECT_NO_THROW(GgufFile::parse(bytes_, "whole"));
}

TEST_F(GgufFiles, FlippedBitsNeverCrash) {
  std::mt19937 rng(7);
  int errors = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> corrupt = bytes_;
    const size_t at = rng() % corrupt.size();
    corrupt[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      const GgufFile f = GgufFile::parse(corrupt, "corrupt");
      for (const auto& t : f.tensors()) {
        if (ggml_type_traits(t.type).can_dequantize) (void)f.tensor_to_f32(t);
      }
    } catch (const FormatError&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);  // header corruption must be detected, data corruption is allowed
}

// Writes a header by hand so that one field can be made absurd.
std::vector<uint8_t> handmade(uint32_t version, uint64_t n_tensors, uint64_t n_kv,
                              const std::vector<uint8_t>& rest = {}) {
  std::vector<uint8_t> out;
  auto put = [&](auto v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(v));
  };
  put(uint32_t{0x46554747});
  put(version);
  put(n_tensors);
  put(n_kv);
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

void expect_format_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
  test::expect_format_error([&] { GgufFile::parse(bytes, "handmade.gguf"); },
                            {needle, "handmade.gguf"});
}

TEST(GgufBadInput, AbsurdCountsVersionsAndMagic) {
  expect_format_error(handmade(1, 0, 0), "unsupported GGUF version 1");
  expect_format_error(handmade(3, uint64_t{1} << 60, 0), "tensor count");
  expect_format_error(handmade(3, 0, uint64_t{1} << 60), "metadata count");
  std::vector<uint8_t> bad_magic = handmade(3, 0, 0);
  bad_magic[0] = 'X';
  expect_format_error(bad_magic, "bad magic");
  EXPECT_NO_THROW(GgufFile::parse(handmade(2, 0, 0), "v2"));
}

TEST(GgufBadInput, AbsurdStringAndArrayLengths) {
  std::vector<uint8_t> key;  // key "k" then a string value of length 2^62
  auto put = [&](auto v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    key.insert(key.end(), p, p + sizeof(v));
  };
  put(uint64_t{1});
  key.push_back('k');
  put(uint32_t{8});
  put(uint64_t{1} << 62);
  expect_format_error(handmade(3, 0, 1, key), "string length");

  std::vector<uint8_t> arr;
  key.swap(arr);
  put(uint64_t{1});
  key.push_back('k');
  put(uint32_t{9});  // array
  put(uint32_t{4});  // of uint32
  put(uint64_t{1} << 61);
  expect_format_error(handmade(3, 0, 1, key), "does not fit");
}

TEST(GgufBadInput, UnknownTensorTypeAndBadShapes) {
  auto tensor_file = [](uint32_t n_dims, int64_t ne0, uint32_t type, uint64_t offset) {
    std::vector<uint8_t> rest;
    auto put = [&](auto v) {
      const auto* p = reinterpret_cast<const uint8_t*>(&v);
      rest.insert(rest.end(), p, p + sizeof(v));
    };
    put(uint64_t{1});
    rest.push_back('w');
    put(n_dims);
    for (uint32_t i = 0; i < n_dims; ++i) put(i == 0 ? ne0 : int64_t{1});
    put(type);
    put(offset);
    rest.resize(rest.size() + 256, 0);
    return handmade(3, 1, 0, rest);
  };
  expect_format_error(tensor_file(1, 4, 77, 0), "unknown ggml type 77");
  expect_format_error(tensor_file(5, 4, 0, 0), "dimensions");
  expect_format_error(tensor_file(1, -4, 0, 0), "negative dimension");
  expect_format_error(tensor_file(1, 33, 2, 0), "not a multiple");
  expect_format_error(tensor_file(1, 4, 0, 3), "not aligned");
  expect_format_error(tensor_file(1, 4, 0, 1 << 20), "past end of file");
  expect_format_error(tensor_file(2, int64_t{1} << 40, 0, 0), "too large");
  EXPECT_NO_THROW(GgufFile::parse(tensor_file(1, 4, 0, 0), "ok"));
}

TEST(GgufBadInput, MissingFileNamesThePath) {
  try {
    GgufFile::open("/nonexistent/model.gguf");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
}

}  // namespace
}  // namespace ecomla

namespace ecomla {
namespace {

TEST(GgufBadInput, OverlongTensorNamesAreRejected) {
  std::vector<uint8_t> rest;
  auto put = [&](auto v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    rest.insert(rest.end(), p, p + sizeof(v));
  };
  const std::string name = "blk.0." + std::string(100000, 'a');
  put(uint64_t{name.size()});
  rest.insert(rest.end(), name.begin(), name.end());
  put(uint32_t{1});
  put(int64_t{4});
  put(uint32_t{0});
  put(uint64_t{0});
  rest.resize(rest.size() + 64, 0);
  expect_format_error(handmade(3, 1, 0, rest), "tensor name of 100006 bytes");
}

}  // namespace
}  // namespace ecomla
