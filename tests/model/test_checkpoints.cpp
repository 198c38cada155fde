// One tiny random model written as GGUF (llama.cpp layout, permuted Q/K) and as a Hugging Face
// folder (single and sharded safetensors) loads back to identical logits; bad checkpoints give
// FormatError naming the file and tensor. Hybrid and full-MLA models round-trip through X-EcoMLA's
// folder layout (MLA_config.json, mla_layer_config.json).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "ecomla/error.h"
#include "ecomla/gguf.h"
#include "ecomla/gguf_export.h"
#include "ecomla/gguf_model.h"
#include "ecomla/hf_checkpoint.h"
#include "ecomla/model_loader.h"
#include "ecomla/safetensors.h"
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

// Hybrid and full-MLA models in X-EcoMLA's folder layout: config.json (the teacher's Llama
// config), MLA_config.json and mla_layer_config.json.
namespace ecomla {
namespace {

using nlohmann::json;

const GqaSpec kTeacher{4, 2, 8};

// Layer 0 stays GQA, layer 1 is MLA (a plain q_proj); or layer 1 with a low-rank query and
// latent norms; or both layers MLA with different ranks.
ModelConfig mla_model_config(int kind) {
  ModelConfig c = test::tiny_config();
  if (kind == 0) c.attention[1] = MlaSpec{4, 0, 8, 4, 4, 8, false, 1e-6};
  if (kind == 1) c.attention[1] = MlaSpec{4, 16, 8, 4, 4, 8, true, 1e-5};
  if (kind == 2) {
    c.attention[0] = MlaSpec{4, 16, 8, 4, 6, 8, true, 1e-6};
    c.attention[1] = MlaSpec{4, 24, 16, 4, 6, 8, true, 1e-6};
  }
  c.source_attention = kTeacher;
  return c;
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.n_layer, b.n_layer);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.rope.theta, b.rope.theta);
  EXPECT_TRUE(a.source_attention == b.source_attention);
  EXPECT_TRUE(a.attention == b.attention);
}

json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

void write_json_file(const std::filesystem::path& path, const json& j) {
  std::ofstream(path) << j.dump(2);
}

class MlaCheckpoint : public testing::TestWithParam<int> {
protected:
  void SetUp() override {
    torch::NoGradGuard no_grad;
    tokens_ = at::randint(0, config_.vocab_size, {2, 9}, at::kLong);
    reference_ = model_->forward(tokens_);
  }
  double max_difference(const std::filesystem::path& path) {
    torch::NoGradGuard no_grad;
    return (load_model(path).model->forward(tokens_) - reference_).abs().max().item<double>();
  }
  ModelConfig config_ = mla_model_config(GetParam());
  LlamaForCausalLM model_ = test::random_model(config_);
  Tokenizer tokenizer_{test::tiny_tokenizer_spec()};
  at::Tensor tokens_, reference_;
  test::TempDir dir_;
};

TEST_P(MlaCheckpoint, ConfigAndLogitsSurviveTheXEcoMlaLayout) {
  save_hf_checkpoint(dir_ / "hf", *model_, config_, tokenizer_);
  expect_same_config(load_config(dir_ / "hf"), config_);
  EXPECT_LE(max_difference(dir_ / "hf"), 1e-6);
  LoadedModel loaded = load_model(dir_ / "hf");
  expect_same_config(loaded.model->config(), config_);
}

TEST_P(MlaCheckpoint, ShardedFoldersHoldMlaLayersToo) {
  SaveOptions options;
  options.max_shard_bytes = 20000;
  save_hf_checkpoint(dir_ / "sharded", *model_, config_, tokenizer_, options);
  ASSERT_TRUE(std::filesystem::exists(dir_ / "sharded" / "model.safetensors.index.json"));
  EXPECT_LE(max_difference(dir_ / "sharded"), 1e-6);
}

std::string kind_name(const testing::TestParamInfo<int>& info) {
  const char* names[] = {"HybridPlainQuery", "HybridLowRankQueryNormed", "FullMla"};
  return names[info.param];
}

INSTANTIATE_TEST_SUITE_P(HybridAndFullMla, MlaCheckpoint, testing::Values(0, 1, 2), kind_name);

