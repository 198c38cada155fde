// Distillation on tiny models saved in the test: the losses against direct computations, the
// data packing, the config reader, and whole runs (loss goes down, resume reproduces the
// uninterrupted run, NaN keeps the last checkpoint, bad configs fail before training).
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "ecomla/distill.h"
#include "ecomla/error.h"
#include "ecomla/hf_checkpoint.h"
#include "ecomla/model_loader.h"
#include "support/tiny_model.h"
#include "train/losses.h"

namespace ecomla {
namespace {

namespace fs = std::filesystem;

TEST(KdLoss, MatchesTheDefinition) {
  at::manual_seed(3);
  const at::Tensor student = at::randn({2, 4, 7}), teacher = at::randn({2, 4, 7});
  const at::Tensor tokens = at::randint(0, 7, {2, 4}, at::kLong);
  for (const double tau : {1.0, 2.0}) {
    const train::KdLoss l = train::kd_loss(student, teacher, tokens, 0.7, 0.3, tau);
    double kl = 0, ce = 0;
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t t = 0; t < 4; ++t) {
        const at::Tensor ps = (student[b][t] / tau).softmax(0),
                         pt = (teacher[b][t] / tau).softmax(0);
        for (int64_t v = 0; v < 7; ++v) {
          const double p = pt[v].item<double>(), q = ps[v].item<double>();
          kl += p * std::log(p / q);
        }
        if (t < 3)
          ce -= student[b][t].log_softmax(0)[tokens[b][t + 1].item<int64_t>()].item<double>();
      }
    }
    kl = kl / 8 * tau * tau;
    ce /= 6;
    EXPECT_NEAR(l.kl.item<double>(), kl, 1e-5);
    EXPECT_NEAR(l.ce.item<double>(), ce, 1e-5);
    EXPECT_NEAR(l.loss.item<double>(), 0.7 * kl + 0.3 * ce, 1e-5);
  }
  // A student equal to its teacher has zero KL and no KL gradient.
  const at::Tensor same = teacher.clone().requires_grad_(true);
  const train::KdLoss zero = train::kd_loss(same, teacher, tokens, 1.0, 0.0, 1.0);
  zero.loss.backward();
  EXPECT_NEAR(zero.kl.item<double>(), 0.0, 1e-6);
  EXPECT_LT(same.grad().abs().max().item<double>(), 1e-6);
}

// The fused loss is kd_loss on the logits of the LM heads, in value and in the gradients of the
// student's hidden states and head, for chunks that do not divide the rows.
TEST(FusedKdLoss, EqualsTheLossOnFullLogits) {
  at::manual_seed(4);
  const at::Tensor teacher_hidden = at::randn({2, 5, 6}), teacher_head = at::randn({11, 6});
  const at::Tensor tokens = at::randint(0, 11, {2, 5}, at::kLong);
  for (const double tau : {1.0, 2.0}) {
    for (const bool train_head : {true, false}) {
      const at::Tensor h1 = at::randn({2, 5, 6}).requires_grad_(true);
      const at::Tensor w1 = at::randn({11, 6}).requires_grad_(train_head);
      const at::Tensor h2 = h1.detach().clone().requires_grad_(true);
      const at::Tensor w2 = w1.detach().clone().requires_grad_(train_head);
      const train::KdLoss full =
          train::kd_loss(at::matmul(h1, w1.t()), at::matmul(teacher_hidden, teacher_head.t()),
                         tokens, 0.7, 0.3, tau);
      const train::KdLoss fused = train::fused_kd_loss(h2, w2, teacher_hidden, teacher_head, tokens,
                                                       0.7, 0.3, tau, at::kFloat, 3);
      EXPECT_NEAR(fused.loss.item<double>(), full.loss.item<double>(), 1e-5);
      EXPECT_NEAR(fused.kl.item<double>(), full.kl.item<double>(), 1e-5);
      EXPECT_NEAR(fused.ce.item<double>(), full.ce.item<double>(), 1e-5);
      (2.0 * full.loss).backward();
      (2.0 * fused.loss).backward();
      EXPECT_TRUE(at::allclose(h2.grad(), h1.grad(), 1e-4, 1e-6));
      EXPECT_EQ(w2.grad().defined(), train_head);
      if (train_head) {
        EXPECT_TRUE(at::allclose(w2.grad(), w1.grad(), 1e-4, 1e-6));
      }
    }
  }
  // Without gradients (held-out evaluation) it only computes the values.
  at::NoGradGuard no_grad;
  const at::Tensor h = at::randn({2, 5, 6});
  const train::KdLoss eval = train::fused_kd_loss(h, teacher_head, teacher_hidden, teacher_head,
                                                  tokens, 1.0, 0.0, 1.0, at::kFloat, 4);
  EXPECT_NEAR(eval.kl.item<double>(),
              train::kd_loss(at::matmul(h, teacher_head.t()),
                             at::matmul(teacher_hidden, teacher_head.t()), tokens, 1.0, 0.0, 1.0)
                  .kl.item<double>(),
              1e-5);
  EXPECT_FALSE(eval.loss.requires_grad());
}

