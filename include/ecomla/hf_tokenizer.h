// Hugging Face tokenizer files: tokenizer.json (BPE model, added tokens, pre-tokenizer) and
// tokenizer_config.json (add_bos_token, add_eos_token, bos/eos tokens, chat_template).
#pragma once

#include <filesystem>

#include "ecomla/tokenizer.h"

namespace ecomla {

TokenizerSpec read_hf_tokenizer(const std::filesystem::path& folder);
void write_hf_tokenizer(const std::filesystem::path& folder, const Tokenizer& tokenizer);

}  // namespace ecomla
