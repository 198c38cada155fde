// ecomla generate MODEL --prompt TEXT [--chat] [--max-tokens N] [--temperature T] [--top-k K]
//                 [--top-p P] [--seed S] [--dtype fp32|bf16] [--weights auto|int4|dense]:
//                 KV-cached decoding, streamed.
#include <fmt/format.h>

#include <cstdio>

#include "cli_common.h"
#include "ecomla/generator.h"

namespace ecomla::cli {

void add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text with a KV cache, streamed to stdout");
  static std::string model, prompt;
  static ComputeOptions compute;
  static bool chat = false;
  static std::string weights = "auto";
  static GenerateOptions options;
  cmd->add_option("MODEL", model, "GGUF file or Hugging Face model folder")->required();
  cmd->add_option("--prompt", prompt, "Prompt text")->required();
  cmd->add_flag("--chat", chat, "Wrap the prompt as a user message in the chat template");
  cmd->add_option("--max-tokens", options.max_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", options.sampler.temperature, "0 = greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", options.sampler.top_k, "0 = off")->capture_default_str();
  cmd->add_option("--top-p", options.sampler.top_p, "1 = off")->capture_default_str();
  cmd->add_option("--seed", options.sampler.seed, "Sampling seed")->capture_default_str();
  add_compute_options(*cmd, compute, "bf16");
  add_decode_weights_option(*cmd, weights);
  cmd->callback([] {
    LoadedModel loaded = load_for_compute(model, compute);
    use_decode_weights(loaded, compute, weights);
    const ModelConfig& config = loaded.model->config();
    const int64_t kv = config.kv_values_per_token();
    const int64_t bytes = kv * at::elementSize(loaded.model->parameters().front().scalar_type());
    fmt::print(stderr, "KV cache: {} values = {} bytes per token", kv, bytes);
    if (const auto before = config.source_kv_values_per_token(); before && *before != kv) {
      fmt::print(stderr, ", {:.1f}% of the model it was converted from",
                 100.0 * static_cast<double>(kv) / static_cast<double>(*before));
    }
    fmt::print(stderr, "\n");
    const std::string text =
        chat ? loaded.tokenizer.apply_chat_template({{"user", prompt}}, true) : prompt;
    const std::vector<int32_t> ids = loaded.tokenizer.encode(text, /*add_special=*/true,
                                                             /*parse_special=*/chat);
    Generator generator(loaded.model, loaded.tokenizer);
    const GenerateResult r = generator.generate(ids, options, [](const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::fputc('\n', stdout);
    const auto n = static_cast<double>(r.tokens.size());
    fmt::print(stderr,
               "prompt {} tokens in {:.2f} s ({:.0f} tok/s), generated {} tokens in "
               "{:.2f} s ({:.1f} tok/s), stop: {}\n",
               ids.size(), r.prefill_seconds, static_cast<double>(ids.size()) / r.prefill_seconds,
               r.tokens.size(), r.decode_seconds, n > 1 ? (n - 1) / r.decode_seconds : 0.0,
               r.stop_reason);
  });
}

}  // namespace ecomla::cli
