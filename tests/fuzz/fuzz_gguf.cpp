// libFuzzer target: any bytes given to the GGUF parser raise FormatError or parse; dequantising
// every tensor of a file that parsed stays in bounds. Run with scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>

#include "ecomla/error.h"
#include "ecomla/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ecomla::GgufFile f = ecomla::GgufFile::parse({data, size}, "fuzz");
    for (const auto& t : f.tensors()) {
      if (ecomla::ggml_type_traits(t.type).can_dequantize && t.n_bytes < (1u << 20)) {
        (void)f.tensor_to_f32(t);
      }
    }
  } catch (const ecomla::FormatError&) {
  }
  return 0;
}
