// GGUF reader and writer. Spec: ggml/docs/gguf.md (versions 2 and 3 share one layout; v1 used
// 32-bit counts and is not supported).
#include "ecomla/gguf.h"

#include <bit>
#include <cstring>
#include <limits>

#include "ecomla/error.h"
#include "io/atomic_file.h"
#include "io/byte_reader.h"
#include "io/mapped_file.h"

namespace ecomla {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian uint32
constexpr uint32_t kMaxDims = 4;             // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;            // nested arrays deeper than this are rejected
constexpr uint64_t kMaxStringBytes = 1ull << 30;
constexpr size_t kMaxTensorName = 64;  // GGML_MAX_NAME, as llama.cpp's reader enforces

std::string read_string(io::ByteReader& in, const char* what) {
  const auto n = in.read<uint64_t>(what);
  if (n > kMaxStringBytes || n > in.remaining()) {
    in.fail(std::string(what) + ": string length " + std::to_string(n) + " exceeds the " +
            std::to_string(in.remaining()) + " bytes left");
  }
  auto bytes = in.read_bytes(n, what);
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Smallest encoded size of one value of this type; bounds array counts before allocating.
uint64_t min_encoded_size(GgufValueType type) {
  switch (type) {
    case GgufValueType::UInt8:
    case GgufValueType::Int8:
    case GgufValueType::Bool: return 1;
    case GgufValueType::UInt16:
    case GgufValueType::Int16: return 2;
    case GgufValueType::UInt32:
    case GgufValueType::Int32:
    case GgufValueType::Float32: return 4;
    case GgufValueType::UInt64:
    case GgufValueType::Int64:
    case GgufValueType::Float64: return 8;
    case GgufValueType::String: return 8;
    case GgufValueType::Array: return 12;
  }
  return 1;
}

GgufValueType read_value_type(io::ByteReader& in, const std::string& key) {
  const auto raw = in.read<uint32_t>("value type");
  if (raw > static_cast<uint32_t>(GgufValueType::Float64)) {
    in.fail("key '" + key + "': unknown value type " + std::to_string(raw));
  }
  return static_cast<GgufValueType>(raw);
}

GgufValue read_value(io::ByteReader& in, GgufValueType type, const std::string& key, int depth) {
  switch (type) {
    case GgufValueType::UInt8: return {in.read<uint8_t>("uint8")};
    case GgufValueType::Int8: return {in.read<int8_t>("int8")};
    case GgufValueType::UInt16: return {in.read<uint16_t>("uint16")};
    case GgufValueType::Int16: return {in.read<int16_t>("int16")};
    case GgufValueType::UInt32: return {in.read<uint32_t>("uint32")};
    case GgufValueType::Int32: return {in.read<int32_t>("int32")};
    case GgufValueType::Float32: return {in.read<float>("float32")};
    case GgufValueType::UInt64: return {in.read<uint64_t>("uint64")};
    case GgufValueType::Int64: return {in.read<int64_t>("int64")};
    case GgufValueType::Float64: return {in.read<double>("float64")};
    case GgufValueType::Bool: {
      const auto b = in.read<uint8_t>("bool");
      if (b > 1) in.fail("key '" + key + "': bool value " + std::to_string(b));
      return {b == 1};
    }
    case GgufValueType::String: return {read_string(in, "string value")};
    case GgufValueType::Array: {
      if (depth >= kMaxArrayDepth) in.fail("key '" + key + "': arrays nested too deeply");
      GgufArray array;
      array.element_type = read_value_type(in, key);
      const auto count = in.read<uint64_t>("array length");
      if (count > in.remaining() / min_encoded_size(array.element_type)) {
        in.fail("key '" + key + "': array of " + std::to_string(count) +
                " elements does not fit in the " + std::to_string(in.remaining()) + " bytes left");
      }
      array.values.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        array.values.push_back(read_value(in, array.element_type, key, depth + 1));
      }
      return {std::move(array)};
    }
  }
  in.fail("key '" + key + "': unknown value type");
}

const char* type_name(GgufValueType type) {
  static constexpr const char* kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                           "int32",  "float32", "bool",   "string", "array",
                                           "uint64", "int64",   "float64"};
  return kNames[static_cast<int>(type)];
}

[[noreturn]] void wrong_type(const std::string& key, GgufValueType got, const char* wanted) {
  throw FormatError("metadata key '" + key + "' is " + type_name(got) + ", expected " + wanted);
}

}  // namespace

// --- GgufValue -----------------------------------------------------------------------------

int64_t GgufValue::as_int(const std::string& key) const {
  return std::visit(
      [&](const auto& v) -> int64_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_same_v<T, uint64_t>) {
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
              throw FormatError("metadata key '" + key + "': value too large");
            }
          }
          return static_cast<int64_t>(v);
        } else {
          wrong_type(key, type(), "an integer");
        }
      },
      value);
}

