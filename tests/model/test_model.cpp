// The Llama modules on a tiny random model: attention against a naive reference written out
// here, KV-cached decoding against the full forward pass, bf16 against fp32.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "ecomla/decode_speed.h"
#include "ecomla/kv_cache.h"
#include "ecomla/model.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

// RMSNorm's written-out backward against autograd through its definition (Hugging Face's
// LlamaRMSNorm): the same outputs and gradients for x and the weight.
TEST(RmsNorm, BackwardMatchesAutogradOfTheDefinition) {
  at::manual_seed(2);
  RmsNorm norm(16, 1e-5);
  {
    at::NoGradGuard no_grad;
    norm->weight.uniform_(0.5, 1.5);
  }
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = at::randn({3, 5, 16}).to(dtype).requires_grad_(true);
    const at::Tensor x_ref = x.detach().clone().requires_grad_(true);
    const at::Tensor w_ref = norm->weight.detach().clone().requires_grad_(true);
    const at::Tensor upstream = at::randn({3, 5, 16});
    const at::Tensor x32 = x_ref.to(at::kFloat);
    const at::Tensor expected =
        w_ref * (x32 * at::rsqrt(x32.pow(2).mean(-1, true) + 1e-5)).to(dtype);
    (expected * upstream).sum().backward();
    norm->weight.mutable_grad() = at::Tensor();
    const at::Tensor y = norm(x);
    (y * upstream).sum().backward();
    const double tol = dtype == at::kFloat ? 1e-5 : 2e-2;
    EXPECT_EQ(y.scalar_type(), expected.scalar_type());
    EXPECT_TRUE(at::allclose(y, expected, tol, tol));
    EXPECT_EQ(x.grad().scalar_type(), dtype);
    EXPECT_TRUE(at::allclose(x.grad().to(at::kFloat), x_ref.grad().to(at::kFloat), tol, tol));
    EXPECT_TRUE(at::allclose(norm->weight.grad(), w_ref.grad(), tol, tol));
  }
}

// Attention of one layer written out from the definition: per-head q/k/v, RoPE with
// rotate_half and theta^(-2i/d) frequencies, GQA by repeating KV heads, causal softmax.
at::Tensor naive_attention(GqaAttentionImpl& attn, const GqaSpec& s, double theta,
                           const at::Tensor& x /*[B, T, D]*/) {
  const int64_t b = x.size(0), t = x.size(1), d = s.head_dim;
  auto proj = [&](const at::Tensor& w, int64_t heads) {
    return at::matmul(x, w.t()).view({b, t, heads, d}).permute({0, 2, 1, 3});  // [B, h, T, d]
  };
  at::Tensor q = proj(attn.q_proj->weight, s.n_head);
  at::Tensor k = proj(attn.k_proj->weight, s.n_head_kv);
  at::Tensor v = proj(attn.v_proj->weight, s.n_head_kv);
  auto rope = [&](const at::Tensor& y) {
    at::Tensor out = y.clone();
    for (int64_t pos = 0; pos < t; ++pos) {
      for (int64_t i = 0; i < d / 2; ++i) {
        const double angle = pos * std::pow(theta, -2.0 * i / d);
        const at::Tensor a = y.select(2, pos).select(-1, i);
        const at::Tensor c = y.select(2, pos).select(-1, i + d / 2);
        out.select(2, pos).select(-1, i).copy_(a * std::cos(angle) - c * std::sin(angle));
        out.select(2, pos).select(-1, i + d / 2).copy_(c * std::cos(angle) + a * std::sin(angle));
      }
    }
    return out;
  };
  q = rope(q);
  k = rope(k).repeat_interleave(s.n_head / s.n_head_kv, 1);
  v = v.repeat_interleave(s.n_head / s.n_head_kv, 1);
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  const at::Tensor future = at::ones({t, t}, at::kBool).triu(1);
  scores = scores.masked_fill(future, -INFINITY);
  const at::Tensor out = at::matmul(scores.softmax(-1), v);  // [B, H, T, d]
  return at::matmul(out.permute({0, 2, 1, 3}).reshape({b, t, s.n_head * d}),
                    attn.o_proj->weight.t());
}

