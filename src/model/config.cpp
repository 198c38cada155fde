#include "ecomla/config.h"

#include <stdexcept>
#include <string>

namespace ecomla {

int64_t ModelConfig::kv_values_per_token() const {
  int64_t n = 0;
  for (const GqaSpec& a : attention) n += 2 * a.n_head_kv * a.head_dim;
  return n;
}

int64_t ModelConfig::parameter_count() const {
  int64_t n = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2) + hidden_size;
  for (const GqaSpec& a : attention) {
    n += hidden_size * a.n_head * a.head_dim * 2;     // q_proj, o_proj
    n += hidden_size * a.n_head_kv * a.head_dim * 2;  // k_proj, v_proj
    n += 3 * hidden_size * intermediate_size + 2 * hidden_size;
  }
  return n;
}

void ModelConfig::validate() const {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument("model config: " + message);
  };
  auto in_range = [&](int64_t value, int64_t max, const char* name) {
    require(value > 0 && value <= max, std::string(name) + " must be in [1, " +
                                           std::to_string(max) + "], got " + std::to_string(value));
  };
  in_range(vocab_size, kMaxVocab, "vocab_size");
  in_range(hidden_size, kMaxDim, "hidden_size");
  in_range(intermediate_size, kMaxDim, "intermediate_size");
  in_range(n_layer, kMaxLayers, "num_hidden_layers");
  in_range(max_position_embeddings, kMaxPositions, "max_position_embeddings");
  require(static_cast<int64_t>(attention.size()) == n_layer,
          "one attention spec per layer expected");
  require(rms_norm_eps > 0, "rms_norm_eps must be positive");
  require(rope.theta > 0, "rope_theta must be positive");
  require(rope.factor > 0, "rope scaling factor must be positive");
  require(rope.scaling != RopeScaling::Llama3 ||
              (rope.high_freq_factor != rope.low_freq_factor && rope.original_context > 0),
          "llama3 rope scaling needs high_freq_factor != low_freq_factor and a positive "
          "original_max_position_embeddings");
  for (size_t i = 0; i < attention.size(); ++i) {
    const GqaSpec& a = attention[i];
    const std::string layer = "layer " + std::to_string(i) + ": ";
    require(a.n_head > 0 && a.n_head_kv > 0 && a.n_head <= kMaxDim,
            layer + "head counts must be positive");
    require(a.n_head % a.n_head_kv == 0, layer + "num_attention_heads (" +
                                             std::to_string(a.n_head) +
                                             ") must be a multiple of num_key_value_heads (" +
                                             std::to_string(a.n_head_kv) + ")");
    require(a.head_dim > 0 && a.head_dim % 2 == 0 && a.head_dim <= kMaxDim,
            layer + "head_dim must be even and positive");
    if (!rope.freq_factors.empty()) {
      require(static_cast<int64_t>(rope.freq_factors.size()) == a.head_dim / 2,
              "rope_freqs has " + std::to_string(rope.freq_factors.size()) +
                  " factors, head_dim/2 = " + std::to_string(a.head_dim / 2));
    }
  }
}

}  // namespace ecomla
