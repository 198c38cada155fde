// MLA attention against a naive reference written out from the DeepSeek-V2 equations, with
// RoPE rotating adjacent pairs (x[2j], x[2j+1]) by pos * theta^(-2j/Dr); and latent-cache
// decoding (one token at a time: the absorbed path) against the full forward pass (expanded).
#include <gtest/gtest.h>

#include <cmath>

#include "ecomla/mla_attention.h"

namespace ecomla {
namespace {

// Rotates adjacent pairs of the last dim of y [..., T, Dr] at positions 0..T-1.
at::Tensor rotate_pairs(const at::Tensor& y, double theta) {
  at::Tensor out = y.clone();
  const int64_t t = y.size(-2), dr = y.size(-1);
  for (int64_t pos = 0; pos < t; ++pos) {
    for (int64_t j = 0; j < dr / 2; ++j) {
      const double angle = pos * std::pow(theta, -2.0 * j / dr);
      const at::Tensor a = y.select(-2, pos).select(-1, 2 * j);
      const at::Tensor b = y.select(-2, pos).select(-1, 2 * j + 1);
      out.select(-2, pos).select(-1, 2 * j).copy_(a * std::cos(angle) - b * std::sin(angle));
      out.select(-2, pos).select(-1, 2 * j + 1).copy_(b * std::cos(angle) + a * std::sin(angle));
    }
  }
  return out;
}

at::Tensor naive_mla(MlaAttentionImpl& m, const at::Tensor& x, double theta) {
  const MlaSpec& s = m.spec();
  const int64_t b = x.size(0), t = x.size(1), h = s.n_head;
  const int64_t dn = s.dim_nope, dr = s.dim_rope, dv = s.dim_v;
  auto lin = [](const at::Tensor& in, const at::Tensor& w) { return at::matmul(in, w.t()); };
  const at::Tensor q = lin(lin(x, m.q_a_proj->weight), m.q_b_proj->weight)
                           .view({b, t, h, dn + dr})
                           .permute({0, 2, 1, 3});            // [B, H, T, Dn+Dr]
  const at::Tensor c = lin(x, m.kv_a_proj_with_mqa->weight);  // [B, T, Rkv+Dr]
  const at::Tensor latent = c.narrow(-1, 0, s.rank_kv);
  const at::Tensor k_pe = rotate_pairs(c.narrow(-1, s.rank_kv, dr), theta);  // [B, T, Dr]
  const at::Tensor kv =
      lin(latent, m.kv_b_proj->weight).view({b, t, h, dn + dv}).permute({0, 2, 1, 3});
  const at::Tensor q_pe = rotate_pairs(q.narrow(-1, dn, dr), theta);
  at::Tensor scores = at::matmul(q.narrow(-1, 0, dn), kv.narrow(-1, 0, dn).transpose(-1, -2)) +
                      at::matmul(q_pe, k_pe.unsqueeze(1).transpose(-1, -2));
  scores = scores / std::sqrt(static_cast<double>(dn + dr));
  scores = scores.masked_fill(at::ones({t, t}, at::kBool).triu(1), -INFINITY);
  const at::Tensor out = at::matmul(scores.softmax(-1), kv.narrow(-1, dn, dv));  // [B, H, T, Dv]
  return lin(out.permute({0, 2, 1, 3}).reshape({b, t, h * dv}), m.out_proj->weight);
}

MlaSpec small_spec() { return {4, 24, 12, 8, 6, 10, false, 1e-6}; }

TEST(MlaAttention, MatchesTheEquations) {
  torch::manual_seed(3);
  RopeConfig rope;
  rope.theta = 1000.0;
  MlaAttention m(small_spec(), 32, rope);
  torch::NoGradGuard no_grad;
  const at::Tensor x = at::randn({2, 9, 32});
  const at::Tensor got = m->forward(x);
  const at::Tensor want = naive_mla(*m, x, rope.theta);
  EXPECT_TRUE(at::allclose(got, want, 1e-5, 1e-5)) << (got - want).abs().max().item<float>();
}

TEST(MlaAttention, LatentCacheDecodingMatchesFullForward) {
  torch::manual_seed(4);
  MlaSpec spec = small_spec();
  spec.latent_norm = true;
  MlaAttention m(spec, 32, RopeConfig{});
  torch::NoGradGuard no_grad;
  const at::Tensor x = at::randn({2, 7, 32});
  const at::Tensor full = m->forward(x);
  MlaLayerCache cache(spec, 2, 8, at::kFloat);
  std::vector<at::Tensor> parts = {m->forward(x.narrow(1, 0, 3), &cache)};
  for (int64_t i = 3; i < 7; ++i) parts.push_back(m->forward(x.narrow(1, i, 1), &cache));
  EXPECT_TRUE(at::allclose(at::cat(parts, 1), full, 1e-5, 1e-5));
  EXPECT_EQ(cache.length, 7);
  EXPECT_EQ(spec.cache_values_per_token(), 12 + 8);
}

TEST(MlaAttention, ParameterNamesFollowXEcoMla) {
  MlaSpec spec = small_spec();
  spec.latent_norm = true;
  MlaAttention m(spec, 32, RopeConfig{});
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : m->named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  const std::map<std::string, std::vector<int64_t>> want = {
      {"q_a_proj.weight", {24, 32}},          {"q_a_layernorm.weight", {24}},
      {"q_b_proj.weight", {4 * (6 + 8), 24}}, {"kv_a_proj_with_mqa.weight", {12 + 8, 32}},
      {"kv_a_layernorm.weight", {12}},        {"kv_b_proj.weight", {4 * (6 + 10), 12}},
      {"out_proj.weight", {32, 4 * 10}}};
  EXPECT_EQ(shapes, want);
  spec.rank_q = 0;
  spec.latent_norm = false;
  MlaAttention plain(spec, 32, RopeConfig{});
  EXPECT_EQ(plain->named_parameters().size(), 4u);  // q_proj, kv_a, kv_b, out_proj
  spec.dim_rope = 7;
  EXPECT_THROW(MlaAttention(spec, 32, RopeConfig{}), std::invalid_argument);
}

}  // namespace
}  // namespace ecomla

