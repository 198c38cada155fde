#include "ecomla/model_loader.h"

#include "ecomla/error.h"
#include "ecomla/gguf.h"
#include "ecomla/gguf_model.h"
#include "ecomla/gguf_tokenizer.h"
#include "ecomla/hf_checkpoint.h"

namespace ecomla {
namespace {

// Q4_1 only: its quantiser maps each block's minimum to 0 and maximum to 15, so the min/max
// grid of ProjectionImpl::pack_int4 recovers it. Q4_0 and Q4_K blocks rarely span the full
// range and would be quantised a second time.
bool layer_matrices_are_q4_1(const GgufFile& file) {
  bool any = false;
  for (const GgufTensorInfo& t : file.tensors()) {
    if (!t.name.starts_with("blk.") || t.ne.size() != 2) continue;
    if (t.type != GgmlType::Q4_1) return false;
    any = true;
  }
  return any;
}

// Builds the model only after the weights are known to fit the config, then loads them.
LlamaForCausalLM build_model(const ModelConfig& config, const WeightSource& source,
                             const Tokenizer& tokenizer) {
  if (tokenizer.vocab_size() > config.vocab_size) {
    throw FormatError(source.origin() + ": the tokenizer has " +
                      std::to_string(tokenizer.vocab_size()) + " tokens but the model only " +
                      std::to_string(config.vocab_size) + " embeddings");
  }
  verify_weights(source, llama_parameter_shapes(config));
  LlamaForCausalLM model(config);
  load_weights(*model, source);
  return model;
}

bool is_gguf(const std::filesystem::path& path) { return std::filesystem::is_regular_file(path); }

void require_exists(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) {
    throw FormatError(path.string() + ": no such file or folder (expected a .gguf file or a " +
                      "Hugging Face model folder)");
  }
}

}  // namespace

LoadedModel load_model(const std::filesystem::path& path) {
  require_exists(path);
  if (is_gguf(path)) {
    auto file = std::make_shared<const GgufFile>(GgufFile::open(path));
    const ModelConfig config = config_from_gguf(*file);
    Tokenizer tokenizer(tokenizer_spec_from_gguf(*file));
    LlamaForCausalLM model = build_model(config, *gguf_weight_source(file, config), tokenizer);
    return {path, "gguf", model, std::move(tokenizer), layer_matrices_are_q4_1(*file)};
  }
  const ModelConfig config = read_hf_config(path / "config.json");
  Tokenizer tokenizer(read_hf_tokenizer(path));
  LlamaForCausalLM model = build_model(config, *hf_weight_source(path, config), tokenizer);
  return {path, "safetensors", model, std::move(tokenizer), false};
}

Tokenizer load_tokenizer(const std::filesystem::path& path) {
  require_exists(path);
  if (is_gguf(path)) return Tokenizer(tokenizer_spec_from_gguf(GgufFile::open(path)));
  return Tokenizer(read_hf_tokenizer(path));
}

ModelConfig load_config(const std::filesystem::path& path) {
  require_exists(path);
  if (is_gguf(path)) return config_from_gguf(GgufFile::open(path));
  return read_hf_config(path / "config.json");
}

}  // namespace ecomla
