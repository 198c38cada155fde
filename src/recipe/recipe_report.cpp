#include "recipe/recipe_report.h"

#include <fmt/format.h>

#include <fstream>
#include <set>

#include "ecomla/svg_plot.h"
#include "io/atomic_file.h"
#include "util/data_files.h"

namespace ecomla::recipe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write_text(const fs::path& path, const std::string& text) {
  io::write_atomically(path, [&](std::ostream& out) { out << text; });
}

// Every line of a stage's metrics.jsonl with a training loss, as (step, loss).
std::vector<std::pair<double, double>> loss_curve(const fs::path& output_dir) {
  std::vector<std::pair<double, double>> points;
  std::ifstream in(output_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const json e = json::parse(line, nullptr, false);
    if (!e.is_discarded() && e.contains("loss") && e.contains("step")) {
      points.emplace_back(e["step"].get<double>(), e["loss"].get<double>());
    }
  }
  return points;
}

std::string percent(const json& v) {
  return v.is_number() ? fmt::format("{:.1f}", 100 * v.get<double>()) : "-";
}

std::string count_text(int64_t n) {
  if (n >= 1'000'000) return fmt::format("{:.2f}M", static_cast<double>(n) / 1e6);
  if (n >= 1'000) return fmt::format("{:.0f}k", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

// The rows of the main table, as cells (shared by report.md and report.html).
std::vector<std::vector<std::string>> table_rows(const json& results) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"model", "KV values/token (all layers)", "KV",
                                     "tokens trained"};
  for (const auto& t : results["tasks"]) header.push_back(t.get<std::string>());
  for (const char* h : {"average", "of original", "ppl", "wall time"}) header.emplace_back(h);
  rows.push_back(header);
  for (const json& m : results["models"]) {
    std::vector<std::string> row = {m["name"].get<std::string>(),
                                    std::to_string(m["kv_values_per_token"].get<int64_t>()),
                                    fmt::format("{:.1f}%", 100 * m["kv_ratio"].get<double>()),
                                    count_text(m["tokens_trained"].get<int64_t>())};
    for (const auto& t : results["tasks"]) {
      const json& score = m["tasks"].value(t.get<std::string>(), json::object());
      row.push_back(score.contains("score")
                        ? fmt::format("{} ± {}", percent(score["score"]), percent(score["stderr"]))
                        : "-");
    }
    row.push_back(percent(m["average"]));
    row.push_back(percent(m["score_kept"]));
    row.push_back(m.contains("perplexity")
                      ? fmt::format("{:.2f}", m["perplexity"]["ppl"].get<double>())
                      : "-");
    row.push_back(duration_text(m["wall_seconds"].get<double>()));
    rows.push_back(row);
  }
  return rows;
}

std::string markdown_table(const std::vector<std::vector<std::string>>& rows) {
  std::string out;
  for (size_t r = 0; r < rows.size(); ++r) {
    out += "|";
    for (const std::string& cell : rows[r]) out += " " + cell + " |";
    out += "\n";
    if (r == 0) {
      out += "|";
      for (size_t i = 0; i < rows[r].size(); ++i) out += i == 0 ? "---|" : "---:|";
      out += "\n";
    }
  }
  return out;
}

