// Reading training configs (YAML with Hugging Face TrainingArguments keys): the keys every
// stage shares, "--set key=value" overrides, and unknown keys reported rather than ignored.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>
#include <vector>

#include "ecomla/training.h"

namespace ecomla::train {

// The config file's mapping with each "key=value" of `overrides` applied on top (the value is
// read as YAML: "1e-4", "[0,1]", "true").
YAML::Node load_config(const std::string& path, const std::vector<std::string>& overrides);

// A stage's own keys: reads `key` into the stage's config and returns true, or returns false
// for a key it does not know.
using StageKeyReader = std::function<bool(const std::string& key, const YAML::Node& value)>;

// Reads every key of `root`: the stage's own first, then the shared TrainingArguments keys;
// trainer keys with no meaning here are listed in args.ignored_keys; any other key is a
// FormatError naming them all. Then checks the shared values (output_dir and dataset_mixer
// given, sizes positive, known scheduler and dtype).
void read_training_config(const YAML::Node& root, const std::string& origin,
                          TrainingArguments& args, const StageKeyReader& stage_key);

}  // namespace ecomla::train
