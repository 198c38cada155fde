// ecomla distill CONFIG.yaml [--set key=value ...] [--resume] [--stop-after N]
// ecomla dpo CONFIG.yaml [--set key=value ...] [--resume] [--stop-after N]
// The training stages (include/ecomla/distill.h, include/ecomla/dpo.h): one command shape,
// one progress bar, one summary.
#include <fmt/format.h>

#include "cli_common.h"
#include "ecomla/distill.h"
#include "ecomla/dpo.h"

namespace ecomla::cli {

namespace {

// Adds `name` with the options every training stage takes; `train(config_path, overrides,
// run)` reads the config and runs the stage.
template <typename Config>
void add_training_command(CLI::App& app, const std::string& name, const std::string& description,
                          Config (*read)(const std::filesystem::path&,
                                         const std::vector<std::string>&),
                          TrainingResult (*train)(const Config&, const TrainingRun&)) {
  struct Options {
    std::string config_path;
    std::vector<std::string> overrides;
    bool resume = false;
    int64_t stop_after = -1;
  };
  auto options = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(name, description);
  cmd->add_option("CONFIG", options->config_path, "YAML config with X-EcoMLA's training keys")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", options->overrides, "key=value on top of the config (repeatable)");
  cmd->add_flag("--resume", options->resume, "Continue from output_dir/checkpoint");
  cmd->add_option("--stop-after", options->stop_after,
                  "Stop cleanly after N optimiser steps, leaving a checkpoint");
  cmd->callback([options, read, train] {
    const Config config = read(options->config_path, options->overrides);
    if (!config.ignored_keys.empty()) {
      std::string keys;
      for (const std::string& k : config.ignored_keys) keys += (keys.empty() ? "" : ", ") + k;
      fmt::print(stderr, "ignored (no meaning here): {}\n", keys);
    }
    ProgressBar bar;
    TrainingRun run;
    run.resume = options->resume;
    run.stop_after = options->stop_after;
    run.progress = bar.callback();
    run.log = [&bar](const std::string& line) {
      bar.finish();
      fmt::print(stderr, "{}\n", line);
    };
    const TrainingResult result = train(config, run);
    bar.finish();
    fmt::print(stderr, "{} at step {}; checkpoint in {}, metrics in {}\n",
               result.finished ? "finished" : "stopped", result.steps,
               (config.output_dir / "checkpoint").string(),
               (config.output_dir / "metrics.jsonl").string());
  });
}

}  // namespace

void add_distill(CLI::App& app) {
  add_training_command<DistillConfig>(
      app, "distill",
      "Distil a converted (MLA) student from its teacher: end-to-end KD or layer-wise",
      read_distill_config, distill);
}

void add_dpo(CLI::App& app) {
  add_training_command<DpoConfig>(
      app, "dpo", "Direct preference optimisation of a model (original, hybrid or MLA)",
      read_dpo_config, dpo);
}

}  // namespace ecomla::cli