std::string html_table(const std::vector<std::vector<std::string>>& rows) {
  std::string out = "<table>\n";
  for (size_t r = 0; r < rows.size(); ++r) {
    out += "<tr>";
    for (const std::string& cell : rows[r]) {
      out += r == 0 ? "<th>" + cell + "</th>" : "<td>" + cell + "</td>";
    }
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

// figures/*.svg; returns (file name, caption) of each.
std::vector<std::pair<std::string, std::string>> write_figures(const json& results,
                                                               const fs::path& dir) {
  fs::create_directories(dir / "figures");
  std::vector<std::pair<std::string, std::string>> figures;
  const json& models = results["models"];
  const json& original = models[0];

  // Average score against KV size, one line per init, the original as a reference line.
  std::map<std::string, PlotSeries> by_init;
  for (size_t i = 1; i < models.size(); ++i) {
    const json& m = models[i];
    if (!m["average"].is_number()) continue;
    PlotSeries& s = by_init[m["init"].get<std::string>()];
    s.label = m["init"].get<std::string>() + " init";
    s.points.emplace_back(100 * m["kv_ratio"].get<double>(), 100 * m["average"].get<double>());
  }
  std::vector<PlotSeries> score_series;
  for (auto& [init, s] : by_init) {
    std::sort(s.points.begin(), s.points.end());
    score_series.push_back(s);
  }
  if (original["average"].is_number()) {
    const double y = 100 * original["average"].get<double>();
    double x0 = 100;
    for (const PlotSeries& s : score_series) x0 = std::min(x0, s.points.front().first);
    score_series.push_back({"original (100% KV)", {{x0, y}, {100, y}}});
  }
  write_text(dir / "figures" / "score-vs-kv.svg",
             svg_line_chart(score_series, {.title = "average score against KV cache size",
                                           .x_label = "KV cache, % of the original",
                                           .y_label = "average score, %"}));
  figures.emplace_back("score-vs-kv.svg", "Average score against KV cache size");

  // Loss curves, one figure per training stage.
  std::map<std::string, std::vector<PlotSeries>> losses;
  for (const json& m : models) {
    for (const auto& [stage, info] : m["stages"].items()) {
      if (!info.contains("output_dir")) continue;
      losses[stage].push_back(
          {m["name"].get<std::string>(), loss_curve(info["output_dir"].get<std::string>())});
    }
  }
  for (const auto& [stage, series] : losses) {
    const std::string file = "loss-" + stage + ".svg";
    write_text(dir / "figures" / file, svg_line_chart(series, {.title = stage + " loss",
                                                               .x_label = "optimiser step",
                                                               .y_label = "training loss",
                                                               .log_y = true}));
    figures.emplace_back(file, stage + " training loss");
  }

  // Decode tokens/s against context, one figure per batch size.
  std::map<int64_t, std::vector<PlotSeries>> speed;
  for (const json& m : models) {
    std::map<int64_t, PlotSeries> by_batch;
    for (const json& p : m["speed"]) {
      PlotSeries& s = by_batch[p["batch"].get<int64_t>()];
      s.label = m["name"].get<std::string>();
      s.points.emplace_back(p["context"].get<double>(), p["tokens_per_s"].get<double>());
    }
    for (auto& [batch, s] : by_batch) speed[batch].push_back(s);
  }
  for (const auto& [batch, series] : speed) {
    const std::string file = fmt::format("decode-speed-b{}.svg", batch);
    write_text(dir / "figures" / file,
               svg_line_chart(series, {.title = fmt::format("decode speed, batch {}", batch),
                                       .x_label = "context, tokens",
                                       .y_label = "tokens/s"}));
    figures.emplace_back(file, fmt::format("Decode tokens/s against context, batch {}", batch));
  }
  return figures;
}

std::string speed_table(const json& results) {
  std::set<std::pair<int64_t, int64_t>> points;  // (batch, context)
  for (const json& m : results["models"]) {
    for (const json& p : m["speed"]) points.emplace(p["batch"], p["context"]);
  }
  std::vector<std::vector<std::string>> rows = {{"model"}};
  for (const auto& [batch, context] : points) {
    rows[0].push_back(fmt::format("b{} ctx {}", batch, context));
  }
  for (const json& m : results["models"]) {
    std::vector<std::string> row = {m["name"].get<std::string>()};
    for (const auto& point : points) {
      std::string cell = "-";
      for (const json& p : m["speed"]) {
        if (std::pair(p["batch"].get<int64_t>(), p["context"].get<int64_t>()) == point) {
          cell = fmt::format("{:.1f}", p["tokens_per_s"].get<double>());
        }
      }
      row.push_back(cell);
    }
    rows.push_back(row);
  }
  return markdown_table(rows);
}

}  // namespace

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

json task_scores(const json& lm_eval_results, const std::vector<std::string>& tasks) {
  json out = {{"tasks", json::object()}};
  double sum = 0;
  int64_t n = 0;
  for (const std::string& task : tasks) {
    const json& r = lm_eval_results.at("results").at(task);
    const std::string metric = r.contains("acc_norm,none") ? "acc_norm" : "acc";
    const json& stderr_value = r.value(metric + "_stderr,none", json());
    out["tasks"][task] = {{"metric", metric},
                          {"score", r.at(metric + ",none")},
                          {"stderr", stderr_value.is_number() ? stderr_value : json()}};
    sum += r.at(metric + ",none").get<double>();
    ++n;
  }
  out["average"] = n > 0 ? json(sum / static_cast<double>(n)) : json();
  return out;
}

json results_json(const RecipeConfig& config, const std::vector<ModelRecord>& models) {
  json out = {
      {"model", config.model.string()},
      {"kv_budgets", config.kv_budgets},
      {"tasks", config.eval.tasks},
      {"eval",
       {{"limit", config.eval.limit},
        {"limits", config.eval.limits},
        {"dtype", config.eval.dtype},
        {"perplexity_text", config.eval.perplexity_text.string()},
        {"perplexity_ctx", config.eval.perplexity_ctx},
        {"perplexity_chunks", config.eval.perplexity_chunks}}},
      {"speed",
       {{"dtype", config.speed.dtype}, {"steps", config.speed.steps}, {"cache", "latent only"}}},
      {"score_rule", "acc_norm where lm-eval reports it, else acc; average over the tasks"},
      {"smoke", config.smoke},
      {"models", json::array()}};
  const double original_average = models.at(0).eval.value("average", 0.0);
  const int64_t original_kv = models.at(0).kv_values_per_token;
  for (const ModelRecord& m : models) {
    json j = {
        {"name", m.name},
        {"kv_budget", m.kv_budget},
        {"init", m.init},
        {"kv_values_per_token", m.kv_values_per_token},
        {"kv_bytes_per_token", 2 * m.kv_values_per_token},  // 16-bit cache
        {"kv_ratio", static_cast<double>(m.kv_values_per_token) / static_cast<double>(original_kv)},
        {"tasks", m.eval.value("tasks", json::object())},
        {"average", m.eval.value("average", json())},
        {"speed", m.speed}};
    if (m.eval.contains("perplexity")) j["perplexity"] = m.eval["perplexity"];
    j["score_kept"] = j["average"].is_number() && original_average > 0
                          ? json(j["average"].get<double>() / original_average)
                          : json();
    json stages = m.stages;
    int64_t tokens = 0;
    double seconds = 0;
    for (const auto& [stage, dir] : m.training) {
      stages[stage]["output_dir"] = dir.string();
      tokens += stages[stage].value("tokens", int64_t{0});
    }
    for (const auto& [stage, info] : stages.items()) seconds += info.value("seconds", 0.0);
    j["stages"] = stages;
    j["tokens_trained"] = tokens;
    j["wall_seconds"] = seconds;
    out["models"].push_back(j);
  }
  return out;
}

std::pair<fs::path, fs::path> write_report(const json& results, const fs::path& dir) {
  const auto figures = write_figures(results, dir);
  const auto rows = table_rows(results);
  const json& eval = results["eval"];
  const std::string limits =
      eval["limit"].get<int64_t>() < 0
          ? "full splits"
          : fmt::format("the first {} documents of each task{}", eval["limit"].get<int64_t>(),
                        eval["limits"].empty() ? "" : " (" + eval["limits"].dump() + ")");
  const std::string about = fmt::format(
      "Model {}; scores in % ({}), {}, {}; perplexity on {} ({} chunks of {} tokens); decode "
      "speed in {} with the latent-only cache.{}",
      results["model"].get<std::string>(), results["score_rule"].get<std::string>(), limits,
      eval["dtype"].get<std::string>(), eval["perplexity_text"].get<std::string>(),
      eval["perplexity_chunks"].get<int64_t>(), eval["perplexity_ctx"].get<int64_t>(),
      results["speed"]["dtype"].get<std::string>(),
      results["smoke"].get<bool>() ? " SMOKE RUN: a handful of steps, not a result." : "");

  std::string md = "# ecomla recipe: quality against KV cache size\n\n" + about + "\n\n" +
                   markdown_table(rows) + "\n## Decode tokens/s\n\n" + speed_table(results) +
                   "\n## Figures\n\n";
  for (const auto& [file, caption] : figures)
    md += fmt::format("![{0}](figures/{1})\n\n", caption, file);
  const fs::path md_path = dir / "report.md";
  write_text(md_path, md);

  std::string html =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ecomla recipe</title>\n"
      "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
      "td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:1em}"
      "</style></head><body>\n<h1>ecomla recipe: quality against KV cache size</h1>\n<p>" +
      about + "</p>\n" + html_table(rows) + "\n";
  for (const auto& [file, caption] : figures) {
    html += fmt::format("<figure>{}<figcaption>{}</figcaption></figure>\n",
                        data_files::read_text(dir / "figures" / file), caption);
  }
  html += "</body></html>\n";
  const fs::path html_path = dir / "report.html";
  write_text(html_path, html);
  return {md_path, html_path};
}

}  // namespace ecomla::recipe
