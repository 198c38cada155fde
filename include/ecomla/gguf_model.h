// Llama-family models stored as GGUF: the config from metadata and the weights by HF name.
#pragma once

#include <memory>
#include <string_view>

#include "ecomla/config.h"
#include "ecomla/gguf.h"
#include "ecomla/weights.h"

namespace ecomla {

// Reads `{arch}.*` metadata (llama.cpp's LLM_KV names). Throws FormatError on missing keys or
// an architecture that is not in the Llama family.
ModelConfig config_from_gguf(const GgufFile& file);

// Serves the GGUF's tensors under Hugging Face names, dequantised to fp32, with attn_q/attn_k
// rows converted from llama.cpp's permuted RoPE layout back to Hugging Face's.
std::unique_ptr<WeightSource> gguf_weight_source(std::shared_ptr<const GgufFile> file,
                                                 const ModelConfig& config);

// The GGUF name of a Hugging Face tensor name (and back); nullopt for names outside the scheme.
std::optional<std::string> gguf_tensor_name(const std::string& hf_name);
std::optional<std::string> hf_tensor_name(const std::string& gguf_name);

// "model.layers.12.mlp.up_proj.weight" with prefix "model.layers." -> {12, "mlp.up_proj.weight"}.
struct LayerTensorName {
  int64_t layer;
  std::string suffix;
};
std::optional<LayerTensorName> split_layer_name(std::string_view name, std::string_view prefix);

// The head count llama.cpp's converter permuted a tensor's rows by (Q: heads, K: KV heads),
// or 0 for tensors it leaves alone.
int64_t gguf_permuted_heads(const std::string& hf_name, const ModelConfig& config);

// llama.cpp's permutation of Q/K rows (convert_hf_to_gguf.py `permute`) and its inverse, for a
// weight [n_head * Dh, in].
at::Tensor permute_for_gguf(const at::Tensor& w, int64_t n_head);
at::Tensor unpermute_from_gguf(const at::Tensor& w, int64_t n_head);

}  // namespace ecomla
