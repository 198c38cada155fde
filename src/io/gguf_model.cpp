#include "ecomla/gguf_model.h"

#include <ATen/ops/from_blob.h>

#include <array>
#include <charconv>

#include "ecomla/error.h"

namespace ecomla {
namespace {

// HF suffix of each per-layer GGUF tensor (llama.cpp LLM_TENSOR_NAMES for LLM_ARCH_LLAMA).
constexpr std::array<std::pair<const char*, const char*>, 9> kLayerTensors = {{
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
}};
constexpr std::array<std::pair<const char*, const char*>, 3> kGlobalTensors = {{
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
}};

int64_t get_int(const GgufFile& f, const std::string& key) { return f.at(key).as_int(key); }

int64_t get_int_or(const GgufFile& f, const std::string& key, int64_t fallback) {
  const GgufValue* v = f.find(key);
  return v ? v->as_int(key) : fallback;
}

double get_float_or(const GgufFile& f, const std::string& key, double fallback) {
  const GgufValue* v = f.find(key);
  return v ? v->as_float(key) : fallback;
}

// Some GGUFs store head_count_kv per layer as an array.
int64_t layer_value(const GgufFile& f, const std::string& key, int64_t layer, int64_t fallback) {
  const GgufValue* v = f.find(key);
  if (!v) return fallback;
  if (v->type() == GgufValueType::Array) {
    const auto& values = v->as_array(key).values;
    if (layer >= static_cast<int64_t>(values.size())) {
      throw FormatError(f.origin() + ": '" + key + "' has no entry for layer " +
                        std::to_string(layer));
    }
    return values[layer].as_int(key);
  }
  return v->as_int(key);
}

class GgufWeightSource : public WeightSource {
public:
  GgufWeightSource(std::shared_ptr<const GgufFile> file, const ModelConfig& config)
      : file_(std::move(file)), config_(config) {
    for (const GgufTensorInfo& info : file_->tensors()) {
      if (info.name == "rope_freqs.weight") continue;  // folded into the config
      const auto hf = hf_tensor_name(info.name);
      if (!hf) {
        throw FormatError(file_->origin() + ": unexpected tensor '" + info.name +
                          "' for a Llama-family model");
      }
      by_hf_name_.emplace(*hf, &info);
    }
  }

  std::string origin() const override { return file_->origin(); }

  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [name, info] : by_hf_name_) out.push_back(name);
    return out;
  }

  std::optional<std::vector<int64_t>> shape(const std::string& name) const override {
    auto it = by_hf_name_.find(name);
    if (it == by_hf_name_.end()) return std::nullopt;
    return it->second->torch_shape();
  }

  at::Tensor load(const std::string& name) const override {
    auto it = by_hf_name_.find(name);
    if (it == by_hf_name_.end()) throw FormatError(origin() + ": no tensor for '" + name + "'");
    const GgufTensorInfo& info = *it->second;
    std::vector<float> values = file_->tensor_to_f32(info);
    at::Tensor t = at::from_blob(values.data(), info.torch_shape(), at::kFloat).clone();
    if (const int64_t heads = rope_heads(name)) t = unpermute_from_gguf(t, heads);
    return t;
  }

private:
  int64_t rope_heads(const std::string& hf_name) const {
    return gguf_permuted_heads(hf_name, config_);
  }

  std::shared_ptr<const GgufFile> file_;
  ModelConfig config_;
  std::map<std::string, const GgufTensorInfo*> by_hf_name_;
};

}  // namespace

std::optional<LayerTensorName> split_layer_name(std::string_view name, std::string_view prefix) {
  // Parsed by hand: names come from untrusted files, and std::regex recurses per character.
  if (!name.starts_with(prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  int64_t layer = -1;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), layer);
  if (ec != std::errc() || end == name.data() || layer < 0 || end == name.data() + name.size() ||
      *end != '.') {
    return std::nullopt;
  }
  return LayerTensorName{layer, std::string(end + 1, name.data() + name.size())};
}

std::optional<std::string> hf_tensor_name(const std::string& gguf_name) {
  for (const auto& [gguf, hf] : kGlobalTensors) {
    if (gguf_name == gguf) return hf;
  }
  if (const auto parts = split_layer_name(gguf_name, "blk.")) {
    for (const auto& [gguf, hf] : kLayerTensors) {
      if (parts->suffix == gguf) return "model.layers." + std::to_string(parts->layer) + "." + hf;
    }
  }
  return std::nullopt;
}

std::optional<std::string> gguf_tensor_name(const std::string& hf_name) {
  for (const auto& [gguf, hf] : kGlobalTensors) {
    if (hf_name == hf) return gguf;
  }
  if (const auto parts = split_layer_name(hf_name, "model.layers.")) {
    for (const auto& [gguf, hf] : kLayerTensors) {
      if (parts->suffix == hf) return "blk." + std::to_string(parts->layer) + "." + gguf;
    }
  }
  return std::nullopt;
}

