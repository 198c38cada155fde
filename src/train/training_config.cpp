// Training configs: X-EcoMLA's YAML (train_configs.py and the Hugging Face TrainingArguments it
// extends), with local paths.
#include "train/training_config.h"

#include <fmt/format.h>
#include <set>

#include "ecomla/error.h"
#include "util/yaml_config.h"

namespace ecomla::train {

using yaml_config::value;

namespace {

// TrainingArguments / alignment-handbook keys found in X-EcoMLA's configs that change nothing
// here (hub, logging backends, data loader workers, ...): accepted and reported.
const std::set<std::string>& ignorable_keys() {
  static const std::set<std::string> keys = {"bf16",
                                             "fp16",
                                             "torch_dtype",
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

// One shared key into `a`; false when `key` is not one of them.
bool read_shared_key(TrainingArguments& a, const std::string& key, const YAML::Node& v,
                     const std::string& origin) {
  if (key == "learning_rate") {
    a.learning_rate = value<double>(v, key, origin);
  } else if (key == "weight_decay") {
    a.weight_decay = value<double>(v, key, origin);
  } else if (key == "adam_beta1") {
    a.adam_beta1 = value<double>(v, key, origin);
  } else if (key == "adam_beta2") {
    a.adam_beta2 = value<double>(v, key, origin);
  } else if (key == "adam_epsilon") {
    a.adam_epsilon = value<double>(v, key, origin);
  } else if (key == "max_grad_norm") {
    a.max_grad_norm = value<double>(v, key, origin);
  } else if (key == "lr_scheduler_type") {
    a.lr_scheduler_type = value<std::string>(v, key, origin);
  } else if (key == "warmup_ratio") {
    a.warmup_ratio = value<double>(v, key, origin);
  } else if (key == "num_train_epochs") {
    a.num_train_epochs = value<double>(v, key, origin);
  } else if (key == "max_steps") {
    a.max_steps = value<int64_t>(v, key, origin);
  } else if (key == "per_device_train_batch_size") {
    a.per_device_train_batch_size = value<int64_t>(v, key, origin);
  } else if (key == "gradient_accumulation_steps") {
    a.gradient_accumulation_steps = value<int64_t>(v, key, origin);
  } else if (key == "freeze_non_mla") {
    a.freeze_non_mla = value<bool>(v, key, origin);
  } else if (key == "compute_dtype") {
    a.compute_dtype = value<std::string>(v, key, origin);
  } else if (key == "dataset_mixer") {
    if (!v.IsMap()) throw FormatError(origin + ": dataset_mixer maps file paths to ratios");
    for (const auto& source : v) {
      a.dataset_mixer.push_back(
          {source.first.as<std::string>(), value<double>(source.second, "dataset_mixer", origin)});
    }
  } else if (key == "eval_steps") {
    a.eval_steps = value<int64_t>(v, key, origin);
  } else if (key == "save_steps") {
    a.save_steps = value<int64_t>(v, key, origin);
  } else if (key == "logging_steps") {
    a.logging_steps = value<int64_t>(v, key, origin);
  } else if (key == "seed") {
    a.seed = value<int64_t>(v, key, origin);
  } else if (key == "output_dir") {
    a.output_dir = value<std::string>(v, key, origin);
  } else {
    return false;
  }
  return true;
}

void check_shared_values(const TrainingArguments& a, const std::string& origin) {
  if (a.output_dir.empty()) throw FormatError(origin + ": output_dir is required");
  if (a.dataset_mixer.empty()) throw FormatError(origin + ": dataset_mixer is required");
  auto positive = [&](int64_t value, const char* key) {
    if (value < 1) throw FormatError(fmt::format("{}: {} must be at least 1", origin, key));
  };
  positive(a.per_device_train_batch_size, "per_device_train_batch_size");
  positive(a.gradient_accumulation_steps, "gradient_accumulation_steps");
  positive(a.save_steps, "save_steps");
  positive(a.logging_steps, "logging_steps");
  if (a.learning_rate <= 0) throw FormatError(origin + ": learning_rate must be positive");
  if (a.lr_scheduler_type != "cosine" && a.lr_scheduler_type != "linear" &&
      a.lr_scheduler_type != "constant") {
    throw FormatError(origin + ": lr_scheduler_type must be cosine, linear or constant");
  }
  if (a.compute_dtype != "auto" && a.compute_dtype != "bf16" && a.compute_dtype != "fp32") {
    throw FormatError(origin + ": compute_dtype must be auto, bf16 or fp32");
  }
}

}  // namespace

YAML::Node load_config(const std::string& path, const std::vector<std::string>& overrides) {
  YAML::Node root = yaml_config::load_mapping(path);
  for (const std::string& entry : overrides) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw std::invalid_argument("--set expects key=value, got '" + entry + "'");
    }
    try {
      root[entry.substr(0, eq)] = YAML::Load(entry.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw FormatError(fmt::format("{}: --set {}: {}", path, entry, e.what()));
    }
  }
  return root;
}

void read_training_config(const YAML::Node& root, const std::string& origin,
                          TrainingArguments& args, const StageKeyReader& stage_key) {
  std::vector<std::string> unknown;
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    if (stage_key(key, entry.second) || read_shared_key(args, key, entry.second, origin)) continue;
    if (ignorable_keys().contains(key)) {
      args.ignored_keys.push_back(key);
    } else {
      unknown.push_back(key);
    }
  }
  if (!unknown.empty()) {
    std::string list;
    for (const std::string& k : unknown) list += (list.empty() ? "" : ", ") + k;
    throw FormatError(fmt::format("{}: unknown keys: {}", origin, list));
  }
  check_shared_values(args, origin);
}

}  // namespace ecomla::train
