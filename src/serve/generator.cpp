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
  return decode(prompt, 1, options, on_text).front();
}

std::vector<GenerateResult> Generator::generate_samples(const std::vector<int32_t>& prompt,
                                                        int64_t n, const GenerateOptions& options) {
  if (n < 1) throw std::invalid_argument("generate: the number of samples must be positive");
  return decode(prompt, n, options, {});
}

// One row's decoded text: bytes are handed on once they end a complete UTF-8 sequence.
struct Generator::Row {
  GenerateResult result;
  std::string pending;  // decoded bytes not yet in result.text
  bool done = false;
};

std::vector<GenerateResult> Generator::decode(
    const std::vector<int32_t>& prompt, int64_t n, const GenerateOptions& options,
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
  KvCache cache(model_->config(), n, capacity, dtype, device);
  Sampler sampler(options.sampler);
  std::vector<Row> rows(static_cast<size_t>(n));
  for (Row& row : rows) row.result.stop_reason = "max_tokens";

  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  at::Tensor input = at::tensor(ids, at::kLong).repeat({n, 1}).to(device);  // [N, T]
  auto t0 = Clock::now();
  double prefill_seconds = 0;
  int64_t running = n;
  for (int64_t step = 0; step < options.max_tokens && running > 0; ++step) {
    const at::Tensor logits = model_->forward(input, &cache);  // [N, T, V]
    if (step == 0) {
      prefill_seconds = seconds_since(t0);
      t0 = Clock::now();
    }
    std::vector<int64_t> next_ids(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      Row& row = rows[static_cast<size_t>(r)];
      if (row.done) {  // fed its last token again; its output is no longer read
        next_ids[static_cast<size_t>(r)] = input[r][input.size(1) - 1].item<int64_t>();
        continue;
      }
      // Checkpoints may pad the embedding past the tokenizer; those rows are never tokens.
      const at::Tensor last = logits[r][logits.size(1) - 1].narrow(0, 0, tokenizer_.vocab_size());
      const int32_t next = sampler.sample(last);
      next_ids[static_cast<size_t>(r)] = next;
      if (options.stop_at_eos && is_stop_token(next)) {
        row.result.stop_reason = "eos";
        row.done = true;
        continue;
      }
      row.result.tokens.push_back(next);
      row.pending += tokenizer_.piece(next);
      const size_t ready = complete_utf8_prefix(row.pending);
      if (ready > 0) {
        row.result.text += row.pending.substr(0, ready);
        const bool go_on = !on_text || on_text(row.pending.substr(0, ready));
        row.pending.erase(0, ready);
        if (!go_on) {
          row.result.stop_reason = "cancelled";
          row.done = true;
        }
      }
    }
    running = std::count_if(rows.begin(), rows.end(), [](const Row& row) { return !row.done; });
    if (running > 0 && cache.length() >= capacity) {
      for (Row& row : rows) {
        if (!row.done) row.result.stop_reason = "context";
      }
      break;
    }
    input = at::tensor(next_ids, at::kLong).unsqueeze(1).to(device);  // [N, 1]
  }
  const double decode_seconds = seconds_since(t0);
  std::vector<GenerateResult> results;
  for (Row& row : rows) {
    if (!row.pending.empty()) {
      row.result.text += row.pending;
      if (on_text) on_text(row.pending);
    }
    row.result.prefill_seconds = prefill_seconds;
    row.result.decode_seconds = decode_seconds;
    results.push_back(std::move(row.result));
  }
  return results;
}

}  // namespace ecomla
