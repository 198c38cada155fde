// The recipe's report: results.json from what every stage left, then report.md, the SVG
// figures and report.html from results.json alone.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "ecomla/recipe.h"

namespace ecomla::recipe {

// What the stages of one model (the original, or one KV budget and init) produced.
struct ModelRecord {
  std::string name;  // "original", "kv12.5-activation", ...
  double kv_budget = 1;
  std::string init;  // empty for the original
  int64_t kv_values_per_token = 0;
  nlohmann::json stages = nlohmann::json::object();  // stage -> {seconds, tokens, steps, ...}
  std::vector<std::pair<std::string, std::filesystem::path>> training;  // stage, output_dir
  nlohmann::json eval;   // the eval stage's outcome: tasks, average, perplexity
  nlohmann::json speed;  // [{batch, context, tokens_per_s, cache_bytes}]
};

// "45s", "3m07s", "1h12m".
std::string duration_text(double seconds);

// The score a task reports, as the papers do: acc_norm where lm-eval has it, else acc.
nlohmann::json task_scores(const nlohmann::json& lm_eval_results,
                           const std::vector<std::string>& tasks);

// results.json's content; the first record is the original.
nlohmann::json results_json(const RecipeConfig& config, const std::vector<ModelRecord>& models);

// report.md, figures/*.svg and report.html under `dir`, from `results`; returns report.md and
// report.html.
std::pair<std::filesystem::path, std::filesystem::path> write_report(
    const nlohmann::json& results, const std::filesystem::path& dir);

}  // namespace ecomla::recipe
