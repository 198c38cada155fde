// ecomla recipe CONFIG.yaml [--set key=value ...]
// The whole recipe (include/ecomla/recipe.h): every KV budget and init through convert,
// layer-wise distillation, KD, DPO, evaluation and decode speed, resumable stage by stage,
// then results.json, report.md, figures and report.html in output_dir.
#include <fmt/format.h>

#include <memory>

#include "cli_common.h"
#include "ecomla/recipe.h"

namespace ecomla::cli {

void add_recipe(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "recipe", "Run convert -> distill -> DPO -> eval over KV budgets and inits, and report");
  static std::string config_path;
  static std::vector<std::string> overrides;
  cmd->add_option("CONFIG", config_path, "Recipe YAML (see examples/recipe-smollm2.yaml)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", overrides,
                  "key=value on top of the config, nested as kd.max_steps=10 or "
                  "per_init.activation.kd.learning_rate=1e-4; smoke=true for a quick run");
  cmd->callback([] {
    const RecipeConfig config = read_recipe_config(config_path, overrides);
    std::unique_ptr<ProgressBar> bar;
    RecipeRun run;
    run.log = [&bar](const std::string& line) {
      if (bar) bar->finish();
      fmt::print(stderr, "{}\n", line);
    };
    run.progress_for = [&bar](const std::string& stage) -> ProgressCallback {
      if (bar) bar->finish();
      bar = std::make_unique<ProgressBar>();
      return [&bar, stage](const Progress& p) {
        Progress named = p;
        named.what = stage + (p.what.empty() ? "" : " · " + p.what);
        return (*bar)(named);
      };
    };
    const RecipeResult result = run_recipe(config, run);
    if (bar) bar->finish();
    fmt::print(stderr, "{} stages run, {} kept from before; {}\n", result.stages_run,
               result.stages_skipped, result.report_html.string());
  });
}

}  // namespace ecomla::cli
