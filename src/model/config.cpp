#include "ecomla/config.h"

#include <stdexcept>
#include <string>

namespace ecomla {

void MlaSpec::validate() const {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("MLA spec: " + what);
  };
  require(n_head > 0, "n_head must be positive");
  require(rank_q >= 0, "q_lora_rank must be >= 0");
  require(rank_kv > 0, "kv_lora_rank must be positive");
  require(dim_rope > 0 && dim_rope % 2 == 0, "qk_rope_head_dim must be even and positive");
  require(dim_nope >= 0 && dim_v > 0, "qk_nope_head_dim >= 0 and v_head_dim > 0 required");
}

int64_t ModelConfig::layer_kv_values_per_token(int64_t layer) const {
  const AttentionSpec& spec = attention.at(layer);
  if (const auto* a = std::get_if<GqaSpec>(&spec)) return 2 * a->n_head_kv * a->head_dim;
  return std::get<MlaSpec>(spec).cache_values_per_token();
}

std::optional<int64_t> ModelConfig::source_kv_values_per_token() const {
  int64_t n = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(attention.size()); ++i) {
    if (std::holds_alternative<GqaSpec>(attention[i])) {
      n += layer_kv_values_per_token(i);
    } else if (source_attention) {
      n += 2 * source_attention->n_head_kv * source_attention->head_dim;
    } else {
      return std::nullopt;
    }
  }
  return n;
}

int64_t ModelConfig::kv_values_per_token() const {
  int64_t n = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(attention.size()); ++i) {
    n += layer_kv_values_per_token(i);
  }
  return n;
}

int64_t ModelConfig::parameter_count() const {
  int64_t n = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2) + hidden_size;
  const int64_t d = hidden_size;
  for (const AttentionSpec& spec : attention) {
    n += 3 * d * intermediate_size + 2 * d;
    if (const auto* a = std::get_if<GqaSpec>(&spec)) {
      n += d * a->n_head * a->head_dim * 2;     // q_proj, o_proj
      n += d * a->n_head_kv * a->head_dim * 2;  // k_proj, v_proj
      continue;
    }
    const auto& m = std::get<MlaSpec>(spec);
    const int64_t dqk = m.dim_nope + m.dim_rope;
    n += m.rank_q == 0 ? d * m.n_head * dqk : d * m.rank_q + m.rank_q * m.n_head * dqk;
    n += d * (m.rank_kv + m.dim_rope) + m.rank_kv * m.n_head * (m.dim_nope + m.dim_v);
    n += m.n_head * m.dim_v * d;  // out_proj
    if (m.latent_norm) n += m.rank_q + m.rank_kv;
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
  if (source_attention) {
    const GqaSpec& s = *source_attention;
    require(s.n_head > 0 && s.n_head <= kMaxDim && s.n_head_kv > 0 && s.n_head % s.n_head_kv == 0,
            "source attention: num_attention_heads must be a positive multiple of "
            "num_key_value_heads");
    require(s.head_dim > 0 && s.head_dim <= kMaxDim, "source attention: head_dim out of range");
  }
  for (size_t i = 0; i < attention.size(); ++i) {
    const std::string layer = "layer " + std::to_string(i) + ": ";
    if (const auto* m = std::get_if<MlaSpec>(&attention[i])) {
      try {
        m->validate();
      } catch (const std::invalid_argument& e) {
        require(false, layer + e.what());
      }
      require(m->n_head <= kMaxDim && m->rank_q <= kMaxDim && m->rank_kv <= kMaxDim &&
                  m->dim_rope <= kMaxDim && m->dim_nope <= kMaxDim && m->dim_v <= kMaxDim,
              layer + "MLA sizes out of range");
      continue;
    }
    const GqaSpec& a = std::get<GqaSpec>(attention[i]);
    for (const AttentionSpec& other : attention) {  // the GQA layers share one RoPE table
      if (const auto* g = std::get_if<GqaSpec>(&other)) {
        require(g->head_dim == a.head_dim, layer + "GQA layers must share one head_dim");
      }
    }
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