TEST(LayerwiseLoss, TeacherTargetsRebuildTheForwardPass) {
  LlamaForCausalLM teacher = test::random_model(test::tiny_config(), 1);
  const at::Tensor tokens = at::randint(0, 300, {2, 6}, at::kLong);
  const train::LayerTargets targets = train::layer_targets(teacher, tokens);
  ASSERT_EQ(targets.outputs.size(), 2u);
  // The last layer's output, normed, is the backbone's output.
  at::NoGradGuard no_grad_check;
  EXPECT_TRUE(at::allclose(teacher->model->norm(targets.outputs.back()),
                           teacher->model->forward(tokens), 1e-5, 1e-5));
}

TEST(LayerwiseLoss, IsTheMseOfTheMlaLayerOnTeacherInputs) {
  LlamaForCausalLM teacher = test::random_model(test::tiny_config(), 1);
  LlamaForCausalLM student = test::random_model(test::tiny_hybrid_config(false), 2);
  const at::Tensor tokens = at::randint(0, 300, {2, 6}, at::kLong);
  const train::LayerTargets targets = train::layer_targets(teacher, tokens);
  const at::Tensor loss = train::layerwise_loss(student, targets);
  // Layer 1 is the only MLA layer: its attention and output on the teacher's layer-1 input.
  DecoderLayerImpl& layer = student->model->layers->at<DecoderLayerImpl>(1);
  const at::Tensor x = targets.inputs[1];
  const at::Tensor attention = layer.mla->forward(layer.input_layernorm(x));
  const at::Tensor h = x + attention;
  const at::Tensor out = h + layer.mlp(layer.post_attention_layernorm(h));
  const double expected =
      ((attention - targets.attention[1]).pow(2).mean() + (out - targets.outputs[1]).pow(2).mean())
          .item<double>();
  EXPECT_NEAR(loss.item<double>(), expected, 1e-6 * expected);
  loss.backward();
  for (const auto& p : student->named_parameters()) {
    const bool mla_layer = p.key().find("layers.1.") != std::string::npos;
    EXPECT_EQ(p.value().grad().defined() && p.value().grad().abs().sum().item<double>() > 0,
              mla_layer)
        << p.key();
  }
}

// A tiny teacher and its converted student saved as Hugging Face folders, training text, and a
// config for them.
class DistillRuns : public testing::Test {
protected:
  void SetUp() override {
    const Tokenizer tokenizer(test::tiny_tokenizer_spec());
    LlamaForCausalLM teacher = test::random_model(test::tiny_config(), 1);
    save_hf_checkpoint(dir_ / "teacher", *teacher, teacher->config(), tokenizer);
    ConvertOptions options;
    options.init = MlaInit::kXEcoMla;
    options.kv.rank = 8;
    options.dim_rope = 4;
    options.dim_nope = 4;
    const Conversion conv = convert_to_mla(teacher, options);
    save_hf_checkpoint(dir_ / "student", *conv.model, conv.model->config(), tokenizer);
    std::ofstream text(dir_ / "train.txt");
    for (int i = 0; i < 60; ++i) text << "hello world " << i << " the quick brown fox. ";
    std::ofstream chat(dir_ / "chat.jsonl");
    chat << R"({"instruction": "Say hi", "input": "", "output": "hello"})"
         << "\n";
    chat << R"({"question": "1+1?", "answer": "2"})"
         << "\n";
    config_ = fmt_config();
  }
  std::string fmt_config() const {
    return "model_name_or_path: " + (dir_ / "student").string() + "\n" +
           "teacher_model_name_or_path: " + (dir_ / "teacher").string() + "\n" +
           "dataset_mixer:\n  " + (dir_ / "train.txt").string() + ": 1.0\n  " +
           (dir_ / "chat.jsonl").string() + ": 1.0\n" + "output_dir: " + (dir_ / "out").string() +
           "\n" +
           "max_seq_length: 16\nper_device_train_batch_size: 2\ngradient_accumulation_steps: 2\n"
           "learning_rate: 3.0e-3\nwarmup_ratio: 0.1\nmax_steps: 6\nsave_steps: 3\n"
           "eval_sequences: 2\ncompute_dtype: fp32\nkl_weight: 1.0\nce_weight: 0.1\n"
           "bf16: true\nreport_to: [wandb]\n";
  }
  DistillConfig config(const std::vector<std::string>& overrides = {}) {
    std::ofstream(dir_ / "config.yaml") << config_;
    return read_distill_config(dir_ / "config.yaml", overrides);
  }

