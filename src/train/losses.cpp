#include "train/losses.h"

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>

namespace ecomla::train {

KdLoss kd_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
               const at::Tensor& tokens, double kl_weight, double ce_weight, double temperature) {
  const at::Tensor student = student_logits.to(at::kFloat);
  const at::Tensor log_p_student = (student / temperature).log_softmax(-1);
  const at::Tensor log_p_teacher = (teacher_logits.to(at::kFloat) / temperature).log_softmax(-1);
  // sum_v p_t (log p_t - log p_s), per token, then the mean over B * T tokens.
  const at::Tensor kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean() *
                        (temperature * temperature);
  const int64_t t = tokens.size(1);
  const at::Tensor ce =
      at::cross_entropy_loss(student.narrow(1, 0, t - 1).reshape({-1, student.size(-1)}),
                             tokens.narrow(1, 1, t - 1).reshape({-1}));
  return {kl_weight * kl + ce_weight * ce, kl.detach(), ce.detach()};
}

namespace {

// One decoder layer split at its residual additions: {attention output, layer output}.
std::pair<at::Tensor, at::Tensor> run_layer(DecoderLayerImpl& layer, const at::Tensor& x,
                                            const RopeTables& rope, int64_t index) {
  const at::Tensor normed = layer.input_layernorm(x);
  const at::Tensor attention = layer.self_attn
                                   ? layer.self_attn->forward(normed, rope, nullptr, index)
                                   : layer.mla->forward(normed);
  const at::Tensor h = x + attention;
  return {attention, h + layer.mlp(layer.post_attention_layernorm(h))};
}

}  // namespace

LayerTargets layer_targets(LlamaForCausalLM& teacher, const at::Tensor& tokens) {
  at::NoGradGuard no_grad;
  LlamaBackboneImpl& backbone = *teacher->model;
  at::Tensor h = backbone.embed_tokens(tokens);
  const RopeTables rope = backbone.rope_tables(
      at::arange(tokens.size(1), at::TensorOptions(at::kLong).device(tokens.device())),
      h.scalar_type());
  LayerTargets targets;
  for (size_t i = 0; i < backbone.layers->size(); ++i) {
    auto [attention, output] =
        run_layer(backbone.layers->at<DecoderLayerImpl>(i), h, rope, static_cast<int64_t>(i));
    targets.inputs.push_back(h);
    targets.attention.push_back(attention);
    targets.outputs.push_back(output);
    h = output;
  }
  return targets;
}

at::Tensor layerwise_loss(LlamaForCausalLM& student, const LayerTargets& targets) {
  LlamaBackboneImpl& backbone = *student->model;
  at::Tensor loss = at::zeros({}, at::TensorOptions(at::kFloat).device(student->device()));
  for (size_t i = 0; i < backbone.layers->size(); ++i) {
    DecoderLayerImpl& layer = backbone.layers->at<DecoderLayerImpl>(i);
    if (!layer.mla) continue;  // GQA layers are the teacher's own
    auto [attention, output] = run_layer(layer, targets.inputs[i], {}, static_cast<int64_t>(i));
    loss = loss + at::mse_loss(attention.to(at::kFloat), targets.attention[i].to(at::kFloat)) +
           at::mse_loss(output.to(at::kFloat), targets.outputs[i].to(at::kFloat));
  }
  return loss;
}

}  // namespace ecomla::train
