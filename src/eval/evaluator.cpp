#include "ecomla/evaluator.h"

#include <fmt/format.h>
#include <chrono>
#include <ctime>
#include <stdexcept>

namespace ecomla {
using json = nlohmann::json;

namespace {

const char* output_type_name(OutputType type) {
  switch (type) {
    case OutputType::kMultipleChoice: return "multiple_choice";
    case OutputType::kLoglikelihood: return "loglikelihood";
    case OutputType::kLoglikelihoodRolling: return "loglikelihood_rolling";
  }
  return "";
}

bool higher_is_better(const std::string& metric) { return metric == "acc" || metric == "acc_norm"; }

// results[name] entries: "<metric>,none" and "<metric>_stderr,none" ("N/A" without one).
json metric_entries(const std::string& alias, const std::map<std::string, MetricValue>& metrics) {
  json entry = {{"alias", alias}};
  for (const auto& [name, value] : metrics) {
    entry[name + ",none"] = value.value;
    entry[name + "_stderr,none"] = value.stderr_value ? json(*value.stderr_value) : json("N/A");
  }
  return entry;
}

json sample_of(const Task& task, size_t doc_id, const std::vector<LoglikelihoodResult>& results) {
  const Document& doc = task.docs[doc_id];
  json arguments = json::array(), resps = json::array();
  for (size_t r = 0; r < doc.requests.size(); ++r) {
    arguments.push_back({doc.requests[r].context, doc.requests[r].continuation});
    resps.push_back({results[r].logprob, results[r].greedy});
  }
  json sample = {{"task", task.name},
                 {"doc_id", doc_id},
                 {"origin", doc.origin},
                 {"arguments", arguments},
                 {"resps", resps}};
  if (task.type == OutputType::kMultipleChoice) {
    const ChoiceOutcome outcome = score_choices(results, doc.choices, doc.gold);
    sample["target"] = doc.gold;
    sample["pred"] = outcome.pred;
    sample["acc"] = outcome.acc ? 1.0 : 0.0;
    sample["acc_norm"] = outcome.acc_norm ? 1.0 : 0.0;
  }
  return sample;
}

}  // namespace

TaskOutcome evaluate_task(LlamaForCausalLM& model, const Tokenizer& tokenizer, const Task& task,
                          const EvalOptions& options) {
  const std::optional<int32_t> prefix =
      tokenizer.bos_id() ? tokenizer.bos_id() : tokenizer.eos_id();
  if (!prefix) throw std::invalid_argument("evaluation needs a tokenizer with a BOS or EOS token");
  const auto start = std::chrono::steady_clock::now();
  TaskOutcome outcome;
  // One packed group per document. WikiText's rolling windows share no prefix, so each is a
  // group of its own; their log-likelihoods add up to the document's.
  const bool rolling = task.type == OutputType::kLoglikelihoodRolling;
  std::vector<std::vector<TokenizedRequest>> groups;
  std::vector<size_t> doc_of_group;
  for (size_t d = 0; d < task.docs.size(); ++d) {
    for (const Request& request : task.docs[d].requests) {
      if (rolling) {
        for (TokenizedRequest& window : rolling_windows(tokenizer.encode(request.continuation),
                                                        *prefix, options.score.max_length)) {
          groups.push_back({std::move(window)});
          doc_of_group.push_back(d);
        }
      } else {
        if (doc_of_group.empty() || doc_of_group.back() != d) {
          groups.emplace_back();
          doc_of_group.push_back(d);
        }
        groups.back().push_back(
            encode_request(tokenizer, request.context, request.continuation, *prefix));
      }
    }
  }
  for (const auto& group : groups) {
    for (const TokenizedRequest& r : group) {
      outcome.tokens += static_cast<int64_t>(r.context.size() + r.continuation.size());
    }
  }
  ScoreOptions score = options.score;
  if (options.progress_for) score.progress = options.progress_for(task);
  std::vector<std::vector<LoglikelihoodResult>> by_group =
      score_requests(model, groups, score, &outcome.stats);
  std::vector<std::vector<LoglikelihoodResult>> results(task.docs.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& doc_results = results[doc_of_group[g]];
    if (!rolling) {
      doc_results = std::move(by_group[g]);
    } else if (doc_results.empty()) {
      doc_results = by_group[g];
    } else {
      doc_results[0].logprob += by_group[g][0].logprob;
      doc_results[0].greedy = doc_results[0].greedy && by_group[g][0].greedy;
    }
  }
  outcome.metrics = task_metrics(task, results);
  if (options.log_samples) {
    for (size_t d = 0; d < task.docs.size(); ++d) {
      outcome.samples.push_back(sample_of(task, d, results[d]));
    }
  }
  outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return outcome;
}

json evaluate(LlamaForCausalLM& model, const Tokenizer& tokenizer, const std::vector<Task>& tasks,
              const EvalOptions& options, const json& config, std::vector<json>* samples) {
  const auto start = std::chrono::steady_clock::now();
  json out = {{"results", json::object()},
              {"groups", json::object()},
              {"group_subtasks", json::object()},
              {"configs", json::object()},
              {"versions", json::object()},
              {"n-shot", json::object()},
              {"higher_is_better", json::object()},
              {"n-samples", json::object()},
              {"config", config},
              {"ecomla", json::object()}};
  // Per group: the subjects' metrics and sizes, for the size-weighted aggregate.
  std::map<std::string, std::pair<std::vector<MetricValue>, std::vector<int64_t>>> group_parts;
  std::map<std::string, std::vector<std::string>> group_members;
  for (const Task& task : tasks) {
    TaskOutcome outcome = evaluate_task(model, tokenizer, task, options);
    out["results"][task.name] = metric_entries(task.name, outcome.metrics);
    json metric_list = json::array();
    for (const std::string& m : task.metrics) {
      metric_list.push_back({{"metric", m}, {"higher_is_better", higher_is_better(m)}});
      out["higher_is_better"][task.name][m] = higher_is_better(m);
    }
    out["configs"][task.name] = {{"task", task.name},
                                 {"output_type", output_type_name(task.type)},
                                 {"doc_to_text", task.template_text},
                                 {"target_delimiter", " "},
                                 {"num_fewshot", 0},
                                 {"metric_list", metric_list},
                                 {"data_file", task.source.string()},
                                 {"metadata", {{"version", task.version}}}};
    out["versions"][task.name] = task.version;
    out["n-shot"][task.name] = 0;
    out["n-samples"][task.name] = {{"original", task.docs_in_source},
                                   {"effective", task.docs.size()}};
    out["ecomla"][task.name] = {
        {"seconds", outcome.seconds},
        {"request_tokens", outcome.tokens},
        {"tree_tokens", outcome.stats.tree_tokens},
        {"padded_tokens", outcome.stats.padded_tokens},
        {"scored_positions", outcome.stats.scored_rows},
        {"forward_passes", outcome.stats.forward_passes},
        {"tree_tokens_per_s", static_cast<double>(outcome.stats.tree_tokens) / outcome.seconds}};
    if (!task.group.empty() && outcome.metrics.contains("acc")) {
      group_parts[task.group].first.push_back(outcome.metrics.at("acc"));
      group_parts[task.group].second.push_back(static_cast<int64_t>(task.docs.size()));
      group_members[task.group].push_back(task.name);
    }
    if (samples) {
      for (json& s : outcome.samples) samples->push_back(std::move(s));
    }
  }
  // MMLU: each category over its subjects, then mmlu over the categories (lm-eval's nesting).
  std::vector<MetricValue> category_values;
  std::vector<int64_t> category_sizes;
  for (const auto& [group, parts] : group_parts) {
    if (static_cast<int64_t>(parts.first.size()) != mmlu_group_size(group)) continue;
    const MetricValue pooled = pooled_metric(parts.first, parts.second);
    out["groups"][group] = metric_entries(group, {{"acc", pooled}});
    out["results"][group] = out["groups"][group];
    out["group_subtasks"][group] = group_members[group];
    category_values.push_back(pooled);
    int64_t size = 0;
    for (int64_t n : parts.second) size += n;
    category_sizes.push_back(size);
  }
  if (category_values.size() == mmlu_groups().size()) {
    const MetricValue pooled = pooled_metric(category_values, category_sizes);
    out["groups"]["mmlu"] = metric_entries("mmlu", {{"acc", pooled}});
    out["results"]["mmlu"] = out["groups"]["mmlu"];
    out["group_subtasks"]["mmlu"] = mmlu_groups();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out["total_evaluation_time_seconds"] = fmt::format("{:.2f}", seconds);
  out["date"] = static_cast<double>(std::time(nullptr));
  return out;
}

std::string results_table(const json& results) {
  std::string table =
      "|Tasks|Version|n-shot|Metric|   |Value|   |Stderr|\n|---|---|---|---|---|---:|---|---:|\n";
  for (const auto& [name, entry] : results.at("results").items()) {
    const json version = results.at("versions").value(name, json("N/A"));
    for (const auto& [key, value] : entry.items()) {
      const size_t comma = key.find(",none");
      if (comma == std::string::npos || key.find("_stderr") != std::string::npos) continue;
      const std::string metric = key.substr(0, comma);
      const json& se = entry.at(metric + "_stderr,none");
      table += fmt::format("|{}|{}|{}|{}|{}|{:.4f}|±|{}|\n", name, version.dump(), 0, metric,
                           higher_is_better(metric) ? "↑" : "↓", value.get<double>(),
                           se.is_number() ? fmt::format("{:.4f}", se.get<double>()) : "N/A");
    }
  }
  return table;
}

}  // namespace ecomla
