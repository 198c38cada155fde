#include "ecomla/generator.h"

#include <ATen/ops/tensor.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "ecomla/kv_cache.h"

namespace ecomla {
namespace {

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t complete_utf8_prefix(const std::string& s) {
  size_t i = s.size();
  for (size_t back = 1; back <= std::min<size_t>(4, s.size()); ++back) {
    const auto c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    if (need > back) i = s.size() - back;
    break;
  }
  return i;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

Generator::Generator(LlamaForCausalLM model, const Tokenizer& tokenizer)
    : model_(std::move(model)), tokenizer_(tokenizer) {
  if (tokenizer.eos_id()) stop_ids_.push_back(*tokenizer.eos_id());
  if (auto im_end = tokenizer.token_id("<|im_end|>")) stop_ids_.push_back(*im_end);
}

bool Generator::is_stop_token(int32_t id) const {
  return std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end();
}

GenerateResult Generator::generate(const std::vector<int32_t>& prompt,
                                   const GenerateOptions& options,
                                   const std::function<bool(const std::string&)>& on_text) {
  if (prompt.empty()) throw std::invalid_argument("generate: empty prompt");
  if (options.max_tokens <= 0) throw std::invalid_argument("generate: max_tokens must be positive");
  c10::InferenceMode guard;
  model_->eval();
  const at::ScalarType dtype = model_->model->embed_tokens->weight.scalar_type();
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  const int64_t capacity =
      std::min(model_->config().max_position_embeddings, n_prompt + options.max_tokens);
  if (n_prompt >= capacity) {
    throw std::invalid_argument("generate: prompt of " + std::to_string(n_prompt) +
                                " tokens fills the context of " + std::to_string(capacity));
  }
  const at::Device device = model_->device();
  KvCache cache(model_->config(), 1, capacity, dtype, device);
  Sampler sampler(options.sampler);
  GenerateResult result;
  result.stop_reason = "max_tokens";

  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  at::Tensor input = at::tensor(ids, at::kLong).unsqueeze(0).to(device);  // [1, T]
  auto t0 = Clock::now();
  std::string pending;  // decoded bytes not yet handed to on_text
  for (int64_t step = 0; step < options.max_tokens; ++step) {
    const at::Tensor logits = model_->forward(input, &cache);  // [1, T, V]
    if (step == 0) {
      result.prefill_seconds = seconds_since(t0);
      t0 = Clock::now();
    }
    // Checkpoints may pad the embedding past the tokenizer; those rows are never tokens.
    const at::Tensor last = logits[0][logits.size(1) - 1].narrow(0, 0, tokenizer_.vocab_size());
    const int32_t next = sampler.sample(last);
    if (options.stop_at_eos && is_stop_token(next)) {
      result.stop_reason = "eos";
      break;
    }
    result.tokens.push_back(next);
    pending += tokenizer_.piece(next);
    const size_t ready = complete_utf8_prefix(pending);
    if (ready > 0) {
      result.text += pending.substr(0, ready);
      const bool go_on = !on_text || on_text(pending.substr(0, ready));
      pending.erase(0, ready);
      if (!go_on) {
        result.stop_reason = "cancelled";
        break;
      }
    }
    if (cache.length() >= capacity) {
      result.stop_reason = "context";
      break;
    }
    input = at::tensor(std::vector<int64_t>{next}, at::kLong).unsqueeze(0).to(device);
  }
  if (!pending.empty()) {
    result.text += pending;
    if (on_text) on_text(pending);
  }
  result.decode_seconds = seconds_since(t0);
  return result;
}

}  // namespace ecomla
