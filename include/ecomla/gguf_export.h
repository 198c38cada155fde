// Exporting models to GGUF, the format llama.cpp and the engines built on it load.
#pragma once

#include <filesystem>

#include "ecomla/config.h"
#include "ecomla/ggml_types.h"
#include "ecomla/tokenizer.h"

namespace torch::nn {
class Module;
}

namespace ecomla {

// Writes a Llama model as GGUF v3 (llama.cpp's layout: permuted Q/K rows, tokenizer.ggml.*
// metadata) with F32, F16 or BF16 tensors (1-D tensors are always F32, as llama.cpp's converter
// keeps norms). Throws std::invalid_argument for other types.
void write_llama_gguf(const std::filesystem::path& path, const torch::nn::Module& model,
                      const ModelConfig& config, const TokenizerSpec& tokenizer,
                      GgmlType type = GgmlType::F32);

}  // namespace ecomla
