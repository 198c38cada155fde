// Writing files so that readers never see half of one: the content goes to PATH.tmp, which is
// renamed over PATH only after every byte was written; on failure PATH is left as it was.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <system_error>

namespace ecomla::io {

inline void write_atomically(const std::filesystem::path& path,
                             const std::function<void(std::ostream&)>& write) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (out) write(out);
    out.flush();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw std::runtime_error("cannot write " + tmp.string());
    }
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace ecomla::io
