// The Llama causal LM as libtorch modules, built from one ModelConfig.
//
// Modules are registered under Hugging Face names (model.layers.3.self_attn.q_proj, ...), so
// named_parameters() is the Hugging Face state dict. Weights use the Hugging Face (rotate_half)
// RoPE layout; the GGUF loader converts llama.cpp's permuted Q/K rows to it.
//
// Shape legend: B batch, T new tokens, S cached + new tokens, D hidden size, H query heads,
// Hkv key/value heads, Dh head dim, V vocabulary, F MLP size.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ecomla/config.h"
#include "ecomla/layers.h"
#include "ecomla/mla_attention.h"
#include "ecomla/projection.h"

namespace ecomla {

class KvCache;

class GqaAttentionImpl : public torch::nn::Module {
public:
  GqaAttentionImpl(const GqaSpec& spec, int64_t hidden_size);
  // x [B, T, D] -> [B, T, D]. With a cache, attends to the cached keys first and appends.
  // With a token tree (and no cache), attends as its mask says instead.
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope, KvCache* cache,
                        int64_t layer, const TokenTree* tree = nullptr);

  Projection q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

private:
  GqaSpec spec_;
};
TORCH_MODULE(GqaAttention);

class MlpImpl : public torch::nn::Module {
public:
  MlpImpl(int64_t hidden_size, int64_t intermediate_size);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))
  Projection gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
public:
  DecoderLayerImpl(const ModelConfig& config, int64_t layer);
  // `rope` serves GQA layers; MLA layers rotate their own RoPE part.
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope, KvCache* cache,
                        int64_t layer, const TokenTree* tree = nullptr);

  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  GqaAttention self_attn{nullptr};  // GQA layers ("self_attn", as Hugging Face)
  MlaAttention mla{nullptr};        // MLA layers ("mla", as X-EcoMLA)
  Mlp mlp{nullptr};
};
TORCH_MODULE(DecoderLayer);

// The decoder stack without the LM head ("model." in Hugging Face names).
class LlamaBackboneImpl : public torch::nn::Module {
public:
  explicit LlamaBackboneImpl(const ModelConfig& config);
  // tokens [B, T] -> final hidden states [B, T, D]; positions start at the cache length.
  torch::Tensor forward(const torch::Tensor& tokens, KvCache* cache = nullptr);
  // tokens [B, T] packed as prefix trees -> final hidden states [B, T, D] (no cache).
  torch::Tensor forward(const torch::Tensor& tokens, const TokenTree& tree);
  // cos/sin for the GQA layers at `positions` (empty in a full-MLA model).
  RopeTables rope_tables(const torch::Tensor& positions, torch::ScalarType dtype) const;

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};

private:
  torch::Tensor run_layers(const torch::Tensor& tokens, const torch::Tensor& positions,
                           KvCache* cache, const TokenTree* tree);

  std::optional<RotaryEmbedding> rotary_;  // for the GQA layers; none in a full-MLA model
};
TORCH_MODULE(LlamaBackbone);

// Name -> shape of every parameter LlamaForCausalLM(config) has, without building it.
std::map<std::string, std::vector<int64_t>> llama_parameter_shapes(const ModelConfig& config);

class LlamaForCausalLMImpl : public torch::nn::Module {
public:
  explicit LlamaForCausalLMImpl(ModelConfig config);
  // tokens [B, T] -> logits [B, T, V] in the weights' dtype.
  torch::Tensor forward(const torch::Tensor& tokens, KvCache* cache = nullptr);
  // The LM head applied to hidden states [..., D] -> [..., V].
  torch::Tensor logits(const torch::Tensor& hidden) const;
  // The LM head's weight [V, D]: lm_head's, or the token embedding it is tied to.
  const torch::Tensor& head_weight() const;
  const ModelConfig& config() const { return config_; }
  // Gives every attention and MLP projection a 4-bit copy for decoding (see projection.h);
  // returns how many were packed. Call after the final dtype/device move.
  int64_t pack_int4();
  // Where the weights live (inputs are moved there by the callers of forward).
  torch::Device device() const { return model->embed_tokens->weight.device(); }

  LlamaBackbone model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tied to model.embed_tokens

private:
  ModelConfig config_;
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace ecomla
