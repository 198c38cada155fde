// The training losses: distillation (KD, layer-wise) and preference optimisation (DPO). Shape
// legend: B batch, T tokens, V vocabulary, D hidden size.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "ecomla/dpo.h"
#include "ecomla/model.h"

namespace ecomla::train {

struct KdLoss {
  at::Tensor loss;  // kl_weight * kl + ce_weight * ce, with the student's graph
  at::Tensor kl;    // KL(p_teacher || p_student) per token, tau^2-scaled
  at::Tensor ce;    // the student's next-token cross-entropy per predicted token
};

// student_logits, teacher_logits [B, T, V]; tokens [B, T]. KL at every position, averaged over
// the B * T tokens, at temperature tau (softmax(z / tau)), times tau^2 so that gradients keep
// their scale across temperatures (Hinton et al. 2015); CE over positions 0..T-2 predicting
// tokens 1..T-1. Both in fp32 whatever the logits' dtype.
KdLoss kd_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
               const at::Tensor& tokens, double kl_weight, double ce_weight, double temperature);

// The same losses from the last hidden states, with the LM heads applied chunk by chunk
// (the fused linear loss of Liger-Kernel): [rows, V] logits exist only for `chunk_rows` rows at
// a time, and the gradients for the student's hidden states and head weight are computed
// with the loss, so neither pass holds vocabulary-sized tensors for the whole batch (at 2048
// tokens and V = 49152 each such fp32 tensor is 400 MB, and the unfused loss makes several).
// student_hidden [B, T, D] (with its graph), student_head [V, D]; teacher_hidden [B, T, D'],
// teacher_head [V, D'] without gradients. The matmuls run in `compute` (bf16 or fp32), the
// softmax arithmetic in fp32. Equal to kd_loss(logits(student_hidden), logits(teacher_hidden)).
KdLoss fused_kd_loss(const at::Tensor& student_hidden, const at::Tensor& student_head,
                     const at::Tensor& teacher_hidden, const at::Tensor& teacher_head,
                     const at::Tensor& tokens, double kl_weight, double ce_weight,
                     double temperature, at::ScalarType compute, int64_t chunk_rows = 256);

// The teacher's side of layer-wise distillation: for each layer, its input hidden state, its
// attention output and its output [B, T, D], without gradients.
struct LayerTargets {
  std::vector<at::Tensor> inputs, attention, outputs;
};
LayerTargets layer_targets(LlamaForCausalLM& teacher, const at::Tensor& tokens);

// Layer-wise loss of the student's MLA layers, each fed the teacher's input of that layer:
// sum over them of MSE(attention output) + MSE(layer output) against the teacher's
// (Zebra-Llama's intermediate-layer distillation). Returns it with the student's graph.
at::Tensor layerwise_loss(LlamaForCausalLM& student, const LayerTargets& targets);

// --- DPO (Rafailov et al. 2023)
// -------------------------------------------------------------------

// Sequences [N, T] of prompt and response, and where each response lies in its row.
struct ResponseBatch {
  at::Tensor tokens;                // [N, T], rows padded after their end
  std::vector<int64_t> begin, end;  // response tokens of row i: [begin[i], end[i]), begin >= 1
};

// log pi(response | prompt) of every row [N]: the log-probabilities of the response tokens
// summed (or averaged over them with `average`, as IPO uses), the prompt's masked out; fp32.
// The LM head runs on the response positions only.
at::Tensor response_logps(LlamaForCausalLM& model, const ResponseBatch& batch, bool average);

struct DpoLoss {
  at::Tensor loss;                              // mean over the pairs, with the graph
  at::Tensor chosen_rewards, rejected_rewards;  // [B] beta * (log pi - log pi_ref), no graph
};

// From the policy's and the reference's log-probabilities [B] of the chosen and rejected
// responses, with h = (pi_c - ref_c) - (pi_r - ref_r) (the definitions of TRL's DPOTrainer):
// sigmoid: -(1 - eps) log sigma(beta h) - eps log sigma(-beta h) (eps: label smoothing, the
// conservative DPO of Mitchell 2023); hinge: relu(1 - beta h) (SLiC); ipo: (h - 1/(2 beta))^2
// (Azar et al. 2023, on length-averaged log-probabilities).
DpoLoss dpo_loss(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                 const at::Tensor& reference_chosen, const at::Tensor& reference_rejected,
                 double beta, DpoLossType type, double label_smoothing);

}  // namespace ecomla::train
