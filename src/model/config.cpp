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
  require(vocab_size > 0, "vocab_size must be positive, got " + std::to_string(vocab_size));
  require(hidden_size > 0, "hidden_size must be positive, got " + std::to_string(hidden_size));
  require(intermediate_size > 0, "intermediate_size must be positive");
  require(n_layer > 0, "num_hidden_layers must be positive, got " + std::to_string(n_layer));
  require(static_cast<int64_t>(attention.size()) == n_layer,
          "one attention spec per layer expected");
  require(rms_norm_eps > 0, "rms_norm_eps must be positive");
  require(rope.theta > 0, "rope_theta must be positive");
  for (size_t i = 0; i < attention.size(); ++i) {
    const GqaSpec& a = attention[i];
    const std::string layer = "layer " + std::to_string(i) + ": ";
    require(a.n_head > 0 && a.n_head_kv > 0, layer + "head counts must be positive");
    require(a.n_head % a.n_head_kv == 0, layer + "num_attention_heads (" +
                                             std::to_string(a.n_head) +
                                             ") must be a multiple of num_key_value_heads (" +
                                             std::to_string(a.n_head_kv) + ")");
    require(a.head_dim > 0 && a.head_dim % 2 == 0, layer + "head_dim must be even and positive");
    if (!rope.freq_factors.empty()) {
      require(static_cast<int64_t>(rope.freq_factors.size()) == a.head_dim / 2,
              "rope_freqs has " + std::to_string(rope.freq_factors.size()) +
                  " factors, head_dim/2 = " + std::to_string(a.head_dim / 2));
    }
  }
}

}  // namespace ecomla
