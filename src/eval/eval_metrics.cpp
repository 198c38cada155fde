#include "ecomla/eval_metrics.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace ecomla {
namespace {

// numpy.argmax: the index of the first largest value.
int64_t first_argmax(const std::vector<double>& values) {
  int64_t best = 0;
  for (size_t i = 1; i < values.size(); ++i) {
    if (values[i] > values[best]) best = static_cast<int64_t>(i);
  }
  return best;
}

// mean and lm-eval's mean_stderr (sample standard deviation / sqrt(n)).
MetricValue mean_with_stderr(const std::vector<double>& values) {
  const auto n = static_cast<double>(values.size());
  double sum = 0;
  for (double v : values) sum += v;
  const double mean = sum / n;
  if (values.size() < 2) return {mean, std::nullopt};
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(squares / (n - 1)) / std::sqrt(n)};
}

}  // namespace

ChoiceOutcome score_choices(const std::vector<LoglikelihoodResult>& results,
                            const std::vector<std::string>& choices, int64_t gold) {
  if (results.size() != choices.size() || results.empty()) {
    throw std::invalid_argument("score_choices: one result per choice is needed");
  }
  std::vector<double> lls, normalized;
  for (size_t i = 0; i < results.size(); ++i) {
    lls.push_back(results[i].logprob);
    // Python's len(): characters, here UTF-8 code points.
    int64_t chars = 0;
    for (unsigned char c : choices[i]) chars += (c & 0xC0) != 0x80 ? 1 : 0;
    normalized.push_back(results[i].logprob / static_cast<double>(chars));
  }
  ChoiceOutcome outcome;
  outcome.pred = first_argmax(lls);
  outcome.pred_norm = first_argmax(normalized);
  outcome.acc = outcome.pred == gold;
  outcome.acc_norm = outcome.pred_norm == gold;
  return outcome;
}

std::map<std::string, MetricValue> task_metrics(
    const Task& task, const std::vector<std::vector<LoglikelihoodResult>>& results) {
  if (results.size() != task.docs.size() || results.empty()) {
    throw std::invalid_argument("task_metrics: one result list per document is needed");
  }
  std::map<std::string, MetricValue> metrics;
  switch (task.type) {
    case OutputType::kMultipleChoice: {
      std::vector<double> acc, acc_norm;
      for (size_t d = 0; d < results.size(); ++d) {
        const Document& doc = task.docs[d];
        const ChoiceOutcome outcome = score_choices(results[d], doc.choices, doc.gold);
        acc.push_back(outcome.acc ? 1.0 : 0.0);
        acc_norm.push_back(outcome.acc_norm ? 1.0 : 0.0);
      }
      metrics["acc"] = mean_with_stderr(acc);
      metrics["acc_norm"] = mean_with_stderr(acc_norm);
      break;
    }
    case OutputType::kLoglikelihood: {
      std::vector<double> ll, greedy;
      for (const auto& r : results) {
        ll.push_back(r.at(0).logprob);
        greedy.push_back(r.at(0).greedy ? 1.0 : 0.0);
      }
      const MetricValue mean_ll = mean_with_stderr(ll);
      const double ppl = std::exp(-mean_ll.value);
      metrics["perplexity"] = {
          ppl, mean_ll.stderr_value ? std::optional(ppl * *mean_ll.stderr_value) : std::nullopt};
      metrics["acc"] = mean_with_stderr(greedy);
      break;
    }
    case OutputType::kLoglikelihoodRolling: {
      double ll = 0, words = 0, bytes = 0;
      for (size_t d = 0; d < results.size(); ++d) {
        for (const LoglikelihoodResult& window : results[d]) ll += window.logprob;
        words += static_cast<double>(task.docs[d].words);
        bytes += static_cast<double>(task.docs[d].bytes);
      }
      metrics["word_perplexity"] = {std::exp(-ll / words), std::nullopt};
      metrics["byte_perplexity"] = {std::exp(-ll / bytes), std::nullopt};
      metrics["bits_per_byte"] = {-ll / bytes / std::numbers::ln2, std::nullopt};
      break;
    }
  }
  // Only what lm-eval's task YAML lists (e.g. boolq and mmlu report acc alone).
  std::map<std::string, MetricValue> listed;
  for (const std::string& name : task.metrics) listed[name] = metrics.at(name);
  return listed;
}

MetricValue pooled_metric(const std::vector<MetricValue>& values,
                          const std::vector<int64_t>& sizes) {
  if (values.size() != sizes.size() || values.empty()) {
    throw std::invalid_argument("pooled_metric: one size per value is needed");
  }
  double weighted = 0, total = 0, pooled_variance = 0;
  bool have_stderr = true;
  for (size_t i = 0; i < values.size(); ++i) {
    const auto n = static_cast<double>(sizes[i]);
    weighted += values[i].value * n;
    total += n;
    if (!values[i].stderr_value) {
      have_stderr = false;
    } else {
      pooled_variance += (n - 1) * *values[i].stderr_value * *values[i].stderr_value * n;
    }
  }
  MetricValue pooled{weighted / total, std::nullopt};
  const double dof = total - static_cast<double>(values.size());
  if (have_stderr && dof > 0) pooled.stderr_value = std::sqrt(pooled_variance / dof / total);
  return pooled;
}

}  // namespace ecomla
