// Parsing tokenizer.json documents (internal: the public entry points are in hf_checkpoint.h).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "ecomla/tokenizer.h"

namespace ecomla::io {

// `config` is tokenizer_config.json or null. Throws FormatError naming `origin`.
TokenizerSpec parse_hf_tokenizer(const nlohmann::json& tokenizer, const nlohmann::json& config,
                                 const std::string& origin);

}  // namespace ecomla::io
