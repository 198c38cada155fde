// Upcycling a trained GQA/MHA model into a hybrid or full MLA model (the "convert" step).
//
// Two initialisations of the MLA projections:
//  - kXEcoMla: the X-EcoMLA reference (arXiv 2503.11132; docs/x-ecomla-reference.md, section
//    2): SVD of the weights, the RoPE key from the last rope rows of the head-mean key, new
//    RoPE frequencies. Reproduced exactly, as the baseline.
//  - kActivation: ecomla's own (docs/mla-init.md): the RoPE key keeps original frequency pairs
//    and is shared across KV heads by a per-frequency complex PCA; the latent is the reduced-
//    rank regression of the keys and values that attention actually uses, weighted by how
//    much each error moves the attention output, on the activations of calibration text;
//    layers are converted in order, each calibrated on the outputs of the converted layers
//    before it.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "ecomla/config.h"
#include "ecomla/model.h"
#include "ecomla/progress.h"
#include "ecomla/tokenizer.h"

namespace ecomla {

enum class MlaInit { kXEcoMla, kActivation };
MlaInit parse_mla_init(const std::string& name);  // "xecomla" | "activation"
std::string mla_init_name(MlaInit init);

// A rank given directly, or chosen per layer as the number of singular values whose
// cumulative energy share (sigma^2) stays <= `energy` (X-EcoMLA's rule). Ranks are rounded up
// to a multiple of `ConvertOptions::rank_multiple`.
struct RankChoice {
  int64_t rank = 0;
  std::optional<double> energy;
};

struct ConvertOptions {
  MlaInit init = MlaInit::kActivation;
  std::vector<int64_t> mla_layers;  // empty: every layer
  RankChoice q;                     // rank 0 and no energy: a plain q_proj (no q latent)
  RankChoice kv;
  // Fraction of the original KV cache to keep (e.g. 0.125); sets kv.rank per layer to
  // budget * original values - rope dim. Exclusive with kv.rank / kv.energy.
  std::optional<double> kv_budget;
  int64_t dim_rope = 0;  // 0: half the head dim
  int64_t dim_nope = 0;  // 0: xecomla head dim - rope dim; activation min(head dim, kv rank)
  int64_t dim_v = 0;     // 0: the head dim
  bool latent_norm = false;
  // Energy-chosen ranks only for the middle layers (X-EcoMLA's default).
  bool fixed_rank_first_last = true;
  int64_t rank_multiple = 8;
  // Activation init: weight of key errors against value errors, relative to the balance
  // derived in docs/mla-init.md. 0.3 was measured best (perplexity on the second half of
  // wikitext-2 validation: 78 against 100 for 1.0 at 25% KV, 29.7 against 29.9 at 50%).
  double key_weight = 0.3;
  // Activation init with calibration: refit out_proj by least squares to the original
  // attention output of each converted layer.
  bool fit_output = true;
};

// Calibration text for the activation init: token sequences [N, T].
struct Calibration {
  at::Tensor tokens;
};
// Cuts `tokens` into sequences of `ctx` tokens, at most `max_tokens` in all; throws
// std::invalid_argument when fewer than one sequence is available.
Calibration make_calibration(const std::vector<int32_t>& tokens, int64_t ctx, int64_t max_tokens);

struct LayerReport {
  int64_t layer = 0;
  AttentionSpec spec;
  // Share of the (weighted) energy the latent keeps: query, keys+values, RoPE key.
  double q_energy = 1.0, kv_energy = 1.0, rope_energy = 1.0;
};

struct Conversion {
  LlamaForCausalLM model{nullptr};
  std::vector<LayerReport> layers;
};

// Checks `options` against `source` (layer indices, dims, ranks), throwing
// std::invalid_argument naming the bad option before any work is done.
void validate_conversion(const ModelConfig& source, const ConvertOptions& options);

// Converts the attention of the chosen layers of `source` (an fp32 model on the CPU; not
// modified). `calibration` is needed by the activation init: without it the activations are
// taken as white, which measured worse than the X-EcoMLA init (the CLI refuses it).
Conversion convert_to_mla(LlamaForCausalLM source, const ConvertOptions& options,
                          const Calibration* calibration = nullptr,
                          const ProgressCallback& progress = {});

// The KV-size report of a conversion: values and 16-bit bytes per token before and after, their
// ratio, parameters, and per layer the ranks, dims and the energy each latent keeps.
nlohmann::json conversion_report(const ModelConfig& before, const Conversion& conversion);

}  // namespace ecomla

namespace ecomla {

// A conversion config file (YAML): X-EcoMLA's training-config keys (mla_layers, q_lora_rank,
// kv_lora_rank, qk_rope_head_dim, qk_nope_head_dim, v_head_dim, init_with_svd,
// use_lora_layer_norm, q_energy_ratio, kv_energy_ratio,
// use_fixed_rank_for_first_and_last_block) and ecomla's own (init, kv_budget, calib,
// calib_tokens, calib_ctx).
struct ConvertConfig {
  ConvertOptions options;
  std::string calib;             // calibration text file; empty: none
  int64_t calib_tokens = 65536;  // measured: 60 against 78 perplexity at 25% KV for 16384
  int64_t calib_ctx = 512;
  std::vector<std::string> ignored_keys;  // e.g. the training keys of an X-EcoMLA config
};
// Throws FormatError naming the file and key when a value has the wrong type.
ConvertConfig read_convert_config(const std::string& yaml_path);

// The calibration a config's init needs, from its `calib` text: none for the X-EcoMLA init.
// The activation init without `calib` throws std::invalid_argument (without calibration it
// measured worse than X-EcoMLA's init).
std::optional<Calibration> load_calibration(const ConvertConfig& config,
                                            const Tokenizer& tokenizer);

// "all", or indices and ranges: "0,2,5-9".
std::vector<int64_t> parse_layer_list(const std::string& text, int64_t n_layer);

}  // namespace ecomla
