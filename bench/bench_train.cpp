// Training speed of distillation on the default model (or $ECOMLA_BENCH_MODEL): one optimiser
// step (teacher forward, student forward, loss, backward, clipping, AdamW) as `ecomla distill`
// runs it, end-to-end KD and layer-wise, at 512 and 2048 tokens per sequence (2048 tokens a
// step), fp32 or bf16 autocast. The student is the model with every layer in MLA at 12.5% of
// the KV cache (kv rank 16, RoPE key 32, nope 16, plain query: the activation init's layout;
// the weights come from X-EcoMLA's init, which takes seconds, since speed does not depend on
// them).
//
//   build/bench/ecomla_bench_train --benchmark_out=train.json --benchmark_out_format=json
//
// Counters: tokens_per_s; for KD also gflops (6 N_student + 2 N_teacher FLOP per token, N the
// parameters every token multiplies, attention scores not counted) and matmul_fraction, that
// rate over the bf16 GEMM rate of this machine measured in the same run (2048 x 576 x 1536).
#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cstdlib>

#include "ecomla/allocator.h"
#include "ecomla/convert.h"
#include "ecomla/model_loader.h"
#include "train/distill_step.h"
#include "train/losses.h"

namespace {

using namespace ecomla;

const char* model_path() {
  const char* env = std::getenv("ECOMLA_BENCH_MODEL");
  return env ? env : ECOMLA_DEFAULT_MODEL;
}

LlamaForCausalLM& teacher() {
  static LlamaForCausalLM model = [] {
    LlamaForCausalLM m = load_model(model_path()).model;
    m->to(at::kBFloat16);
    m->eval();
    for (auto& p : m->parameters()) p.set_requires_grad(false);
    return m;
  }();
  return model;
}

LlamaForCausalLM& student() {
  static LlamaForCausalLM model = [] {
    ConvertOptions options;
    options.init = MlaInit::kXEcoMla;
    options.kv.rank = 16;
    options.dim_rope = 32;
    options.dim_nope = 16;
    return convert_to_mla(load_model(model_path()).model, options).model;
  }();
  return model;
}

int64_t parameter_count(LlamaForCausalLM& model) {
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  return n;  // the tied embedding once: as the LM head it is a matmul for every token
}

// This machine's bf16 GEMM rate at the MLP's shape, GFLOP/s, measured once.
double matmul_gflops() {
  static const double rate = [] {
    c10::InferenceMode guard;
    const at::Tensor a = at::randn({2048, 576}).to(at::kBFloat16),
                     b = at::randn({576, 1536}).to(at::kBFloat16);
    for (int i = 0; i < 10; ++i) at::matmul(a, b);
    constexpr int kRuns = 200;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kRuns; ++i) at::matmul(a, b);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return 2.0 * 2048 * 576 * 1536 * kRuns / s / 1e9;
  }();
  return rate;
}

// Arguments: stage (0 kd, 1 layerwise), tokens per sequence, bf16 autocast (0/1).
void BM_DistillStep(benchmark::State& state) {
  DistillConfig config;
  config.stage = state.range(0) == 0 ? DistillStage::kKd : DistillStage::kLayerwise;
  const int64_t seq = state.range(1), batch = 2048 / seq;
  const bool bf16 = state.range(2) != 0;
  LlamaForCausalLM& s = student();
  LlamaForCausalLM& t = teacher();
  t->to(bf16 ? at::kBFloat16 : at::kFloat);
  s->train();
  const std::vector<at::Tensor> params = train::trainable_parameters(config, s);
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(1e-5).betas({0.9, 0.98}));
  const at::Tensor tokens = at::randint(0, s->config().vocab_size, {batch, seq}, at::kLong);
  for (auto _ : state) {
    optimizer.zero_grad();
    train::stage_loss(config, s, t, tokens, bf16).loss.backward();
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    optimizer.step();
  }
  const auto tokens_per_step = static_cast<double>(batch * seq);
  state.counters["tokens_per_s"] =
      benchmark::Counter(tokens_per_step, benchmark::Counter::kIsIterationInvariantRate);
  if (config.stage == DistillStage::kKd) {
    const double flop_per_token =
        6.0 * double(parameter_count(s)) + 2.0 * double(parameter_count(t));
    state.counters["gflops"] = benchmark::Counter(tokens_per_step * flop_per_token / 1e9,
                                                  benchmark::Counter::kIsIterationInvariantRate);
    state.counters["matmul_fraction"] =
        benchmark::Counter(tokens_per_step * flop_per_token / 1e9 / matmul_gflops(),
                           benchmark::Counter::kIsIterationInvariantRate);
    state.counters["matmul_gflops"] = matmul_gflops();
  }
}

// The KD loss alone, forward and backward, at 2048 positions and this model's vocabulary, bf16
// matmuls: the LM heads and kd_loss on the full logits (0), or fused_kd_loss (1).
void BM_KdLoss(benchmark::State& state) {
  const bool fused = state.range(0) != 0;
  const at::Tensor w_t = teacher()->head_weight().to(at::kBFloat16);
  const at::Tensor w_s = w_t.to(at::kFloat).clone().requires_grad_(true);
  const at::Tensor h_t = at::randn({4, 512, w_t.size(1)}).to(at::kBFloat16);
  const at::Tensor h_s = at::randn({4, 512, w_t.size(1)}).requires_grad_(true);
  const at::Tensor tokens = at::randint(0, w_t.size(0), {4, 512}, at::kLong);
  for (auto _ : state) {
    if (fused) {
      train::fused_kd_loss(h_s, w_s, h_t, w_t, tokens, 1.0, 0.0, 1.0, at::kBFloat16)
          .loss.backward();
    } else {
      at::Tensor student_logits;
      {
        train::AutocastScope autocast(true);
        student_logits = at::matmul(h_s, w_s.t());
      }
      at::Tensor teacher_logits;
      {
        at::NoGradGuard no_grad;
        teacher_logits = at::matmul(h_t, w_t.t());
      }
      train::kd_loss(student_logits, teacher_logits, tokens, 1.0, 0.0, 1.0).loss.backward();
    }
  }
  state.counters["tokens_per_s"] =
      benchmark::Counter(2048.0, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_KdLoss)
    ->ArgName("fused")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK(BM_DistillStep)
    ->ArgNames({"layerwise", "seq", "bf16"})
    ->ArgsProduct({{0, 1}, {512, 2048}, {0, 1}})
    ->Unit(benchmark::kSecond)
    ->MinWarmUpTime(12.0)  // a step or two: the first ones JIT-compile oneDNN kernels
    ->MinTime(25.0)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  ecomla::keep_freed_memory();  // as the CLI does
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
