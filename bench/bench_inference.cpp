// Inference speed of the default model (or $ECOMLA_BENCH_MODEL): the machine's matmul rate
// for reference, prefill tokens/s at ctx 512, decode tokens/s at batch 1 and 8 after contexts
// of 0, 512 and 2048 tokens, and evaluation scoring tokens/s; weights 0 = fp32, 1 = bf16,
// 2 = bf16 with the 4-bit decode copy (ProjectionImpl::pack_int4).
//
//   build/ecomla_bench --benchmark_out=bench.json --benchmark_out_format=json
//
// Every benchmark reports `tokens_per_s` (or `gflops`) as a counter in the JSON.
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdlib>
#include <map>

#include "ecomla/eval_tasks.h"
#include "ecomla/kv_cache.h"
#include "ecomla/loglikelihood.h"
#include "ecomla/model_loader.h"

namespace {

using namespace ecomla;

// Weight formats by benchmark argument: 0 fp32, 1 bf16, 2 bf16 with the 4-bit decode copy.
enum Weights : int64_t { kFp32 = 0, kBf16 = 1, kInt4 = 2 };
at::ScalarType dtype_of(int64_t arg) { return arg == kFp32 ? at::kFloat : at::kBFloat16; }

const char* model_path() {
  const char* env = std::getenv("ECOMLA_BENCH_MODEL");
  return env ? env : ECOMLA_DEFAULT_MODEL;
}

// One loaded model per weight format, kept for the whole run.
LlamaForCausalLM& model_in(int64_t weights) {
  static std::map<int64_t, LlamaForCausalLM> models;
  auto it = models.find(weights);
  if (it == models.end()) {
    LoadedModel loaded = load_model(model_path());
    loaded.model->to(dtype_of(weights));
    if (weights == kInt4) loaded.model->pack_int4();
    loaded.model->eval();
    it = models.emplace(weights, loaded.model).first;
  }
  return it->second;
}

at::Tensor random_tokens(int64_t batch, int64_t n, int64_t vocab) {
  return at::randint(0, vocab, {batch, n}, at::kLong);
}

// The machine's GEMM rate at the shape of this model's MLP (2048 x 576 x 1536).
void BM_Matmul(benchmark::State& state) {
  c10::InferenceMode guard;
  const auto dtype = dtype_of(state.range(0));
  const at::Tensor a = at::randn({2048, 576}).to(dtype), b = at::randn({576, 1536}).to(dtype);
  for (auto _ : state) benchmark::DoNotOptimize(at::matmul(a, b));
  state.counters["gflops"] = benchmark::Counter(2.0 * 2048 * 576 * 1536 / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// Prefill of one 512-token sequence, the shape of perplexity and eval scoring.
void BM_Prefill(benchmark::State& state) {
  c10::InferenceMode guard;
  LlamaForCausalLM& model = model_in(state.range(0));
  const int64_t ctx = state.range(1);
  const at::Tensor tokens = random_tokens(1, ctx, model->config().vocab_size);
  for (auto _ : state) benchmark::DoNotOptimize(model->forward(tokens));
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(ctx), benchmark::Counter::kIsIterationInvariantRate);
}

// Decode steps of `batch` sequences after a prefilled context (prefill not timed).
void BM_Decode(benchmark::State& state) {
  c10::InferenceMode guard;
  const auto dtype = dtype_of(state.range(0));
  LlamaForCausalLM& model = model_in(state.range(0));
  const int64_t batch = state.range(1), context = state.range(2);
  constexpr int64_t kSteps = 16;
  const int64_t vocab = model->config().vocab_size;
  for (auto _ : state) {
    KvCache cache(model->config(), batch, context + kSteps + 1, dtype);
    if (context > 0) model->forward(random_tokens(batch, context, vocab), &cache);
    at::Tensor next = random_tokens(batch, 1, vocab);
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kSteps; ++i) {
      const at::Tensor logits = model->forward(next, &cache);
      next = logits.select(1, 0).argmax(-1, true);  // [batch, 1]
    }
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      static_cast<double>(batch * kSteps), benchmark::Counter::kIsIterationInvariantRate);
}

// Log-likelihood scoring as `ecomla eval` runs it: the first 256 HellaSwag documents (four
// endings on one context), each packed as a prefix tree, batches of at most 2048 tokens.
// tokens_per_s counts the tokens the model ran (shared contexts once); request_tokens_per_s
// counts context + continuation of every request, what a scorer without sharing would run.
void BM_Score(benchmark::State& state) {
  static const std::vector<std::vector<TokenizedRequest>> groups = [] {
    const LoadedModel loaded = load_model(model_path());
    TaskOptions options;
    options.data_dir = ECOMLA_SHARED_DATA;
    options.limit = 256;
    const Task task = load_tasks({"hellaswag"}, options).at(0);
    const int32_t prefix = *loaded.tokenizer.bos_id();
    std::vector<std::vector<TokenizedRequest>> out;
    for (const Document& doc : task.docs) {
      auto& group = out.emplace_back();
      for (const Request& r : doc.requests) {
        group.push_back(encode_request(loaded.tokenizer, r.context, r.continuation, prefix));
      }
    }
    return out;
  }();
  LlamaForCausalLM& model = model_in(state.range(0));
  ScoreStats stats;
  for (auto _ : state) {
    stats = {};
    benchmark::DoNotOptimize(score_requests(model, groups, ScoreOptions{}, &stats));
  }
  int64_t request_tokens = 0;
  for (const auto& group : groups) {
    for (const auto& r : group)
      request_tokens += static_cast<int64_t>(r.context.size() + r.continuation.size());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(
      static_cast<double>(stats.tree_tokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["request_tokens_per_s"] = benchmark::Counter(
      static_cast<double>(request_tokens), benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_Matmul)->ArgName("bf16")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Prefill)
    ->ArgNames({"weights", "ctx"})
    ->Args({kFp32, 512})
    ->Args({kBf16, 512})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)
    ->ArgNames({"weights", "batch", "context"})
    ->ArgsProduct({{kFp32, kBf16, kInt4}, {1, 8}, {0, 512, 2048}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK(BM_Score)->ArgName("weights")->Arg(kFp32)->Arg(kBf16)->Unit(benchmark::kSecond);

BENCHMARK_MAIN();
