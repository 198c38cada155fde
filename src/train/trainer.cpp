// The training loop; see train/trainer.h.
#include "train/trainer.h"

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <fmt/format.h>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numbers>
#include <numeric>
#include <random>

#include "ecomla/svg_plot.h"
#include "train/train_state.h"

namespace ecomla::train {
namespace fs = std::filesystem;

namespace {

// Linear warmup over warmup_ratio of the steps, then cosine (or linear) decay to zero, as
// transformers' get_cosine_schedule_with_warmup / get_linear_schedule_with_warmup.
double learning_rate_at(const TrainingArguments& a, int64_t step, int64_t total) {
  const auto warmup = static_cast<int64_t>(std::ceil(a.warmup_ratio * double(total)));
  if (step < warmup) return a.learning_rate * double(step + 1) / double(warmup);
  if (a.lr_scheduler_type == "constant") return a.learning_rate;
  const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  if (a.lr_scheduler_type == "linear") return a.learning_rate * std::max(0.0, 1.0 - progress);
  return a.learning_rate * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

// The order the training examples are visited in: epoch e is a permutation drawn from the seed
// and e, so the order is a function of the position alone and a resumed run sees exactly what
// an uninterrupted one would.
class DataOrder {
public:
  DataOrder(int64_t n, uint64_t seed) : n_(n), seed_(seed) {}
  int64_t at(int64_t position) {
    const int64_t epoch = position / n_;
    if (epoch != epoch_) {
      order_.resize(n_);
      std::iota(order_.begin(), order_.end(), 0);
      std::mt19937_64 rng(seed_ * 1000003ULL + static_cast<uint64_t>(epoch));
      std::shuffle(order_.begin(), order_.end(), rng);
      epoch_ = epoch;
    }
    return order_[position % n_];
  }
  // Micro-batch `index`: positions [index * B, (index + 1) * B) of the order. With W
  // processes, process r takes micro-batch m * W + r of global micro-batch m.
  std::vector<int64_t> micro_batch(int64_t batch, int64_t index) {
    std::vector<int64_t> ids;
    for (int64_t k = index * batch; k < (index + 1) * batch; ++k) ids.push_back(at(k));
    return ids;
  }

private:
  int64_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
};

// output_dir/loss.svg: the training loss (and held-out loss) against the step.
void write_loss_curve(const fs::path& output_dir, const std::vector<nlohmann::json>& entries,
                      const std::string& stage) {
  PlotSeries train{"train loss", {}}, held_out{"held-out loss", {}};
  for (const nlohmann::json& e : entries) {
    const auto step = static_cast<double>(e.value("step", int64_t{0}));
    if (e.contains("loss")) train.points.emplace_back(step, e["loss"].get<double>());
    if (e.contains("eval_loss")) held_out.points.emplace_back(step, e["eval_loss"].get<double>());
  }
  std::ofstream out(output_dir / "loss.svg");
  out << svg_line_chart(
      {train, held_out},
      {.title = stage, .x_label = "optimiser step", .y_label = "loss", .log_y = true});
}

// Tokens trained on before a resumed run: the count of the last training line kept.
int64_t tokens_before(const std::vector<nlohmann::json>& entries) {
  for (auto e = entries.rbegin(); e != entries.rend(); ++e) {
    if (e->contains("tokens")) return (*e)["tokens"].get<int64_t>();
  }
  return 0;
}

}  // namespace

std::vector<at::Tensor> trainable_parameters(LlamaForCausalLM& model, bool mla_only) {
  std::vector<at::Tensor> params;
  for (auto& p : model->named_parameters()) {
    const bool train = !mla_only || p.key().find(".mla.") != std::string::npos;
    p.value().set_requires_grad(train);
    if (train) params.push_back(p.value());
  }
  return params;
}

void require_path(const std::string& key, const std::string& path) {
  if (!fs::exists(path)) throw std::invalid_argument(key + ": " + path + " does not exist");
}

std::optional<fs::path> checkpoint_to_resume(const fs::path& output_dir, const TrainingRun& run) {
  if (!run.resume) return std::nullopt;
  std::optional<fs::path> checkpoint = find_checkpoint(output_dir);
  if (!checkpoint) throw std::invalid_argument("--resume: no checkpoint in " + output_dir.string());
  return checkpoint;
}

int64_t total_steps(const TrainingArguments& a, int64_t examples, int64_t world) {
  if (a.max_steps > 0) return a.max_steps;
  const int64_t global_batch =
      a.per_device_train_batch_size * a.gradient_accumulation_steps * world;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(a.num_train_epochs * double(examples) /
                                                             double(global_batch))));
}

