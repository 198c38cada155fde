// Config files (YAML): loading the mapping of keys to values and reading typed values, every
// failure a FormatError naming the file and the key.
#pragma once

#include <yaml-cpp/yaml.h>

#include <fmt/format.h>
#include <string>

#include "ecomla/error.h"
#include "util/data_files.h"

namespace ecomla::yaml_config {

inline YAML::Node load_mapping(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(data_files::read_text(path));
  } catch (const YAML::Exception& e) {
    throw FormatError(fmt::format("{}: {}", path, e.what()));
  }
  if (!root.IsMap()) throw FormatError(path + ": expected a mapping of keys to values");
  return root;
}

template <typename T>
T value(const YAML::Node& node, const std::string& key, const std::string& origin) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw FormatError(fmt::format("{}: '{}' has the wrong type", origin, key));
  }
}

}  // namespace ecomla::yaml_config
