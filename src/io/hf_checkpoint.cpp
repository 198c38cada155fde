#include "ecomla/hf_checkpoint.h"

#include <ATen/ops/from_blob.h>
#include <torch/nn/module.h>

#include <nlohmann/json.hpp>

#include "ecomla/error.h"
#include "ecomla/safetensors.h"
#include "io/json_util.h"

namespace ecomla {
namespace {

using io::get;
using io::get_or;
using io::json;
using io::read_json;
using io::write_json;
namespace fs = std::filesystem;

class HfWeightSource : public WeightSource {
public:
  HfWeightSource(const fs::path& folder, const ModelConfig& config) : folder_(folder) {
    const fs::path index = folder / "model.safetensors.index.json";
    std::vector<fs::path> shards;
    if (fs::exists(index)) {
      const json j = read_json(index);
      if (!j.contains("weight_map") || !j["weight_map"].is_object()) {
        throw FormatError(index.string() + ": no weight_map object");
      }
      for (const auto& [name, file] : j["weight_map"].items()) {
        const fs::path relative = file.is_string() ? fs::path(file.get<std::string>()) : fs::path();
        if (relative.empty() || relative.is_absolute() || relative.filename() != relative) {
          throw FormatError(index.string() + ": entry for '" + name +
                            "' must name a file in the same folder");
        }
        const fs::path shard = folder / relative;
        if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
      }
    } else {
      shards.push_back(folder / "model.safetensors");
    }
    for (const fs::path& shard : shards) {
      files_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(shard)));
      for (const auto& [name, info] : files_.back()->tensors()) {
        // Tied heads are sometimes stored anyway; rotary tables are derived, not weights.
        if ((config.tie_word_embeddings && name == "lm_head.weight") ||
            name.ends_with("rotary_emb.inv_freq")) {
          continue;
        }
        if (!by_name_.emplace(name, std::make_pair(files_.back().get(), &info)).second) {
          throw FormatError(shard.string() + ": tensor '" + name + "' also in another shard");
        }
      }
    }
  }

  std::string origin() const override { return folder_.string(); }

  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const auto& [name, entry] : by_name_) out.push_back(name);
    return out;
  }

  std::optional<std::vector<int64_t>> shape(const std::string& name) const override {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) return std::nullopt;
    return it->second.second->shape;
  }

  at::Tensor load(const std::string& name) const override {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) throw FormatError(origin() + ": no tensor '" + name + "'");
    const auto& [file, info] = it->second;
    std::vector<float> values = file->to_f32(*info);
    return at::from_blob(values.data(), info->shape, at::kFloat).clone();
  }

private:
  fs::path folder_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const SafetensorsTensorInfo*>> by_name_;
};

at::ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "F32") return at::kFloat;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "BF16") return at::kBFloat16;
  throw std::invalid_argument("save dtype must be F32, F16 or BF16, got '" + dtype + "'");
}

std::string torch_dtype_name(const std::string& dtype) {
  return dtype == "F32" ? "float32" : dtype == "F16" ? "float16" : "bfloat16";
}

}  // namespace

ModelConfig read_hf_config(const fs::path& path) {
  const json j = read_json(path);
  const std::string model_type = get_or<std::string>(j, "model_type", "", path);
  if (model_type != "llama") {
    throw FormatError(path.string() + ": model_type '" + model_type +
                      "' is not supported (Llama-family models, model_type 'llama', are)");
  }
  if (get_or<std::string>(j, "hidden_act", "silu", path) != "silu" ||
      get_or<bool>(j, "attention_bias", false, path) || get_or<bool>(j, "mlp_bias", false, path)) {
    throw FormatError(path.string() + ": only silu MLPs without biases are supported");
  }
  ModelConfig c;
  c.vocab_size = get<int64_t>(j, "vocab_size", path);
  c.hidden_size = get<int64_t>(j, "hidden_size", path);
  c.intermediate_size = get<int64_t>(j, "intermediate_size", path);
  c.n_layer = get<int64_t>(j, "num_hidden_layers", path);
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 2048, path);
  c.rms_norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6, path);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false, path);
  c.rope.theta = get_or<double>(j, "rope_theta", 10000.0, path);
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& s = j["rope_scaling"];
    const std::string type = s.contains("rope_type") ? get<std::string>(s, "rope_type", path)
                                                     : get_or<std::string>(s, "type", "", path);
    if (type == "linear") {
      c.rope.scaling = RopeScaling::Linear;
      c.rope.factor = get<double>(s, "factor", path);
    } else if (type == "llama3") {
      c.rope.scaling = RopeScaling::Llama3;
      c.rope.factor = get<double>(s, "factor", path);
      c.rope.low_freq_factor = get<double>(s, "low_freq_factor", path);
      c.rope.high_freq_factor = get<double>(s, "high_freq_factor", path);
      c.rope.original_context = get<int64_t>(s, "original_max_position_embeddings", path);
    } else if (type != "default") {
      throw FormatError(path.string() + ": rope_scaling type '" + type + "' is not supported");
    }
  }
  GqaSpec a;
  a.n_head = get<int64_t>(j, "num_attention_heads", path);
  a.n_head_kv = get_or<int64_t>(j, "num_key_value_heads", a.n_head, path);
  if (a.n_head <= 0) throw FormatError(path.string() + ": num_attention_heads must be positive");
  a.head_dim = get_or<int64_t>(j, "head_dim", c.hidden_size / a.n_head, path);
  if (c.n_layer <= 0 || c.n_layer > ModelConfig::kMaxLayers) {
    throw FormatError(path.string() + ": num_hidden_layers " + std::to_string(c.n_layer) +
                      " outside [1, " + std::to_string(ModelConfig::kMaxLayers) + "]");
  }
  c.attention.assign(static_cast<size_t>(c.n_layer), a);
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw FormatError(path.string() + ": " + e.what());
  }
  return c;
}

