// ecomla perplexity MODEL --text FILE [--ctx 512] [--chunks N] [--dtype fp32|bf16] [--json]
// llama.cpp's llama-perplexity definition (see include/ecomla/perplexity.h).
#include <fmt/format.h>

#include "cli_common.h"
#include "ecomla/perplexity.h"

namespace ecomla::cli {

void add_perplexity(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("perplexity", "Chunked perplexity as llama.cpp's llama-perplexity");
  static std::string model, text_file, output;
  static ComputeOptions compute;
  static int64_t ctx = 512, chunks = -1, batch = 4;
  static bool json = false;
  cmd->add_option("MODEL", model, "GGUF file or Hugging Face model folder")->required();
  cmd->add_option("--text", text_file, "Text file to score")->required();
  cmd->add_option("--ctx", ctx, "Tokens per chunk")->capture_default_str();
  cmd->add_option("--chunks", chunks, "Chunks to score (default: all)");
  cmd->add_option("--batch", batch, "Chunks per forward pass")->capture_default_str();
  add_compute_options(*cmd, compute, "fp32");
  cmd->add_flag("--json", json, "Print the result as JSON on stdout");
  cmd->add_option("--output", output, "Write the JSON result to this file");
  cmd->callback([] {
    LoadedModel loaded = load_for_compute(model, compute);
    const std::string text = read_text_file(text_file);
    // As llama-perplexity: tokenized once with the model's special tokens (a BOS at the start
    // when the model adds one); EOS-adding models are refused there too.
    if (loaded.tokenizer.spec().add_eos) {
      throw std::invalid_argument("perplexity: models that add an EOS token are not supported");
    }
    const std::vector<int32_t> tokens = loaded.tokenizer.encode(text, /*add_special=*/true);
    fmt::print(stderr, "{}: {} tokens\n", text_file, tokens.size());
    ProgressBar bar;
    PerplexityOptions options;
    options.ctx = ctx;
    options.max_chunks = chunks;
    options.batch_chunks = std::max<int64_t>(1, batch);
    if (loaded.tokenizer.spec().add_bos) options.bos_id = loaded.tokenizer.bos_id();
    options.progress = bar.callback();
    const PerplexityResult r = perplexity(loaded.model, tokens, options);
    bar.finish();
    const double tps = static_cast<double>(r.tokens_evaluated) / r.seconds;
    fmt::print(stderr,
               "ppl {:.4f} +/- {:.4f} over {} chunks of {} tokens ({} scored), "
               "{:.0f} tokens/s\n",
               r.ppl, r.ppl * r.nll_stderr, r.chunks, ctx, r.tokens_scored, tps);
    const nlohmann::json j = {{"model", model},
                              {"text", text_file},
                              {"ctx", ctx},
                              {"chunks", r.chunks},
                              {"dtype", compute.dtype},
                              {"ppl", r.ppl},
                              {"ppl_stderr", r.ppl * r.nll_stderr},
                              {"nll", r.nll},
                              {"tokens_scored", r.tokens_scored},
                              {"tokens_evaluated", r.tokens_evaluated},
                              {"seconds", r.seconds},
                              {"tokens_per_s", tps},
                              {"add_bos", options.bos_id.has_value()},
                              {"running_ppl", r.running_ppl}};
    if (json) emit_json(j);
    if (!output.empty()) emit_json(j, output);
  });
}

}  // namespace ecomla::cli
