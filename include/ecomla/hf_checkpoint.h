// Hugging Face model folders: config.json, model.safetensors (single or sharded through
// model.safetensors.index.json), tokenizer.json and tokenizer_config.json.
#pragma once

#include <filesystem>
#include <memory>

#include "ecomla/config.h"
#include "ecomla/hf_tokenizer.h"
#include "ecomla/weights.h"

namespace torch::nn {
class Module;
}

namespace ecomla {

ModelConfig read_hf_config(const std::filesystem::path& config_json);
void write_hf_config(const std::filesystem::path& config_json, const ModelConfig& config,
                     const Tokenizer& tokenizer, const std::string& torch_dtype);

// Weights of model.safetensors or of the shards listed in model.safetensors.index.json.
std::unique_ptr<WeightSource> hf_weight_source(const std::filesystem::path& folder,
                                               const ModelConfig& config);

struct SaveOptions {
  std::string dtype = "F32";              // F32, F16 or BF16
  uint64_t max_shard_bytes = 5ull << 30;  // larger models are sharded with an index
};
// Writes config.json, the weights, tokenizer.json and tokenizer_config.json into `folder`.
void save_hf_checkpoint(const std::filesystem::path& folder, const torch::nn::Module& model,
                        const ModelConfig& config, const Tokenizer& tokenizer,
                        const SaveOptions& options = {});

}  // namespace ecomla
