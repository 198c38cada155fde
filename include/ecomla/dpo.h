// Direct Preference Optimisation (Rafailov et al. 2023), the last stage of X-EcoMLA's recipe
// (train_mla/train_dpo.py), on the shared training loop (include/ecomla/training.h).
//
// The policy is the model being trained and the reference a frozen copy of it as it starts.
// The reference's log-probabilities of every response are computed once, before training, and
// kept in output_dir/reference_logps.json beside the data they belong to, so the reference
// model is not held in memory while the policy trains (and a resumed run reads them back).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ecomla/training.h"

namespace ecomla {

// The loss on h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)):
// sigmoid (DPO), ipo (Azar et al. 2023), hinge (SLiC); see train/losses.h.
enum class DpoLossType { kSigmoid, kIpo, kHinge };

struct DpoConfig : TrainingArguments {
  DpoConfig() {
    learning_rate = 5e-7;  // the alignment handbook's (and X-EcoMLA's) DPO defaults
    warmup_ratio = 0.1;
  }
  std::string model_name_or_path;  // original, hybrid or MLA model; the reference too
  double beta = 0.01;
  DpoLossType loss_type = DpoLossType::kSigmoid;
  double label_smoothing = 0.0;  // sigmoid loss only
  int64_t max_length = 1024, max_prompt_length = 512;
  double eval_fraction = 0.1;           // of the pairs, held out (seeded) for evaluation
  int64_t max_pairs = 0;                // 0: every pair the mixer gives; else the first N
  bool skip_malformed_records = false;  // count and skip them instead of failing
};

// Reads an X-EcoMLA-style DPO YAML config; `overrides` are "key=value" applied on top. Unknown
// keys and bad values are a FormatError naming the file and key.
DpoConfig read_dpo_config(const std::filesystem::path& yaml,
                          const std::vector<std::string>& overrides = {});

// Runs DPO. Model, config and every record are checked before training starts.
TrainingResult dpo(const DpoConfig& config, const TrainingRun& run);

}  // namespace ecomla
