// Distillation configs: X-EcoMLA's training YAML (train_configs.py DistillConfig), with local
// paths; the shared TrainingArguments keys are read by train/training_config.
#include <fmt/format.h>
#include <set>

#include "convert/convert_config.h"
#include "ecomla/distill.h"
#include "ecomla/error.h"
#include "train/stage_configs.h"
#include "train/training_config.h"
#include "util/yaml_config.h"

namespace ecomla {

using yaml_config::value;

DistillConfig read_distill_config(const std::filesystem::path& path,
                                  const std::vector<std::string>& overrides) {
  return train::distill_config_from(train::load_config(path.string(), overrides), path.string());
}

DistillConfig train::distill_config_from(const YAML::Node& root, const std::string& origin) {
  DistillConfig c;
  // The MLA keys are the conversion's; what it leaves are the training keys.
  ConvertConfig convert = convert_config_from(root, origin);
  const std::set<std::string> training(convert.ignored_keys.begin(), convert.ignored_keys.end());
  if (training.size() < root.size()) {
    convert.ignored_keys.clear();
    c.convert = convert;
  }
  train::read_training_config(root, origin, c, [&](const std::string& key, const YAML::Node& v) {
    if (!training.contains(key)) return true;  // read by the conversion
    if (key == "model_name_or_path") {
      c.model_name_or_path = value<std::string>(v, key, origin);
    } else if (key == "teacher_model_name_or_path") {
      c.teacher_model_name_or_path = value<std::string>(v, key, origin);
    } else if (key == "stage") {
      const std::string stage = value<std::string>(v, key, origin);
      if (stage != "kd" && stage != "layerwise") {
        throw FormatError(origin + ": stage must be kd or layerwise, got '" + stage + "'");
      }
      c.stage = stage == "kd" ? DistillStage::kKd : DistillStage::kLayerwise;
    } else if (key == "kl_weight") {
      c.kl_weight = value<double>(v, key, origin);
    } else if (key == "ce_weight") {
      c.ce_weight = value<double>(v, key, origin);
    } else if (key == "temperature") {
      c.temperature = value<double>(v, key, origin);
    } else if (key == "max_seq_length") {
      c.max_seq_length = value<int64_t>(v, key, origin);
    } else if (key == "eval_sequences") {
      c.eval_sequences = value<int64_t>(v, key, origin);
    } else {
      return false;
    }
    return true;
  });
  if (c.model_name_or_path.empty()) throw FormatError(origin + ": model_name_or_path is required");
  if (c.teacher_model_name_or_path.empty()) c.teacher_model_name_or_path = c.model_name_or_path;
  if (c.eval_sequences < 0) throw FormatError(origin + ": eval_sequences must not be negative");
  if (c.max_seq_length < 2) throw FormatError(origin + ": max_seq_length must be at least 2");
  if (c.temperature <= 0) throw FormatError(origin + ": temperature must be positive");
  return c;
}

}  // namespace ecomla
