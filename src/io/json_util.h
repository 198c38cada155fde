// JSON helpers for the format readers: every failure becomes a FormatError naming the file
// and key.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "ecomla/error.h"
#include "io/atomic_file.h"

namespace ecomla::io {

using json = nlohmann::json;

inline json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw FormatError(path.string() + ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw FormatError(path.string() + ": not valid JSON: " + e.what());
  }
}

inline void write_json(const std::filesystem::path& path, const json& j) {
  write_atomically(path, [&](std::ostream& out) { out << j.dump(2) << "\n"; });
}

template <typename T>
T get(const json& j, const std::string& key, const std::string& origin) {
  if (!j.is_object() || !j.contains(key)) {
    throw FormatError(origin + ": missing key '" + key + "'");
  }
  const json& value = j.at(key);
  // nlohmann converts floats to integers silently (and out-of-range ones undefinedly).
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (!value.is_number_integer()) {
      throw FormatError(origin + ": key '" + key + "' must be an integer");
    }
  }
  try {
    return value.get<T>();
  } catch (const json::exception&) {
    throw FormatError(origin + ": key '" + key + "' has the wrong type");
  }
}

template <typename T>
T get_or(const json& j, const std::string& key, T fallback, const std::string& origin) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return fallback;
  return get<T>(j, key, origin);
}

}  // namespace ecomla::io