TEST(MlaCheckpointFiles, HoldXEcoMlaKeysAndWeightNames) {
  const Tokenizer tokenizer{test::tiny_tokenizer_spec()};
  test::TempDir dir;
  {
    const ModelConfig config = mla_model_config(1);
    LlamaForCausalLM model = test::random_model(config);
    save_hf_checkpoint(dir / "hf", *model, config, tokenizer);
    const json c = read_json_file(dir / "hf" / "config.json");
    EXPECT_EQ(c["model_type"], "llama");
    EXPECT_EQ(c["num_attention_heads"], 4);
    EXPECT_EQ(c["num_key_value_heads"], 2);
    EXPECT_EQ(c["head_dim"], 8);
    EXPECT_EQ(c["num_hidden_layers"], 2);

    const json m = read_json_file(dir / "hf" / "MLA_config.json");
    EXPECT_EQ(m["attn_layers"], json::array({0}));
    EXPECT_EQ(m["n_layer"], 2);
    EXPECT_EQ(m["d_model"], 32);
    EXPECT_EQ(m["d_xb"], 16);  // teacher n_head_kv * head_dim
    EXPECT_TRUE(m["d_inner"].is_null());
    EXPECT_EQ(m["intermediate_size"], 48);
    EXPECT_EQ(m["vocab_size"], 300);
    EXPECT_EQ(m["hidden_act"], "silu");
    EXPECT_NEAR(m["rms_norm_eps"].get<double>(), 1e-5, 1e-12);

    const json l = read_json_file(dir / "hf" / "mla_layer_config.json");
    EXPECT_EQ(l["model_type"], "deepseek_v3");
    EXPECT_EQ(l["layer_rank_list"], json({{"1", {{"q_rank", 16}, {"kv_rank", 8}}}}));
    EXPECT_EQ(l["layer_rank_list"]["1"]["kv_rank"], 8);
    EXPECT_EQ(l["q_lora_rank"], 16);
    EXPECT_EQ(l["kv_lora_rank"], 8);
    EXPECT_EQ(l["qk_rope_head_dim"], 4);
    EXPECT_EQ(l["qk_nope_head_dim"], 4);
    EXPECT_EQ(l["v_head_dim"], 8);
    EXPECT_EQ(l["use_lora_layer_norm"], true);
    EXPECT_EQ(l["num_attention_heads"], 4);
    EXPECT_EQ(l["llama_num_key_value_heads"], 2);
    EXPECT_EQ(l["hidden_size"], 32);
    EXPECT_EQ(l["intermediate_size"], 48);
    EXPECT_EQ(l["num_hidden_layers"], 2);
    EXPECT_EQ(l["vocab_size"], 300);
    EXPECT_EQ(l["max_position_embeddings"], 128);
    EXPECT_EQ(l["rope_theta"], 10000.0);
    EXPECT_TRUE(l["rope_scaling"].is_null());
    EXPECT_EQ(l["attention_bias"], false);
    EXPECT_EQ(l["tie_word_embeddings"], true);
    EXPECT_TRUE(l.contains("use_fixed_rank_for_first_and_last_block"));

    const auto names = SafetensorsFile::open(dir / "hf" / "model.safetensors").tensors();
    for (const char* name :
         {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mla.q_a_proj.weight",
          "model.layers.1.mla.q_a_layernorm.weight", "model.layers.1.mla.q_b_proj.weight",
          "model.layers.1.mla.kv_a_proj_with_mqa.weight",
          "model.layers.1.mla.kv_a_layernorm.weight", "model.layers.1.mla.kv_b_proj.weight",
          "model.layers.1.mla.out_proj.weight"}) {
      EXPECT_TRUE(names.contains(name)) << name;
    }
    EXPECT_FALSE(names.contains("model.layers.1.self_attn.q_proj.weight"));
    EXPECT_FALSE(names.contains("model.layers.1.mla.q_proj.weight"));
  }
  {
    const ModelConfig config = mla_model_config(0);  // plain q_proj: q ranks are null
    LlamaForCausalLM model = test::random_model(config);
    save_hf_checkpoint(dir / "plain", *model, config, tokenizer);
    const json l = read_json_file(dir / "plain" / "mla_layer_config.json");
    EXPECT_TRUE(l["q_lora_rank"].is_null());
    EXPECT_TRUE(l["layer_rank_list"]["1"]["q_rank"].is_null());
    EXPECT_EQ(l["layer_rank_list"]["1"]["kv_rank"], 8);
    EXPECT_EQ(l["use_lora_layer_norm"], false);
    const auto names = SafetensorsFile::open(dir / "plain" / "model.safetensors").tensors();
    EXPECT_TRUE(names.contains("model.layers.1.mla.q_proj.weight"));
    EXPECT_FALSE(names.contains("model.layers.1.mla.kv_a_layernorm.weight"));
  }
  {
    const ModelConfig config = mla_model_config(2);  // full MLA: per-layer ranks, no GQA left
    LlamaForCausalLM model = test::random_model(config);
    save_hf_checkpoint(dir / "full", *model, config, tokenizer);
    EXPECT_EQ(read_json_file(dir / "full" / "MLA_config.json")["attn_layers"], json::array());
    const json l = read_json_file(dir / "full" / "mla_layer_config.json");
    EXPECT_EQ(l["layer_rank_list"], json({{"0", {{"q_rank", 16}, {"kv_rank", 8}}},
                                          {"1", {{"q_rank", 24}, {"kv_rank", 16}}}}));
    const json c = read_json_file(dir / "full" / "config.json");  // the recorded teacher
    EXPECT_EQ(c["num_key_value_heads"], 2);
    EXPECT_EQ(c["head_dim"], 8);
  }
}

