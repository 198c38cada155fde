// Distillation configs: X-EcoMLA's training YAML (train_configs.py DistillConfig and the Hugging
// Face TrainingArguments it extends), with local paths.
#include <yaml-cpp/yaml.h>

#include <fmt/format.h>
#include <set>

#include "convert/convert_config.h"
#include "ecomla/distill.h"
#include "ecomla/error.h"
#include "util/yaml_config.h"

namespace ecomla {

using yaml_config::value;

namespace {

// TrainingArguments / alignment-handbook keys found in X-EcoMLA's configs that change nothing
// here (hub, logging backends, data loader workers, ...): accepted and reported.
const std::set<std::string>& ignorable_keys() {
  static const std::set<std::string> keys = {"bf16",
                                             "fp16",
                                             "torch_dtype",
                                             "use_flash_attention_2",
                                             "attn_implementation",
                                             "decontaminate",
                                             "with_distill",
                                             "data_ratio",
                                             "dataset_splits",
                                             "chat_template",
                                             "preprocessing_num_workers",
                                             "do_eval",
                                             "evaluation_strategy",
                                             "eval_strategy",
                                             "gradient_checkpointing",
                                             "gradient_checkpointing_kwargs",
                                             "log_level",
                                             "logging_strategy",
                                             "overwrite_output_dir",
                                             "per_device_eval_batch_size",
                                             "push_to_hub",
                                             "hub_model_id",
                                             "hub_strategy",
                                             "remove_unused_columns",
                                             "report_to",
                                             "save_strategy",
                                             "save_total_limit",
                                             "run_name",
                                             "ddp_timeout",
                                             "dataloader_num_workers",
                                             "optim",
                                             "prev_checkpoint_path",
                                             "model_name",
                                             "packing",
                                             "dataset_num_proc",
                                             "mla_num_key_value_heads",
                                             "layer_rank_list"};
  return keys;
}

// "key=value" on top of the file's keys; the value is read as YAML ("1e-4", "[0,1]", "true").
void apply_override(YAML::Node& root, const std::string& entry, const std::string& origin) {
  const size_t eq = entry.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw std::invalid_argument("--set expects key=value, got '" + entry + "'");
  }
  try {
    root[entry.substr(0, eq)] = YAML::Load(entry.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw FormatError(fmt::format("{}: --set {}: {}", origin, entry, e.what()));
  }
}

}  // namespace

DistillConfig read_distill_config(const std::filesystem::path& path,
                                  const std::vector<std::string>& overrides) {
  const std::string origin = path.string();
  YAML::Node root = yaml_config::load_mapping(origin);
  for (const std::string& entry : overrides) apply_override(root, entry, origin);

  DistillConfig c;
  // The MLA keys are the conversion's; what it leaves are the training keys.
  ConvertConfig convert = convert_config_from(root, origin);
  const std::set<std::string> training(convert.ignored_keys.begin(), convert.ignored_keys.end());
  if (training.size() < root.size()) {
    convert.ignored_keys.clear();
    c.convert = convert;
  }
  std::vector<std::string> unknown;
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    if (!training.contains(key)) continue;
    const YAML::Node& v = entry.second;
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
    } else if (key == "learning_rate") {
      c.learning_rate = value<double>(v, key, origin);
    } else if (key == "weight_decay") {
      c.weight_decay = value<double>(v, key, origin);
    } else if (key == "adam_beta1") {
      c.adam_beta1 = value<double>(v, key, origin);
    } else if (key == "adam_beta2") {
      c.adam_beta2 = value<double>(v, key, origin);
    } else if (key == "adam_epsilon") {
      c.adam_epsilon = value<double>(v, key, origin);
    } else if (key == "max_grad_norm") {
      c.max_grad_norm = value<double>(v, key, origin);
    } else if (key == "lr_scheduler_type") {
      c.lr_scheduler_type = value<std::string>(v, key, origin);
      if (c.lr_scheduler_type != "cosine" && c.lr_scheduler_type != "linear" &&
          c.lr_scheduler_type != "constant") {
        throw FormatError(origin + ": lr_scheduler_type must be cosine, linear or constant");
      }
    } else if (key == "warmup_ratio") {
      c.warmup_ratio = value<double>(v, key, origin);
    } else if (key == "num_train_epochs") {
      c.num_train_epochs = value<double>(v, key, origin);
    } else if (key == "max_steps") {
      c.max_steps = value<int64_t>(v, key, origin);
    } else if (key == "per_device_train_batch_size") {
      c.per_device_train_batch_size = value<int64_t>(v, key, origin);
    } else if (key == "gradient_accumulation_steps") {
      c.gradient_accumulation_steps = value<int64_t>(v, key, origin);
    } else if (key == "max_seq_length") {
      c.max_seq_length = value<int64_t>(v, key, origin);
    } else if (key == "freeze_non_mla") {
      c.freeze_non_mla = value<bool>(v, key, origin);
    } else if (key == "compute_dtype") {
      c.compute_dtype = value<std::string>(v, key, origin);
    } else if (key == "dataset_mixer") {
      if (!v.IsMap()) throw FormatError(origin + ": dataset_mixer maps file paths to ratios");
      for (const auto& source : v) {
        c.dataset_mixer.push_back({source.first.as<std::string>(),
                                   value<double>(source.second, "dataset_mixer", origin)});
      }
    } else if (key == "eval_sequences") {
      c.eval_sequences = value<int64_t>(v, key, origin);
    } else if (key == "eval_steps") {
      c.eval_steps = value<int64_t>(v, key, origin);
    } else if (key == "save_steps") {
      c.save_steps = value<int64_t>(v, key, origin);
    } else if (key == "logging_steps") {
      c.logging_steps = value<int64_t>(v, key, origin);
    } else if (key == "seed") {
      c.seed = value<int64_t>(v, key, origin);
    } else if (key == "output_dir") {
      c.output_dir = value<std::string>(v, key, origin);
    } else if (ignorable_keys().contains(key)) {
      c.ignored_keys.push_back(key);
    } else {
      unknown.push_back(key);
    }
  }
  if (!unknown.empty()) {
    std::string list;
    for (const std::string& k : unknown) list += (list.empty() ? "" : ", ") + k;
    throw FormatError(fmt::format("{}: unknown keys: {}", origin, list));
  }
  if (c.model_name_or_path.empty()) throw FormatError(origin + ": model_name_or_path is required");
  if (c.output_dir.empty()) throw FormatError(origin + ": output_dir is required");
  if (c.dataset_mixer.empty()) throw FormatError(origin + ": dataset_mixer is required");
  if (c.teacher_model_name_or_path.empty()) c.teacher_model_name_or_path = c.model_name_or_path;
  auto positive = [&](int64_t value, const char* key) {
    if (value < 1) throw FormatError(fmt::format("{}: {} must be at least 1", origin, key));
  };
  positive(c.per_device_train_batch_size, "per_device_train_batch_size");
  positive(c.gradient_accumulation_steps, "gradient_accumulation_steps");
  positive(c.save_steps, "save_steps");
  positive(c.logging_steps, "logging_steps");
  if (c.eval_sequences < 0) throw FormatError(origin + ": eval_sequences must not be negative");
  if (c.max_seq_length < 2) throw FormatError(origin + ": max_seq_length must be at least 2");
  if (c.learning_rate <= 0 || c.temperature <= 0) {
    throw FormatError(origin + ": learning_rate and temperature must be positive");
  }
  if (c.compute_dtype != "auto" && c.compute_dtype != "bf16" && c.compute_dtype != "fp32") {
    throw FormatError(origin + ": compute_dtype must be auto, bf16 or fp32");
  }
  return c;
}

}  // namespace ecomla
