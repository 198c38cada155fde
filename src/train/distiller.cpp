// The distillation loop; see include/ecomla/distill.h.
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <fmt/format.h>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numbers>
#include <numeric>
#include <random>

#include "ecomla/distill.h"
#include "ecomla/model_loader.h"
#include "ecomla/svg_plot.h"
#include "train/data_parallel.h"
#include "train/distill_step.h"
#include "train/train_state.h"

namespace ecomla {
namespace fs = std::filesystem;

namespace {

// Linear warmup over warmup_ratio of the steps, then cosine (or linear) decay to zero, as
// transformers' get_cosine_schedule_with_warmup / get_linear_schedule_with_warmup.
double learning_rate_at(const DistillConfig& c, int64_t step, int64_t total) {
  const auto warmup = static_cast<int64_t>(std::ceil(c.warmup_ratio * double(total)));
  if (step < warmup) return c.learning_rate * double(step + 1) / double(warmup);
  if (c.lr_scheduler_type == "constant") return c.learning_rate;
  const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  if (c.lr_scheduler_type == "linear") return c.learning_rate * std::max(0.0, 1.0 - progress);
  return c.learning_rate * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

bool has_mla(const ModelConfig& config) {
  return std::any_of(config.attention.begin(), config.attention.end(),
                     [](const AttentionSpec& s) { return std::holds_alternative<MlaSpec>(s); });
}

// The student: a model with MLA layers as it is, or a plain one converted with the config's
// MLA keys (X-EcoMLA's init_with_svd path).
LoadedModel load_student(const DistillConfig& c, const DistillRun& run) {
  LoadedModel student = load_model(c.model_name_or_path);
  if (has_mla(student.model->config())) return student;
  if (!c.convert) {
    throw std::invalid_argument(fmt::format(
        "{} has no MLA layers and the config gives no MLA keys (mla_layers, kv_lora_rank, "
        "kv_budget, ...) to convert it with",
        c.model_name_or_path));
  }
  validate_conversion(student.model->config(), c.convert->options);
  const std::optional<Calibration> calibration = load_calibration(*c.convert, student.tokenizer);
  if (run.log)
    run.log(fmt::format("converting {} with the {} init", c.model_name_or_path,
                        mla_init_name(c.convert->options.init)));
  student.model =
      convert_to_mla(student.model, c.convert->options, calibration ? &*calibration : nullptr)
          .model;
  return student;
}

// Student and teacher must read the same token ids.
void check_same_tokenizer(const Tokenizer& student, const Tokenizer& teacher) {
  const auto& a = student.spec().tokens;
  const auto& b = teacher.spec().tokens;
  if (a != b || student.spec().merges != teacher.spec().merges) {
    throw std::invalid_argument(
        "the student and the teacher have different tokenizers; distillation compares their "
        "distributions token by token and needs the same vocabulary");
  }
}

// The order the training sequences are visited in: epoch e is a permutation drawn from the seed
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

private:
  int64_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
};

// Micro-batch `index`: sequences [index * B, (index + 1) * B) of the data order, [B, T]. With
// W processes, process r takes micro-batch m * W + r of global micro-batch m.
at::Tensor micro_batch(const std::vector<std::vector<int32_t>>& data, DataOrder& order,
                       int64_t batch, int64_t index) {
  std::vector<int64_t> tokens;
  for (int64_t k = index * batch; k < (index + 1) * batch; ++k) {
    const auto& seq = data[order.at(k)];
    tokens.insert(tokens.end(), seq.begin(), seq.end());
  }
  return at::tensor(tokens, at::kLong).view({batch, -1});
}

// Held-out KL and perplexity of the student (KD stage) or layer-wise loss; each process
// scores every W-th sequence and the sums are pooled.
nlohmann::json evaluate_held_out(const DistillConfig& c, LlamaForCausalLM& student,
                                 LlamaForCausalLM& teacher,
                                 const std::vector<std::vector<int32_t>>& held_out, bool bf16,
                                 const train::DataParallel& dp) {
  at::NoGradGuard no_grad;
  at::Tensor sums = at::zeros({3}, at::kDouble);  // loss, kl, ce
  for (size_t i = static_cast<size_t>(dp.rank()); i < held_out.size();
       i += static_cast<size_t>(dp.world_size())) {
    const at::Tensor tokens = at::tensor(held_out[i], at::kLong).unsqueeze(0);
    const train::StepLosses l = train::stage_loss(c, student, teacher, tokens, bf16);
    sums += at::tensor({l.loss.item<double>(), l.kl, l.ce}, at::kDouble);
  }
  dp.all_reduce_sum(sums);
  const auto n = static_cast<double>(held_out.size());
  const double loss = sums[0].item<double>() / n, kl = sums[1].item<double>() / n,
               ce = sums[2].item<double>() / n;
  nlohmann::json out = {{"eval_loss", loss}};
  if (c.stage == DistillStage::kKd) {
    out["eval_kl"] = kl;
    out["eval_ce"] = ce;
    out["eval_ppl"] = std::exp(ce);
  }
  return out;
}

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
  out << svg_line_chart({train, held_out}, {.title = "distillation (" + stage + ")",
                                            .x_label = "optimiser step",
                                            .y_label = "loss",
                                            .log_y = true});
}

}  // namespace

