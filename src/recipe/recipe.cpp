// The recipe runner: every model's stages in order, each skipped, resumed or rerun by its stamp
// (include/ecomla/recipe.h), then the report.
#include "ecomla/recipe.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <chrono>
#include <fstream>

#include "convert/convert_config.h"
#include "ecomla/convert.h"
#include "ecomla/decode_speed.h"
#include "ecomla/distill.h"
#include "ecomla/dpo.h"
#include "ecomla/evaluator.h"
#include "ecomla/hf_checkpoint.h"
#include "ecomla/model_loader.h"
#include "ecomla/perplexity.h"
#include "io/atomic_file.h"
#include "recipe/recipe_report.h"
#include "recipe/recipe_stages.h"
#include "train/stage_configs.h"
#include "train/train_state.h"
#include "util/data_files.h"
#include "util/fingerprint.h"

namespace ecomla {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::optional<json> read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    return std::nullopt;  // a stamp cut short: the stage runs again
  }
}

void write_json(const fs::path& path, const json& j) {
  io::write_atomically(path, [&](std::ostream& out) { out << j.dump(2) << "\n"; });
}

LoadedModel load_in(const fs::path& path, const std::string& dtype) {
  LoadedModel loaded = load_model(path);
  loaded.model->to(dtype == "bf16" ? at::kBFloat16 : at::kFloat);
  loaded.model->eval();
  return loaded;
}

// Tokens trained (the trainer's cumulative count), steps and the last losses of a stage.
json training_summary(const fs::path& output_dir) {
  json summary = {{"tokens", 0}, {"steps", 0}};
  std::ifstream in(output_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const json e = json::parse(line, nullptr, false);
    if (e.is_discarded()) continue;
    if (e.contains("tokens")) summary["tokens"] = e["tokens"];
    if (e.contains("step")) summary["steps"] = e["step"];
    if (e.contains("loss")) summary["final_loss"] = e["loss"];
    if (e.contains("eval_loss")) summary["final_eval_loss"] = e["eval_loss"];
  }
  return summary;
}

class RecipeRunner {
public:
  RecipeRunner(const RecipeConfig& config, const RecipeRun& run) : c_(config), run_(run) {
    stage_count_ = 2;  // the original: eval, speed
    for (const RecipeInit& init : c_.inits) {
      stage_count_ += static_cast<int64_t>(c_.kv_budgets.size() * (init.stages.size() + 3));
    }
  }

  RecipeResult run() {
    fs::create_directories(c_.output_dir);
    check_before_running();
    std::vector<recipe::ModelRecord> models = {original()};
    for (const double budget : c_.kv_budgets) {
      for (const RecipeInit& init : c_.inits) models.push_back(mla_model(budget, init));
    }
    const json results = recipe::results_json(c_, models);
    result_.results_json = c_.output_dir / "results.json";
    write_json(result_.results_json, results);
    std::tie(result_.report_md, result_.report_html) = recipe::write_report(results, c_.output_dir);
    log(fmt::format("report: {}, {}, {}", result_.results_json.string(), result_.report_md.string(),
                    result_.report_html.string()));
    return result_;
  }

private:
  // Everything a stage needs that can be checked without running one: the model, the
  // conversions against its config, the task data.
  void check_before_running() {
    if (!fs::exists(c_.model))
      throw std::invalid_argument("model: no such file " + c_.model.string());
    const ModelConfig source = load_config(c_.model);
    source_kv_values_ = source.kv_values_per_token();
    for (const RecipeInit& init : c_.inits) {
      for (const double budget : c_.kv_budgets) {
        validate_conversion(source, converting(init, budget).options);
      }
    }
    for (const std::string& task : c_.eval.tasks) {
      TaskOptions options{c_.eval.data_dir, {}, c_.eval.limit};
      if (const auto it = c_.eval.limits.find(task); it != c_.eval.limits.end()) {
        options.limit = it->second;
      }
      for (Task& t : load_tasks({task}, options)) tasks_.push_back(std::move(t));
    }
    if (!c_.eval.perplexity_text.empty()) {
      perplexity_text_ = data_files::read_text(c_.eval.perplexity_text);
    }
    original_fingerprint_ = Fingerprint().add_file_stamps(c_.model).hex();
  }

  ConvertConfig converting(const RecipeInit& init, double budget) const {
    const recipe::StageLinks links{c_.model, c_.model, {}, budget, init.name};
    return convert_config_from(recipe::stage_config(init, "convert", links), "convert");
  }

  void log(const std::string& line) const {
    if (run_.log) run_.log(line);
  }
  ProgressCallback progress(const std::string& label) const {
    return run_.progress_for ? run_.progress_for(label) : ProgressCallback{};
  }

