#include "train/distill_step.h"

#include <ATen/autocast_mode.h>
#include <ATen/cpu/Utils.h>

#include "train/losses.h"

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

std::vector<at::Tensor> trainable_parameters(const DistillConfig& c, LlamaForCausalLM& model) {
  const bool mla_only = c.freeze_non_mla || c.stage == DistillStage::kLayerwise;
  std::vector<at::Tensor> params;
  for (auto& p : model->named_parameters()) {
    const bool train = !mla_only || p.key().find(".mla.") != std::string::npos;
    p.value().set_requires_grad(train);
    if (train) params.push_back(p.value());
  }
  return params;
}

StepLosses stage_loss(const DistillConfig& c, LlamaForCausalLM& student, LlamaForCausalLM& teacher,
                      const at::Tensor& tokens, bool bf16) {
  if (c.stage == DistillStage::kLayerwise) {
    const LayerTargets targets = layer_targets(teacher, tokens);
    AutocastScope autocast(bf16);
    return {layerwise_loss(student, targets)};
  }
  at::Tensor teacher_hidden;  // [B, T, D]
  {
    at::NoGradGuard no_grad;
    teacher_hidden = teacher->model->forward(tokens);
  }
  at::Tensor student_hidden;
  {
    AutocastScope autocast(bf16);
    student_hidden = student->model->forward(tokens);
  }
  // The LM heads run inside the loss, a chunk of positions at a time.
  const KdLoss kd = fused_kd_loss(student_hidden, student->head_weight(), teacher_hidden,
                                  teacher->head_weight(), tokens, c.kl_weight, c.ce_weight,
                                  c.temperature, bf16 ? at::kBFloat16 : at::kFloat);
  return {kd.loss, kd.kl.item<double>(), kd.ce.item<double>()};
}

}  // namespace ecomla::train
