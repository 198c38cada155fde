// libFuzzer target for the safetensors parser (see fuzz_gguf.cpp).
#include <cstddef>
#include <cstdint>

#include "ecomla/error.h"
#include "ecomla/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ecomla::SafetensorsFile f = ecomla::SafetensorsFile::parse({data, size}, "fuzz");
    for (const auto& [name, info] : f.tensors()) {
      if (info.dtype == "F32" || info.dtype == "F16" || info.dtype == "BF16" ||
          info.dtype == "F64") {
        (void)f.to_f32(info);
      }
    }
  } catch (const ecomla::FormatError&) {
  }
  return 0;
}