  // Runs `body` in `dir` unless its stamp matches `fingerprint` and says done; `body(resume)`
  // returns the stage's outcome, kept in the stamp. `kind` groups stages for the ETA.
  json stage(const std::string& label, const std::string& kind, const fs::path& dir,
             const std::string& fingerprint,
             const std::function<json(bool resume, const ProgressCallback&)>& body) {
    ++stage_index_;
    const std::string head = fmt::format("[{}/{}] {}", stage_index_, stage_count_, label);
    const fs::path stamp_path = dir / "stage.json";
    const std::optional<json> stamp = read_json(stamp_path);
    const bool same = stamp && stamp->value("fingerprint", "") == fingerprint;
    if (same && stamp->value("done", false)) {
      ++result_.stages_skipped;
      seconds_of_[kind] = stamp->value("seconds", 0.0);
      log(fmt::format("{}: done before ({}), kept", head,
                      recipe::duration_text(seconds_of_[kind])));
      return stamp->at("outcome");
    }
    const bool resume = same;
    if (!resume) fs::remove_all(dir);
    fs::create_directories(dir);
    const double before = resume ? stamp->value("seconds", 0.0) : 0.0;
    write_json(stamp_path, {{"fingerprint", fingerprint}, {"done", false}, {"seconds", before}});
    const auto eta = seconds_of_.find(kind);
    log(fmt::format("{}: {}{}", head, resume ? "continuing, " : "",
                    eta == seconds_of_.end() ? "ETA unknown (first " + kind + " stage)"
                                             : "ETA ~" + recipe::duration_text(eta->second) +
                                                   " (as the last " + kind + ")"));
    const auto t0 = std::chrono::steady_clock::now();
    const json outcome = body(resume, progress(label));
    const double seconds =
        before + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_json(
        stamp_path,
        {{"fingerprint", fingerprint}, {"done", true}, {"seconds", seconds}, {"outcome", outcome}});
    ++result_.stages_run;
    seconds_of_[kind] = seconds;
    log(fmt::format("{}: finished in {}", head, recipe::duration_text(seconds)));
    return outcome;
  }

  recipe::ModelRecord original() {
    recipe::ModelRecord m;
    m.name = "original";
    m.kv_values_per_token = source_kv_values_;
    const fs::path dir = c_.output_dir / m.name;
    evaluate_and_time(m, dir, c_.model, original_fingerprint_, original_fingerprint_);
    return m;
  }

  recipe::ModelRecord mla_model(double budget, const RecipeInit& init) {
    recipe::ModelRecord m;
    m.name = fmt::format("kv{:g}-{}", 100 * budget, init.name);
    m.kv_budget = budget;
    m.init = init.name;
    const fs::path dir = c_.output_dir / m.name;

    const std::string converted_fingerprint = Fingerprint()
                                                  .add("convert")
                                                  .add(init.settings.at("convert"))
                                                  .add(fmt::format("{}", budget))
                                                  .add(original_fingerprint_)
                                                  .hex();
    const json conversion = stage(m.name + " convert", "convert-" + init.name, dir / "convert",
                                  converted_fingerprint, [&](bool, const ProgressCallback& bar) {
                                    return convert(init, budget, dir / "convert", bar);
                                  });
    m.kv_values_per_token = conversion.at("kv_values_per_token").get<int64_t>();
    m.stages["convert"] = {{"seconds", seconds_of_["convert-" + init.name]}};

    fs::path model = dir / "convert";
    std::string fingerprint = converted_fingerprint;
    for (const std::string& name : init.stages) {
      const recipe::StageLinks links{model, c_.model, dir / name, budget, init.name};
      fingerprint = Fingerprint()
                        .add(name)
                        .add(init.settings.at(name))
                        .add(fingerprint)
                        .add(original_fingerprint_)
                        .hex();
      const json outcome = stage(m.name + " " + name, name, dir / name, fingerprint,
                                 [&](bool resume, const ProgressCallback& bar) {
                                   return train(recipe::stage_config(init, name, links), name,
                                                dir / name, resume, bar);
                                 });
      m.stages[name] = outcome;
      m.stages[name]["seconds"] = seconds_of_[name];
      m.training.emplace_back(name, dir / name);
      model = dir / name / "checkpoint";
    }
    evaluate_and_time(m, dir, model, fingerprint, converted_fingerprint);
    return m;
  }

  // The eval stage (tasks and perplexity of `model`) and the speed stage (decode speed of the
  // architecture, measured on the converted model, so training does not repeat it).
  void evaluate_and_time(recipe::ModelRecord& m, const fs::path& dir, const fs::path& model,
                         const std::string& model_fingerprint,
                         const std::string& architecture_fingerprint) {
    const fs::path speed_model = m.name == "original" ? c_.model : dir / "convert";
    json eval_settings = {
        {"tasks", c_.eval.tasks},        {"limit", c_.eval.limit},
        {"limits", c_.eval.limits},      {"data_dir", c_.eval.data_dir.string()},
        {"dtype", c_.eval.dtype},        {"text", c_.eval.perplexity_text.string()},
        {"ctx", c_.eval.perplexity_ctx}, {"chunks", c_.eval.perplexity_chunks}};
    m.eval = stage(
        m.name + " eval", "eval", dir / "eval",
        Fingerprint().add("eval").add(eval_settings.dump()).add(model_fingerprint).hex(),
        [&](bool, const ProgressCallback& bar) { return evaluate(model, dir / "eval", bar); });
    m.stages["eval"] = {{"seconds", seconds_of_["eval"]}};
    const json speed_settings = {{"batch_sizes", c_.speed.batch_sizes},
                                 {"contexts", c_.speed.contexts},
                                 {"steps", c_.speed.steps},
                                 {"dtype", c_.speed.dtype}};
    m.speed = stage(
        m.name + " speed", "speed", dir / "speed",
        Fingerprint().add("speed").add(speed_settings.dump()).add(architecture_fingerprint).hex(),
        [&](bool, const ProgressCallback& bar) { return decode_speed(speed_model, bar); });
    m.stages["speed"] = {{"seconds", seconds_of_["speed"]}};
  }

