// convert_to_mla: per-layer targets from the options, the layer-by-layer conversion with
// sequential calibration, and the assembly of the converted model.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <stdexcept>

#include "convert/mla_init.h"
#include "ecomla/convert.h"
#include "ecomla/layers.h"
#include "ecomla/weights.h"

namespace ecomla {
namespace {

using convert::GqaLayerWeights;
using convert::MlaLayerInit;
using convert::MlaTarget;

const GqaSpec& gqa_spec(const ModelConfig& config, int64_t layer) {
  const auto* spec = std::get_if<GqaSpec>(&config.attention[layer]);
  if (!spec) throw std::invalid_argument(fmt::format("layer {} is already MLA", layer));
  return *spec;
}

std::vector<int64_t> chosen_layers(const ModelConfig& config, const ConvertOptions& options) {
  std::vector<int64_t> layers = options.mla_layers;
  if (layers.empty()) {
    for (int64_t l = 0; l < config.n_layer; ++l) layers.push_back(l);
  }
  std::sort(layers.begin(), layers.end());
  return layers;
}

// Values per token and layer a KV budget allows.
int64_t budget_values(const GqaSpec& spec, const ConvertOptions& o) {
  return static_cast<int64_t>(*o.kv_budget * 2.0 *
                              static_cast<double>(spec.n_head_kv * spec.head_dim));
}

// X-EcoMLA keeps half the head for RoPE. The activation init keeps every original RoPE pair
// (the whole head dim) unless a budget would leave the latent less than half of that; then it
// halves the RoPE key (keeping every other pair) until it fits.
int64_t rope_dim(const GqaSpec& spec, const ConvertOptions& o) {
  if (o.dim_rope > 0) return o.dim_rope;
  if (o.init == MlaInit::kXEcoMla) return spec.head_dim / 2;
  int64_t dim = spec.head_dim;
  if (o.kv_budget) {
    while (dim > 2 && dim % 4 == 0 && budget_values(spec, o) - dim < dim / 2) dim /= 2;
  }
  return dim;
}

// The kv rank a layer gets from a KV budget: the budget's share of the original cache, less
// the RoPE key, rounded down to the rank multiple when that leaves something.
int64_t budget_rank(const GqaSpec& spec, const ConvertOptions& o) {
  const int64_t rank = budget_values(spec, o) - rope_dim(spec, o);
  return rank >= o.rank_multiple ? rank - rank % o.rank_multiple : rank;
}

MlaTarget layer_target(const ModelConfig& config, const ConvertOptions& o, int64_t layer) {
  const GqaSpec& spec = gqa_spec(config, layer);
  MlaTarget t;
  t.q = o.q;
  t.kv = o.kv;
  if (o.kv_budget) t.kv = {budget_rank(spec, o), std::nullopt};
  t.energy_ranks = !(o.fixed_rank_first_last && (layer == 0 || layer == config.n_layer - 1));
  t.dim_rope = rope_dim(spec, o);
  t.dim_v = o.dim_v > 0 ? o.dim_v : spec.head_dim;
  if (o.dim_nope > 0) {
    t.dim_nope = o.dim_nope;
  } else if (o.init == MlaInit::kXEcoMla) {
    t.dim_nope = spec.head_dim - t.dim_rope;
  } else {  // exact up to the rank; the full head when the rank is chosen per layer
    t.dim_nope = t.kv.energy ? spec.head_dim : std::min(spec.head_dim, t.kv.rank);
  }
  t.latent_norm = o.latent_norm;
  // A budget's rank is already rounded down; rounding it up again would break the budget.
  t.rank_multiple = o.kv_budget ? 1 : o.rank_multiple;
  t.key_weight = o.key_weight;
  return t;
}

void check_rank(const RankChoice& c, const char* what) {
  if (c.rank < 0) throw std::invalid_argument(fmt::format("--{}-rank must be >= 0", what));
  if (c.energy && !(*c.energy > 0.0 && *c.energy <= 1.0)) {
    throw std::invalid_argument(fmt::format("--{}-energy must be in (0, 1]", what));
  }
}

GqaLayerWeights layer_weights(LlamaForCausalLM model, int64_t layer) {
  auto& attn = *model->model->layers[layer]->as<DecoderLayerImpl>()->self_attn;
  auto f64 = [](const torch::Tensor& t) { return t.detach().to(at::kDouble); };
  return {gqa_spec(model->config(), layer), f64(attn.q_proj->weight), f64(attn.k_proj->weight),
          f64(attn.v_proj->weight), f64(attn.o_proj->weight)};
}

// Hidden states of the calibration text, advanced one layer at a time through the model as
// converted so far.
class CalibrationStream {
public:
  CalibrationStream(LlamaForCausalLM source, const Calibration& calibration)
      : backbone_(source->model), hidden_(backbone_->embed_tokens(calibration.tokens)) {}
  // E[x x^T] of the layer's attention input x = input_layernorm(h), fp64 [D, D].
  at::Tensor input_covariance(DecoderLayerImpl& layer) const {
    const int64_t d = hidden_.size(-1);
    at::Tensor sum = at::zeros({d, d}, at::kDouble);
    for (int64_t b = 0; b < hidden_.size(0); b += kBatch) {
      const at::Tensor x = layer.input_layernorm(hidden_.narrow(0, b, batch(b))).reshape({-1, d});
      sum += at::matmul(x.t(), x).to(at::kDouble);
    }
    return sum / static_cast<double>(hidden_.size(0) * hidden_.size(1));
  }
  // Least-squares out_proj for a converted layer: argmin_W E|W o - y|^2 over the calibration
  // tokens, o the MLA head outputs and y the original attention output on the same inputs.
  at::Tensor fit_output_projection(DecoderLayerImpl& original, DecoderLayerImpl& converted,
                                   int64_t index) const {
    const RopeTables rope = rope_tables();
    const int64_t d = hidden_.size(-1);
    at::Tensor oo, yo;
    for (int64_t b = 0; b < hidden_.size(0); b += kBatch) {
      const at::Tensor x = original.input_layernorm(hidden_.narrow(0, b, batch(b)));
      const at::Tensor o =
          converted.mla->head_outputs(x).reshape({-1, converted.mla->out_proj->weight.size(1)});
      const at::Tensor y = original.self_attn->forward(x, rope, nullptr, index).reshape({-1, d});
      // fp64 sums: the exact solution (nothing truncated) must come back as W_o.
      const at::Tensor o64 = o.to(at::kDouble), y64 = y.to(at::kDouble);
      const at::Tensor oo_part = at::matmul(o64.t(), o64), yo_part = at::matmul(y64.t(), o64);
      oo = oo.defined() ? oo + oo_part : oo_part;
      yo = yo.defined() ? yo + yo_part : yo_part;
    }
    const double ridge = 1e-9 * oo.diagonal().mean().item<double>();
    const at::Tensor eye = at::eye(oo.size(0), at::kDouble);
    return at::linalg_solve(oo + ridge * eye, yo.t()).t().to(at::kFloat).contiguous();
  }
  void advance(DecoderLayerImpl& layer, int64_t index) {
    const RopeTables rope = rope_tables();
    for (int64_t b = 0; b < hidden_.size(0); b += kBatch) {
      hidden_.narrow(0, b, batch(b))
          .copy_(layer.forward(hidden_.narrow(0, b, batch(b)), rope, nullptr, index));
    }
  }

private:
  static constexpr int64_t kBatch = 4;  // sequences per forward pass
  int64_t batch(int64_t b) const { return std::min(kBatch, hidden_.size(0) - b); }