double GgufValue::as_float(const std::string& key) const {
  if (const auto* f = std::get_if<float>(&value)) return *f;
  if (const auto* d = std::get_if<double>(&value)) return *d;
  return static_cast<double>(as_int(key));
}

bool GgufValue::as_bool(const std::string& key) const {
  if (const auto* b = std::get_if<bool>(&value)) return *b;
  wrong_type(key, type(), "bool");
}

const std::string& GgufValue::as_string(const std::string& key) const {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  wrong_type(key, type(), "string");
}

const GgufArray& GgufValue::as_array(const std::string& key) const {
  if (const auto* a = std::get_if<GgufArray>(&value)) return *a;
  wrong_type(key, type(), "array");
}

// --- GgufTensorInfo --------------------------------------------------------------------------

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::torch_shape() const { return {ne.rbegin(), ne.rend()}; }

// --- GgufFile --------------------------------------------------------------------------------

GgufFile GgufFile::open(const std::filesystem::path& path) {
  auto mapping = std::make_shared<const io::MappedFile>(path);
  GgufFile file = parse(mapping->bytes(), path.string());
  file.mapping_ = std::move(mapping);
  return file;
}

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, std::string origin) {
  GgufFile file;
  file.bytes_ = bytes;
  file.origin_ = origin;
  io::ByteReader in(bytes, std::move(origin));

  if (in.read<uint32_t>("magic") != kGgufMagic) in.fail("not a GGUF file (bad magic)");
  file.version_ = in.read<uint32_t>("version");
  if (file.version_ != 2 && file.version_ != 3) {
    in.fail("unsupported GGUF version " + std::to_string(file.version_) + " (2 and 3 are)");
  }
  const auto n_tensors = in.read<uint64_t>("tensor count");
  const auto n_kv = in.read<uint64_t>("metadata count");
  // Each key/value takes at least 13 bytes and each tensor info at least 24: reject counts
  // that cannot fit before reserving anything.
  if (n_kv > in.remaining() / 13) in.fail("metadata count " + std::to_string(n_kv) + " too large");
  if (n_tensors > in.remaining() / 24) {
    in.fail("tensor count " + std::to_string(n_tensors) + " too large");
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = read_string(in, "metadata key");
    const GgufValueType type = read_value_type(in, key);
    GgufValue value = read_value(in, type, key, 0);
    if (!file.metadata_.emplace(key, std::move(value)).second) {
      in.fail("duplicate metadata key '" + key + "'");
    }
  }

  if (const GgufValue* a = file.find("general.alignment")) {
    const auto* alignment = std::get_if<uint32_t>(&a->value);
    if (!alignment || *alignment == 0 || !std::has_single_bit(*alignment)) {
      throw FormatError(file.origin_ + ": general.alignment must be a power-of-two uint32");
    }
    file.alignment_ = *alignment;
  }

  file.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo info;
    info.name = read_string(in, "tensor name");
    if (info.name.size() >= kMaxTensorName) {
      in.fail("tensor name of " + std::to_string(info.name.size()) + " bytes (the limit is " +
              std::to_string(kMaxTensorName - 1) + ")");
    }
    const auto n_dims = in.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims) {
      in.fail("tensor '" + info.name + "': " + std::to_string(n_dims) + " dimensions (1 to 4)");
    }
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = in.read<int64_t>("tensor dimension");
      if (ne < 0) in.fail("tensor '" + info.name + "': negative dimension");
      info.ne.push_back(ne);
    }
    const auto type_id = in.read<uint32_t>("tensor type");
    const auto traits = ggml_type_traits(type_id);
    if (!traits) {
      in.fail("tensor '" + info.name + "': unknown ggml type " + std::to_string(type_id));
    }
    info.type = static_cast<GgmlType>(type_id);
    info.offset = in.read<uint64_t>("tensor offset");

    // Element count and byte size, with overflow checks against the file size.
    uint64_t n_elements = 1;
    for (int64_t ne : info.ne) {
      if (ne != 0 && n_elements > bytes.size() * 8 / static_cast<uint64_t>(ne)) {
        in.fail("tensor '" + info.name + "': shape too large for the file");
      }
      n_elements *= static_cast<uint64_t>(ne);
    }
    if (info.ne[0] % traits->block_size != 0) {
      in.fail("tensor '" + info.name + "': row length " + std::to_string(info.ne[0]) +
              " is not a multiple of the " + std::string(traits->name) + " block size " +
              std::to_string(traits->block_size));
    }
    info.n_bytes = n_elements / traits->block_size * traits->block_bytes;
    if (info.offset % file.alignment_ != 0) {
      in.fail("tensor '" + info.name + "': offset " + std::to_string(info.offset) +
              " not aligned to " + std::to_string(file.alignment_));
    }
    if (!file.tensor_index_.emplace(info.name, file.tensors_.size()).second) {
      in.fail("duplicate tensor '" + info.name + "'");
    }
    file.tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t pad = (file.alignment_ - in.offset() % file.alignment_) % file.alignment_;
  file.data_offset_ = in.offset() + pad;
  for (const GgufTensorInfo& info : file.tensors_) {
    const uint64_t limit = bytes.size();
    if (file.data_offset_ > limit || info.offset > limit - file.data_offset_ ||
        info.n_bytes > limit - file.data_offset_ - info.offset) {
      throw FormatError(file.origin_ + ": tensor '" + info.name + "': bytes [" +
                        std::to_string(file.data_offset_ + info.offset) + ", " +
                        std::to_string(file.data_offset_ + info.offset + info.n_bytes) +
                        ") past end of file (" + std::to_string(limit) + "): truncated download?");
    }
  }
  return file;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::at(const std::string& key) const {
  if (const GgufValue* v = find(key)) return *v;
  throw FormatError(origin_ + ": missing metadata key '" + key + "'");
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo& info) const {
  return bytes_.subspan(data_offset_ + info.offset, info.n_bytes);
}