DistillResult distill(const DistillConfig& c, const DistillRun& run) {
  // One process, or one of torchrun's: only the main one logs and writes files.
  const train::DataParallel dp = train::DataParallel::from_environment();
  auto log = [&](const std::string& line) {
    if (run.log && dp.is_main()) run.log(line);
  };
  // --- everything that can be wrong is checked before training ---------------------------------
  if (!fs::exists(c.model_name_or_path)) {
    throw std::invalid_argument("model_name_or_path: " + c.model_name_or_path + " does not exist");
  }
  if (!fs::exists(c.teacher_model_name_or_path)) {
    throw std::invalid_argument("teacher_model_name_or_path: " + c.teacher_model_name_or_path +
                                " does not exist");
  }
  const std::optional<fs::path> checkpoint =
      run.resume ? train::find_checkpoint(c.output_dir) : std::nullopt;
  if (run.resume && !checkpoint) {
    throw std::invalid_argument("--resume: no checkpoint in " + c.output_dir.string());
  }
  LoadedModel teacher = load_model(c.teacher_model_name_or_path);
  LoadedModel student = checkpoint ? load_model(*checkpoint) : load_student(c, run);
  check_same_tokenizer(student.tokenizer, teacher.tokenizer);
  if (student.model->config().n_layer != teacher.model->config().n_layer &&
      c.stage == DistillStage::kLayerwise) {
    throw std::invalid_argument(
        "layer-wise distillation needs a teacher with the student's layers");
  }
  const bool bf16 = train::autocast_bf16(c.compute_dtype);
  log(bf16 ? "compute: bf16 autocast (fp32 master weights), teacher in bf16" : "compute: fp32");
  if (dp.world_size() > 1) log(fmt::format("data parallel: {} processes (Gloo)", dp.world_size()));
  teacher.model->to(bf16 ? at::kBFloat16 : at::kFloat);  // no gradients: bf16 weights suffice
  teacher.model->eval();
  for (auto& p : teacher.model->parameters()) p.set_requires_grad(false);

  const PackedData data = pack_training_data(c.dataset_mixer, student.tokenizer, c.max_seq_length,
                                             c.eval_sequences, static_cast<uint64_t>(c.seed));
  const int64_t batch = c.per_device_train_batch_size, accumulation = c.gradient_accumulation_steps;
  const int64_t world = dp.world_size();
  const int64_t sequences_per_step = batch * accumulation * world;  // the global batch
  const int64_t total_steps =
      c.max_steps > 0
          ? c.max_steps
          : static_cast<int64_t>(std::ceil(c.num_train_epochs * double(data.train.size()) /
                                           double(sequences_per_step)));
  log(fmt::format("data: {} documents, {} tokens, {} training sequences of {} tokens, {} held out",
                  data.documents, data.tokens, data.train.size(), c.max_seq_length,
                  data.held_out.size()));

  // --- optimiser ---------------------------------------------------------------------------------
  LlamaForCausalLM& model = student.model;
  model->train();
  std::vector<at::Tensor> params = train::trainable_parameters(c, model);
  dp.broadcast_from_main(model->parameters());
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(c.learning_rate)
                                            .betas({c.adam_beta1, c.adam_beta2})
                                            .eps(c.adam_epsilon)
                                            .weight_decay(c.weight_decay));
  int64_t step = 0;
  if (checkpoint) {
    step = train::load_checkpoint_state(*checkpoint, optimizer);
    log(fmt::format("resuming from {} at step {}", checkpoint->string(), step));
  }
  std::optional<train::MetricsLog> metrics;
  if (dp.is_main()) {
    fs::create_directories(c.output_dir);
    metrics.emplace(c.output_dir / "metrics.jsonl",
                    checkpoint ? std::optional(step) : std::nullopt);
  }
  DistillResult result;
  auto record = [&](const nlohmann::json& entry) {
    if (metrics) metrics->write(entry);
    result.metrics.push_back(entry);
  };
  const std::string stage_name = c.stage == DistillStage::kKd ? "kd" : "layerwise";
  auto save = [&] {
    if (!dp.is_main()) return;
    train::save_checkpoint(c.output_dir, model, student.tokenizer, optimizer, step);
    write_loss_curve(c.output_dir, metrics->entries(), stage_name);
  };

  // --- the loop: accumulate, average over processes, clip, step ---------------------------------
  DataOrder order(static_cast<int64_t>(data.train.size()), static_cast<uint64_t>(c.seed));
  const int64_t first_step = step;
  const auto start = std::chrono::steady_clock::now();
  while (step < total_steps && (run.stop_after < 0 || step - first_step < run.stop_after)) {
    const auto step_start = std::chrono::steady_clock::now();
    const double lr = learning_rate_at(c, step, total_steps);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    }
    optimizer.zero_grad();
    at::Tensor losses = at::zeros({3}, at::kDouble);  // loss, kl, ce of this process
    for (int64_t micro = 0; micro < accumulation; ++micro) {
      const int64_t index = (step * accumulation + micro) * world + dp.rank();
      const at::Tensor tokens = micro_batch(data.train, order, batch, index);
      const train::StepLosses l = train::stage_loss(c, model, teacher.model, tokens, bf16);
      (l.loss / static_cast<double>(accumulation)).backward();
      losses += at::tensor({l.loss.item<double>(), l.kl, l.ce}, at::kDouble) / double(accumulation);
    }
    dp.average_gradients(params);
    dp.all_reduce_sum(losses);
    losses /= double(world);
    const double loss = losses[0].item<double>(), kl = losses[1].item<double>(),
                 ce = losses[2].item<double>();
    if (!std::isfinite(loss)) {
      const std::optional<fs::path> last = train::find_checkpoint(c.output_dir);
      throw std::runtime_error(fmt::format("the loss is {} at step {}; stopping without saving. {}",
                                           loss, step + 1,
                                           last ? "The last good checkpoint is " + last->string()
                                                : "No checkpoint was written yet."));
    }
    const double grad_norm = torch::nn::utils::clip_grad_norm_(params, c.max_grad_norm);
    optimizer.step();
    ++step;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    const double tokens_per_s = double(sequences_per_step * c.max_seq_length) / seconds;
    if (step % c.logging_steps == 0 || step == total_steps) {
      nlohmann::json entry = {
          {"step", step},
          {"loss", loss},
          {"lr", lr},
          {"grad_norm", grad_norm},
          {"tokens_per_s", tokens_per_s},
          {"tokens", step * sequences_per_step * c.max_seq_length},
          {"epoch", double(step * sequences_per_step) / double(data.train.size())}};
      if (c.stage == DistillStage::kKd) {
        entry["kl"] = kl;
        entry["ce"] = ce;
      }
      record(entry);
    }
    if (c.eval_steps > 0 && step % c.eval_steps == 0 && step < total_steps &&
        !data.held_out.empty()) {
      nlohmann::json entry = evaluate_held_out(c, model, teacher.model, data.held_out, bf16, dp);
      entry["step"] = step;
      record(entry);
    }
    if (step % c.save_steps == 0 || step == total_steps) save();
    if (run.progress && dp.is_main()) {
      run.progress({"distill", step, total_steps, "steps",
                    fmt::format("loss {:.4f} | {:.0f} tok/s", loss, tokens_per_s)});
    }
  }
  if (step == total_steps && !data.held_out.empty()) {
    nlohmann::json entry = evaluate_held_out(c, model, teacher.model, data.held_out, bf16, dp);
    entry["step"] = step;
    record(entry);
  }
  // --stop-after leaves a checkpoint to resume from; every run ends with the loss curve.
  if (step < total_steps && step % c.save_steps != 0) {
    save();
  } else if (dp.is_main()) {
    write_loss_curve(c.output_dir, metrics->entries(), stage_name);
  }
  dp.barrier();  // the checkpoint is complete before any process returns
  log(fmt::format("{} steps in {:.1f} s", step - first_step,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
  result.steps = step;
  result.finished = step == total_steps;
  return result;
}

}  // namespace ecomla
