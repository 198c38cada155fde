// libFuzzer target: tokenizer.json documents. Anything that parses must also build a tokenizer
// (or raise FormatError) and encode/decode a fixed text without crashing.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "ecomla/error.h"
#include "io/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto doc = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return 0;
  try {
    const ecomla::Tokenizer tok(ecomla::io::parse_hf_tokenizer(doc, nullptr, "fuzz"));
    const auto ids = tok.encode("Hello world 123 <|im_start|>", true, true);
    (void)tok.decode(ids);
  } catch (const ecomla::FormatError&) {
  }
  return 0;
}
