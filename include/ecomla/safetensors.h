// safetensors files (Hugging Face): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then the data.
// Format: https://github.com/huggingface/safetensors (README, "Format"). Every offset and size
// is checked against the file before use.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ecomla {
namespace io {
class MappedFile;
}

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data section
};

class SafetensorsFile {
public:
  static SafetensorsFile open(const std::filesystem::path& path);
  static SafetensorsFile parse(std::span<const uint8_t> bytes, std::string origin);

  const std::string& origin() const { return origin_; }
  const std::map<std::string, SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsTensorInfo* find(const std::string& name) const;
  std::span<const uint8_t> data(const SafetensorsTensorInfo& info) const;
  // Floating-point tensors converted to fp32 (FormatError for other dtypes).
  std::vector<float> to_f32(const SafetensorsTensorInfo& info) const;

private:
  std::shared_ptr<const io::MappedFile> mapping_;  // keeps the mmap alive; empty for parse()
  std::span<const uint8_t> bytes_;
  uint64_t data_offset_ = 0;
  std::string origin_;
  std::map<std::string, SafetensorsTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Size in bytes of one element of a safetensors dtype, or 0 when unknown.
uint64_t safetensors_dtype_size(const std::string& dtype);

struct SafetensorsWriteTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
};
// Writes atomically (temporary file, then rename); tensors are stored in name order.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<SafetensorsWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace ecomla
