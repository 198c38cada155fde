// Progress of long operations. Library code reports through a callback (returning false
// cancels, as in llama.h); the CLI draws a bar on stderr.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace ecomla {

struct Progress {
  std::string what;    // e.g. "perplexity"
  int64_t done = 0;    // units finished
  int64_t total = 0;   // units in all (0 = unknown)
  std::string unit;    // e.g. "chunks"
  std::string detail;  // free text, e.g. "ppl 23.1"
};

using ProgressCallback = std::function<bool(const Progress&)>;

// A progress bar on stderr with rate and ETA, redrawn at most every 100 ms; a no-op unless
// stderr is a terminal or `force` is set (then it prints one line per update).
class ProgressBar {
public:
  explicit ProgressBar(bool force = false);
  bool operator()(const Progress& p);
  ProgressCallback callback() {
    return [this](const Progress& p) { return (*this)(p); };
  }
  void finish();

private:
  bool tty_, force_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace ecomla