#include "ecomla/kv_cache.h"
#include "ecomla/weights.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

class HybridModel : public testing::TestWithParam<bool> {};

TEST_P(HybridModel, ParametersCacheSizeAndDecodingAgree) {
  const ModelConfig config = test::tiny_hybrid_config(GetParam());
  LlamaForCausalLM model = test::random_model(config);
  std::map<std::string, std::vector<int64_t>> shapes;
  int64_t n = 0;
  for (const auto& p : model->named_parameters()) {
    shapes[p.key()] = p.value().sizes().vec();
    n += p.value().numel();
  }
  EXPECT_EQ(shapes, llama_parameter_shapes(config));
  EXPECT_TRUE(shapes.contains("model.layers.1.mla.kv_b_proj.weight"));
  EXPECT_EQ(n, config.parameter_count());
  EXPECT_EQ(config.layer_kv_values_per_token(1), 8 + 4);  // latent + shared RoPE key
  EXPECT_EQ(config.kv_values_per_token(), (GetParam() ? 12 : 2 * 2 * 8) + 12);

  torch::NoGradGuard no_grad;
  const at::Tensor tokens = at::randint(0, config.vocab_size, {2, 9}, at::kLong);
  const at::Tensor full = model->forward(tokens);
  KvCache cache(config, 2, 12, at::kFloat);
  std::vector<at::Tensor> parts = {model->forward(tokens.narrow(1, 0, 4), &cache),
                                   model->forward(tokens.narrow(1, 4, 2), &cache)};
  for (int64_t i = 6; i < 9; ++i) parts.push_back(model->forward(tokens.narrow(1, i, 1), &cache));
  EXPECT_TRUE(at::allclose(at::cat(parts, 1), full, 1e-5, 1e-4));
  EXPECT_EQ(cache.bytes_used(), 2 * 9 * config.kv_values_per_token() * 4);
  cache.truncate(4);  // rewinding the cache and decoding again gives the same logits
  EXPECT_TRUE(at::allclose(model->forward(tokens.narrow(1, 4, 2), &cache), parts[1], 1e-5, 1e-4));

  LlamaForCausalLM copy(config);  // the state dict loads back through the usual checks
  load_weights(*copy, MemoryWeightSource(state_dict(*model)));
  EXPECT_TRUE(at::equal(copy->forward(tokens), full));
}

INSTANTIATE_TEST_SUITE_P(HybridAndFullMla, HybridModel, testing::Bool());

}  // namespace
}  // namespace ecomla