  json convert(const RecipeInit& init, double budget, const fs::path& out,
               const ProgressCallback& bar) const {
    const ConvertConfig config = converting(init, budget);
    const LoadedModel source = load_model(c_.model);
    const std::optional<Calibration> calibration = load_calibration(config, source.tokenizer);
    const Conversion conversion =
        convert_to_mla(source.model, config.options, calibration ? &*calibration : nullptr, bar);
    save_hf_checkpoint(out, *conversion.model, conversion.model->config(), source.tokenizer);
    json report = conversion_report(source.model->config(), conversion);
    report["init"] = init.name;
    write_json(out / "conversion.json", report);
    report.erase("layers");
    return report;
  }

  json train(const YAML::Node& node, const std::string& name, const fs::path& out, bool resume,
             const ProgressCallback& bar) const {
    TrainingRun run;
    run.resume = resume && train::find_checkpoint(out).has_value();
    run.progress = bar;
    run.log = run_.log;
    const std::string origin = (out / "stage.yaml").string();
    std::ofstream(origin) << YAML::Dump(node) << "\n";  // `ecomla distill|dpo` reruns it alone
    if (name == "dpo") {
      dpo(train::dpo_config_from(node, origin), run);
    } else {
      distill(train::distill_config_from(node, origin), run);
    }
    return training_summary(out);
  }

  json evaluate(const fs::path& model, const fs::path& out, const ProgressCallback& bar) const {
    LoadedModel loaded = load_in(model, c_.eval.dtype);
    json outcome = json::object();
    if (!tasks_.empty()) {
      EvalOptions options;
      options.score.max_length = loaded.model->config().max_position_embeddings;
      options.progress_for = [&bar](const Task&) { return bar; };
      const json results =
          ecomla::evaluate(loaded.model, loaded.tokenizer, tasks_, options,
                           {{"model_args", model.string()}, {"dtype", c_.eval.dtype}});
      write_json(out / "tasks.json", results);
      outcome = recipe::task_scores(results, c_.eval.tasks);
    }
    if (!perplexity_text_.empty()) {
      PerplexityOptions options;
      options.ctx = c_.eval.perplexity_ctx;
      options.max_chunks = c_.eval.perplexity_chunks;
      if (loaded.tokenizer.spec().add_bos) options.bos_id = loaded.tokenizer.bos_id();
      options.progress = bar;
      const PerplexityResult r =
          perplexity(loaded.model, loaded.tokenizer.encode(perplexity_text_, true), options);
      outcome["perplexity"] = {{"ppl", r.ppl},
                               {"ppl_stderr", r.ppl * r.nll_stderr},
                               {"chunks", r.chunks},
                               {"ctx", options.ctx},
                               {"tokens_scored", r.tokens_scored},
                               {"text", c_.eval.perplexity_text.string()}};
    }
    return outcome;
  }

  json decode_speed(const fs::path& model, const ProgressCallback& bar) const {
    LoadedModel loaded = load_in(model, c_.speed.dtype);
    json points = json::array();
    const auto total = static_cast<int64_t>(c_.speed.contexts.size() * c_.speed.batch_sizes.size());
    for (const int64_t context : c_.speed.contexts) {
      for (const int64_t batch : c_.speed.batch_sizes) {
        const DecodeSpeed s = measure_decode_speed(loaded.model, batch, context, c_.speed.steps);
        points.push_back({{"batch", batch},
                          {"context", context},
                          {"tokens_per_s", s.tokens_per_s},
                          {"cache_bytes", s.cache_bytes}});
        if (bar)
          bar({"decode speed", static_cast<int64_t>(points.size()), total, "points",
               fmt::format("b{} ctx {}: {:.1f} tok/s", batch, context, s.tokens_per_s)});
      }
    }
    return points;
  }

  const RecipeConfig& c_;
  const RecipeRun& run_;
  RecipeResult result_;
  int64_t stage_index_ = 0, stage_count_ = 0;
  std::map<std::string, double> seconds_of_;  // by kind: the last such stage's wall time
  int64_t source_kv_values_ = 0;
  std::vector<Task> tasks_;
  std::string perplexity_text_;
  std::string original_fingerprint_;
};

}  // namespace

RecipeResult run_recipe(const RecipeConfig& config, const RecipeRun& run) {
  return RecipeRunner(config, run).run();
}

}  // namespace ecomla
