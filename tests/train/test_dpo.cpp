// DPO on tiny models saved in the test: the loss and its gradient against a direct computation,
// every preference layout parsed to the spans written out by hand, TRL's truncation, whole runs
// (identical policy and reference give log 2 and zero rewards, resume repeats the losses,
// DPO raises held-out reward accuracy), bad configs and records failing before training.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "ecomla/dpo.h"
#include "ecomla/error.h"
#include "ecomla/hf_checkpoint.h"
#include "ecomla/preference_data.h"
#include "support/tiny_model.h"
#include "train/losses.h"

namespace ecomla {
namespace {

namespace fs = std::filesystem;

const std::string kSystem = "<|im_start|>system\nYou are tiny.<|im_end|>\n";

std::string text(const Tokenizer& tokenizer, const std::vector<int32_t>& ids) {
  return tokenizer.decode(ids);
}

TEST(PreferencePairs, EveryLayoutGivesThePromptAndBothResponses) {
  test::TempDir dir;
  std::ofstream(dir / "p.jsonl")
      // prompt / chosen / rejected strings
      << R"({"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"})"
      << "\n"
      // LLMs-from-scratch: instruction + input
      << R"({"instruction": "Fix", "input": "teh cat", "output": "x", "chosen": "the cat", )"
      << R"("rejected": "teh cat"})"
      << "\n"
      // UltraFeedback-binarized: whole conversations, a prompt string beside them
      << R"({"prompt": "2+2?", "chosen": [{"role": "user", "content": "2+2?"}, )"
      << R"({"role": "assistant", "content": "4"}], "rejected": [{"role": "user", )"
      << R"("content": "2+2?"}, {"role": "assistant", "content": "5"}]})"
      << "\n"
      // conversational: the prompt as messages, the responses alone
      << R"({"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, )"
      << R"({"role": "user", "content": "c"}], "chosen": [{"role": "assistant", "content": "d"}], )"
      << R"("rejected": [{"role": "assistant", "content": "e"}]})"
      << "\n"
      // Anthropic HH-RLHF transcripts sharing two turns
      << R"({"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Help me\n\nAssistant: Sure.", )"
      << R"("rejected": "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Help me\n\nAssistant: No."})"
      << "\n";
  const std::vector<PreferencePair> pairs = read_preference_pairs(dir / "p.jsonl");
  ASSERT_EQ(pairs.size(), 5u);
  auto contents = [](const std::vector<ChatMessage>& m) {
    std::vector<std::string> out;
    for (const ChatMessage& x : m) out.push_back(x.role + ":" + x.content);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(contents(pairs[0].prompt), V{"user:Hi"});
  EXPECT_EQ(contents(pairs[0].chosen), V{"assistant:Hello"});
  EXPECT_EQ(contents(pairs[0].rejected), V{"assistant:Go away"});
  EXPECT_EQ(contents(pairs[1].prompt), V{"user:Fix\n\nteh cat"});
  EXPECT_EQ(contents(pairs[1].chosen), V{"assistant:the cat"});
  EXPECT_EQ(contents(pairs[2].prompt), V{"user:2+2?"});
  EXPECT_EQ(contents(pairs[2].chosen), V{"assistant:4"});
  EXPECT_EQ(contents(pairs[2].rejected), V{"assistant:5"});
  EXPECT_EQ(contents(pairs[3].prompt), (V{"user:a", "assistant:b", "user:c"}));
  EXPECT_EQ(contents(pairs[3].chosen), V{"assistant:d"});
  EXPECT_EQ(contents(pairs[4].prompt), (V{"user:Hi there", "assistant:Hello!", "user:Help me"}));
  EXPECT_EQ(contents(pairs[4].chosen), V{"assistant:Sure."});
  EXPECT_EQ(contents(pairs[4].rejected), V{"assistant:No."});
  EXPECT_EQ(pairs[4].origin, (dir / "p.jsonl").string() + ":5");

  // Token spans: the prompt through the generation prompt, each response through its turn end.
  const Tokenizer tokenizer(test::tiny_tokenizer_spec());
  const TokenizedPair hi = tokenize_pair(pairs[0], tokenizer, 1024, 512);
  EXPECT_EQ(text(tokenizer, hi.prompt),
            kSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(text(tokenizer, hi.chosen), "Hello<|im_end|>\n");
  EXPECT_EQ(text(tokenizer, hi.rejected), "Go away<|im_end|>\n");
  const int32_t im_start = *tokenizer.token_id("<|im_start|>");
  EXPECT_EQ(std::count(hi.prompt.begin(), hi.prompt.end(), im_start), 3);  // one token each
  const TokenizedPair hh = tokenize_pair(pairs[4], tokenizer, 1024, 512);
  EXPECT_EQ(text(tokenizer, hh.prompt),
            kSystem +
                "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                "<|im_start|>user\nHelp me<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(text(tokenizer, hh.chosen), "Sure.<|im_end|>\n");
}

TEST(PreferencePairs, MalformedRecordsFailWithFileAndLineOrAreSkippedAndCounted) {
  test::TempDir dir;
  std::ofstream(dir / "bad.jsonl") << R"({"prompt": "Hi", "chosen": "a", "rejected": "b"})"
                                   << "\n"
                                   << R"({"prompt": "Hi", "chosen": "a"})"
                                   << "\n"
                                   << R"({"chosen": "a", "rejected": "b"})"
                                   << "\n"
                                   << R"({"prompt": "Hi", "chosen": "a", "rejected": ["b"]})"
                                   << "\n";
  test::expect_format_error([&] { read_preference_pairs(dir / "bad.jsonl"); },
                            {"bad.jsonl:2", "'chosen' and 'rejected'"});
  int64_t skipped = 0;
  EXPECT_EQ(read_preference_pairs(dir / "bad.jsonl", true, &skipped).size(), 1u);
  EXPECT_EQ(skipped, 3);
}

// TRL's rule: past max_length the prompt keeps its last max_prompt_length tokens, then the
// responses their first max_length - max_prompt_length.
TEST(PreferencePairs, TruncationCutsThePromptFromTheLeftThenTheResponses) {
  const Tokenizer tokenizer(test::tiny_tokenizer_spec());
  const PreferencePair pair{{{"user", std::string(40, 'q')}},
                            {{"assistant", std::string(30, 'c')}},
                            {{"assistant", std::string(10, 'r')}},
                            "hand"};
  const TokenizedPair whole = tokenize_pair(pair, tokenizer, 1000, 500);
  ASSERT_GT(whole.prompt.size(), 40u);
  // Fits: nothing cut.
  const auto total = static_cast<int64_t>(whole.prompt.size() + whole.chosen.size());
  const TokenizedPair fits = tokenize_pair(pair, tokenizer, total, 8);
  EXPECT_EQ(fits.prompt, whole.prompt);
  EXPECT_EQ(fits.chosen, whole.chosen);
  // One token too many: the prompt keeps its last 20 tokens, which is enough.
  const TokenizedPair prompt_cut = tokenize_pair(pair, tokenizer, total - 1, 20);
  EXPECT_EQ(prompt_cut.prompt, std::vector<int32_t>(whole.prompt.end() - 20, whole.prompt.end()));
  EXPECT_EQ(prompt_cut.chosen, whole.chosen);
  // Still too long after the prompt's cut: responses keep max_length - max_prompt_length.
  const TokenizedPair both_cut = tokenize_pair(pair, tokenizer, 30, 20);
  EXPECT_EQ(both_cut.prompt.size(), 20u);
  EXPECT_EQ(both_cut.chosen, std::vector<int32_t>(whole.chosen.begin(), whole.chosen.begin() + 10));
  EXPECT_EQ(both_cut.rejected,
            std::vector<int32_t>(whole.rejected.begin(), whole.rejected.begin() + 10));
}

// log pi(response | prompt) summed over the response tokens, directly from the full logits.
at::Tensor direct_logps(LlamaForCausalLM& model, const std::vector<int32_t>& prompt,
                        const std::vector<int32_t>& response) {
  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  ids.insert(ids.end(), response.begin(), response.end());
  const at::Tensor logits = model->forward(at::tensor(ids, at::kLong).unsqueeze(0))[0];
  at::Tensor sum = at::zeros({});
  for (size_t j = prompt.size(); j < ids.size(); ++j) {
    sum = sum + logits[static_cast<int64_t>(j) - 1].log_softmax(0)[ids[j]];
  }
  return sum;
}

TEST(DpoLoss, MatchesADirectComputationInValueAndGradient) {
  const Tokenizer tokenizer(test::tiny_tokenizer_spec());
  LlamaForCausalLM policy = test::random_model(test::tiny_config(), 4);
  LlamaForCausalLM reference = test::random_model(test::tiny_config(), 5);
  // Two pairs of different lengths, the second truncated (prompt cut from the left).
  const std::vector<TokenizedPair> pairs = {
      tokenize_pair({{{"user", "hi"}}, {{"assistant", "hello"}}, {{"assistant", "no"}}, "a"},
                    tokenizer, 1024, 512),
      tokenize_pair({{{"user", "a long question here"}},
                     {{"assistant", "ok"}},
                     {{"assistant", "a long rambling answer"}},
                     "b"},
                    tokenizer, 40, 30)};
  ASSERT_EQ(pairs[1].prompt.size(), 30u);
  const double beta = 0.5;
  for (const DpoLossType type : {DpoLossType::kSigmoid, DpoLossType::kIpo, DpoLossType::kHinge}) {
    const bool average = type == DpoLossType::kIpo;
    // As the trainer computes it: chosen rows then rejected rows, padded, one forward pass.
    train::ResponseBatch batch;
    std::vector<int64_t> flat;
    int64_t width = 0;
    for (const bool chosen : {true, false}) {
      for (const TokenizedPair& p : pairs) {
        width = std::max<int64_t>(
            width, static_cast<int64_t>(p.prompt.size() + (chosen ? p.chosen : p.rejected).size()));
      }
    }
    for (const bool chosen : {true, false}) {
      for (const TokenizedPair& p : pairs) {
        const auto& r = chosen ? p.chosen : p.rejected;
        std::vector<int64_t> row(p.prompt.begin(), p.prompt.end());
        row.insert(row.end(), r.begin(), r.end());
        batch.begin.push_back(static_cast<int64_t>(p.prompt.size()));
        batch.end.push_back(static_cast<int64_t>(row.size()));
        row.resize(width, 0);
        flat.insert(flat.end(), row.begin(), row.end());
      }
    }
    batch.tokens = at::tensor(flat, at::kLong).view({4, width});
    policy->zero_grad();
    const at::Tensor logps = train::response_logps(policy, batch, average);
    at::Tensor ref;
    {
      at::NoGradGuard no_grad;
      ref = train::response_logps(reference, batch, average);
    }
    const train::DpoLoss l =
        train::dpo_loss(logps.slice(0, 0, 2), logps.slice(0, 2, 4), ref.slice(0, 0, 2),
                        ref.slice(0, 2, 4), beta, type, 0.0);
    l.loss.backward();
    std::vector<at::Tensor> grads;
    for (auto& p : policy->parameters()) grads.push_back(p.grad().clone());

    // Directly: each sequence on its own, the formula written out.
    policy->zero_grad();
    at::Tensor direct = at::zeros({});
    for (size_t i = 0; i < pairs.size(); ++i) {
      const TokenizedPair& p = pairs[i];
      const double nc = average ? double(p.chosen.size()) : 1.0,
                   nr = average ? double(p.rejected.size()) : 1.0;
      const at::Tensor pc = direct_logps(policy, p.prompt, p.chosen) / nc;
      const at::Tensor pr = direct_logps(policy, p.prompt, p.rejected) / nr;
      const double rc = direct_logps(reference, p.prompt, p.chosen).item<double>() / nc;
      const double rr = direct_logps(reference, p.prompt, p.rejected).item<double>() / nr;
      const at::Tensor h = (pc - rc) - (pr - rr);
      EXPECT_NEAR(l.chosen_rewards[static_cast<int64_t>(i)].item<double>(),
                  beta * (pc.item<double>() - rc), 1e-4);
      if (type == DpoLossType::kSigmoid) direct = direct - at::log(at::sigmoid(beta * h));
      if (type == DpoLossType::kHinge) direct = direct + at::clamp_min(1 - beta * h, 0);
      if (type == DpoLossType::kIpo) direct = direct + (h - 1 / (2 * beta)) * (h - 1 / (2 * beta));
    }
    direct = direct / 2;
    direct.backward();
    EXPECT_NEAR(l.loss.item<double>(), direct.item<double>(), 1e-4);
    const auto params = policy->parameters();
    for (size_t k = 0; k < params.size(); ++k) {
      EXPECT_TRUE(at::allclose(grads[k], params[k].grad(), 1e-3, 1e-5)) << k;
    }
  }
  // Label smoothing: -(1 - e) log s(bh) - e log s(-bh).
  const at::Tensor h = at::tensor({0.3f, -1.2f});
  const train::DpoLoss smooth = train::dpo_loss(h, at::zeros({2}), at::zeros({2}), at::zeros({2}),
                                                2.0, DpoLossType::kSigmoid, 0.1);
  double expected = 0;
  for (const double x : {0.3, -1.2}) {
    expected +=
        -0.9 * std::log(1 / (1 + std::exp(-2 * x))) - 0.1 * std::log(1 / (1 + std::exp(2 * x)));
  }
  EXPECT_NEAR(smooth.loss.item<double>(), expected / 2, 1e-5);
}

// A tiny model saved as a Hugging Face folder, preference pairs with a learnable preference
// (chosen answers say "yes", rejected ones "no"), and a config for them.
class DpoRuns : public testing::Test {
protected:
  void SetUp() override {
    const Tokenizer tokenizer(test::tiny_tokenizer_spec());
    LlamaForCausalLM model = test::random_model(test::tiny_hybrid_config(false), 2);
    save_hf_checkpoint(dir_ / "model", *model, model->config(), tokenizer);
    std::ofstream out(dir_ / "prefs.jsonl");
    for (int i = 0; i < 40; ++i) {
      out << R"({"prompt": "q)" << i << R"(", "chosen": "yes )" << i % 7 << R"(", "rejected": "no )"
          << i % 5 << R"("})"
          << "\n";
    }
  }
  DpoConfig config(const std::vector<std::string>& overrides = {}) {
    std::ofstream(dir_ / "dpo.yaml")
        << "model_name_or_path: " << (dir_ / "model").string() << "\n"
        << "dataset_mixer:\n  " << (dir_ / "prefs.jsonl").string() << ": 1.0\n"
        << "output_dir: " << (dir_ / "out").string() << "\n"
        << "beta: 0.1\nlearning_rate: 2.0e-3\nwarmup_ratio: 0.0\nmax_steps: 8\nsave_steps: 4\n"
           "per_device_train_batch_size: 2\ngradient_accumulation_steps: 2\n"
           "max_length: 64\nmax_prompt_length: 32\neval_fraction: 0.2\ncompute_dtype: fp32\n"
           "bf16: true\n";
    return read_dpo_config(dir_ / "dpo.yaml", overrides);
  }
  static std::vector<double> losses(const TrainingResult& r) {
    std::vector<double> out;
    for (const auto& m : r.metrics)
      if (m.contains("loss")) out.push_back(m["loss"].get<double>());
    return out;
  }

