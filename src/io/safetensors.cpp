#include "ecomla/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "ecomla/error.h"
#include "ecomla/ggml_types.h"
#include "io/atomic_file.h"
#include "io/byte_reader.h"
#include "io/mapped_file.h"

namespace ecomla {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit

[[noreturn]] void bad(const std::string& origin, const std::string& what) {
  throw FormatError(origin + ": " + what);
}

SafetensorsTensorInfo parse_entry(const std::string& origin, const std::string& name,
                                  const nlohmann::json& entry, uint64_t data_size) {
  const std::string where = "tensor '" + name + "'";
  if (!entry.is_object()) bad(origin, where + ": header entry is not an object");
  SafetensorsTensorInfo info;
  info.name = name;
  if (!entry.contains("dtype") || !entry["dtype"].is_string()) bad(origin, where + ": no dtype");
  info.dtype = entry["dtype"].get<std::string>();
  const uint64_t elem = safetensors_dtype_size(info.dtype);
  if (elem == 0) bad(origin, where + ": unsupported dtype '" + info.dtype + "'");
  if (!entry.contains("shape") || !entry["shape"].is_array()) bad(origin, where + ": no shape");
  uint64_t n = 1;
  for (const auto& d : entry["shape"]) {
    if (!d.is_number_unsigned()) bad(origin, where + ": shape entries must be non-negative");
    const auto dim = d.get<uint64_t>();
    if (dim != 0 && n > data_size / dim) bad(origin, where + ": shape larger than the file");
    n *= dim;
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  const auto& offsets = entry.contains("data_offsets") ? entry["data_offsets"] : nlohmann::json();
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    bad(origin, where + ": data_offsets must be two non-negative integers");
  }
  info.begin = offsets[0].get<uint64_t>();
  info.end = offsets[1].get<uint64_t>();
  if (info.begin > info.end || info.end > data_size) {
    bad(origin, where + ": bytes [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                    ") outside the data section of " + std::to_string(data_size) +
                    " bytes: truncated download?");
  }
  if (info.end - info.begin != n * elem) {
    bad(origin, where + ": " + std::to_string(info.end - info.begin) + " bytes for " +
                    std::to_string(n) + " " + info.dtype + " values");
  }
  return info;
}

}  // namespace

uint64_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, uint64_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
      {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2},  {"U32", 4}, {"U64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  auto mapping = std::make_shared<const io::MappedFile>(path);
  SafetensorsFile file = parse(mapping->bytes(), path.string());
  file.mapping_ = std::move(mapping);
  return file;
}

SafetensorsFile SafetensorsFile::parse(std::span<const uint8_t> bytes, std::string origin) {
  SafetensorsFile file;
  file.bytes_ = bytes;
  file.origin_ = origin;
  io::ByteReader in(bytes, origin);
  const auto header_len = in.read<uint64_t>("header length");
  if (header_len > kMaxHeaderBytes || header_len > in.remaining()) {
    in.fail("header length " + std::to_string(header_len) + " exceeds the " +
            std::to_string(in.remaining()) + " bytes left: truncated or not safetensors");
  }
  const auto header_bytes = in.read_bytes(header_len, "header");
  file.data_offset_ = in.offset();
  const uint64_t data_size = bytes.size() - file.data_offset_;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_bytes.begin(), header_bytes.end());
  } catch (const nlohmann::json::exception& e) {
    bad(origin, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) bad(origin, "header is not a JSON object");
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) bad(origin, "__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) bad(origin, "__metadata__ value of '" + k + "' is not a string");
        file.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    file.tensors_.emplace(name, parse_entry(origin, name, entry, data_size));
  }
  return file;
}

const SafetensorsTensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::span<const uint8_t> SafetensorsFile::data(const SafetensorsTensorInfo& info) const {
  return bytes_.subspan(data_offset_ + info.begin, info.end - info.begin);
}

std::vector<float> SafetensorsFile::to_f32(const SafetensorsTensorInfo& info) const {
  const auto bytes = data(info);
  if (info.dtype == "F64") {
    std::vector<float> out(bytes.size() / 8);
    for (size_t i = 0; i < out.size(); ++i) {
      double d;
      std::memcpy(&d, bytes.data() + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
    return out;
  }
  GgmlType type;
  if (info.dtype == "F32") {
    type = GgmlType::F32;
  } else if (info.dtype == "F16") {
    type = GgmlType::F16;
  } else if (info.dtype == "BF16") {
    type = GgmlType::BF16;
  } else {
    bad(origin_, "tensor '" + info.name + "': dtype " + info.dtype + " is not floating point");
  }
  std::vector<float> out(bytes.size() / safetensors_dtype_size(info.dtype));
  dequantize(type, bytes, out);
  return out;
}

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<SafetensorsWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const SafetensorsWriteTensor*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto* t : order) {
    uint64_t n = 1;
    for (int64_t d : t->shape) n *= static_cast<uint64_t>(d);
    if (n * safetensors_dtype_size(t->dtype) != t->bytes.size()) {
      throw std::invalid_argument("write_safetensors: tensor '" + t->name + "' has " +
                                  std::to_string(t->bytes.size()) + " bytes for its shape");
    }
    header[t->name] = {{"dtype", t->dtype},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  io::write_atomically(path, [&](std::ostream& out) {
    const uint64_t len = text.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto* t : order) {
      out.write(reinterpret_cast<const char*>(t->bytes.data()),
                static_cast<std::streamsize>(t->bytes.size()));
    }
  });
}

}  // namespace ecomla
