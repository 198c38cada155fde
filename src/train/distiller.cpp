// The distillation stages on the shared training loop; see include/ecomla/distill.h.
#include <fmt/format.h>
#include <cmath>

#include "ecomla/distill.h"
#include "ecomla/model_loader.h"
#include "train/data_parallel.h"
#include "train/distill_step.h"
#include "train/train_state.h"
#include "train/trainer.h"

namespace ecomla {
namespace fs = std::filesystem;

namespace {

bool has_mla(const ModelConfig& config) {
  return std::any_of(config.attention.begin(), config.attention.end(),
                     [](const AttentionSpec& s) { return std::holds_alternative<MlaSpec>(s); });
}

// The student: a model with MLA layers as it is, or a plain one converted with the config's
// MLA keys (X-EcoMLA's init_with_svd path).
LoadedModel load_student(const DistillConfig& c, const TrainingRun& run) {
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

// The training sequences `ids` as one batch [B, T].
at::Tensor micro_batch(const std::vector<std::vector<int32_t>>& data,
                       const std::vector<int64_t>& ids) {
  std::vector<int64_t> tokens;
  for (const int64_t id : ids) tokens.insert(tokens.end(), data[id].begin(), data[id].end());
  return at::tensor(tokens, at::kLong).view({static_cast<int64_t>(ids.size()), -1});
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

}  // namespace

TrainingResult distill(const DistillConfig& c, const TrainingRun& run) {
  // One process, or one of torchrun's: only the main one logs and writes files.
  const train::DataParallel dp = train::DataParallel::from_environment();
  auto log = [&](const std::string& line) {
    if (run.log && dp.is_main()) run.log(line);
  };
  // --- everything that can be wrong is checked before training ---------------------------------
  train::require_path("model_name_or_path", c.model_name_or_path);
  train::require_path("teacher_model_name_or_path", c.teacher_model_name_or_path);
  const std::optional<fs::path> checkpoint = train::checkpoint_to_resume(c.output_dir, run);
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
  log(fmt::format("data: {} documents, {} tokens, {} training sequences of {} tokens, {} held out",
                  data.documents, data.tokens, data.train.size(), c.max_seq_length,
                  data.held_out.size()));

  // --- the objective: the stage's loss on packed sequences ---------------------------------------
  train::Objective objective;
  objective.name = c.stage == DistillStage::kKd ? "distillation (kd)" : "distillation (layerwise)";
  objective.examples = static_cast<int64_t>(data.train.size());
  if (c.stage == DistillStage::kKd) objective.metric_names = {"kl", "ce"};
  LlamaForCausalLM& model = student.model;
  objective.loss = [&](const std::vector<int64_t>& ids) {
    const at::Tensor tokens = micro_batch(data.train, ids);
    const train::StepLosses l = train::stage_loss(c, model, teacher.model, tokens, bf16);
    train::MicroBatchLoss out{l.loss, {}, tokens.numel()};
    if (c.stage == DistillStage::kKd) out.metrics = {l.kl, l.ce};
    return out;
  };
  if (!data.held_out.empty()) {
    objective.evaluate = [&] {
      return evaluate_held_out(c, model, teacher.model, data.held_out, bf16, dp);
    };
  }
  return train::run_training(c, objective, model, student.tokenizer,
                             train::trainable_parameters(c, model), checkpoint, dp, run);
}

}  // namespace ecomla
