// GGUF model files (llama.cpp's format, versions 2 and 3): reading and writing.
//
// Format reference: ggml/docs/gguf.md. Layout: header (magic, version, tensor count, metadata
// count), metadata key/value pairs, tensor infos, padding to `general.alignment`, tensor data.
// The reader checks every length, count, offset and size against the file before using it, so
// a truncated or corrupt file raises FormatError instead of reading out of bounds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "ecomla/ggml_types.h"

namespace ecomla {
namespace io {
class MappedFile;
}

enum class GgufValueType : uint32_t {
  UInt8 = 0,
  Int8 = 1,
  UInt16 = 2,
  Int16 = 3,
  UInt32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  UInt64 = 10,
  Int64 = 11,
  Float64 = 12,
};

struct GgufValue;
// An array keeps its declared element type so that empty arrays round-trip.
struct GgufArray {
  GgufValueType element_type = GgufValueType::UInt8;
  std::vector<GgufValue> values;
};

struct GgufValue {
  std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string,
               GgufArray, uint64_t, int64_t, double>
      value;

  GgufValueType type() const { return static_cast<GgufValueType>(value.index()); }
  // Numeric conversions accept any integer or float type; they throw FormatError otherwise.
  int64_t as_int(const std::string& key) const;
  double as_float(const std::string& key) const;
  bool as_bool(const std::string& key) const;
  const std::string& as_string(const std::string& key) const;
  const GgufArray& as_array(const std::string& key) const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the innermost (contiguous) dimension
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // relative to the start of the data section
  uint64_t n_bytes = 0;

  int64_t n_elements() const;
  // PyTorch order (outermost first), i.e. ne reversed.
  std::vector<int64_t> torch_shape() const;
};

class GgufFile {
public:
  // Maps the file and parses it; throws FormatError naming the file on any inconsistency.
  static GgufFile open(const std::filesystem::path& path);
  // Parses bytes held elsewhere (tests, fuzzing); `origin` names them in errors. The bytes must
  // outlive the GgufFile.
  static GgufFile parse(std::span<const uint8_t> bytes, std::string origin);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& origin() const { return origin_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(const std::string& key) const;
  const GgufValue& at(const std::string& key) const;  // FormatError when missing
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // The raw bytes of a tensor (bounds were checked at parse time).
  std::span<const uint8_t> tensor_data(const GgufTensorInfo& info) const;
  // Dequantised to fp32, in ggml order (ne[0] fastest).
  std::vector<float> tensor_to_f32(const GgufTensorInfo& info) const;

private:
  std::shared_ptr<const io::MappedFile> mapping_;  // keeps the mmap alive; empty for parse()
  std::span<const uint8_t> bytes_;
  std::string origin_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Writes a GGUF v3 file: metadata in the given order of `metadata`, then tensors.
struct GgufWriteTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  GgmlType type;            // F32, F16 or BF16
  std::vector<float> values;
};
void write_gguf(const std::filesystem::path& path,
                const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufWriteTensor>& tensors, uint32_t alignment = 32);

}  // namespace ecomla
