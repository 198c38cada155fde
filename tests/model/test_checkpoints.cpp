// One tiny random model written as GGUF (llama.cpp layout, permuted Q/K) and as a Hugging Face
// folder (single and sharded safetensors) loads back to identical logits; bad checkpoints give
// FormatError naming the file and tensor.
#include <gtest/gtest.h>

#include <fstream>

#include "ecomla/error.h"
#include "ecomla/gguf.h"
#include "ecomla/gguf_export.h"
#include "ecomla/gguf_model.h"
#include "ecomla/hf_checkpoint.h"
#include "ecomla/model_loader.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

class Checkpoints : public testing::Test {
protected:
  void SetUp() override {
    torch::NoGradGuard no_grad;
    tokens_ = at::randint(0, config_.vocab_size, {2, 9}, at::kLong);
    reference_ = model_->forward(tokens_);
  }
  at::Tensor logits_of(const std::filesystem::path& path) {
    torch::NoGradGuard no_grad;
    LoadedModel loaded = load_model(path);
    return loaded.model->forward(tokens_);
  }
  ModelConfig config_ = test::tiny_config();
  LlamaForCausalLM model_ = test::random_model(config_);
  Tokenizer tokenizer_{test::tiny_tokenizer_spec()};
  at::Tensor tokens_, reference_;
  test::TempDir dir_;
};

TEST_F(Checkpoints, GgufAndSafetensorsGiveIdenticalLogits) {
  write_llama_gguf(dir_ / "tiny.gguf", *model_, config_, tokenizer_.spec());
  save_hf_checkpoint(dir_ / "hf", *model_, config_, tokenizer_);
  const at::Tensor from_gguf = logits_of(dir_ / "tiny.gguf");
  const at::Tensor from_hf = logits_of(dir_ / "hf");
  EXPECT_TRUE(at::allclose(from_gguf, reference_, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(from_hf, reference_, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(from_gguf, from_hf, 1e-5, 1e-5));
  // The GGUF really holds llama.cpp's permuted rows, not the HF layout.
  const GgufFile f = GgufFile::open(dir_ / "tiny.gguf");
  const auto* q = f.find_tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  const std::vector<float> raw = f.tensor_to_f32(*q);
  const at::Tensor hf_q = model_->model->layers->at<DecoderLayerImpl>(0).self_attn->q_proj->weight;
  EXPECT_FALSE(at::allclose(at::tensor(raw).view(hf_q.sizes()), hf_q));
  EXPECT_TRUE(at::equal(unpermute_from_gguf(permute_for_gguf(hf_q, 4), 4), hf_q));
}

TEST_F(Checkpoints, ConfigAndTokenizerSurviveBothFormats) {
  write_llama_gguf(dir_ / "tiny.gguf", *model_, config_, tokenizer_.spec());
  save_hf_checkpoint(dir_ / "hf", *model_, config_, tokenizer_);
  for (const auto& path : {dir_ / "tiny.gguf", dir_ / "hf"}) {
    const ModelConfig c = load_config(path);
    EXPECT_EQ(c.hidden_size, config_.hidden_size);
    EXPECT_EQ(std::get<GqaSpec>(c.attention[1]).n_head_kv, 2);
    EXPECT_EQ(c.tie_word_embeddings, true);
    EXPECT_NEAR(c.rms_norm_eps, 1e-5, 1e-10);
    LoadedModel loaded = load_model(path);
    EXPECT_EQ(loaded.tokenizer.encode("hello world <|im_end|>", true, true),
              tokenizer_.encode("hello world <|im_end|>", true, true));
  }
}

TEST_F(Checkpoints, ShardedSafetensorsWithIndex) {
  SaveOptions options;
  options.max_shard_bytes = 20000;  // forces several shards for this 60 KB model
  save_hf_checkpoint(dir_ / "sharded", *model_, config_, tokenizer_, options);
  ASSERT_TRUE(std::filesystem::exists(dir_ / "sharded" / "model.safetensors.index.json"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "sharded" / "model.safetensors"));
  EXPECT_TRUE(at::allclose(logits_of(dir_ / "sharded"), reference_, 1e-5, 1e-5));
}

TEST_F(Checkpoints, Bf16AndF16Checkpoints) {
  SaveOptions options;
  options.dtype = "BF16";
  save_hf_checkpoint(dir_ / "bf16", *model_, config_, tokenizer_, options);
  write_llama_gguf(dir_ / "f16.gguf", *model_, config_, tokenizer_.spec(), GgmlType::F16);
  const auto probs = reference_.softmax(-1);
  EXPECT_LT((logits_of(dir_ / "bf16").softmax(-1) - probs).abs().max().item<float>(), 0.05);
  EXPECT_LT((logits_of(dir_ / "f16.gguf").softmax(-1) - probs).abs().max().item<float>(), 0.01);
}

void expect_load_error(const std::filesystem::path& path, const std::string& needle) {
  test::expect_format_error([&] { load_model(path); }, {needle});
}

TEST_F(Checkpoints, MissingWrongShapeAndUnexpectedTensors) {
  // Missing tensor: write a model whose config says 2 layers but with one layer's weights.
  ModelConfig one_layer = config_;
  one_layer.n_layer = 1;
  one_layer.attention.resize(1);
  LlamaForCausalLM small = test::random_model(one_layer);
  save_hf_checkpoint(dir_ / "hf", *small, one_layer, tokenizer_);
  write_hf_config(dir_ / "hf" / "config.json", config_, tokenizer_, "float32");
  expect_load_error(dir_ / "hf", "missing tensor 'model.layers.1.");

  // Wrong shape: config with a different MLP size.
  ModelConfig wide = config_;
  wide.intermediate_size = 64;
  save_hf_checkpoint(dir_ / "hf2", *model_, config_, tokenizer_);
  write_hf_config(dir_ / "hf2" / "config.json", wide, tokenizer_, "float32");
  expect_load_error(dir_ / "hf2", "the model config expects");

  // Unexpected tensor: weights of 2 layers, config of 1.
  save_hf_checkpoint(dir_ / "hf3", *model_, config_, tokenizer_);
  write_hf_config(dir_ / "hf3" / "config.json", one_layer, tokenizer_, "float32");
  expect_load_error(dir_ / "hf3", "unexpected tensor");

  expect_load_error(dir_ / "nothing-here", "no such file");
}

TEST_F(Checkpoints, TruncatedGgufOfARealModelIsReported) {
  write_llama_gguf(dir_ / "tiny.gguf", *model_, config_, tokenizer_.spec());
  auto bytes = test::read_file(dir_ / "tiny.gguf");
  bytes.resize(bytes.size() - 100);
  test::write_file(dir_ / "cut.gguf", bytes);
  expect_load_error(dir_ / "cut.gguf", "truncated download?");
}

}  // namespace
}  // namespace ecomla