int64_t gguf_permuted_heads(const std::string& hf_name, const ModelConfig& config) {
  const auto parts = split_layer_name(hf_name, "model.layers.");
  if (!parts || parts->layer >= static_cast<int64_t>(config.attention.size())) return 0;
  const auto* spec = std::get_if<GqaSpec>(&config.attention[parts->layer]);
  if (!spec) return 0;
  if (parts->suffix == "self_attn.q_proj.weight") return spec->n_head;
  if (parts->suffix == "self_attn.k_proj.weight") return spec->n_head_kv;
  return 0;
}

// HF -> GGUF: rows of each head go from [2, Dh/2] (halves) to [Dh/2, 2] (adjacent pairs).
at::Tensor permute_for_gguf(const at::Tensor& w, int64_t n_head) {
  const int64_t rows = w.size(0);
  return w.reshape({n_head, 2, rows / n_head / 2, -1}).transpose(1, 2).reshape(w.sizes());
}

at::Tensor unpermute_from_gguf(const at::Tensor& w, int64_t n_head) {
  const int64_t rows = w.size(0);
  return w.reshape({n_head, rows / n_head / 2, 2, -1}).transpose(1, 2).reshape(w.sizes());
}

ModelConfig config_from_gguf(const GgufFile& f) {
  const std::string arch = f.at("general.architecture").as_string("general.architecture");
  if (arch != "llama") {
    throw FormatError(f.origin() + ": architecture '" + arch +
                      "' is not supported (Llama-family models with architecture 'llama' are)");
  }
  const std::string p = arch + ".";
  ModelConfig c;
  c.architecture = arch;
  c.hidden_size = get_int(f, p + "embedding_length");
  c.intermediate_size = get_int(f, p + "feed_forward_length");
  c.n_layer = get_int(f, p + "block_count");
  c.max_position_embeddings = get_int_or(f, p + "context_length", 2048);
  c.rms_norm_eps = get_float_or(f, p + "attention.layer_norm_rms_epsilon", 1e-5);
  c.rope.theta = get_float_or(f, p + "rope.freq_base", 10000.0);

  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd || embd->ne.size() != 2) {
    throw FormatError(f.origin() + ": missing or malformed tensor 'token_embd.weight'");
  }
  c.vocab_size = get_int_or(f, p + "vocab_size", embd->ne[1]);
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;

  // Every layer has tensors: a block count beyond the tensor count is corrupt, not a big model.
  if (c.n_layer <= 0 || c.n_layer > static_cast<int64_t>(f.tensors().size())) {
    throw FormatError(f.origin() + ": " + p + "block_count " + std::to_string(c.n_layer) +
                      " does not match the file's " + std::to_string(f.tensors().size()) +
                      " tensors");
  }
  for (int64_t layer = 0; layer < c.n_layer; ++layer) {
    GqaSpec a;
    a.n_head = layer_value(f, p + "attention.head_count", layer, 0);
    a.n_head_kv = layer_value(f, p + "attention.head_count_kv", layer, a.n_head);
    if (a.n_head <= 0) throw FormatError(f.origin() + ": bad attention.head_count");
    a.head_dim = get_int_or(f, p + "attention.key_length", c.hidden_size / a.n_head);
    const int64_t rope_dim = get_int_or(f, p + "rope.dimension_count", a.head_dim);
    if (rope_dim != a.head_dim) {
      throw FormatError(f.origin() + ": rope.dimension_count " + std::to_string(rope_dim) +
                        " differs from the head dim " + std::to_string(a.head_dim) +
                        " (partial rotary embeddings are not supported)");
    }
    c.attention.push_back(a);
  }

  if (const GgufValue* type = f.find(p + "rope.scaling.type")) {
    const std::string& s = type->as_string(p + "rope.scaling.type");
    if (s == "linear") {
      c.rope.scaling = RopeScaling::Linear;
      c.rope.factor = get_float_or(f, p + "rope.scaling.factor", 1.0);
    } else if (s != "none") {
      throw FormatError(f.origin() + ": rope scaling '" + s + "' is not supported");
    }
  }
  if (const GgufTensorInfo* freqs = f.find_tensor("rope_freqs.weight")) {
    c.rope.freq_factors = f.tensor_to_f32(*freqs);  // llama3-style factors, baked in
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw FormatError(f.origin() + ": " + e.what());
  }
  return c;
}

std::unique_ptr<WeightSource> gguf_weight_source(std::shared_ptr<const GgufFile> file,
                                                 const ModelConfig& config) {
  return std::make_unique<GgufWeightSource>(std::move(file), config);
}

}  // namespace ecomla
