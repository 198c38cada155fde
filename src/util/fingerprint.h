// 64-bit FNV-1a fingerprints: which inputs a cached result belongs to (the DPO reference
// log-probabilities, the stages of a recipe). Not a cryptographic hash; a change of any input
// changes it with overwhelming probability, which is all a cache check needs.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ecomla {

class Fingerprint {
public:
  Fingerprint& add(uint64_t v) {
    for (int i = 0; i < 8; ++i) hash_ = (hash_ ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ULL;
    return *this;
  }
  Fingerprint& add(std::string_view text) {
    add(text.size());
    for (const char ch : text) hash_ = (hash_ ^ static_cast<uint8_t>(ch)) * 1099511628211ULL;
    return *this;
  }
  // The path, and the size and modification time of the file or of every file of the folder
  // (not its subfolders): a model rewritten in place changes it.
  Fingerprint& add_file_stamps(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    add(path.string());
    std::vector<fs::path> files = {path};
    if (fs::is_directory(path)) {
      files.clear();
      for (const auto& entry : fs::directory_iterator(path)) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
    }
    for (const fs::path& file : files) {
      if (!fs::is_regular_file(file)) continue;
      add(file.filename().string());
      add(fs::file_size(file));
      add(static_cast<uint64_t>(fs::last_write_time(file).time_since_epoch().count()));
    }
    return *this;
  }
  std::string hex() const { return fmt::format("{:016x}", hash_); }

private:
  uint64_t hash_ = 1469598103934665603ULL;
};

}  // namespace ecomla
