// ecomla distill CONFIG.yaml [--set key=value ...] [--resume] [--stop-after N]
// Knowledge distillation of a converted student from its teacher (include/ecomla/distill.h).
#include <fmt/format.h>

#include "cli_common.h"
#include "ecomla/distill.h"

namespace ecomla::cli {

void add_distill(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "distill", "Distil a converted (MLA) student from its teacher: end-to-end KD or layer-wise");
  static std::string config_path;
  static std::vector<std::string> overrides;
  static bool resume = false;
  static int64_t stop_after = -1;
  cmd->add_option("CONFIG", config_path, "YAML config with X-EcoMLA's training keys")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", overrides, "key=value on top of the config (repeatable)");
  cmd->add_flag("--resume", resume, "Continue from output_dir/checkpoint");
  cmd->add_option("--stop-after", stop_after,
                  "Stop cleanly after N optimiser steps, leaving a checkpoint");
  cmd->callback([] {
    const DistillConfig config = read_distill_config(config_path, overrides);
    if (!config.ignored_keys.empty()) {
      std::string keys;
      for (const std::string& k : config.ignored_keys) keys += (keys.empty() ? "" : ", ") + k;
      fmt::print(stderr, "ignored (no meaning here): {}\n", keys);
    }
    ProgressBar bar;
    TrainingRun run;
    run.resume = resume;
    run.stop_after = stop_after;
    run.progress = bar.callback();
    run.log = [&bar](const std::string& line) {
      bar.finish();
      fmt::print(stderr, "{}\n", line);
    };
    const TrainingResult result = distill(config, run);
    bar.finish();
    fmt::print(stderr, "{} at step {}; checkpoint in {}, metrics in {}\n",
               result.finished ? "finished" : "stopped", result.steps,
               (config.output_dir / "checkpoint").string(),
               (config.output_dir / "metrics.jsonl").string());
  });
}

}  // namespace ecomla::cli
