// The training stages' config readers on a mapping already loaded (the recipe builds each
// stage's mapping from its own sections); `origin` names where it came from in errors.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "ecomla/distill.h"
#include "ecomla/dpo.h"

namespace ecomla::train {

DistillConfig distill_config_from(const YAML::Node& root, const std::string& origin);
DpoConfig dpo_config_from(const YAML::Node& root, const std::string& origin);

}  // namespace ecomla::train
