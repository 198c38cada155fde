// One distillation step's forward passes and loss, as the trainer runs it (and the training
// benchmark measures it): the teacher without gradients, the student under bf16 autocast where
// the CPU computes in bf16, then the stage's loss.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "ecomla/distill.h"
#include "train/autocast.h"

namespace ecomla::train {

// The parameters the stage trains (trainable_parameters): every one, or the MLA layers' only
// with freeze_non_mla and in the layer-wise stage.
std::vector<at::Tensor> trainable_parameters(const DistillConfig& config, LlamaForCausalLM& model);

struct StepLosses {
  at::Tensor loss;  // with the student's graph
  double kl = 0, ce = 0;
};

// The loss of config.stage on tokens [B, T]: KD (kl_weight * KL + ce_weight * CE of the
// logits) or layer-wise (the MLA layers on the teacher's hidden states).
StepLosses stage_loss(const DistillConfig& config, LlamaForCausalLM& student,
                      LlamaForCausalLM& teacher, const at::Tensor& tokens, bool bf16);

}  // namespace ecomla::train