  // The source model's tables for the GQA layers at positions 0..T-1 (layers of the
  // converted model that stay GQA are the source's).
  RopeTables rope_tables() const {
    return backbone_->rope_tables(at::arange(hidden_.size(1), at::kLong), at::kFloat);
  }

  LlamaBackbone backbone_;
  at::Tensor hidden_;  // [N, T, D]
};

// A decoder layer of `config` filled from `weights` (full model names).
DecoderLayer make_layer(const ModelConfig& config, int64_t layer,
                        const std::map<std::string, at::Tensor>& weights) {
  DecoderLayer out(config, layer);
  const std::string prefix = fmt::format("model.layers.{}.", layer);
  std::map<std::string, at::Tensor> own;
  for (const auto& [name, t] : weights) {
    if (name.starts_with(prefix)) own.emplace(name.substr(prefix.size()), t);
  }
  load_weights(*out, MemoryWeightSource(std::move(own), prefix));
  return out;
}

}  // namespace

MlaInit parse_mla_init(const std::string& name) {
  if (name == "xecomla") return MlaInit::kXEcoMla;
  if (name == "activation") return MlaInit::kActivation;
  throw std::invalid_argument("unknown init '" + name + "' (known: activation, xecomla)");
}

std::string mla_init_name(MlaInit init) {
  return init == MlaInit::kXEcoMla ? "xecomla" : "activation";
}

Calibration make_calibration(const std::vector<int32_t>& tokens, int64_t ctx, int64_t max_tokens) {
  if (ctx < 2) throw std::invalid_argument("calibration context must be at least 2 tokens");
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(tokens.size()), max_tokens) / ctx;
  if (n < 1) {
    throw std::invalid_argument(
        fmt::format("calibration text too short: {} tokens, need at least one sequence of {}",
                    tokens.size(), ctx));
  }
  std::vector<int64_t> ids(tokens.begin(), tokens.begin() + n * ctx);
  return {at::tensor(ids, at::kLong).reshape({n, ctx})};
}

