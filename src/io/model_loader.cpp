#include "ecomla/model_loader.h"

#include "ecomla/error.h"
#include "ecomla/gguf.h"
#include "ecomla/gguf_model.h"
#include "ecomla/gguf_tokenizer.h"
#include "ecomla/hf_checkpoint.h"

namespace ecomla {
namespace {

bool layer_matrices_are_4bit(const GgufFile& file) {
  bool any = false;
  for (const GgufTensorInfo& t : file.tensors()) {
    if (!t.name.starts_with("blk.") || t.ne.size() != 2) continue;
    if (t.type != GgmlType::Q4_0 && t.type != GgmlType::Q4_1 && t.type != GgmlType::Q4_K) {
      return false;
    }
    any = true;
  }
  return any;
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
    LoadedModel loaded{path, "gguf", LlamaForCausalLM(config),
                       Tokenizer(tokenizer_spec_from_gguf(*file))};
    load_weights(*loaded.model, *gguf_weight_source(file, config));
    loaded.stored_as_4bit = layer_matrices_are_4bit(*file);
    return loaded;
  }
  const ModelConfig config = read_hf_config(path / "config.json");
  LoadedModel loaded{path, "safetensors", LlamaForCausalLM(config),
                     Tokenizer(read_hf_tokenizer(path))};
  load_weights(*loaded.model, *hf_weight_source(path, config));
  return loaded;
}

ModelConfig load_config(const std::filesystem::path& path) {
  require_exists(path);
  if (is_gguf(path)) return config_from_gguf(GgufFile::open(path));
  return read_hf_config(path / "config.json");
}

}  // namespace ecomla