  test::TempDir dir_;
};

TEST_F(DpoRuns, TheFirstStepIsLog2WithZeroRewardsAndHeldOutAccuracyRises) {
  const TrainingResult r = dpo(config({"eval_steps=1", "max_steps=8"}), {});
  ASSERT_TRUE(r.finished);
  // Step 1 is scored before any update: the policy is its own reference.
  const nlohmann::json& first = r.metrics.front();
  EXPECT_NEAR(first["loss"].get<double>(), std::log(2.0), 1e-6);
  EXPECT_NEAR(first["rewards/chosen"].get<double>(), 0.0, 1e-6);
  EXPECT_NEAR(first["rewards/rejected"].get<double>(), 0.0, 1e-6);
  EXPECT_NEAR(first["rewards/margins"].get<double>(), 0.0, 1e-6);
  double eval_accuracy = 0, eval_margin = 0;
  for (const auto& m : r.metrics) {
    if (m.contains("eval_rewards/accuracies")) {
      eval_accuracy = m["eval_rewards/accuracies"].get<double>();
      eval_margin = m["eval_rewards/margins"].get<double>();
    }
  }
  EXPECT_GT(eval_accuracy, 0.5);
  EXPECT_GT(eval_margin, 0.0);
  EXPECT_TRUE(fs::exists(dir_ / "out" / "reference_logps.json"));
  EXPECT_TRUE(fs::exists(dir_ / "out" / "loss.svg"));
}

TEST_F(DpoRuns, ResumeAfterStopRepeatsTheSameLosses) {
  const std::vector<double> straight = losses(dpo(config(), {}));
  ASSERT_EQ(straight.size(), 8u);
  const DpoConfig again = config({"output_dir=" + (dir_ / "out2").string()});
  TrainingRun first;
  first.stop_after = 3;
  EXPECT_FALSE(dpo(again, first).finished);
  TrainingRun second;
  second.resume = true;
  const std::vector<double> resumed = losses(dpo(again, second));
  ASSERT_EQ(resumed.size(), 5u);
  for (size_t i = 0; i < resumed.size(); ++i) EXPECT_DOUBLE_EQ(resumed[i], straight[3 + i]) << i;
}

TEST_F(DpoRuns, BadConfigsFailBeforeTraining) {
  test::expect_format_error([&] { config({"loss_type=kto"}); }, {"loss_type", "kto"});
  test::expect_format_error([&] { config({"beta=0"}); }, {"beta must be positive"});
  test::expect_format_error([&] { config({"max_prompt_length=64"}); }, {"max_prompt_length"});
  test::expect_format_error([&] { config({"betta=0.1"}); }, {"unknown keys: betta"});
  test::expect_format_error(
      [&] {
        config({"loss_type=ipo", "label_smoothing=0.1"});
      },
      {"label_smoothing"});
  EXPECT_THROW(dpo(config({"model_name_or_path=/no/such/model"}), {}), std::invalid_argument);
  std::ofstream(dir_ / "prefs.jsonl", std::ios::app) << R"({"prompt": "q", "chosen": "a"})"
                                                     << "\n";
  test::expect_format_error([&] { dpo(config(), {}); }, {"prefs.jsonl:41"});
  EXPECT_FALSE(fs::exists(dir_ / "out" / "checkpoint"));
  EXPECT_TRUE(dpo(config({"skip_malformed_records=true", "max_steps=1"}), {}).finished);
}

TEST(DpoConfigFile, TheShippedExampleReads) {
  const DpoConfig c =
      read_dpo_config(std::string(ECOMLA_TEST_DATA) + "/../../examples/dpo-smollm2-kv12.yaml");
  EXPECT_EQ(c.loss_type, DpoLossType::kSigmoid);
  EXPECT_FALSE(c.dataset_mixer.empty());
  EXPECT_TRUE(c.ignored_keys.empty());
}

}  // namespace
}  // namespace ecomla
