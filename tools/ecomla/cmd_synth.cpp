// ecomla synth MODEL --prompts FILE [--prompts FILE ...] -o OUT.jsonl [--samples N]
//              [--max-prompts N] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]
//              [--seed S] [--resume]: responses sampled from the teacher, as training text.
#include <fmt/format.h>

#include "cli_common.h"
#include "ecomla/synth.h"
#include "ecomla/train_data.h"

namespace ecomla::cli {

void add_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "synth", "Sample responses to prompts from a model (the teacher), as distillation data");
  static std::string model, output;
  static std::vector<std::string> prompt_files;
  static int64_t max_prompts = -1;
  static ComputeOptions compute;
  static std::string weights = "auto";
  static SynthOptions options;
  cmd->add_option("MODEL", model, "GGUF file or Hugging Face model folder")->required();
  cmd->add_option("--prompts", prompt_files,
                  "Prompts: .txt (one a line) or jsonl/json records with 'messages', "
                  "'instruction', 'question' or 'prompt' (repeatable)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", output, "jsonl of chat records to write")->required();
  cmd->add_option("--samples", options.samples_per_prompt,
                  "Responses per prompt, decoded as one batch")
      ->capture_default_str();
  cmd->add_option("--max-prompts", max_prompts, "Use the first N prompts (default: all)");
  cmd->add_option("--max-tokens", options.generate.max_tokens, "Tokens per response at most")
      ->capture_default_str();
  cmd->add_option("--temperature", options.generate.sampler.temperature, "0 = greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", options.generate.sampler.top_k, "0 = off")->capture_default_str();
  cmd->add_option("--top-p", options.generate.sampler.top_p, "1 = off")->capture_default_str();
  cmd->add_option("--seed", options.generate.sampler.seed, "Sampling seed")->capture_default_str();
  cmd->add_flag("--resume", options.resume, "Continue an output cut short");
  add_compute_options(*cmd, compute, "bf16");
  add_decode_weights_option(*cmd, weights);
  cmd->callback([] {
    std::vector<std::vector<ChatMessage>> prompts;
    for (const std::string& file : prompt_files) {
      for (auto& p : read_prompts(file)) prompts.push_back(std::move(p));
    }
    if (max_prompts >= 0 && static_cast<size_t>(max_prompts) < prompts.size()) {
      prompts.resize(static_cast<size_t>(max_prompts));
    }
    LoadedModel loaded = load_for_compute(model, compute);
    use_decode_weights(loaded, compute, weights);
    ProgressBar bar;
    const SynthResult r =
        synthesize(loaded.model, loaded.tokenizer, prompts, output, options, bar.callback());
    bar.finish();
    fmt::print(stderr,
               "{} prompts sampled ({} already in {}), {} responses, {} tokens in {:.1f} s "
               "({:.0f} tok/s)\n",
               r.prompts, r.skipped, output, r.samples, r.tokens, r.seconds,
               r.seconds > 0 ? double(r.tokens) / r.seconds : 0.0);
  });
}

}  // namespace ecomla::cli
