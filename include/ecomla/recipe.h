// The whole recipe in one resumable run: for every KV budget and init, convert -> layer-wise
// distillation -> end-to-end KD -> DPO -> evaluation and decode speed, and the same evaluation
// of the original; then results.json, report.md, SVG figures and report.html in one folder.
//
// Every stage writes into its own folder with a stamp (stage.json) holding the fingerprint of
// what produced it: its settings and the fingerprint of the stage it starts from. A stage whose
// stamp matches and says done is skipped; one that matches but did not finish resumes (training
// from its last checkpoint); one that does not match starts again, and so does everything after
// it, because their fingerprints contain its own.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ecomla/progress.h"

namespace ecomla {

// The stages of one MLA model, in order. Convert, eval and speed always run; the training
// stages are chosen per init ("stages" in the config).
inline const std::vector<std::string> kTrainingStages = {"layerwise", "kd", "dpo"};

struct RecipeEval {
  std::vector<std::string> tasks;
  int64_t limit = -1;                     // first N documents of each task (-1: all)
  std::map<std::string, int64_t> limits;  // per task, over `limit` (mmlu: per subject)
  std::filesystem::path data_dir = "../shared/data";
  std::string dtype = "bf16";
  std::filesystem::path perplexity_text;  // held-out text; empty: no perplexity
  int64_t perplexity_ctx = 512, perplexity_chunks = 20;
};

struct RecipeSpeed {
  std::vector<int64_t> batch_sizes = {1, 8};
  std::vector<int64_t> contexts = {512, 2048, 4096};
  int64_t steps = 16;  // decode steps timed per point
  std::string dtype = "bf16";
};

// One init and the stage settings it uses: per stage ("convert", "layerwise", "kd", "dpo"), a
// YAML mapping (as text) of that stage's own config keys (read_convert_config's,
// read_distill_config's, read_dpo_config's), merged from the config's shared sections and the
// init's overrides. The recipe adds the keys that tie the stages together (models, output
// folders, the KV budget).
struct RecipeInit {
  std::string name;                 // "xecomla" | "activation"
  std::vector<std::string> stages;  // training stages, in the order of kTrainingStages
  std::map<std::string, std::string> settings;
};

struct RecipeConfig {
  std::filesystem::path model;       // the original (teacher, reference of the report)
  std::filesystem::path output_dir;  // everything the recipe writes
  std::vector<double> kv_budgets;    // fractions of the original KV cache
  std::vector<RecipeInit> inits;
  RecipeEval eval;
  RecipeSpeed speed;
  bool smoke = false;  // every stage for a handful of steps, a tiny evaluation
};

// Reads a recipe YAML (examples/recipe-smollm2.yaml documents every key); `overrides` are
// "key=value" on top, nested keys as "kd.learning_rate=1e-4". Each stage's settings are checked
// by that stage's own reader before anything runs, so a typo fails at once, naming file and key.
RecipeConfig read_recipe_config(const std::filesystem::path& yaml,
                                const std::vector<std::string>& overrides = {});

struct RecipeRun {
  // One line per event: each stage as it starts (with its ETA), skipped or finished.
  std::function<void(const std::string&)> log;
  // A progress callback for the stage that starts (its own bar).
  std::function<ProgressCallback(const std::string& stage)> progress_for;
};

struct RecipeResult {
  std::filesystem::path results_json, report_md, report_html;
  int64_t stages_run = 0, stages_skipped = 0;
};

// Runs (or continues) the recipe and writes the report. Throws on the first failing stage,
// keeping every finished stage and the failed stage's last checkpoint.
RecipeResult run_recipe(const RecipeConfig& config, const RecipeRun& run);

}  // namespace ecomla
