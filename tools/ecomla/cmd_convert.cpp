// ecomla convert MODEL -o OUT [--config X.yaml] [--mla-layers LIST|all] [--q-rank R | --q-energy D]
//   [--kv-rank R | --kv-energy D | --kv-budget F] [--rope-dim D] [--nope-dim D] [--v-dim D]
//   [--init activation|xecomla] [--calib FILE] [--calib-tokens N] [--json] [--output FILE]
// Converts the attention of a Llama-family model into MLA (include/ecomla/convert.h), prints a
// per-layer report and saves a Hugging Face-style folder in the X-EcoMLA layout.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "cli_common.h"
#include "ecomla/convert.h"
#include "ecomla/hf_checkpoint.h"

namespace ecomla::cli {
namespace {

struct Args {
  std::string model, out, config, mla_layers, init, calib, output, save_dtype = "F32";
  int64_t q_rank = 0, kv_rank = 0, rope_dim = 0, nope_dim = 0, v_dim = 0;
  int64_t calib_tokens = 0, calib_ctx = 0;
  double q_energy = 0, kv_energy = 0, kv_budget = 0;
  bool latent_norm = false, json = false, no_output_fit = false;
  double key_weight = 0.3;
};

// The YAML file (if any), then every option given on the command line over it.
ConvertConfig merged_config(const Args& a, const CLI::App& cmd, int64_t n_layer) {
  ConvertConfig c;
  if (!a.config.empty()) {
    c = read_convert_config(a.config);
    if (!c.ignored_keys.empty()) {
      std::string keys;
      for (const auto& k : c.ignored_keys) keys += (keys.empty() ? "" : ", ") + k;
      fmt::print(stderr, "{}: ignoring keys convert does not use: {}\n", a.config, keys);
    }
  }
  ConvertOptions& o = c.options;
  auto given = [&](const char* name) { return cmd.count(name) > 0; };
  if (given("--q-rank") || given("--q-energy")) {
    o.q = {a.q_rank, given("--q-energy") ? std::optional(a.q_energy) : std::nullopt};
  }
  if (given("--kv-rank") || given("--kv-energy") || given("--kv-budget")) {
    o.kv = {a.kv_rank, given("--kv-energy") ? std::optional(a.kv_energy) : std::nullopt};
    o.kv_budget = given("--kv-budget") ? std::optional(a.kv_budget) : std::nullopt;
  }
  if (o.kv.rank == 0 && !o.kv.energy && !o.kv_budget) o.kv_budget = 0.5;
  if (given("--mla-layers")) o.mla_layers = parse_layer_list(a.mla_layers, n_layer);
  if (given("--init")) o.init = parse_mla_init(a.init);
  if (given("--rope-dim")) o.dim_rope = a.rope_dim;
  if (given("--nope-dim")) o.dim_nope = a.nope_dim;
  if (given("--v-dim")) o.dim_v = a.v_dim;
  if (given("--latent-norm")) o.latent_norm = a.latent_norm;
  if (given("--no-output-fit")) o.fit_output = false;
  if (given("--key-weight")) o.key_weight = a.key_weight;
  if (given("--calib")) c.calib = a.calib;
  if (given("--calib-tokens")) c.calib_tokens = a.calib_tokens;
  if (given("--calib-ctx")) c.calib_ctx = a.calib_ctx;
  return c;
}

void print_report(const nlohmann::json& j) {
  fmt::print(stderr, "{:>5} {:>6} {:>7} {:>5} {:>5} {:>9} {:>8} {:>8} {:>8}\n", "layer", "q rank",
             "kv rank", "rope", "nope", "KV/token", "q kept", "kv kept", "rope kept");
  for (const auto& l : j["layers"]) {
    fmt::print(stderr, "{:>5} {:>6} {:>7} {:>5} {:>5} {:>4}/{:<4} {:>7.1f}% {:>7.1f}% {:>7.1f}%\n",
               l["layer"].get<int64_t>(), l["q_lora_rank"].get<int64_t>(),
               l["kv_lora_rank"].get<int64_t>(), l["qk_rope_head_dim"].get<int64_t>(),
               l["qk_nope_head_dim"].get<int64_t>(), l["kv_values_per_token"].get<int64_t>(),
               l["kv_values_per_token_before"].get<int64_t>(),
               100 * l["q_energy_kept"].get<double>(), 100 * l["kv_energy_kept"].get<double>(),
               100 * l["rope_energy_kept"].get<double>());
  }
  fmt::print(stderr, "KV cache: {} -> {} values per token ({} -> {} bytes in 16 bit), {:.1f}%\n",
             j["kv_values_per_token_before"].get<int64_t>(),
             j["kv_values_per_token"].get<int64_t>(),
             j["kv_bytes_per_token_16bit_before"].get<int64_t>(),
             j["kv_bytes_per_token_16bit"].get<int64_t>(), 100 * j["kv_ratio"].get<double>());
}

}  // namespace

void add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert attention layers into MLA");
  static Args a;
  cmd->add_option("MODEL", a.model, "GGUF file or Hugging Face model folder")->required();
  cmd->add_option("-o,--out", a.out, "Output folder (Hugging Face layout, X-EcoMLA names)")
      ->required();
  cmd->add_option("--config", a.config, "YAML with X-EcoMLA keys (command-line options win)");
  cmd->add_option("--mla-layers", a.mla_layers, "Layers to convert: all, or e.g. 0,2,5-9");
  cmd->add_option("--init", a.init, "activation (default) or xecomla");
  cmd->add_option("--q-rank", a.q_rank, "q_lora_rank; 0 keeps a plain q projection (default)");
  cmd->add_option("--q-energy", a.q_energy, "q rank per layer from this energy share");
  cmd->add_option("--kv-rank", a.kv_rank, "kv_lora_rank");
  cmd->add_option("--kv-energy", a.kv_energy, "kv rank per layer from this energy share");
  cmd->add_option("--kv-budget", a.kv_budget,
                  "KV cache to keep, as a fraction of the original (default 0.5)");
  cmd->add_option("--rope-dim", a.rope_dim, "qk_rope_head_dim (default: half the head dim)");
  cmd->add_option("--nope-dim", a.nope_dim, "qk_nope_head_dim (default: chosen by the init)");
  cmd->add_option("--v-dim", a.v_dim, "v_head_dim (default: the head dim)");
  cmd->add_flag("--latent-norm", a.latent_norm, "RMSNorm on the q and kv latents");
  cmd->add_flag("--no-output-fit", a.no_output_fit,
                "Activation init: keep o_proj instead of refitting it on the calibration text");
  cmd->add_option("--key-weight", a.key_weight,
                  "Activation init: weight of key errors against value errors")
      ->capture_default_str();
  cmd->add_option("--calib", a.calib, "Calibration text (required by the activation init)");
  cmd->add_option("--calib-tokens", a.calib_tokens, "Calibration tokens (default 65536)");
  cmd->add_option("--calib-ctx", a.calib_ctx, "Tokens per calibration sequence (default 512)");
  cmd->add_option("--save-dtype", a.save_dtype, "F32, BF16 or F16")
      ->check(CLI::IsMember({"F32", "BF16", "F16"}))
      ->capture_default_str();
  cmd->add_flag("--json", a.json, "Print the report as JSON on stdout");
  cmd->add_option("--output", a.output, "Write the JSON report to this file");
  cmd->callback([cmd] {
    const ModelConfig before = load_config(a.model);
    const ConvertConfig c = merged_config(a, *cmd, before.n_layer);
    validate_conversion(before, c.options);  // before loading weights or reading calibration
    // The calibration text is tokenized (and checked) before the weights are loaded.
    const std::optional<Calibration> calibration = load_calibration(c, load_tokenizer(a.model));
    if (calibration) {
      fmt::print(stderr, "calibration: {} sequences of {} tokens from {}\n",
                 calibration->tokens.size(0), c.calib_ctx, c.calib);
    }
    LoadedModel loaded = load_for_compute(a.model, {"fp32", "cpu"});
    fmt::print(stderr, "converting with the {} init\n", mla_init_name(c.options.init));
    const auto t0 = std::chrono::steady_clock::now();
    ProgressBar bar;
    const Conversion conv = convert_to_mla(loaded.model, c.options,
                                           calibration ? &*calibration : nullptr, bar.callback());
    bar.finish();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json report = conversion_report(before, conv);
    report["source"] = a.model;
    report["init"] = mla_init_name(c.options.init);
    report["calibration"] = c.calib;
    report["calibration_tokens"] = calibration ? calibration->tokens.numel() : 0;
    report["seconds"] = seconds;
    print_report(report);
    save_hf_checkpoint(a.out, *conv.model, conv.model->config(), loaded.tokenizer,
                       {.dtype = a.save_dtype});
    emit_json(report, (std::filesystem::path(a.out) / "conversion.json").string());
    fmt::print(stderr, "converted in {:.1f} s; saved {}\n", seconds, a.out);
    if (a.json) emit_json(report);
    if (!a.output.empty()) emit_json(report, a.output);
  });
}

}  // namespace ecomla::cli
