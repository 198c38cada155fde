#include "train/losses.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
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

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FusedKdOptions {
  double kl_weight, ce_weight, temperature;
  at::ScalarType compute;
  int64_t chunk_rows;
  bool grad_hidden, grad_head;  // which gradients to compute with the loss
};

constexpr int64_t kSoftmaxRows = 16;  // 16 x 49152 fp32 = 3 MB a temporary

struct SoftmaxBlock {
  double kl = 0, ce = 0;  // sums over the block's rows
  at::Tensor dz;          // dLoss/dz_s [m, V], fp32
};

// KL and CE sums and dLoss/dz_s of a block of rows: logits z_s, z_t [m, V], next tokens y [m]
// (-1: none). With q = softmax(z_s / tau), p = softmax(z_t / tau), s = softmax(z_s):
//   KL = sum_v p (log p - log q), d(tau^2 KL)/dz_s = tau (q - p); CE = -log s_y, dCE/dz_s =
//   s - onehot(y); the loss averages KL over the N rows and CE over the N_ce rows that have a
// next token.
SoftmaxBlock kd_softmax_block(const at::Tensor& z_s, const at::Tensor& z_t, const at::Tensor& y,
                              const FusedKdOptions& o, double n_kl, double n_ce,
                              bool with_gradients) {
  const double tau = o.temperature;
  auto log_softmax = [](const at::Tensor& z, double temperature) {
    return temperature == 1.0 ? at::log_softmax(z, -1, at::kFloat)
                              : at::log_softmax(z.to(at::kFloat) / temperature, -1);
  };
  at::Tensor log_q = log_softmax(z_s, tau), log_p = log_softmax(z_t, tau);
  const at::Tensor log_s = tau == 1.0 ? log_q : log_softmax(z_s, 1.0);
  const at::Tensor has_target = y.ge(0);
  const at::Tensor y_index = y.clamp_min(0).unsqueeze(1);
  SoftmaxBlock out;
  out.ce = -(log_s.gather(1, y_index).squeeze(1) * has_target).sum().item<double>();
  const at::Tensor p = log_p.exp();
  out.kl = log_p.sub_(log_q).mul_(p).sum().item<double>();
  if (!with_gradients) return out;
  // kl_weight tau / N (q - p) + ce_weight / N_ce [has next token] (s - onehot(y)).
  at::Tensor ds;
  if (o.ce_weight != 0) {
    ds = log_s.exp();
    ds.scatter_add_(1, y_index, at::full({y.size(0), 1}, -1.0f, ds.options()));
    ds.mul_(has_target.unsqueeze(1).to(at::kFloat).mul_(o.ce_weight / n_ce));
  }
  out.dz = log_q.exp_().sub_(p).mul_(o.kl_weight * tau / n_kl);
  if (ds.defined()) out.dz.add_(ds);
  return out;
}

// Rows are the B * T positions: the logits of chunk_rows of them at a time, dLoss/dz for every
// row kept in the matmul dtype, then the head's gradient dz^T h and the hidden states' dz W,
// stored for backward (the loss is the graph's end, so only a scalar scale comes back).
struct FusedKdFunction : public torch::autograd::Function<FusedKdFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& student_hidden,
                               const at::Tensor& student_head, const at::Tensor& teacher_hidden,
                               const at::Tensor& teacher_head, const at::Tensor& tokens,
                               const FusedKdOptions& o) {
    const int64_t b = tokens.size(0), t = tokens.size(1), n = b * t;
    const at::Tensor h_s = student_hidden.reshape({n, -1}).to(o.compute);  // [N, D]
    const at::Tensor h_t = teacher_hidden.reshape({n, -1}).to(o.compute);  // [N, D']
    const at::Tensor w_s = student_head.to(o.compute), w_t = teacher_head.to(o.compute);
    // Next-token targets by row; -1 at each sequence's last position.
    const at::Tensor targets =
        at::cat({tokens.narrow(1, 1, t - 1), at::full({b, 1}, -1, tokens.options())}, 1)
            .reshape({n});
    const double n_kl = double(n), n_ce = double(b * (t - 1)), tau = o.temperature;
    // Inside forward grad mode is off: whether gradients are wanted was decided by the caller.
    const bool with_gradients = o.grad_hidden || o.grad_head;
    // dL/dz_s of every row, in the matmul dtype: the two gradient matmuls then run once over all
    // rows (one [V, D] output instead of one per chunk).
    at::Tensor dz_all;  // [N, V]
    if (with_gradients) dz_all = at::empty({n, w_s.size(0)}, h_s.options());
    double kl = 0, ce = 0;
    for (int64_t r = 0; r < n; r += o.chunk_rows) {
      const int64_t rows = std::min(o.chunk_rows, n - r);
      const at::Tensor z_s = at::matmul(h_s.narrow(0, r, rows), w_s.t());  // [c, V]
      const at::Tensor z_t = at::matmul(h_t.narrow(0, r, rows), w_t.t());
      // The softmax arithmetic runs on blocks of rows whose fp32 temporaries stay in cache:
      // over a whole chunk each of its ~15 elementwise passes would go to memory.
      for (int64_t k = 0; k < rows; k += kSoftmaxRows) {
        const int64_t m = std::min(kSoftmaxRows, rows - k);
        const SoftmaxBlock block =
            kd_softmax_block(z_s.narrow(0, k, m), z_t.narrow(0, k, m), targets.narrow(0, r + k, m),
                             o, n_kl, n_ce, with_gradients);
        kl += block.kl;
        ce += block.ce;
        if (with_gradients) dz_all.narrow(0, r + k, m).copy_(block.dz);
      }
    }
    kl = kl / n_kl * tau * tau;
    ce = ce / n_ce;
    if (with_gradients) {
      at::Tensor grad_hidden, grad_head;
      if (o.grad_hidden) grad_hidden = at::matmul(dz_all, w_s).view(student_hidden.sizes());
      if (o.grad_head) grad_head = at::matmul(dz_all.t(), h_s).to(at::kFloat);  // [V, D]
      ctx->save_for_backward({grad_hidden, grad_head});
    }
    const at::Tensor loss = at::scalar_tensor(o.kl_weight * kl + o.ce_weight * ce, at::kFloat);
    const at::Tensor kl_value = at::scalar_tensor(kl, at::kDouble),
                     ce_value = at::scalar_tensor(ce, at::kDouble);
    ctx->mark_non_differentiable({kl_value, ce_value});
    return {loss, kl_value, ce_value};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& g = grad_outputs[0];  // d(final)/d(loss), a scalar
    auto scaled = [&](const at::Tensor& grad) { return grad.defined() ? grad * g : at::Tensor(); };
    return {scaled(saved[0]), scaled(saved[1]), {}, {}, {}, {}};
  }
};

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

