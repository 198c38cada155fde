#include "ecomla/progress.h"

#include <unistd.h>

#include <fmt/format.h>
#include <cstdio>

namespace ecomla {

ProgressBar::ProgressBar(bool force)
    : tty_(isatty(STDERR_FILENO) != 0),
      force_(force),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

bool ProgressBar::operator()(const Progress& p) {
  const auto now = std::chrono::steady_clock::now();
  const bool last = p.total > 0 && p.done >= p.total;
  if (!tty_ && !force_) return true;
  if (!last && drawn_ && now - last_ < std::chrono::milliseconds(100)) return true;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(p.done) / elapsed : 0.0;
  std::string line = fmt::format("{} {}", p.what, p.done);
  if (p.total > 0) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * p.done / p.total);
    line = fmt::format("{} [{}{}] {}/{}", p.what, std::string(filled, '#'),
                       std::string(kWidth - filled, '.'), p.done, p.total);
  }
  line += fmt::format(" {} | {:.2f} {}/s", p.unit, rate, p.unit);
  if (p.total > 0 && rate > 0) {
    line += fmt::format(" | eta {:.0f}s", static_cast<double>(p.total - p.done) / rate);
  }
  if (!p.detail.empty()) line += " | " + p.detail;
  std::fprintf(stderr, tty_ ? "\r\033[K%s" : "%s\n", line.c_str());
  std::fflush(stderr);
  drawn_ = true;
  return true;
}

void ProgressBar::finish() {
  if (drawn_ && tty_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace ecomla
