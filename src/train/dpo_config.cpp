// DPO configs: X-EcoMLA's DPO YAML (the alignment handbook's DPOConfig), with local paths; the
// shared TrainingArguments keys are read by train/training_config.
#include "ecomla/dpo.h"
#include "ecomla/error.h"
#include "train/stage_configs.h"
#include "train/training_config.h"
#include "util/yaml_config.h"

namespace ecomla {

using yaml_config::value;

DpoConfig read_dpo_config(const std::filesystem::path& path,
                          const std::vector<std::string>& overrides) {
  return train::dpo_config_from(train::load_config(path.string(), overrides), path.string());
}

DpoConfig train::dpo_config_from(const YAML::Node& root, const std::string& origin) {
  DpoConfig c;
  train::read_training_config(root, origin, c, [&](const std::string& key, const YAML::Node& v) {
    if (key == "model_name_or_path") {
      c.model_name_or_path = value<std::string>(v, key, origin);
    } else if (key == "beta") {
      c.beta = value<double>(v, key, origin);
    } else if (key == "loss_type") {
      const std::string type = value<std::string>(v, key, origin);
      if (type == "sigmoid") {
        c.loss_type = DpoLossType::kSigmoid;
      } else if (type == "ipo") {
        c.loss_type = DpoLossType::kIpo;
      } else if (type == "hinge") {
        c.loss_type = DpoLossType::kHinge;
      } else {
        throw FormatError(origin + ": loss_type must be sigmoid, ipo or hinge, got '" + type + "'");
      }
    } else if (key == "label_smoothing") {
      c.label_smoothing = value<double>(v, key, origin);
    } else if (key == "max_length") {
      c.max_length = value<int64_t>(v, key, origin);
    } else if (key == "max_prompt_length") {
      c.max_prompt_length = value<int64_t>(v, key, origin);
    } else if (key == "eval_fraction") {
      c.eval_fraction = value<double>(v, key, origin);
    } else if (key == "max_pairs") {
      c.max_pairs = value<int64_t>(v, key, origin);
    } else if (key == "skip_malformed_records") {
      c.skip_malformed_records = value<bool>(v, key, origin);
    } else {
      return false;
    }
    return true;
  });
  if (c.model_name_or_path.empty()) throw FormatError(origin + ": model_name_or_path is required");
  if (c.beta <= 0) throw FormatError(origin + ": beta must be positive");
  if (c.label_smoothing < 0 || c.label_smoothing >= 0.5) {
    throw FormatError(origin + ": label_smoothing must be in [0, 0.5)");
  }
  if (c.label_smoothing > 0 && c.loss_type != DpoLossType::kSigmoid) {
    throw FormatError(origin + ": label_smoothing applies to the sigmoid loss only");
  }
  if (c.max_prompt_length < 1 || c.max_length <= c.max_prompt_length) {
    throw FormatError(origin + ": need 0 < max_prompt_length < max_length");
  }
  if (c.eval_fraction < 0 || c.eval_fraction >= 1) {
    throw FormatError(origin + ": eval_fraction must be in [0, 1)");
  }
  if (c.max_pairs < 0) throw FormatError(origin + ": max_pairs must not be negative");
  return c;
}

}  // namespace ecomla
