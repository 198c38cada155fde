// The training loop every stage runs (distillation's KD and layer-wise stages, DPO), in the
// order of the math: for each optimiser step, accumulate the gradients of its micro-batches,
// average them over processes, clip, step AdamW at the scheduled learning rate; log, evaluate,
// checkpoint. A stage supplies only its Objective: how many training examples it has, the loss
// of a micro-batch of them, and its held-out evaluation.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ecomla/model.h"
#include "ecomla/tokenizer.h"
#include "ecomla/training.h"
#include "train/data_parallel.h"

namespace ecomla::train {

struct MicroBatchLoss {
  at::Tensor loss;              // the micro-batch's mean loss, with the graph
  std::vector<double> metrics;  // the Objective's metric_names: means over the micro-batch
  int64_t tokens = 0;           // tokens run through the model, for tokens/s
};

struct Objective {
  std::string name;                       // the stage, in the loss curve's title
  int64_t examples = 0;                   // training examples (sequences, preference pairs)
  std::vector<std::string> metric_names;  // logged each step beside "loss"
  // The loss of the training examples `ids` (indices below `examples`).
  std::function<MicroBatchLoss(const std::vector<int64_t>& ids)> loss;
  // Held-out metrics ({"eval_loss": ..., ...}), the same on every process; unset: none.
  std::function<nlohmann::json()> evaluate;
};

// Freezes the model's parameters but those that train (requires_grad false) and returns those:
// every one, or with `mla_only` the MLA layers' (freeze_non_mla).
std::vector<at::Tensor> trainable_parameters(LlamaForCausalLM& model, bool mla_only);

// Throws std::invalid_argument naming the config key when `path` does not exist.
void require_path(const std::string& key, const std::string& path);

// The checkpoint a run continues from: none unless run.resume, and then the last complete one
// in output_dir, or std::invalid_argument when there is none.
std::optional<std::filesystem::path> checkpoint_to_resume(const std::filesystem::path& output_dir,
                                                          const TrainingRun& run);

// Optimiser steps of a run: max_steps, or enough global batches (processes x per-device
// batch x accumulation) for num_train_epochs.
int64_t total_steps(const TrainingArguments& args, int64_t examples, int64_t world);

// Trains `model` in place: the `params` it is given (the others frozen by the caller), from
// `checkpoint` (the folder the model was loaded from, with its optimiser state) when resuming.
// Checkpoints, metrics.jsonl and loss.svg go to args.output_dir (from the main process only).
// Throws std::runtime_error on a NaN or infinite loss, leaving the last checkpoint as it was.
TrainingResult run_training(const TrainingArguments& args, const Objective& objective,
                            LlamaForCausalLM& model, const Tokenizer& tokenizer,
                            const std::vector<at::Tensor>& params,
                            const std::optional<std::filesystem::path>& checkpoint,
                            const DataParallel& dp, const TrainingRun& run);

}  // namespace ecomla::train
