// Writing Llama models as GGUF, in llama.cpp's layout (convert_hf_to_gguf.py): permuted Q/K
// rows, llama.* hyperparameters and tokenizer.ggml.* metadata.
#include <torch/nn/module.h>

#include "ecomla/gguf_export.h"
#include "ecomla/gguf_model.h"

namespace ecomla {
namespace {

GgufValue string_array(const std::vector<std::string>& values) {
  GgufArray a{GgufValueType::String, {}};
  for (const std::string& v : values) a.values.push_back({v});
  return {std::move(a)};
}

// llama.cpp knows pre-tokenizers only by preset name.
std::string gguf_pre_name(const TokenizerSpec& tokenizer) {
  if (auto name = pre_tokenizer_name(tokenizer.pre_patterns)) return *name;
  throw std::invalid_argument(
      "write_llama_gguf: the tokenizer's pre-tokenizer matches no llama.cpp preset");
}

}  // namespace

void write_llama_gguf(const std::filesystem::path& path, const torch::nn::Module& model,
                      const ModelConfig& config, const TokenizerSpec& tokenizer, GgmlType type) {
  const auto* first = std::get_if<GqaSpec>(&config.attention.at(0));
  for (const AttentionSpec& spec : config.attention) {
    const auto* other = std::get_if<GqaSpec>(&spec);
    if (!first || !other || other->n_head != first->n_head ||
        other->n_head_kv != first->n_head_kv || other->head_dim != first->head_dim) {
      throw std::invalid_argument(
          "write_llama_gguf: all layers must be GQA with one attention shape (MLA export is "
          "not written yet)");
    }
  }
  const GqaSpec& a = *first;
  if (config.rope.scaling != RopeScaling::None || !config.rope.freq_factors.empty()) {
    throw std::invalid_argument("write_llama_gguf: RoPE scaling is not written yet");
  }
  const std::string p = "llama.";
  std::vector<std::pair<std::string, GgufValue>> meta = {
      {"general.architecture", {std::string("llama")}},
      {"general.alignment", {uint32_t{32}}},
      {p + "vocab_size", {static_cast<uint32_t>(config.vocab_size)}},
      {p + "context_length", {static_cast<uint32_t>(config.max_position_embeddings)}},
      {p + "embedding_length", {static_cast<uint32_t>(config.hidden_size)}},
      {p + "block_count", {static_cast<uint32_t>(config.n_layer)}},
      {p + "feed_forward_length", {static_cast<uint32_t>(config.intermediate_size)}},
      {p + "attention.head_count", {static_cast<uint32_t>(a.n_head)}},
      {p + "attention.head_count_kv", {static_cast<uint32_t>(a.n_head_kv)}},
      {p + "attention.key_length", {static_cast<uint32_t>(a.head_dim)}},
      {p + "attention.value_length", {static_cast<uint32_t>(a.head_dim)}},
      {p + "rope.dimension_count", {static_cast<uint32_t>(a.head_dim)}},
      {p + "rope.freq_base", {static_cast<float>(config.rope.theta)}},
      {p + "attention.layer_norm_rms_epsilon", {static_cast<float>(config.rms_norm_eps)}},
      {"tokenizer.ggml.model", {std::string("gpt2")}},
      {"tokenizer.ggml.pre", {gguf_pre_name(tokenizer)}},
      {"tokenizer.ggml.tokens", string_array(tokenizer.tokens)},
      {"tokenizer.ggml.add_bos_token", {tokenizer.add_bos}},
      {"tokenizer.ggml.add_eos_token", {tokenizer.add_eos}},
  };
  GgufArray types{GgufValueType::Int32, {}};
  for (TokenType t : tokenizer.types) types.values.push_back({static_cast<int32_t>(t)});
  if (!types.values.empty()) meta.emplace_back("tokenizer.ggml.token_type", GgufValue{types});
  std::vector<std::string> merges;
  for (const auto& [l, r] : tokenizer.merges) merges.push_back(l + " " + r);
  meta.emplace_back("tokenizer.ggml.merges", string_array(merges));
  auto put_id = [&](const char* key, const std::optional<int32_t>& id) {
    if (id) meta.emplace_back(key, GgufValue{static_cast<uint32_t>(*id)});
  };
  put_id("tokenizer.ggml.bos_token_id", tokenizer.bos_id);
  put_id("tokenizer.ggml.eos_token_id", tokenizer.eos_id);
  put_id("tokenizer.ggml.unknown_token_id", tokenizer.unk_id);
  put_id("tokenizer.ggml.padding_token_id", tokenizer.pad_id);
  if (!tokenizer.chat_template.empty()) {
    meta.emplace_back("tokenizer.chat_template", GgufValue{tokenizer.chat_template});
  }

  std::vector<GgufWriteTensor> tensors;
  for (const auto& [name, param] : state_dict(model)) {
    const auto gguf_name = gguf_tensor_name(name);
    if (!gguf_name) throw std::invalid_argument("write_llama_gguf: no GGUF name for " + name);
    at::Tensor t = param.detach().to(at::kCPU, at::kFloat).contiguous();
    if (const int64_t heads = gguf_permuted_heads(name, config)) {
      t = permute_for_gguf(t, heads).contiguous();
    }
    std::vector<int64_t> ne(t.sizes().rbegin(), t.sizes().rend());
    const float* data = t.data_ptr<float>();
    tensors.push_back({*gguf_name, ne, t.dim() == 1 ? GgmlType::F32 : type,
                       std::vector<float>(data, data + t.numel())});
  }
  write_gguf(path, meta, tensors);
}

}  // namespace ecomla