void write_hf_config(const fs::path& path, const ModelConfig& c, const Tokenizer& tokenizer,
                     const std::string& torch_dtype) {
  const auto* first = std::get_if<GqaSpec>(&c.attention.at(0));
  for (const AttentionSpec& spec : c.attention) {
    if (!first || !std::holds_alternative<GqaSpec>(spec)) {
      throw std::invalid_argument("write_hf_config: MLA layers are not written yet");
    }
  }
  const GqaSpec& a = *first;
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.n_layer},
            {"num_attention_heads", a.n_head},
            {"num_key_value_heads", a.n_head_kv},
            {"head_dim", a.head_dim},
            {"hidden_act", "silu"},
            {"max_position_embeddings", c.max_position_embeddings},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope.theta},
            {"rope_scaling", nullptr},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"attention_bias", false},
            {"mlp_bias", false},
            {"torch_dtype", torch_dtype}};
  if (tokenizer.bos_id()) j["bos_token_id"] = *tokenizer.bos_id();
  if (tokenizer.eos_id()) j["eos_token_id"] = *tokenizer.eos_id();
  if (!c.rope.freq_factors.empty()) {
    throw std::invalid_argument(
        "write_hf_config: GGUF rope_freqs factors have no config.json "
        "equivalent");
  }
  if (c.rope.scaling == RopeScaling::Linear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope.factor}};
  } else if (c.rope.scaling == RopeScaling::Llama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope.factor},
                         {"low_freq_factor", c.rope.low_freq_factor},
                         {"high_freq_factor", c.rope.high_freq_factor},
                         {"original_max_position_embeddings", c.rope.original_context}};
  }
  write_json(path, j);
}

std::unique_ptr<WeightSource> hf_weight_source(const fs::path& folder, const ModelConfig& config) {
  return std::make_unique<HfWeightSource>(folder, config);
}

void save_hf_checkpoint(const fs::path& folder, const torch::nn::Module& model,
                        const ModelConfig& config, const Tokenizer& tokenizer,
                        const SaveOptions& options) {
  fs::create_directories(folder);
  const at::ScalarType dtype = scalar_type(options.dtype);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, t] : state_dict(model)) {
    tensors.emplace_back(name, t.detach().to(at::kCPU, dtype).contiguous());
  }
  // Greedy shards in name order, each at most max_shard_bytes (a larger tensor gets its own).
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t n = tensors[i].second.nbytes();
    if (!shards.back().empty() && shard_bytes + n > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += n;
  }
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = shards.size() == 1
                                 ? "model.safetensors"
                                 : "model-" + std::to_string(s + 1) + "-of-" +
                                       std::to_string(shards.size()) + ".safetensors";
    std::vector<SafetensorsWriteTensor> entries;
    for (size_t i : shards[s]) {
      const at::Tensor& t = tensors[i].second;
      entries.push_back({tensors[i].first,
                         options.dtype,
                         t.sizes().vec(),
                         {static_cast<const uint8_t*>(t.data_ptr()), t.nbytes()}});
      weight_map[tensors[i].first] = file;
    }
    write_safetensors(folder / file, entries, {{"format", "pt"}});
  }
  if (shards.size() > 1) {
    uint64_t total = 0;
    for (const auto& [name, t] : tensors) total += t.nbytes();
    write_json(folder / "model.safetensors.index.json",
               {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
  } else {
    fs::remove(folder / "model.safetensors.index.json");
  }
  write_hf_config(folder / "config.json", config, tokenizer, torch_dtype_name(options.dtype));
  write_hf_tokenizer(folder, tokenizer);
}

}  // namespace ecomla
