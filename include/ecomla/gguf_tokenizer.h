// Reading the tokenizer that a GGUF file declares.
#pragma once

#include "ecomla/gguf.h"
#include "ecomla/tokenizer.h"

namespace ecomla {

// Throws FormatError for missing keys or tokenizer models other than byte-level BPE.
TokenizerSpec tokenizer_spec_from_gguf(const GgufFile& file);

}  // namespace ecomla