  test::TempDir dir_;
  std::string config_;
};

TEST_F(DistillRuns, ConfigKeysOverridesAndUnknownKeys) {
  const DistillConfig c = config({"learning_rate=1e-4", "stage=layerwise"});
  EXPECT_DOUBLE_EQ(c.learning_rate, 1e-4);
  EXPECT_EQ(c.stage, DistillStage::kLayerwise);
  EXPECT_EQ(c.max_seq_length, 16);
  EXPECT_EQ(c.dataset_mixer.size(), 2u);
  EXPECT_FALSE(c.convert.has_value());  // no MLA keys
  EXPECT_EQ(c.ignored_keys, (std::vector<std::string>{"bf16", "report_to"}));
  EXPECT_TRUE(config({"kv_lora_rank=8"}).convert.has_value());
  test::expect_format_error([&] { config({"learning_rat=1"}); }, {"unknown keys: learning_rat"});
  test::expect_format_error([&] { config({"max_steps=[1]"}); }, {"'max_steps' has the wrong type"});
}

TEST(DistillConfigFile, TheShippedExampleReads) {
  const DistillConfig c = read_distill_config(std::string(ECOMLA_TEST_DATA) +
                                              "/../../examples/distill-smollm2-kv50.yaml");
  EXPECT_EQ(c.stage, DistillStage::kKd);
  EXPECT_EQ(c.dataset_mixer.size(), 3u);
  EXPECT_TRUE(c.ignored_keys.empty());
  EXPECT_FALSE(c.convert.has_value());  // the student is converted already
}

TEST_F(DistillRuns, KdLowersTheLossAndResumeRepeatsTheSameLosses) {
  const TrainingResult straight = distill(config(), {});
  ASSERT_TRUE(straight.finished);
  std::vector<double> losses;
  for (const auto& m : straight.metrics) {
    if (m.contains("loss")) losses.push_back(m["loss"].get<double>());
  }
  ASSERT_EQ(losses.size(), 6u);
  EXPECT_LT(losses.back(), losses.front());
  EXPECT_TRUE(straight.metrics.back().contains("eval_kl"));

  // Interrupted after 4 steps, then resumed: the same losses, the same final weights.
  const DistillConfig again = config({"output_dir=" + (dir_ / "out2").string()});
  TrainingRun first;
  first.stop_after = 4;
  const TrainingResult stopped = distill(again, first);
  EXPECT_FALSE(stopped.finished);
  EXPECT_EQ(stopped.steps, 4);
  TrainingRun second;
  second.resume = true;
  const TrainingResult resumed = distill(again, second);
  EXPECT_TRUE(resumed.finished);
  std::vector<double> resumed_losses;
  for (const auto& m : resumed.metrics) {
    if (m.contains("loss")) resumed_losses.push_back(m["loss"].get<double>());
  }
  ASSERT_EQ(resumed_losses.size(), 2u);
  EXPECT_DOUBLE_EQ(resumed_losses[0], losses[4]);
  EXPECT_DOUBLE_EQ(resumed_losses[1], losses[5]);
  // metrics.jsonl reads as one run: six training lines.
  std::ifstream in(dir_ / "out2" / "metrics.jsonl");
  int training_lines = 0;
  for (std::string line; std::getline(in, line);) {
    training_lines += nlohmann::json::parse(line).contains("loss") ? 1 : 0;
  }
  EXPECT_EQ(training_lines, 6);
  const std::string svg = test::read_text(dir_ / "out2" / "loss.svg");
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("held-out loss"), std::string::npos);
}

// A TCP port on loopback that nothing listens on now.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), size) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) != 0) {
    close(fd);
    return 29500;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// The values of `key` in the training lines of a metrics.jsonl.
std::vector<double> logged(const fs::path& metrics, const std::string& key) {
  std::vector<double> values;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json entry = nlohmann::json::parse(line);
    if (entry.contains("loss")) values.push_back(entry[key].get<double>());
  }
  return values;
}

