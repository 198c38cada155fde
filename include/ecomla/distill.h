// Knowledge distillation of a converted (hybrid or MLA) student from its teacher, the training
// stage of X-EcoMLA (train_mla/train_distill.py, trainer/kd_trainer.py), in C++.
//
// Two stages, each its own run:
// - "kd", end to end: loss = kl_weight * KL(p_teacher || p_student) + ce_weight * CE, forward
//   KL over the vocabulary at temperature tau (scaled by tau^2, Hinton et al.), averaged over
//   tokens, CE the student's next-token cross-entropy;
// - "layerwise" (Zebra-Llama's intermediate-layer distillation): each student MLA layer gets
//   the teacher's hidden state as input; loss = sum over MLA layers of the mean squared error of
//   its attention output and of its layer output against the teacher's. No LM head, no
//   backward through the stack.
//
// The loop reads like the math: sample micro-batches, accumulate gradients, clip, step AdamW
// on a warmup + cosine schedule; a checkpoint (model, optimiser, data position, RNG) is written
// atomically every save_steps optimiser steps, and a run resumed from it computes the same
// losses as an uninterrupted one.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ecomla/convert.h"
#include "ecomla/training.h"

namespace ecomla {

enum class DistillStage { kKd, kLayerwise };

struct DistillConfig : TrainingArguments {
  std::string model_name_or_path;          // the student, or a plain model to convert first
  std::string teacher_model_name_or_path;  // default: model_name_or_path
  // Set when the config gives MLA keys (mla_layers, kv_lora_rank, ...): a plain student is
  // converted with them before training.
  std::optional<ConvertConfig> convert;

  DistillStage stage = DistillStage::kKd;
  double kl_weight = 1.0, ce_weight = 0.0, temperature = 1.0;
  int64_t max_seq_length = 512;
  int64_t eval_sequences = 8;  // held out from the packed data
};

// Reads an X-EcoMLA-style YAML config; `overrides` are "key=value" (YAML values) applied on top.
// Throws FormatError naming the file and key for a bad value and for unknown keys (the keys of
// Hugging Face's TrainingArguments that do not apply here are accepted and listed in
// ignored_keys).
DistillConfig read_distill_config(const std::filesystem::path& yaml,
                                  const std::vector<std::string>& overrides = {});

// Runs one stage. Everything is checked before training starts: model paths, the tokenizers of
// student and teacher, the MLA sizes, the data. Throws std::runtime_error on a NaN or infinite
// loss, leaving the last checkpoint as it was.
TrainingResult distill(const DistillConfig& config, const TrainingRun& run);

}  // namespace ecomla