KdLoss fused_kd_loss(const at::Tensor& student_hidden, const at::Tensor& student_head,
                     const at::Tensor& teacher_hidden, const at::Tensor& teacher_head,
                     const at::Tensor& tokens, double kl_weight, double ce_weight,
                     double temperature, at::ScalarType compute, int64_t chunk_rows) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(1) >= 2, "fused_kd_loss: tokens [B, T>=2]");
  TORCH_CHECK(chunk_rows > 0, "fused_kd_loss: chunk_rows must be positive");
  const bool grad = at::GradMode::is_enabled();
  const variable_list out = FusedKdFunction::apply(
      student_hidden, student_head, teacher_hidden, teacher_head, tokens,
      FusedKdOptions{kl_weight, ce_weight, temperature, compute, chunk_rows,
                     grad && student_hidden.requires_grad(), grad && student_head.requires_grad()});
  return {out[0], out[1], out[2]};
}

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

at::Tensor response_logps(LlamaForCausalLM& model, const ResponseBatch& batch, bool average) {
  const int64_t n = batch.tokens.size(0), t = batch.tokens.size(1);
  TORCH_CHECK(
      static_cast<int64_t>(batch.begin.size()) == n && static_cast<int64_t>(batch.end.size()) == n,
      "response_logps: one response span per row");
  // Token j of row i is predicted at position j - 1: gather those hidden states only.
  std::vector<int64_t> positions, rows;
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(batch.begin[i] >= 1 && batch.begin[i] < batch.end[i] && batch.end[i] <= t,
                "response_logps: a response needs a token before it and one token at least");
    for (int64_t j = batch.begin[i]; j < batch.end[i]; ++j) {
      positions.push_back(i * t + j - 1);
      rows.push_back(i);
    }
  }
  const at::Tensor hidden = model->model->forward(batch.tokens);  // [N, T, D]
  const at::Tensor index = at::tensor(positions, at::kLong);
  const at::Tensor h = hidden.reshape({n * t, -1}).index_select(0, index);
  const at::Tensor logits = at::matmul(h, model->head_weight().t()).to(at::kFloat);
  const at::Tensor target_ids = batch.tokens.reshape({-1}).index_select(0, index + 1).unsqueeze(1);
  const at::Tensor token_logps = at::log_softmax(logits, -1).gather(1, target_ids).squeeze(1);
  const at::Tensor row = at::tensor(rows, at::kLong);
  at::Tensor logps = at::zeros({n}, token_logps.options()).index_add(0, row, token_logps);
  if (average) {
    std::vector<float> lengths;
    for (int64_t i = 0; i < n; ++i) lengths.push_back(float(batch.end[i] - batch.begin[i]));
    logps = logps / at::tensor(lengths, at::kFloat);
  }
  return logps;
}

DpoLoss dpo_loss(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                 const at::Tensor& reference_chosen, const at::Tensor& reference_rejected,
                 double beta, DpoLossType type, double label_smoothing) {
  const at::Tensor chosen_ratio = policy_chosen - reference_chosen;
  const at::Tensor rejected_ratio = policy_rejected - reference_rejected;
  const at::Tensor h = chosen_ratio - rejected_ratio;
  at::Tensor losses;
  switch (type) {
    case DpoLossType::kSigmoid:
      losses = -(1 - label_smoothing) * at::log_sigmoid(beta * h) -
               label_smoothing * at::log_sigmoid(-beta * h);
      break;
    case DpoLossType::kHinge: losses = at::relu(1 - beta * h); break;
    case DpoLossType::kIpo: losses = at::pow(h - 1 / (2 * beta), 2); break;
  }
  return {losses.mean(), beta * chosen_ratio.detach(), beta * rejected_ratio.detach()};
}

}  // namespace ecomla::train