void validate_conversion(const ModelConfig& source, const ConvertOptions& o) {
  if (source.architecture != "llama") {
    throw std::invalid_argument("convert: '" + source.architecture +
                                "' is not a Llama-family model");
  }
  std::set<int64_t> seen;
  for (int64_t l : o.mla_layers) {
    if (l < 0 || l >= source.n_layer) {
      throw std::invalid_argument(fmt::format(
          "MLA layer {} out of range: the model has layers 0..{}", l, source.n_layer - 1));
    }
    if (!seen.insert(l).second)
      throw std::invalid_argument(fmt::format("MLA layer {} listed twice", l));
  }
  check_rank(o.q, "q");
  check_rank(o.kv, "kv");
  const int given = (o.kv.rank > 0 || o.kv.energy) + o.kv_budget.has_value();
  if (given != 1) {
    throw std::invalid_argument(
        "give exactly one of --kv-rank (with or without --kv-energy), "
        "--kv-energy or --kv-budget");
  }
  if (o.kv_budget && !(*o.kv_budget > 0.0 && *o.kv_budget <= 1.0)) {
    throw std::invalid_argument("--kv-budget must be in (0, 1]");
  }
  if (o.rank_multiple < 1) throw std::invalid_argument("rank multiple must be >= 1");
  for (int64_t l : chosen_layers(source, o)) {
    const GqaSpec& g = gqa_spec(source, l);
    const MlaTarget t = layer_target(source, o, l);
    const int64_t dh = g.head_dim;
    if (!t.kv.energy && t.kv.rank < 1) {
      throw std::invalid_argument(
          fmt::format("KV budget {} leaves no latent in layer {} after the {}-dim RoPE key",
                      *o.kv_budget, l, t.dim_rope));
    }
    if (t.dim_rope <= 0 || t.dim_rope % 2 || t.dim_rope > dh) {
      throw std::invalid_argument(
          fmt::format("rope dim {} must be even and at most the head dim {}", t.dim_rope, dh));
    }
    if (t.dim_nope < 1 || t.dim_nope > dh) {
      throw std::invalid_argument(fmt::format("nope dim {} must be in 1..{}", t.dim_nope, dh));
    }
    if (t.dim_v != dh) {
      throw std::invalid_argument(fmt::format(
          "v dim {} must equal the head dim {}: both inits keep the values whole", t.dim_v, dh));
    }
    if (o.init == MlaInit::kActivation && dh % t.dim_rope != 0) {
      throw std::invalid_argument(fmt::format(
          "rope dim {} must divide the head dim {}: the activation init keeps original RoPE "
          "pairs at their frequencies, which needs head dim / rope dim to be whole",
          t.dim_rope, dh));
    }
    if (o.init == MlaInit::kXEcoMla && t.dim_nope + t.dim_rope > dh) {
      throw std::invalid_argument(fmt::format(
          "xecomla: nope dim {} + rope dim {} exceed the head dim {}", t.dim_nope, t.dim_rope, dh));
    }
    const int64_t q_max = std::min(g.n_head * dh, source.hidden_size);
    const int64_t kv_rows = (o.init == MlaInit::kXEcoMla ? g.n_head : g.n_head_kv) * 2 * dh;
    const int64_t kv_max = std::min(kv_rows, source.hidden_size);
    if (o.q.rank > q_max) {
      throw std::invalid_argument(
          fmt::format("q rank {} exceeds the rank of W_q ({} x {}): at most {}", o.q.rank,
                      g.n_head * dh, source.hidden_size, q_max));
    }
    if (t.kv.rank > kv_max) {
      throw std::invalid_argument(fmt::format(
          "kv rank {} (layer {}) exceeds the rank of the stacked keys and values ({} x {}): at "
          "most {}",
          t.kv.rank, l, kv_rows, source.hidden_size, kv_max));
    }
  }
}

