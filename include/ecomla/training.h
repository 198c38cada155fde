// What every training stage shares (distillation, DPO): the optimisation and bookkeeping keys
// of Hugging Face's TrainingArguments that ecomla reads, and how a run is driven and reported.
// One loop (src/train/trainer.cpp) runs every stage: AdamW on a warmup + cosine schedule,
// gradient accumulation, averaging over processes, clipping, atomic checkpoints every
// save_steps, metrics.jsonl and a loss curve in output_dir, resume with identical losses.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ecomla/progress.h"
#include "ecomla/train_data.h"

namespace ecomla {

struct TrainingArguments {
  double learning_rate = 8e-5;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.98, adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;
  std::string lr_scheduler_type = "cosine";  // cosine | linear | constant
  double warmup_ratio = 0.01;
  double num_train_epochs = 1;
  int64_t max_steps = -1;  // > 0 overrides the epochs
  int64_t per_device_train_batch_size = 4;
  int64_t gradient_accumulation_steps = 1;
  bool freeze_non_mla = false;
  std::string compute_dtype = "auto";  // auto (bf16 autocast where supported) | bf16 | fp32

  std::vector<DataSource> dataset_mixer;
  int64_t eval_steps = 0;  // 0: at the end only
  int64_t save_steps = 500;
  int64_t logging_steps = 1;
  int64_t seed = 42;
  std::filesystem::path output_dir;

  std::vector<std::string> ignored_keys;  // Hugging Face trainer keys with no meaning here
};

struct TrainingRun {
  bool resume = false;      // continue from output_dir/checkpoint
  int64_t stop_after = -1;  // stop cleanly after this many optimiser steps of this run
  ProgressCallback progress;
  std::function<void(const std::string&)> log;  // one line per event (stderr in the CLI)
};

struct TrainingResult {
  int64_t steps = 0;                    // optimiser steps done, in all
  bool finished = false;                // all steps done (false after --stop-after)
  std::vector<nlohmann::json> metrics;  // the lines written to metrics.jsonl by this run
};

}  // namespace ecomla