std::vector<float> GgufFile::tensor_to_f32(const GgufTensorInfo& info) const {
  if (!ggml_type_traits(info.type).can_dequantize) {
    throw FormatError(origin_ + ": tensor '" + info.name + "': type " +
                      std::string(ggml_type_traits(info.type).name) + " cannot be dequantised");
  }
  std::vector<float> out(static_cast<size_t>(info.n_elements()));
  dequantize(info.type, tensor_data(info), out);
  return out;
}

// --- writer ----------------------------------------------------------------------------------

namespace {

class ByteWriter {
public:
  template <typename T>
  void put(T v) {
    put_raw(&v, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    put_raw(s.data(), s.size());
  }
  void put_raw(const void* p, size_t n) {
    const size_t at = bytes.size();
    bytes.resize(at + n);
    if (n > 0) std::memcpy(bytes.data() + at, p, n);
  }
  void pad_to(uint64_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
  }
  std::vector<char> bytes;
};

void put_value(ByteWriter& out, const GgufValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          out.put_string(v);
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          out.put<uint32_t>(static_cast<uint32_t>(v.element_type));
          out.put<uint64_t>(v.values.size());
          for (const GgufValue& e : v.values) {
            if (e.type() != v.element_type) {
              throw std::invalid_argument("GGUF array elements must share one type");
            }
            put_value(out, e);
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          out.put<uint8_t>(v ? 1 : 0);
        } else {
          out.put<T>(v);
        }
      },
      value.value);
}

void put_tensor_values(ByteWriter& out, const GgufWriteTensor& t) {
  switch (t.type) {
    case GgmlType::F32:
      for (float v : t.values) out.put<float>(v);
      return;
    case GgmlType::F16:
      for (float v : t.values) out.put<uint16_t>(fp32_to_fp16(v));
      return;
    case GgmlType::BF16:
      for (float v : t.values) out.put<uint16_t>(fp32_to_bf16(v));
      return;
    default:
      throw std::invalid_argument("write_gguf: tensor '" + t.name +
                                  "': only F32, F16 and BF16 can be written");
  }
}

}  // namespace

void write_gguf(const std::filesystem::path& path,
                const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufWriteTensor>& tensors, uint32_t alignment) {
  if (alignment == 0 || !std::has_single_bit(alignment)) {
    throw std::invalid_argument("write_gguf: alignment must be a power of two");
  }
  ByteWriter out;
  out.put<uint32_t>(kGgufMagic);
  out.put<uint32_t>(3);
  out.put<uint64_t>(tensors.size());
  out.put<uint64_t>(metadata.size());
  for (const auto& [key, value] : metadata) {
    out.put_string(key);
    out.put<uint32_t>(static_cast<uint32_t>(value.type()));
    put_value(out, value);
  }
  uint64_t offset = 0;
  for (const GgufWriteTensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    if (n != static_cast<int64_t>(t.values.size())) {
      throw std::invalid_argument("write_gguf: tensor '" + t.name + "': shape holds " +
                                  std::to_string(n) + " values, got " +
                                  std::to_string(t.values.size()));
    }
    out.put_string(t.name);
    out.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) out.put<int64_t>(d);
    out.put<uint32_t>(static_cast<uint32_t>(t.type));
    out.put<uint64_t>(offset);
    const uint64_t n_bytes = static_cast<uint64_t>(n) * ggml_type_traits(t.type).block_bytes;
    offset += (n_bytes + alignment - 1) / alignment * alignment;
  }
  out.pad_to(alignment);
  for (const GgufWriteTensor& t : tensors) {
    put_tensor_values(out, t);
    out.pad_to(alignment);
  }
  io::write_atomically(path, [&](std::ostream& file) {
    file.write(out.bytes.data(), static_cast<std::streamsize>(out.bytes.size()));
  });
}

}  // namespace ecomla