// X-EcoMLA writes mla_layer_config.json as a diff against DeepseekV3Config's defaults; keys
// left out fall back to them.
TEST(MlaCheckpointFiles, KeysAtDeepseekDefaultsMayBeLeftOut) {
  const Tokenizer tokenizer{test::tiny_tokenizer_spec()};
  test::TempDir dir;
  const ModelConfig config = mla_model_config(0);
  LlamaForCausalLM model = test::random_model(config);
  save_hf_checkpoint(dir / "hf", *model, config, tokenizer);
  json l = read_json_file(dir / "hf" / "mla_layer_config.json");
  for (const char* key : {"use_lora_layer_norm", "lora_layer_norm_eps", "attention_bias",
                          "rope_scaling", "rope_theta", "use_fixed_rank_for_first_and_last_block",
                          "max_position_embeddings", "tie_word_embeddings", "vocab_size"}) {
    l.erase(key);
  }
  write_json_file(dir / "hf" / "mla_layer_config.json", l);
  expect_same_config(load_config(dir / "hf"), config);
}

TEST(MlaCheckpointFiles, FullMlaWithoutASourceWritesAnMhaStandIn) {
  const Tokenizer tokenizer{test::tiny_tokenizer_spec()};
  test::TempDir dir;
  ModelConfig config = mla_model_config(2);
  config.source_attention.reset();
  LlamaForCausalLM model = test::random_model(config);
  save_hf_checkpoint(dir / "hf", *model, config, tokenizer);
  const json c = read_json_file(dir / "hf" / "config.json");
  EXPECT_EQ(c["num_attention_heads"], 4);
  EXPECT_EQ(c["num_key_value_heads"], 4);
  EXPECT_EQ(c["head_dim"], 6 + 4);
  const ModelConfig back = load_config(dir / "hf");
  ASSERT_TRUE(back.source_attention.has_value());
  EXPECT_EQ(back.source_attention->n_head_kv, 4);
  EXPECT_EQ(std::get<MlaSpec>(back.attention[1]).rank_q, 24);
}

TEST(MlaCheckpointFiles, WhatTheLayoutCannotHoldIsRefusedBeforeWriting) {
  const Tokenizer tokenizer{test::tiny_tokenizer_spec()};
  test::TempDir dir;
  ModelConfig config = mla_model_config(2);
  std::get<MlaSpec>(config.attention[1]).dim_rope = 6;
  LlamaForCausalLM model = test::random_model(config);
  try {
    save_hf_checkpoint(dir / "hf", *model, config, tokenizer);
    ADD_FAILURE() << "MLA layers with different RoPE dims were written";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("qk_rope_head_dim"), std::string::npos) << what;
    EXPECT_NE(what.find("layer 0: 4, layer 1: 6"), std::string::npos) << what;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "hf" / "config.json"));

  ModelConfig latent = mla_model_config(2);
  std::get<MlaSpec>(latent.attention[0]).latent_norm = false;
  EXPECT_THROW(write_hf_config(dir / "config.json", latent, tokenizer, "float32"),
               std::invalid_argument);
  ModelConfig wrong_source = mla_model_config(1);
  wrong_source.source_attention = GqaSpec{4, 4, 8};  // not what the GQA layer 0 is
  EXPECT_THROW(write_hf_config(dir / "config.json", wrong_source, tokenizer, "float32"),
               std::invalid_argument);
  // GGUF export still takes GQA models only.
  const ModelConfig hybrid = mla_model_config(1);
  LlamaForCausalLM hybrid_model = test::random_model(hybrid);
  EXPECT_THROW(write_llama_gguf(dir / "x.gguf", *hybrid_model, hybrid, tokenizer.spec()),
               std::invalid_argument);
}