TrainingResult run_training(const TrainingArguments& a, const Objective& objective,
                            LlamaForCausalLM& model, const Tokenizer& tokenizer,
                            const std::vector<at::Tensor>& params,
                            const std::optional<fs::path>& checkpoint, const DataParallel& dp,
                            const TrainingRun& run) {
  auto log = [&](const std::string& line) {
    if (run.log && dp.is_main()) run.log(line);
  };
  const int64_t batch = a.per_device_train_batch_size, accumulation = a.gradient_accumulation_steps;
  const int64_t world = dp.world_size();
  const int64_t examples_per_step = batch * accumulation * world;  // the global batch
  const int64_t steps = total_steps(a, objective.examples, world);

  // --- optimiser ---------------------------------------------------------------------------------
  model->train();
  dp.broadcast_from_main(model->parameters());
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(a.learning_rate)
                                            .betas({a.adam_beta1, a.adam_beta2})
                                            .eps(a.adam_epsilon)
                                            .weight_decay(a.weight_decay));
  int64_t step = 0;
  if (checkpoint) {
    step = load_checkpoint_state(*checkpoint, optimizer);
    log(fmt::format("resuming from {} at step {}", checkpoint->string(), step));
  }
  std::optional<MetricsLog> metrics;
  if (dp.is_main()) {
    fs::create_directories(a.output_dir);
    metrics.emplace(a.output_dir / "metrics.jsonl",
                    checkpoint ? std::optional(step) : std::nullopt);
  }
  TrainingResult result;
  auto record = [&](const nlohmann::json& entry) {
    if (metrics) metrics->write(entry);
    result.metrics.push_back(entry);
  };
  auto evaluate = [&] {
    if (!objective.evaluate) return;
    nlohmann::json entry = objective.evaluate();
    entry["step"] = step;
    record(entry);
  };
  auto save = [&] {
    if (!dp.is_main()) return;
    save_checkpoint(a.output_dir, model, tokenizer, optimizer, step);
    write_loss_curve(a.output_dir, metrics->entries(), objective.name);
  };

  // --- the loop: accumulate, average over processes, clip, step ---------------------------------
  DataOrder order(objective.examples, static_cast<uint64_t>(a.seed));
  const size_t n_metrics = objective.metric_names.size();
  int64_t tokens_seen = metrics ? tokens_before(metrics->entries()) : 0;
  const int64_t first_step = step;
  const auto start = std::chrono::steady_clock::now();
  while (step < steps && (run.stop_after < 0 || step - first_step < run.stop_after)) {
    const auto step_start = std::chrono::steady_clock::now();
    const double lr = learning_rate_at(a, step, steps);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    }
    optimizer.zero_grad();
    // This process's loss, metrics and token count, then their sums over the processes.
    at::Tensor sums = at::zeros({static_cast<int64_t>(n_metrics) + 2}, at::kDouble);
    for (int64_t micro = 0; micro < accumulation; ++micro) {
      const int64_t index = (step * accumulation + micro) * world + dp.rank();
      const MicroBatchLoss l = objective.loss(order.micro_batch(batch, index));
      (l.loss / static_cast<double>(accumulation)).backward();
      std::vector<double> values = {l.loss.item<double>()};
      values.insert(values.end(), l.metrics.begin(), l.metrics.end());
      for (size_t i = 0; i <= n_metrics; ++i) values[i] /= double(accumulation * world);
      values.push_back(static_cast<double>(l.tokens));
      sums += at::tensor(values, at::kDouble);
    }
    dp.average_gradients(params);
    dp.all_reduce_sum(sums);
    const double loss = sums[0].item<double>();
    if (!std::isfinite(loss)) {
      const std::optional<fs::path> last = find_checkpoint(a.output_dir);
      throw std::runtime_error(fmt::format("the loss is {} at step {}; stopping without saving. {}",
                                           loss, step + 1,
                                           last ? "The last good checkpoint is " + last->string()
                                                : "No checkpoint was written yet."));
    }
    const double grad_norm = torch::nn::utils::clip_grad_norm_(params, a.max_grad_norm);
    optimizer.step();
    ++step;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    const auto step_tokens =
        static_cast<int64_t>(sums[static_cast<int64_t>(n_metrics) + 1].item<double>());
    tokens_seen += step_tokens;
    const double tokens_per_s = double(step_tokens) / seconds;
    if (step % a.logging_steps == 0 || step == steps) {
      nlohmann::json entry = {{"step", step}, {"loss", loss}};
      for (size_t i = 0; i < n_metrics; ++i) {
        entry[objective.metric_names[i]] = sums[static_cast<int64_t>(i) + 1].item<double>();
      }
      entry["lr"] = lr;
      entry["grad_norm"] = grad_norm;
      entry["tokens_per_s"] = tokens_per_s;
      entry["tokens"] = tokens_seen;
      entry["epoch"] = double(step * examples_per_step) / double(objective.examples);
      record(entry);
    }
    if (a.eval_steps > 0 && step % a.eval_steps == 0 && step < steps) evaluate();
    if (step % a.save_steps == 0 || step == steps) save();
    if (run.progress && dp.is_main()) {
      run.progress({objective.name, step, steps, "steps",
                    fmt::format("loss {:.4f} | {:.0f} tok/s", loss, tokens_per_s)});
    }
  }
  if (step == steps) evaluate();
  // --stop-after leaves a checkpoint to resume from; every run ends with the loss curve.
  if (step < steps && step % a.save_steps != 0) {
    save();
  } else if (dp.is_main()) {
    write_loss_curve(a.output_dir, metrics->entries(), objective.name);
  }
  dp.barrier();  // the checkpoint is complete before any process returns
  log(fmt::format("{} steps in {:.1f} s", step - first_step,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
  result.steps = step;
  result.finished = step == steps;
  return result;
}

}  // namespace ecomla::train