TEST(Attention, MatchesNaiveReference) {
  const ModelConfig config = test::tiny_config();
  LlamaForCausalLM model = test::random_model(config);
  torch::NoGradGuard no_grad;
  auto& layer = model->model->layers->at<DecoderLayerImpl>(0);
  const at::Tensor x = at::randn({2, 7, config.hidden_size});
  const GqaSpec& spec = std::get<GqaSpec>(config.attention[0]);
  const RotaryEmbedding rotary(spec.head_dim, config.rope);
  const RopeTables rope = rotary.tables(at::arange(7), at::kFloat);
  const at::Tensor got = layer.self_attn->forward(x, rope, nullptr, 0);
  const at::Tensor want = naive_attention(*layer.self_attn, spec, config.rope.theta, x);
  EXPECT_TRUE(at::allclose(got, want, 1e-5, 1e-5)) << (got - want).abs().max().item<float>();
}

TEST(KvCache, IncrementalDecodingMatchesFullForward) {
  const ModelConfig config = test::tiny_config();
  LlamaForCausalLM model = test::random_model(config);
  torch::NoGradGuard no_grad;
  const at::Tensor tokens = at::randint(0, config.vocab_size, {2, 12}, at::kLong);
  const at::Tensor full = model->forward(tokens);  // [2, 12, V]

  KvCache cache(config, 2, 16, at::kFloat);
  // Prefill 5, then a chunk of 3 (masked path), then one token at a time.
  std::vector<at::Tensor> parts = {model->forward(tokens.narrow(1, 0, 5), &cache),
                                   model->forward(tokens.narrow(1, 5, 3), &cache)};
  for (int64_t i = 8; i < 12; ++i) parts.push_back(model->forward(tokens.narrow(1, i, 1), &cache));
  const at::Tensor incremental = at::cat(parts, 1);
  EXPECT_EQ(cache.length(), 12);
  EXPECT_TRUE(at::allclose(incremental, full, 1e-5, 1e-4))
      << (incremental - full).abs().max().item<float>();
  EXPECT_EQ(cache.bytes_used(), 2 /*batch*/ * 12 /*tokens*/ * config.kv_values_per_token() * 4);
  EXPECT_THROW(model->forward(at::zeros({2, 5}, at::kLong), &cache), std::length_error);
}

// Decode speed fills the cache instead of prefilling it: the cache then holds `context`
// positions of both kinds of layer, and a step after it runs as one after a real prefill.
TEST(KvCache, FilledWithNoiseHoldsTheContextForTheNextStep) {
  LlamaForCausalLM model = test::random_model(test::tiny_hybrid_config(false), 4);
  model->eval();
  KvCache cache(model->config(), 2, 16, at::kFloat);
  cache.fill_with_noise(10);
  EXPECT_EQ(cache.length(), 10);
  EXPECT_EQ(cache.mla_layer(1).length, 10);
  const at::Tensor logits = model->forward(at::zeros({2, 1}, at::kLong), &cache);
  EXPECT_EQ(cache.length(), 11);
  EXPECT_TRUE(logits.isfinite().all().item<bool>());

  const DecodeSpeed speed = measure_decode_speed(model, 2, 10, 3);
  EXPECT_GT(speed.tokens_per_s, 0);
  // GQA layer: K and V of 2 heads x 8; MLA layer: the latent and the RoPE key; 4 bytes each.
  const auto& mla = std::get<MlaSpec>(model->config().attention[1]);
  EXPECT_EQ(speed.cache_bytes, 2 * 10 * (2 * 2 * 8 + mla.rank_kv + mla.dim_rope) * 4);
  EXPECT_THROW(measure_decode_speed(model, 0, 10, 3), std::invalid_argument);
}

