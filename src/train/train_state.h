// What a distillation run keeps between sessions: the checkpoint folder (the student as a
// Hugging Face folder, the optimiser state, the step) written atomically, and metrics.jsonl.
#pragma once

#include <torch/optim/adamw.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "ecomla/model.h"
#include "ecomla/tokenizer.h"

namespace ecomla::train {

// <output_dir>/checkpoint: model.safetensors + config files + tokenizer (fp32, exact),
// optimizer.pt, state.json {"step": N}. Written to checkpoint.tmp and renamed into place, the
// previous one kept as checkpoint.old until the rename is done, so a crash at any point leaves
// a complete checkpoint.
void save_checkpoint(const std::filesystem::path& output_dir, LlamaForCausalLM& model,
                     const Tokenizer& tokenizer, const torch::optim::AdamW& optimizer,
                     int64_t step);

// The folder of the last complete checkpoint under output_dir, if any.
std::optional<std::filesystem::path> find_checkpoint(const std::filesystem::path& output_dir);

// Loads the optimiser state and returns the step of a checkpoint folder (the model is loaded
// from it with load_model).
int64_t load_checkpoint_state(const std::filesystem::path& checkpoint,
                              torch::optim::AdamW& optimizer);

// metrics.jsonl: one JSON object per line. On resume the lines after the checkpoint's step are
// dropped, so the file reads as one uninterrupted run.
class MetricsLog {
public:
  MetricsLog(const std::filesystem::path& path, std::optional<int64_t> resume_step);
  void write(const nlohmann::json& entry);
  // Every entry in the file: those kept from before the resume, then this run's.
  const std::vector<nlohmann::json>& entries() const { return entries_; }

private:
  std::filesystem::path path_;
  std::vector<nlohmann::json> entries_;
};

}  // namespace ecomla::train