Conversion convert_to_mla(LlamaForCausalLM source, const ConvertOptions& options,
                          const Calibration* calibration, const ProgressCallback& progress) {
  const ModelConfig& config = source->config();
  validate_conversion(config, options);
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> layers = chosen_layers(config, options);
  const std::set<int64_t> mla(layers.begin(), layers.end());
  const bool calibrate = options.init == MlaInit::kActivation && calibration;

  Conversion out;
  ModelConfig converted = config;
  std::map<std::string, at::Tensor> weights = state_dict(*source);
  std::optional<CalibrationStream> stream;
  if (calibrate) stream.emplace(source, *calibration);
  const int64_t last = calibrate ? config.n_layer : (layers.empty() ? 0 : layers.back() + 1);
  for (int64_t l = 0; l < last; ++l) {
    auto& layer = *source->model->layers[l]->as<DecoderLayerImpl>();
    if (mla.contains(l)) {
      const MlaTarget target = layer_target(config, options, l);
      const GqaLayerWeights w = layer_weights(source, l);
      MlaLayerInit init;
      if (options.init == MlaInit::kXEcoMla) {
        init = convert::xecomla_init(w, target);
      } else {
        const at::Tensor cov =
            stream ? stream->input_covariance(layer) : at::eye(config.hidden_size, at::kDouble);
        const RotaryEmbedding full(w.spec.head_dim, config.rope),
            rope(target.dim_rope, config.rope);
        init = convert::activation_init(w, cov, full.inv_freq().to(at::kDouble),
                                        rope.inv_freq().to(at::kDouble), target);
      }
      converted.attention[l] = init.spec;
      if (!converted.source_attention) converted.source_attention = w.spec;
      const std::string prefix = fmt::format("model.layers.{}.", l);
      std::erase_if(weights,
                    [&](const auto& kv) { return kv.first.starts_with(prefix + "self_attn."); });
      for (auto& [name, t] : init.weights) weights[prefix + "mla." + name] = t;
      out.layers.push_back({l, init.spec, init.q_energy, init.kv_energy, init.rope_energy});
    }
    if (stream) {
      if (mla.contains(l)) {
        DecoderLayer converted_layer = make_layer(converted, l, weights);
        if (options.fit_output) {
          at::Tensor& w_o = weights[fmt::format("model.layers.{}.mla.out_proj.weight", l)];
          w_o = stream->fit_output_projection(layer, *converted_layer, l);
          converted_layer->mla->out_proj->weight.copy_(w_o);
        }
        stream->advance(*converted_layer, l);
      } else {
        stream->advance(layer, l);
      }
    }
    // The fits leave the activation init's factors unbalanced (X-EcoMLA's is kept exactly).
    if (mla.contains(l) && options.init == MlaInit::kActivation) {
      const std::string prefix = fmt::format("model.layers.{}.mla.", l);
      std::map<std::string, at::Tensor> layer_weights;  // the same tensors, rescaled in place
      for (auto& [name, t] : weights) {
        if (name.starts_with(prefix)) layer_weights[name.substr(prefix.size())] = t;
      }
      convert::balance_factors(layer_weights, std::get<MlaSpec>(converted.attention[l]));
    }
    if (progress && !progress({"convert", l + 1, last, "layers", ""})) {
      throw std::runtime_error("convert: cancelled");
    }
  }
  converted.validate();
  out.model = LlamaForCausalLM(converted);
  load_weights(*out.model, MemoryWeightSource(std::move(weights), "converted model"));
  return out;
}

nlohmann::json conversion_report(const ModelConfig& before, const Conversion& conv) {
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerReport& r : conv.layers) {
    const auto& m = std::get<MlaSpec>(r.spec);
    layers.push_back({{"layer", r.layer},
                      {"q_lora_rank", m.rank_q},
                      {"kv_lora_rank", m.rank_kv},
                      {"qk_rope_head_dim", m.dim_rope},
                      {"qk_nope_head_dim", m.dim_nope},
                      {"v_head_dim", m.dim_v},
                      {"kv_values_per_token", m.cache_values_per_token()},
                      {"kv_values_per_token_before", before.layer_kv_values_per_token(r.layer)},
                      {"q_energy_kept", r.q_energy},
                      {"kv_energy_kept", r.kv_energy},
                      {"rope_energy_kept", r.rope_energy}});
  }
  const ModelConfig& after = conv.model->config();
  return {{"kv_values_per_token_before", before.kv_values_per_token()},
          {"kv_values_per_token", after.kv_values_per_token()},
          {"kv_bytes_per_token_16bit_before", 2 * before.kv_values_per_token()},
          {"kv_bytes_per_token_16bit", 2 * after.kv_values_per_token()},
          {"kv_ratio", static_cast<double>(after.kv_values_per_token()) /
                           static_cast<double>(before.kv_values_per_token())},
          {"parameters_before", before.parameter_count()},
          {"parameters", after.parameter_count()},
          {"layers", layers}};
}

}  // namespace ecomla