// Two processes on loopback, as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT), each
// with half of every global batch, against one process with the whole batch: the same losses
// and the same weights, in fp32.
TEST_F(DistillRuns, TwoProcessesEqualOneWithTheSameGlobalBatch) {
  const TrainingResult single = distill(
      config({"max_steps=3", "per_device_train_batch_size=4", "gradient_accumulation_steps=2"}),
      {});
  ASSERT_TRUE(single.finished);

  std::ofstream(dir_ / "config.yaml") << config_;
  const std::string cli = std::string(ECOMLA_CLI) + " distill " + (dir_ / "config.yaml").string() +
                          " --set max_steps=3 --set output_dir=" + (dir_ / "out_dp").string() +
                          " 2>" + (dir_ / "rank").string();
  const std::string env = "MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port()) +
                          " ECOMLA_DIST_TIMEOUT_S=60 WORLD_SIZE=2 RANK=";
  const std::string both = "sh -c '" + env + "1 " + cli + "1.log & worker=$!; " + env + "0 " + cli +
                           "0.log; main=$?; wait $worker; exit $(($main | $?))'";
  ASSERT_EQ(std::system(both.c_str()), 0)
      << test::read_text(dir_ / "rank0.log") << test::read_text(dir_ / "rank1.log");
  EXPECT_NE(test::read_text(dir_ / "rank0.log").find("data parallel: 2 processes"),
            std::string::npos);

  // The loss, and the norm of the averaged gradient (a sum instead of a mean would show here).
  for (const std::string key : {"loss", "grad_norm"}) {
    const std::vector<double> one = logged(dir_ / "out" / "metrics.jsonl", key),
                              two = logged(dir_ / "out_dp" / "metrics.jsonl", key);
    ASSERT_EQ(one.size(), 3u);
    ASSERT_EQ(two.size(), 3u);
    for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(two[i], one[i], 1e-5 * one[i]) << key;
  }
  LoadedModel a = load_model(dir_ / "out" / "checkpoint"),
              b = load_model(dir_ / "out_dp" / "checkpoint");
  const auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  for (const auto& p : pa) {
    // Adam's normalised step turns the fp32 rounding of two half-batch sums (instead of one
    // sum) into differences up to ~2e-5 here; a missing or wrong all-reduce moves weights by
    // the step size (3e-3).
    EXPECT_TRUE(at::allclose(p.value(), pb[p.key()], 1e-5, 5e-5)) << p.key();
  }
  // A rank outside the world is refused before anything is loaded.
  const std::string bad = "sh -c 'WORLD_SIZE=2 RANK=2 " + cli + "2.log'";
  EXPECT_NE(std::system(bad.c_str()), 0);
  EXPECT_NE(test::read_text(dir_ / "rank2.log").find("0 <= RANK < WORLD_SIZE"), std::string::npos);
}

TEST_F(DistillRuns, LayerwiseStageRuns) {
  const TrainingResult r = distill(config({"stage=layerwise", "max_steps=3"}), {});
  EXPECT_TRUE(r.finished);
  EXPECT_FALSE(r.metrics.front().contains("kl"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "checkpoint" / "model.safetensors"));
}

TEST_F(DistillRuns, NanLossStopsAndKeepsTheLastCheckpoint) {
  try {
    distill(config({"learning_rate=1e30", "save_steps=1", "max_grad_norm=1e30"}), {});
    ADD_FAILURE() << "a diverging run finished";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("last good checkpoint"), std::string::npos) << e.what();
  }
  std::ifstream state(dir_ / "out" / "checkpoint" / "state.json");
  ASSERT_TRUE(state.good());
  EXPECT_GE(nlohmann::json::parse(state)["step"].get<int64_t>(), 1);
}

TEST_F(DistillRuns, BadConfigsFailBeforeTraining) {
  EXPECT_THROW(distill(config({"model_name_or_path=/no/such/model"}), {}), std::invalid_argument);
  // A plain student without MLA keys, and one with ranks larger than the matrices.
  EXPECT_THROW(distill(config({"model_name_or_path=" + (dir_ / "teacher").string()}), {}),
               std::invalid_argument);
  EXPECT_THROW(distill(config({"model_name_or_path=" + (dir_ / "teacher").string(),
                               "kv_lora_rank=9999", "init_with_svd=true"}),
                       {}),
               std::invalid_argument);
  // A teacher with another vocabulary.
  LlamaForCausalLM other = test::random_model(test::tiny_config(), 5);
  TokenizerSpec spec = test::tiny_tokenizer_spec();
  spec.tokens.back() = "<another>";
  save_hf_checkpoint(dir_ / "other", *other, other->config(), Tokenizer(spec));
  EXPECT_THROW(distill(config({"teacher_model_name_or_path=" + (dir_ / "other").string()}), {}),
               std::invalid_argument);
  EXPECT_FALSE(fs::exists(dir_ / "out" / "metrics.jsonl"));
}

}  // namespace
}  // namespace ecomla
