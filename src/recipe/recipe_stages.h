// How the recipe ties its stages together: each stage's full config mapping is its settings
// (RecipeInit::settings) plus the keys that link it to the stage before (the model it starts
// from, its output folder, the teacher, the KV budget).
#pragma once

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string>

#include "ecomla/recipe.h"

namespace ecomla::recipe {

struct StageLinks {
  std::filesystem::path model;       // what the stage starts from
  std::filesystem::path teacher;     // the original (distillation stages)
  std::filesystem::path output_dir;  // training stages
  double kv_budget = 0;              // convert
  std::string init;                  // convert
};

// The stage's config mapping; `stage` is "convert" or one of kTrainingStages.
YAML::Node stage_config(const RecipeInit& init, const std::string& stage, const StageLinks& links);

}  // namespace ecomla::recipe
