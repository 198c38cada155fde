// The conversion keys of a config already loaded, for configs that hold more than them (the
// distillation config carries X-EcoMLA's MLA keys beside its training keys).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "ecomla/convert.h"

namespace ecomla {

// As read_convert_config; keys it does not know go to ignored_keys.
ConvertConfig convert_config_from(const YAML::Node& root, const std::string& origin);

}  // namespace ecomla
