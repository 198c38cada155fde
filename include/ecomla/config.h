// The model specification: one plain struct from which every model module is built.
//
// Parsed once from GGUF metadata or a Hugging Face config.json; validate() names the bad field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace ecomla {

// Grouped-query attention, the Llama original (MHA when n_head_kv == n_head).
struct GqaSpec {
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  bool operator==(const GqaSpec&) const = default;
};

// Multi-head Latent Attention (DeepSeek-V2), X-EcoMLA's configuration keys in brackets.
struct MlaSpec {
  int64_t n_head = 0;
  int64_t rank_q = 0;        // [q_lora_rank] 0: a plain q_proj instead of q_a_proj -> q_b_proj
  int64_t rank_kv = 0;       // [kv_lora_rank]
  int64_t dim_rope = 0;      // [qk_rope_head_dim]
  int64_t dim_nope = 0;      // [qk_nope_head_dim]
  int64_t dim_v = 0;         // [v_head_dim]
  bool latent_norm = false;  // [use_lora_layer_norm] RMSNorm on the q and kv latents
  double latent_norm_eps = 1e-6;

  // Cached per token: the latent and the RoPE key shared by all heads.
  int64_t cache_values_per_token() const { return rank_kv + dim_rope; }
  void validate() const;  // std::invalid_argument naming the bad field
  bool operator==(const MlaSpec&) const = default;
};

// One layer's attention; a hybrid model mixes both kinds.
using AttentionSpec = std::variant<GqaSpec, MlaSpec>;

enum class RopeScaling { None, Linear, Llama3 };

struct RopeConfig {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::None;
  double factor = 1.0;              // linear and llama3
  double low_freq_factor = 1.0;     // llama3
  double high_freq_factor = 4.0;    // llama3
  int64_t original_context = 8192;  // llama3: original_max_position_embeddings
  // Per-frequency divisors stored by GGUF files (rope_freqs.weight) instead of the llama3
  // parameters; empty when absent.
  std::vector<float> freq_factors;
};

struct ModelConfig {
  std::string architecture = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layer = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  RopeConfig rope;
  std::vector<AttentionSpec> attention;  // one per layer
  // The teacher attention the MLA layers were converted from (X-EcoMLA keeps it in config.json
  // and as llama_num_key_value_heads); set by the converter and by the Hugging Face reader for
  // folders with MLA layers, unset when unknown.
  std::optional<GqaSpec> source_attention;

  // Sanity bounds on sizes read from files, checked before anything is allocated.
  static constexpr int64_t kMaxLayers = 1024;
  static constexpr int64_t kMaxDim = 1 << 20;  // hidden, MLP, head sizes
  static constexpr int64_t kMaxVocab = 1 << 22;
  static constexpr int64_t kMaxPositions = 1 << 24;

  // Values cached per token, summed over all layers (K and V).
  int64_t kv_values_per_token() const;
  // Values cached per token by one layer.
  int64_t layer_kv_values_per_token(int64_t layer) const;
  // What the model this one was converted from cached per token (its MLA layers as
  // `source_attention`); nullopt when that is unknown.
  std::optional<int64_t> source_kv_values_per_token() const;
  int64_t parameter_count() const;
  // Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
};

}  // namespace ecomla
