#include "train/autocast.h"

#include <ATen/autocast_mode.h>
#include <ATen/cpu/Utils.h>

namespace ecomla::train {

bool autocast_bf16(const std::string& compute_dtype) {
  if (compute_dtype != "auto") return compute_dtype == "bf16";
  for (const auto& [name, value] : at::cpu::get_cpu_capabilities()) {
    if (name.find("bf16") != std::string::npos && value.isBool() && value.toBool()) return true;
  }
  return false;
}

AutocastScope::AutocastScope(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCPU, false);
}

}  // namespace ecomla::train
