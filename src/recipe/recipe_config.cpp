// Recipe configs: the sections, the per-init overrides merged into each stage's settings, the
// smoke settings, and every stage's settings checked by that stage's own reader.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "convert/convert_config.h"
#include "ecomla/convert.h"
#include "ecomla/error.h"
#include "recipe/recipe_stages.h"
#include "train/stage_configs.h"
#include "util/yaml_config.h"

namespace ecomla {

namespace fs = std::filesystem;
using yaml_config::value;

namespace {

// The stage sections every init shares, and the ones an init may override.
const std::set<std::string> kStageSections = {"convert", "distill", "layerwise", "kd", "dpo"};
const std::set<std::string> kTopKeys = {"model",    "output_dir", "kv_budgets", "inits", "stages",
                                        "per_init", "eval",       "speed",      "smoke", "convert",
                                        "distill",  "layerwise",  "kd",         "dpo"};

// "a.b=value" sets root[a][b]; only the sections are split at dots (dataset paths have them):
// per_init.INIT.SECTION.KEY, SECTION.KEY, eval.KEY, speed.KEY.
void apply_override(YAML::Node& root, const std::string& entry, const std::string& origin) {
  const size_t eq = entry.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw std::invalid_argument("--set expects key=value, got '" + entry + "'");
  }
  const std::string key = entry.substr(0, eq);
  YAML::Node parsed;
  try {
    parsed = YAML::Load(entry.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw FormatError(fmt::format("{}: --set {}: {}", origin, entry, e.what()));
  }
  std::vector<std::string> parts;
  const std::string head = key.substr(0, key.find('.'));
  const size_t max_parts = head == "per_init"                                                   ? 4
                           : kStageSections.contains(head) || head == "eval" || head == "speed" ? 2
                                                                                                : 1;
  size_t begin = 0;
  while (parts.size() + 1 < max_parts && key.find('.', begin) != std::string::npos) {
    const size_t dot = key.find('.', begin);
    parts.push_back(key.substr(begin, dot - begin));
    begin = dot + 1;
  }
  parts.push_back(key.substr(begin));
  std::vector<YAML::Node> path = {root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = path.back()[parts[i]];
    if (!next.IsDefined() || next.IsNull()) path.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
    path.push_back(path.back()[parts[i]]);
  }
  path.back()[parts.back()] = parsed;
}

YAML::Node section(const YAML::Node& parent, const std::string& key, const std::string& origin) {
  const YAML::Node node = parent[key];
  if (!node.IsDefined() || node.IsNull()) return YAML::Node(YAML::NodeType::Map);
  if (!node.IsMap()) throw FormatError(fmt::format("{}: '{}' must be a mapping", origin, key));
  return node;
}

// The keys of `over` set on a copy of `base` (a whole value replaced, dataset_mixer included).
YAML::Node merged(const YAML::Node& base, const YAML::Node& over) {
  YAML::Node out = YAML::Clone(base);
  for (const auto& entry : over) out[entry.first.as<std::string>()] = YAML::Clone(entry.second);
  return out;
}

// smoke: every stage for a handful of steps on short sequences, a tiny evaluation.
void apply_smoke(std::map<std::string, YAML::Node>& settings) {
  settings["convert"]["calib_tokens"] = 1024;
  settings["convert"]["calib_ctx"] = 128;
  for (const char* stage : {"layerwise", "kd", "dpo"}) {
    YAML::Node s = settings[stage];
    s["max_steps"] = 2;
    s["per_device_train_batch_size"] = 1;
    s["gradient_accumulation_steps"] = 1;
    s["warmup_ratio"] = 0.0;
    s["eval_steps"] = 0;
    s["save_steps"] = 1;
  }
  for (const char* stage : {"layerwise", "kd"}) {
    settings[stage]["max_seq_length"] = 64;
    settings[stage]["eval_sequences"] = 2;
  }
  settings["dpo"]["max_length"] = 96;
  settings["dpo"]["max_prompt_length"] = 48;
  settings["dpo"]["max_pairs"] = 10;
  settings["dpo"]["eval_fraction"] = 0.2;
}

std::vector<std::string> stage_list(const YAML::Node& node, const std::string& origin) {
  std::vector<std::string> stages =
      value<std::vector<std::string>>(node["stages"], "stages", origin);
  auto position = [&](const std::string& s) {
    const auto it = std::find(kTrainingStages.begin(), kTrainingStages.end(), s);
    if (it == kTrainingStages.end()) {
      throw FormatError(
          fmt::format("{}: unknown stage '{}' (stages are layerwise, kd, dpo)", origin, s));
    }
    return it - kTrainingStages.begin();
  };
  for (size_t i = 1; i < stages.size(); ++i) {
    if (position(stages[i - 1]) >= position(stages[i])) {
      throw FormatError(origin + ": stages must be in the order layerwise, kd, dpo");
    }
  }
  if (stages.size() == 1) position(stages[0]);
  return stages;
}

RecipeInit read_init(const YAML::Node& root, const std::string& name, bool smoke,
                     const std::string& origin) {
  parse_mla_init(name);  // throws for an unknown init
  const YAML::Node own = section(section(root, "per_init", origin), name, origin);
  const std::string own_origin = fmt::format("{}: per_init.{}", origin, name);
  for (const auto& entry : own) {
    const std::string key = entry.first.as<std::string>();
    if (key != "stages" && !kStageSections.contains(key)) {
      throw FormatError(fmt::format("{}: unknown key '{}'", own_origin, key));
    }
  }
  RecipeInit init;
  init.name = name;
  init.stages = own["stages"]    ? stage_list(own, own_origin)
                : root["stages"] ? stage_list(root, origin)
                                 : kTrainingStages;
  std::map<std::string, YAML::Node> settings;
  auto shared_then_own = [&](const std::string& key) {
    return merged(section(root, key, origin), section(own, key, own_origin));
  };
  settings["convert"] = shared_then_own("convert");
  for (const char* stage : {"layerwise", "kd"}) {
    settings[stage] = merged(shared_then_own("distill"), shared_then_own(stage));
  }
  settings["dpo"] = shared_then_own("dpo");
  if (smoke) apply_smoke(settings);
  for (const auto& [stage, node] : settings) init.settings[stage] = YAML::Dump(node);
  return init;
}

// Every stage's settings through the stage's own reader, so that a bad key fails now.
void check_stage_settings(const RecipeConfig& c, const RecipeInit& init,
                          const std::string& origin) {
  const recipe::StageLinks links{c.model, c.model, c.output_dir / "check", 0.5, init.name};
  const std::string where = fmt::format("{}: {} init, ", origin, init.name);
  const ConvertConfig convert =
      convert_config_from(recipe::stage_config(init, "convert", links), where + "convert");
  if (!convert.ignored_keys.empty()) {
    throw FormatError(fmt::format("{}convert: unknown key '{}'", where, convert.ignored_keys[0]));
  }
  if (convert.options.kv.rank > 0 || convert.options.kv.energy) {
    throw FormatError(where +
                      "convert: the KV rank comes from kv_budgets (remove kv_lora_rank "
                      "and kv_energy_ratio)");
  }
  for (const std::string& stage : init.stages) {
    const YAML::Node node = recipe::stage_config(init, stage, links);
    if (stage == "dpo") {
      train::dpo_config_from(node, where + stage);
    } else {
      train::distill_config_from(node, where + stage);
    }
  }
}

RecipeEval read_eval(const YAML::Node& node, bool smoke, const std::string& origin) {
  RecipeEval e;
  const std::string where = origin + ": eval";
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& v = entry.second;
    if (key == "tasks") {
      e.tasks = value<std::vector<std::string>>(v, key, where);
    } else if (key == "limit") {
      e.limit = value<int64_t>(v, key, where);
    } else if (key == "limits") {
      e.limits = value<std::map<std::string, int64_t>>(v, key, where);
    } else if (key == "data_dir") {
      e.data_dir = value<std::string>(v, key, where);
    } else if (key == "dtype") {
      e.dtype = value<std::string>(v, key, where);
    } else if (key == "perplexity_text") {
      e.perplexity_text = value<std::string>(v, key, where);
    } else if (key == "perplexity_ctx") {
      e.perplexity_ctx = value<int64_t>(v, key, where);
    } else if (key == "perplexity_chunks") {
      e.perplexity_chunks = value<int64_t>(v, key, where);
    } else {
      throw FormatError(fmt::format("{}: unknown key '{}'", where, key));
    }
  }
  if (e.tasks.empty() && e.perplexity_text.empty()) {
    throw FormatError(where + ": give tasks, perplexity_text or both");
  }
  if (e.dtype != "bf16" && e.dtype != "fp32") throw FormatError(where + ": dtype is bf16 or fp32");
  if (smoke) {
    e.limit = 2;
    e.limits.clear();
    e.perplexity_ctx = 128;
    e.perplexity_chunks = 2;
  }
  return e;
}

RecipeSpeed read_speed(const YAML::Node& node, bool smoke, const std::string& origin) {
  RecipeSpeed s;
  const std::string where = origin + ": speed";
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& v = entry.second;
    if (key == "batch_sizes") {
      s.batch_sizes = value<std::vector<int64_t>>(v, key, where);
    } else if (key == "contexts") {
      s.contexts = value<std::vector<int64_t>>(v, key, where);
    } else if (key == "steps") {
      s.steps = value<int64_t>(v, key, where);
    } else if (key == "dtype") {
      s.dtype = value<std::string>(v, key, where);
    } else {
      throw FormatError(fmt::format("{}: unknown key '{}'", where, key));
    }
  }
  auto positive = [](const std::vector<int64_t>& v) {
    return std::all_of(v.begin(), v.end(), [](int64_t x) { return x > 0; });
  };
  if (!positive(s.batch_sizes) || !positive(s.contexts) || s.steps < 1) {
    throw FormatError(where + ": batch_sizes, contexts and steps must be positive");
  }
  if (s.dtype != "bf16" && s.dtype != "fp32") throw FormatError(where + ": dtype is bf16 or fp32");
  if (smoke) {
    s.batch_sizes = {1, 2};
    s.contexts = {64, 128};
    s.steps = 2;
  }
  return s;
}

}  // namespace

