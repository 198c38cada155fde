// lm-evaluation-harness's metrics (lm_eval/api/metrics.py, task.py process_results) from the
// scored requests of each document, with its standard errors.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ecomla/eval_tasks.h"
#include "ecomla/loglikelihood.h"

namespace ecomla {

struct MetricValue {
  double value = 0;
  std::optional<double> stderr_value;  // none where lm-eval reports "N/A"
};

// Per document of a multiple-choice task: acc = argmax of the log-likelihoods is gold;
// acc_norm = argmax of log-likelihood / character length of the choice (numpy's argmax: the
// first of equal values).
struct ChoiceOutcome {
  int64_t pred = 0, pred_norm = 0;
  bool acc = false, acc_norm = false;
};
ChoiceOutcome score_choices(const std::vector<LoglikelihoodResult>& results,
                            const std::vector<std::string>& choices, int64_t gold);

// The task's metrics over its documents (results[d] are document d's request results):
// - acc, acc_norm: means, stderr = sample standard deviation / sqrt(n) (mean_stderr);
// - perplexity (loglikelihood tasks) = exp(-mean log-likelihood per document); lm-eval
//   bootstraps its stderr, here the delta method: perplexity * stderr of the mean;
// - word_perplexity = exp(-sum ll / sum words), byte_perplexity likewise per byte,
//   bits_per_byte = -sum ll / sum bytes / ln 2; no stderr, as lm-eval.
std::map<std::string, MetricValue> task_metrics(
    const Task& task, const std::vector<std::vector<LoglikelihoodResult>>& results);

// A group's metric from its tasks' (weight_by_size, as lm-eval's MMLU groups): the size-weighted
// mean and the pooled sample stderr (metrics.py pooled_sample_stderr).
MetricValue pooled_metric(const std::vector<MetricValue>& values,
                          const std::vector<int64_t>& sizes);

}  // namespace ecomla
