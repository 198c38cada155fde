// ecomla eval MODEL --tasks arc_easy,piqa,... [--data-dir D] [--task-file TASK=FILE]
//   [--limit N] [--batch-size B] [--dtype fp32|bf16] [--output results.json]
//   [--log-samples FILE]
// Zero-shot tasks with lm-evaluation-harness's definitions (include/ecomla/eval_tasks.h).
#include <fmt/format.h>
#include <fstream>
#include <memory>

#include "cli_common.h"
#include "ecomla/evaluator.h"

namespace ecomla::cli {

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval", "Zero-shot tasks and perplexity with lm-evaluation-harness's definitions");
  static std::string model, data_dir = "../shared/data", output, log_samples;
  static std::vector<std::string> tasks, task_files;
  static ComputeOptions compute;
  static int64_t limit = -1, batch_size = 64, batch_tokens = 2048, max_length = 0;
  static bool json = false;
  cmd->add_option("MODEL", model, "GGUF file or Hugging Face model folder")->required();
  cmd->add_option("--tasks", tasks,
                  "Comma-separated tasks: arc_easy, arc_challenge, hellaswag, "
                  "piqa, boolq, lambada_openai, openbookqa, winogrande, "
                  "wikitext, mmlu, mmlu_<subject>")
      ->required()
      ->delimiter(',');
  cmd->add_option("--data-dir", data_dir, "Folder laid out as ../shared/data")
      ->capture_default_str();
  cmd->add_option("--task-file", task_files, "TASK=FILE: read a task from this file instead");
  cmd->add_option("--limit", limit, "Score only the first N documents of each task");
  cmd->add_option("--batch-size", batch_size, "Documents per forward pass, at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batch-tokens", batch_tokens, "Packed tokens per forward pass, at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-length", max_length,
                  "Context window (default: the model's, as lm-eval's max_length)");
  add_compute_options(*cmd, compute, "fp32");
  cmd->add_option("--output", output, "Write the results JSON (lm-eval's schema) here");
  cmd->add_option("--log-samples", log_samples,
                  "Write every document's requests and scores "
                  "(jsonl) here");
  cmd->add_flag("--json", json, "Print the results JSON on stdout");
  cmd->callback([] {
    TaskOptions task_options;
    task_options.data_dir = data_dir;
    task_options.limit = limit;
    for (const std::string& entry : task_files) {
      const size_t eq = entry.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == entry.size()) {
        throw CLI::ValidationError("--task-file", "expected TASK=FILE, got '" + entry + "'");
      }
      task_options.task_files[entry.substr(0, eq)] = entry.substr(eq + 1);
    }
    // Data first: a typo in a task name or path fails before the model is loaded.
    const std::vector<Task> loaded_tasks = load_tasks(tasks, task_options);
    int64_t n_docs = 0;
    for (const Task& t : loaded_tasks) n_docs += static_cast<int64_t>(t.docs.size());
    fmt::print(stderr, "{} tasks, {} documents\n", loaded_tasks.size(), n_docs);

    LoadedModel loaded = load_for_compute(model, compute);
    EvalOptions options;
    options.score.batch_size = batch_size;
    options.score.batch_tokens = batch_tokens;
    options.score.max_length =
        max_length > 0 ? max_length : loaded.model->config().max_position_embeddings;
    options.log_samples = !log_samples.empty();
    std::unique_ptr<ProgressBar> bar;
    options.progress_for = [&bar](const Task& task) -> ProgressCallback {
      if (bar) bar->finish();
      bar = std::make_unique<ProgressBar>();
      return [&bar, name = task.name](const Progress& p) {
        Progress named = p;
        named.what = name;
        return (*bar)(named);
      };
    };
    const nlohmann::json config = {{"model", "ecomla"},
                                   {"model_args", model},
                                   {"dtype", compute.dtype},
                                   {"device", compute.device},
                                   {"batch_size", batch_size},
                                   {"batch_tokens", batch_tokens},
                                   {"max_length", options.score.max_length},
                                   {"limit", limit >= 0 ? nlohmann::json(limit) : nlohmann::json()},
                                   {"num_fewshot", 0},
                                   {"data_dir", data_dir}};
    std::vector<nlohmann::json> samples;
    const nlohmann::json results =
        evaluate(loaded.model, loaded.tokenizer, loaded_tasks, options, config, &samples);
    if (bar) bar->finish();
    fmt::print(stderr, "{}", results_table(results));
    fmt::print(stderr, "total {} s\n",
               results.at("total_evaluation_time_seconds").get<std::string>());
    if (!log_samples.empty()) {
      std::ofstream out(log_samples);
      for (const nlohmann::json& s : samples) out << s.dump() << "\n";
      if (!out) throw std::runtime_error("cannot write " + log_samples);
    }
    if (json) emit_json(results);
    if (!output.empty()) emit_json(results, output);
  });
}

}  // namespace ecomla::cli
