// Hugging Face model folders: config.json, model.safetensors (single or sharded through
// model.safetensors.index.json), tokenizer.json and tokenizer_config.json.
//
// Models with MLA layers use X-EcoMLA's layout (AMD-Hybrid-Models, mla/hybrid_wrapper.py):
// config.json stays the teacher's Llama config (ModelConfig::source_attention), MLA_config.json
// lists the layers kept as attention (attn_layers) and mla_layer_config.json is the
// DeepseekV3Config of the MLA layers: global head sizes, per-layer ranks in layer_rank_list.
// Weights are model.layers.N.mla.* for MLA layers and model.layers.N.self_attn.* otherwise.
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

// Reads config.json and, when they are beside it, MLA_config.json and mla_layer_config.json;
// FormatError naming the file and key on anything missing or inconsistent.
ModelConfig read_hf_config(const std::filesystem::path& config_json);
// Writes config.json and, for a model with MLA layers, MLA_config.json and
// mla_layer_config.json beside it (removing them for a model without). std::invalid_argument,
// before anything is written, for what the layout cannot hold: MLA layers that disagree on a
// size other than the ranks, GQA layers of different shapes.
void write_hf_config(const std::filesystem::path& config_json, const ModelConfig& config,
                     const Tokenizer& tokenizer, const std::string& torch_dtype);

// Weights of model.safetensors or of the shards listed in model.safetensors.index.json.
std::unique_ptr<WeightSource> hf_weight_source(const std::filesystem::path& folder,
                                               const ModelConfig& config);

struct SaveOptions {
  std::string dtype = "F32";              // F32, F16 or BF16
  uint64_t max_shard_bytes = 5ull << 30;  // larger models are sharded with an index
};
// Writes the config files (write_hf_config), the weights, tokenizer.json and
// tokenizer_config.json into `folder`.
void save_hf_checkpoint(const std::filesystem::path& folder, const torch::nn::Module& model,
                        const ModelConfig& config, const Tokenizer& tokenizer,
                        const SaveOptions& options = {});

}  // namespace ecomla