YAML::Node recipe::stage_config(const RecipeInit& init, const std::string& stage,
                                const StageLinks& links) {
  YAML::Node node = YAML::Load(init.settings.at(stage));
  if (!node.IsMap()) node = YAML::Node(YAML::NodeType::Map);
  if (stage == "convert") {
    node["init"] = links.init;
    node["kv_budget"] = links.kv_budget;
    return node;
  }
  node["model_name_or_path"] = links.model.string();
  node["output_dir"] = links.output_dir.string();
  if (stage != "dpo") {
    node["stage"] = stage;
    node["teacher_model_name_or_path"] = links.teacher.string();
  }
  return node;
}

RecipeConfig read_recipe_config(const fs::path& path, const std::vector<std::string>& overrides) {
  const std::string origin = path.string();
  YAML::Node root = yaml_config::load_mapping(origin);
  for (const std::string& entry : overrides) apply_override(root, entry, origin);
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    if (!kTopKeys.contains(key))
      throw FormatError(fmt::format("{}: unknown key '{}'", origin, key));
  }
  for (const char* key : {"model", "output_dir", "kv_budgets", "inits", "eval"}) {
    if (!root[key]) throw FormatError(fmt::format("{}: '{}' is required", origin, key));
  }
  RecipeConfig c;
  c.model = value<std::string>(root["model"], "model", origin);
  c.output_dir = value<std::string>(root["output_dir"], "output_dir", origin);
  c.smoke = root["smoke"] && value<bool>(root["smoke"], "smoke", origin);
  c.kv_budgets = value<std::vector<double>>(root["kv_budgets"], "kv_budgets", origin);
  for (const double b : c.kv_budgets) {
    if (!(b > 0 && b < 1)) {
      throw FormatError(
          fmt::format("{}: kv_budgets must be fractions in (0, 1), got {}", origin, b));
    }
  }
  for (const std::string& name : value<std::vector<std::string>>(root["inits"], "inits", origin)) {
    c.inits.push_back(read_init(root, name, c.smoke, origin));
  }
  if (c.kv_budgets.empty() || c.inits.empty()) {
    throw FormatError(origin + ": kv_budgets and inits must not be empty");
  }
  c.eval = read_eval(section(root, "eval", origin), c.smoke, origin);
  c.speed = read_speed(section(root, "speed", origin), c.smoke, origin);
  for (const RecipeInit& init : c.inits) check_stage_settings(c, init, origin);
  return c;
}

}  // namespace ecomla