TEST(Model, Bf16StaysCloseToFp32) {
  const ModelConfig config = test::tiny_config();
  LlamaForCausalLM model = test::random_model(config);
  torch::NoGradGuard no_grad;
  const at::Tensor tokens = at::randint(0, config.vocab_size, {1, 10}, at::kLong);
  const at::Tensor fp32 = model->forward(tokens).log_softmax(-1);
  model->to(at::kBFloat16);
  const at::Tensor bf16 = model->forward(tokens).to(at::kFloat).log_softmax(-1);
  // Compare probabilities: bf16 has ~3 significant digits.
  EXPECT_LT((fp32.exp() - bf16.exp()).abs().max().item<float>(), 0.05f);
}

TEST(Model, ParameterNamesAreHuggingFaces) {
  LlamaForCausalLM model(test::tiny_config());
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key());
  for (const std::string expected :
       {"model.embed_tokens.weight", "model.norm.weight", "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
  int64_t n = 0;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : model->named_parameters()) {
    n += p.value().numel();
    shapes[p.key()] = p.value().sizes().vec();
  }
  EXPECT_EQ(n, test::tiny_config().parameter_count());
  EXPECT_EQ(shapes, llama_parameter_shapes(test::tiny_config()));
  ModelConfig untied = test::tiny_config();
  untied.tie_word_embeddings = false;
  EXPECT_TRUE(llama_parameter_shapes(untied).contains("lm_head.weight"));
}

TEST(Model, InvalidConfigsAreRejected) {
  ModelConfig c = test::tiny_config();
  std::get<GqaSpec>(c.attention[1]).n_head = 3;  // not a multiple of 2 KV heads
  EXPECT_THROW(LlamaForCausalLM{c}, std::invalid_argument);
  c = test::tiny_config();
  c.attention.pop_back();
  EXPECT_THROW(LlamaForCausalLM{c}, std::invalid_argument);
}

}  // namespace
}  // namespace ecomla

namespace ecomla {
namespace {

// Llama 3.1 frequency scaling, written out from its definition (Meta's apply_scaling): long
// wavelengths divided by `factor`, short ones kept, a linear blend in between.
TEST(Rope, Llama3ScalingFollowsTheDefinition) {
  RopeConfig rope;
  rope.theta = 500000.0;
  rope.scaling = RopeScaling::Llama3;
  rope.factor = 8.0;
  rope.low_freq_factor = 1.0;
  rope.high_freq_factor = 4.0;
  rope.original_context = 8192;
  const int64_t dim = 128;
  const RotaryEmbedding rotary(dim, rope);
  const at::Tensor got = rotary.inv_freq();
  int low = 0, mid = 0, high = 0;
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double freq = std::pow(rope.theta, -2.0 * i / dim);
    const double wavelen = 2 * M_PI / freq;
    double want;
    if (wavelen < rope.original_context / rope.high_freq_factor) {
      want = freq, ++high;
    } else if (wavelen > rope.original_context / rope.low_freq_factor) {
      want = freq / rope.factor, ++low;
    } else {
      const double smooth = (rope.original_context / wavelen - rope.low_freq_factor) /
                            (rope.high_freq_factor - rope.low_freq_factor);
      want = (1 - smooth) * freq / rope.factor + smooth * freq, ++mid;
    }
    EXPECT_NEAR(got[i].item<double>(), want, 1e-6 * want) << i;
  }
  EXPECT_GT(low, 0);  // all three regimes are exercised
  EXPECT_GT(mid, 0);
  EXPECT_GT(high, 0);
}

TEST(Rope, LinearScalingAndGgufFactorsDivideFrequencies) {
  RopeConfig plain;
  RopeConfig linear = plain;
  linear.scaling = RopeScaling::Linear;
  linear.factor = 4.0;
  RopeConfig factors = plain;
  factors.freq_factors = std::vector<float>(4, 2.0f);
  const at::Tensor base = RotaryEmbedding(8, plain).inv_freq();
  EXPECT_TRUE(at::allclose(RotaryEmbedding(8, linear).inv_freq(), base / 4));
  EXPECT_TRUE(at::allclose(RotaryEmbedding(8, factors).inv_freq(), base / 2));
  EXPECT_NEAR(base[1].item<double>(), std::pow(10000.0, -2.0 / 8), 1e-7);
}

}  // namespace
}  // namespace ecomla
