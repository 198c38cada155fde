// Loading a whole model (config, weights, tokenizer) from a GGUF file or a Hugging Face folder.
#pragma once

#include <filesystem>
#include <string>

#include "ecomla/config.h"
#include "ecomla/model.h"
#include "ecomla/tokenizer.h"

namespace ecomla {

struct LoadedModel {
  std::filesystem::path path;
  std::string format;  // "gguf" or "safetensors"
  LlamaForCausalLM model{nullptr};
  Tokenizer tokenizer;
  // True when every layer matrix was stored as GGUF Q4_1: then LlamaForCausalLM::pack_int4()
  // keeps the stored weights (up to bf16 rounding of the scales) instead of approximating
  // them.
  bool stored_as_4bit = false;
};

// `path` is a .gguf file or a folder with config.json, model.safetensors (or a sharded index)
// and tokenizer.json. Weights are loaded as fp32. Throws FormatError naming the file at fault.
LoadedModel load_model(const std::filesystem::path& path);

// Only the config (no weights), for inspection.
ModelConfig load_config(const std::filesystem::path& path);
// Only the tokenizer.
Tokenizer load_tokenizer(const std::filesystem::path& path);

}  // namespace ecomla
