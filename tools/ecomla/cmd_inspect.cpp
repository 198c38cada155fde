// ecomla inspect MODEL [--json]: architecture, parameters, attention per layer, KV bytes.
#include <fmt/format.h>

#include "cli_common.h"

namespace ecomla::cli {
namespace {

nlohmann::json describe(const std::string& path, const ModelConfig& c) {
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const int64_t kv = c.layer_kv_values_per_token(i);
    if (const auto* a = std::get_if<GqaSpec>(&c.attention[i])) {
      layers.push_back({{"kind", a->n_head == a->n_head_kv ? "mha" : "gqa"},
                        {"n_head", a->n_head},
                        {"n_head_kv", a->n_head_kv},
                        {"head_dim", a->head_dim},
                        {"kv_values_per_token", kv}});
    } else {
      const auto& m = std::get<MlaSpec>(c.attention[i]);
      layers.push_back({{"kind", "mla"},
                        {"n_head", m.n_head},
                        {"q_lora_rank", m.rank_q},
                        {"kv_lora_rank", m.rank_kv},
                        {"qk_rope_head_dim", m.dim_rope},
                        {"qk_nope_head_dim", m.dim_nope},
                        {"v_head_dim", m.dim_v},
                        {"latent_norm", m.latent_norm},
                        {"kv_values_per_token", kv}});
    }
  }
  const int64_t kv = c.kv_values_per_token();
  const int64_t before = c.source_kv_values_per_token().value_or(kv);
  return {{"path", path},
          {"architecture", c.architecture},
          {"parameters", c.parameter_count()},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"n_layer", c.n_layer},
          {"max_position_embeddings", c.max_position_embeddings},
          {"rms_norm_eps", c.rms_norm_eps},
          {"rope_theta", c.rope.theta},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"kv_values_per_token", kv},
          {"kv_bytes_per_token_16bit", kv * 2},
          {"kv_bytes_per_token_fp32", kv * 4},
          {"kv_values_per_token_source", before},
          {"kv_ratio_to_source", static_cast<double>(kv) / static_cast<double>(before)},
          {"layers", layers}};
}

void print_human(const nlohmann::json& j) {
  fmt::print("model          {}\n", j["path"].get<std::string>());
  fmt::print("architecture   {}, {:.1f}M parameters\n", j["architecture"].get<std::string>(),
             j["parameters"].get<double>() / 1e6);
  fmt::print("shape          {} layers, hidden {}, MLP {}, vocab {}\n", j["n_layer"].get<int>(),
             j["hidden_size"].get<int>(), j["intermediate_size"].get<int>(),
             j["vocab_size"].get<int>());
  fmt::print("rope           theta {}, rms eps {}\n", j["rope_theta"].get<double>(),
             j["rms_norm_eps"].get<double>());
  fmt::print("layers\n");
  const auto& layers = j["layers"];
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    if (l["kind"] == "mla") {
      fmt::print(
          "  {:3d}  mla  heads {} q_rank {} kv_rank {} rope {} nope {} v {}{}  kv values/token "
          "{}\n",
          i, l["n_head"].get<int>(), l["q_lora_rank"].get<int>(), l["kv_lora_rank"].get<int>(),
          l["qk_rope_head_dim"].get<int>(), l["qk_nope_head_dim"].get<int>(),
          l["v_head_dim"].get<int>(), l["latent_norm"].get<bool>() ? " latent-norm" : "",
          l["kv_values_per_token"].get<int>());
      continue;
    }
    fmt::print("  {:3d}  {}  heads {} kv_heads {} head_dim {}  kv values/token {}\n", i,
               l["kind"].get<std::string>(), l["n_head"].get<int>(), l["n_head_kv"].get<int>(),
               l["head_dim"].get<int>(), l["kv_values_per_token"].get<int>());
  }
  const auto kv = j["kv_values_per_token"].get<int64_t>();
  fmt::print(
      "KV cache       {} values per token = {} bytes at 16 bit, {} bytes at fp32 "
      "({:.1f} MiB per 4096-token sequence at 16 bit)\n",
      kv, kv * 2, kv * 4, static_cast<double>(kv * 2 * 4096) / (1 << 20));
  const auto before = j["kv_values_per_token_source"].get<int64_t>();
  if (before != kv) {
    fmt::print("               {:.1f}% of the model it was converted from ({} values per token)\n",
               100.0 * j["kv_ratio_to_source"].get<double>(), before);
  }
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Architecture, attention kind per layer, KV size");
  static std::string model;
  static bool json = false;
  cmd->add_option("MODEL", model, "GGUF file or Hugging Face model folder")->required();
  cmd->add_flag("--json", json, "Print JSON instead of text");
  cmd->callback([] {
    const nlohmann::json j = describe(model, load_config(model));
    if (json) {
      emit_json(j);
    } else {
      print_human(j);
    }
  });
}

}  // namespace ecomla::cli
