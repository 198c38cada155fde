#include "ecomla/decode_speed.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <stdexcept>

#include "ecomla/kv_cache.h"

namespace ecomla {

DecodeSpeed measure_decode_speed(LlamaForCausalLM& model, int64_t batch, int64_t context,
                                 int64_t steps) {
  if (batch < 1 || context < 0 || steps < 1) {
    throw std::invalid_argument("measure_decode_speed: batch and steps must be positive");
  }
  c10::InferenceMode guard;
  const ModelConfig& config = model->config();
  const at::ScalarType dtype = model->head_weight().scalar_type();
  KvCache cache(config, batch, context + steps + 1, dtype, model->device());
  cache.fill_with_noise(context);
  const DecodeSpeed result{batch, context, steps, 0, cache.bytes_used()};
  at::Tensor next = at::randint(0, config.vocab_size, {batch, 1}, at::kLong).to(model->device());
  auto step = [&] { next = model->forward(next, &cache).select(1, 0).argmax(-1, true); };
  step();  // warm-up, untimed
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  (void)next.cpu();  // waits for the device
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  DecodeSpeed out = result;
  out.tokens_per_s = static_cast<double>(batch * steps) / seconds;
  return out;
}

}  // namespace ecomla