TEST(MlaCheckpointFiles, SavingAGqaModelOverAnMlaFolderRemovesTheMlaFiles) {
  const Tokenizer tokenizer{test::tiny_tokenizer_spec()};
  test::TempDir dir;
  const ModelConfig hybrid = mla_model_config(1);
  LlamaForCausalLM hybrid_model = test::random_model(hybrid);
  save_hf_checkpoint(dir / "hf", *hybrid_model, hybrid, tokenizer);
  ASSERT_TRUE(std::filesystem::exists(dir / "hf" / "mla_layer_config.json"));
  const ModelConfig gqa = test::tiny_config();
  LlamaForCausalLM gqa_model = test::random_model(gqa);
  save_hf_checkpoint(dir / "hf", *gqa_model, gqa, tokenizer);
  EXPECT_FALSE(std::filesystem::exists(dir / "hf" / "MLA_config.json"));
  EXPECT_FALSE(std::filesystem::exists(dir / "hf" / "mla_layer_config.json"));
  const ModelConfig back = load_config(dir / "hf");
  EXPECT_FALSE(back.source_attention.has_value());
  expect_same_config(back, gqa);
}

TEST(MlaCheckpointFiles, CorruptMlaConfigsAreFormatErrorsNamingTheFile) {
  const Tokenizer tokenizer{test::tiny_tokenizer_spec()};
  test::TempDir dir;
  const ModelConfig config = mla_model_config(1);
  LlamaForCausalLM model = test::random_model(config);
  save_hf_checkpoint(dir / "hf", *model, config, tokenizer);
  const auto mla_path = dir / "hf" / "MLA_config.json";
  const auto layer_path = dir / "hf" / "mla_layer_config.json";
  const json mla = read_json_file(mla_path);
  const json layer = read_json_file(layer_path);
  auto expect_error = [&](const std::function<void(json&, json&)>& corrupt,
                          const std::vector<std::string>& needles) {
    json m = mla, l = layer;
    corrupt(m, l);
    write_json_file(mla_path, m);
    write_json_file(layer_path, l);
    test::expect_format_error([&] { load_model(dir / "hf"); }, needles);
  };
  const std::string layer_file = "mla_layer_config.json", mla_file = "MLA_config.json";
  expect_error([](json&, json& l) { l["layer_rank_list"]["1"].erase("kv_rank"); },
               {layer_file, "layer_rank_list[\"1\"]", "missing key 'kv_rank'"});
  expect_error([](json&, json& l) { l["layer_rank_list"]["1"]["kv_rank"] = -8; },
               {layer_file, "'kv_rank' is -8, outside"});
  expect_error([](json&, json& l) { l["layer_rank_list"]["1"]["q_rank"] = int64_t{1} << 40; },
               {layer_file, "'q_rank'", "outside"});
  expect_error([](json&, json& l) { l["layer_rank_list"]["7"] = l["layer_rank_list"]["1"]; },
               {layer_file, "layer_rank_list", "\"7\""});
  expect_error([](json&, json& l) { l["kv_lora_rank"] = 0; }, {layer_file, "kv_lora_rank"});
  expect_error([](json&, json& l) { l["qk_rope_head_dim"] = 3; },
               {layer_file, "layer 1", "qk_rope_head_dim must be even"});
  expect_error([](json&, json& l) { l["qk_nope_head_dim"] = 4.5; },
               {layer_file, "qk_nope_head_dim", "must be an integer"});
  expect_error([](json&, json& l) { l["num_hidden_layers"] = 3; },
               {layer_file, "num_hidden_layers"});
  expect_error(
      [](json&, json& l) {
        l["rope_scaling"] = {{"type", "yarn"}, {"factor", 32.0}};
      },
      {layer_file, "rope_scaling", "not supported"});
  expect_error([](json&, json& l) { l["model_type"] = "llama"; }, {layer_file, "model_type"});
  expect_error(
      [](json& m, json&) {
        m["attn_layers"] = {0, 2};
      },
      {mla_file, "attn_layers", "[0, 2)"});
  expect_error([](json& m, json&) { m["attn_layers"] = {-1}; }, {mla_file, "attn_layers"});
  expect_error([](json& m, json&) { m["attn_layers"] = "0"; }, {mla_file, "attn_layers"});
  expect_error([](json& m, json&) { m.erase("attn_layers"); },
               {mla_file, "missing key 'attn_layers'"});
  expect_error([](json& m, json&) { m["n_layer"] = 3; }, {mla_file, "n_layer", "3"});
  expect_error([](json& m, json&) { m["d_model"] = 64; }, {mla_file, "d_model"});
  // Shapes that parse but are not what the weights hold: caught by the weight check.
  expect_error([](json&, json& l) { l["layer_rank_list"]["1"]["kv_rank"] = 16; },
               {"the model config expects"});

  write_json_file(mla_path, mla);  // the good files load again
  write_json_file(layer_path, layer);
  EXPECT_NO_THROW(load_model(dir / "hf"));
  std::filesystem::remove(layer_path);  // half of the pair
  test::expect_format_error([&] { load_config(dir / "hf"); }, {layer_file, "missing", mla_file});
}

}  // namespace
}  // namespace ecomla