namespace ecomla {
namespace {

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST_F(Checkpoints, HostileConfigsAreFormatErrorsBeforeAnyAllocation) {
  save_hf_checkpoint(dir_ / "hf", *model_, config_, tokenizer_);
  const auto config = dir_ / "hf" / "config.json";
  const std::string good = [&] {
    std::ifstream in(config);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  auto with = [&](const std::string& key, const std::string& value) {
    const size_t at = good.find("\"" + key + "\"");
    const size_t end = good.find_first_of(",\n}", good.find(':', at));
    write_text(config, good.substr(0, at) + "\"" + key + "\": " + value + good.substr(end));
  };
  with("num_hidden_layers", "1000000000000");
  expect_load_error(dir_ / "hf", "num_hidden_layers");
  with("hidden_size", "32.9");
  expect_load_error(dir_ / "hf", "must be an integer");
  with("vocab_size", "100000000");
  expect_load_error(dir_ / "hf", "vocab_size");
  with("max_position_embeddings", "0");
  expect_load_error(dir_ / "hf", "max_position_embeddings");
  with("intermediate_size", "4000");  // in bounds, but not what the weights hold
  expect_load_error(dir_ / "hf", "the model config expects");
}

TEST_F(Checkpoints, TokenizerLargerThanTheEmbeddingIsRejected) {
  TokenizerSpec big = test::tiny_tokenizer_spec(config_.vocab_size + 5);
  write_llama_gguf(dir_ / "big.gguf", *model_, config_, big);
  expect_load_error(dir_ / "big.gguf", "tokens but the model only");
}

TEST_F(Checkpoints, ShardIndexMustNameFilesInTheFolder) {
  save_hf_checkpoint(dir_ / "hf", *model_, config_, tokenizer_);
  write_text(dir_ / "hf" / "model.safetensors.index.json",
             R"({"weight_map": {"model.norm.weight": "../../etc/passwd"}})");
  expect_load_error(dir_ / "hf", "must name a file in the same folder");
}

}  // namespace
}  // namespace ecomla
