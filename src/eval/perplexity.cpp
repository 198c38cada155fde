#include "ecomla/perplexity.h"

#include <ATen/ops/from_blob.h>
#include <c10/core/InferenceMode.h>

#include <fmt/format.h>
#include <chrono>
#include <cmath>
#include <stdexcept>

namespace ecomla {

PerplexityResult perplexity(LlamaForCausalLM& model, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& options) {
  const int64_t ctx = options.ctx;
  if (ctx < 2) throw std::invalid_argument("perplexity: ctx must be at least 2");
  if (options.batch_chunks < 1)
    throw std::invalid_argument("perplexity: batch_chunks must be >= 1");
  if (options.max_chunks == 0) throw std::invalid_argument("perplexity: max_chunks must not be 0");
  const auto n_tokens = static_cast<int64_t>(tokens.size());
  if (n_tokens < 2 * ctx) {
    throw std::invalid_argument(fmt::format(
        "perplexity: need at least {} tokens (2 * ctx) but the text has {}", 2 * ctx, n_tokens));
  }
  int64_t n_chunks = n_tokens / ctx;
  if (options.max_chunks >= 0) n_chunks = std::min(n_chunks, options.max_chunks);
  const int64_t first = ctx / 2;  // logits at [first, ctx-1) predict tokens [first+1, ctx)
  c10::InferenceMode guard;
  model->eval();
  const at::Device device = model->device();

  PerplexityResult result;
  const auto start = std::chrono::steady_clock::now();
  double nll_sum = 0, nll_sq_sum = 0;
  for (int64_t c0 = 0; c0 < n_chunks; c0 += options.batch_chunks) {
    const int64_t b = std::min(options.batch_chunks, n_chunks - c0);
    std::vector<int64_t> batch(static_cast<size_t>(b * ctx));
    for (int64_t i = 0; i < b * ctx; ++i) batch[i] = tokens[c0 * ctx + i];
    if (options.bos_id) {
      for (int64_t i = 0; i < b; ++i) batch[i * ctx] = *options.bos_id;
    }
    const at::Tensor input = at::from_blob(batch.data(), {b, ctx}, at::kLong).to(device);
    // Only the scored half needs the LM head (a fifth of this model's FLOPs).
    const at::Tensor hidden = model->model->forward(input).narrow(1, first, ctx - 1 - first);
    const at::Tensor logits = model->logits(hidden);
    const at::Tensor logp = logits.to(at::kFloat).log_softmax(-1);  // [b, ctx-1-first, V]
    const at::Tensor targets = input.narrow(1, first + 1, ctx - 1 - first).unsqueeze(-1);
    const at::Tensor nll = -logp.gather(-1, targets).squeeze(-1).to(at::kDouble);  // [b, n]
    for (int64_t i = 0; i < b; ++i) {
      nll_sum += nll[i].sum().item<double>();
      nll_sq_sum += nll[i].pow(2).sum().item<double>();
      result.tokens_scored += ctx - 1 - first;
      result.running_ppl.push_back(std::exp(nll_sum / static_cast<double>(result.tokens_scored)));
    }
    result.chunks += b;
    result.tokens_evaluated += b * ctx;
    if (options.progress &&
        !options.progress({"perplexity", result.chunks, n_chunks, "chunks",
                           fmt::format("ppl {:.4f}", result.running_ppl.back())})) {
      break;
    }
  }
  const auto n = static_cast<double>(result.tokens_scored);
  result.nll = nll_sum / n;
  result.ppl = std::exp(result.nll);
  const double variance = std::max(0.0, nll_sq_sum / n - result.nll * result.nll);
  result.nll_stderr = std::sqrt(variance / std::max(1.0, n - 1));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace ecomla
