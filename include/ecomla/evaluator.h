// Runs evaluation tasks on a model and reports them in lm-evaluation-harness's results schema
// (results[task]["acc,none"], ["acc_stderr,none"], groups, configs, versions, n-shot, ...).
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "ecomla/eval_metrics.h"
#include "ecomla/eval_tasks.h"
#include "ecomla/loglikelihood.h"

namespace ecomla {

struct EvalOptions {
  ScoreOptions score;  // max_length, batch_tokens; progress is set per task
  std::function<ProgressCallback(const Task&)> progress_for;  // optional, one bar per task
  bool log_samples = false;  // keep every document's requests and results
};

struct TaskOutcome {
  std::map<std::string, MetricValue> metrics;
  int64_t tokens = 0;  // request tokens (context + continuation), before prefix sharing
  ScoreStats stats;    // what the model computed
  double seconds = 0;
  std::vector<nlohmann::json> samples;  // with log_samples
};

// Tokenizes (encode_request; lm-eval's prefix token is BOS, else EOS), scores and measures one
// task.
TaskOutcome evaluate_task(LlamaForCausalLM& model, const Tokenizer& tokenizer, const Task& task,
                          const EvalOptions& options);

// Every task, then the MMLU groups whose subjects all ran (size-weighted, as lm-eval).
// `config` is copied into the results' "config". Samples, when logged, go to `samples`.
nlohmann::json evaluate(LlamaForCausalLM& model, const Tokenizer& tokenizer,
                        const std::vector<Task>& tasks, const EvalOptions& options,
                        const nlohmann::json& config,
                        std::vector<nlohmann::json>* samples = nullptr);

// lm-eval's summary table (markdown) of a results JSON.
std::string results_table(const nlohmann::json& results);

}  // namespace ecomla
