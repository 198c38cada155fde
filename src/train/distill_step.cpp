#include "train/distill_step.h"

#include "train/losses.h"
#include "train/trainer.h"

namespace ecomla::train {

std::vector<at::Tensor> trainable_parameters(const DistillConfig& c, LlamaForCausalLM& model) {
  return trainable_parameters(model, c.freeze_non_mla || c.stage == DistillStage::kLayerwise);
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
