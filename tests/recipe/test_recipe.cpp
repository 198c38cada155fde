// The recipe on a tiny random model: every stage once, nothing again on a rerun, only what
// depends on a changed section, and an interrupted training stage continuing from its
// checkpoint with the losses of an uninterrupted run.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

#include "ecomla/error.h"
#include "ecomla/hf_checkpoint.h"
#include "ecomla/recipe.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class RecipeRuns : public testing::Test {
protected:
  void SetUp() override {
    const Tokenizer tokenizer(test::tiny_tokenizer_spec());
    LlamaForCausalLM model = test::random_model(test::tiny_config(), 3);
    save_hf_checkpoint(dir_ / "model", *model, model->config(), tokenizer);
    std::ofstream text(dir_ / "text.txt");
    for (int i = 0; i < 120; ++i) text << "the cat " << i % 9 << " sat on the mat. ";
    std::ofstream prefs(dir_ / "prefs.jsonl");
    for (int i = 0; i < 12; ++i) {
      prefs << R"({"prompt": "q)" << i << R"(", "chosen": "yes", "rejected": "no"})"
            << "\n";
    }
  }

  fs::path write_config(const fs::path& output_dir) const {
    const std::string text = (dir_ / "text.txt").string();
    const fs::path path = dir_ / "recipe.yaml";
    std::ofstream(path)
        << "model: " << (dir_ / "model").string() << "\n"
        << "output_dir: " << output_dir.string() << "\n"
        << "kv_budgets: [0.5]\n"
        << "inits: [xecomla, activation]\n"
        << "convert: {calib: " << text << ", calib_tokens: 512, calib_ctx: 64}\n"
        << "distill:\n  dataset_mixer: {" << text << ": 1.0}\n"
        << "  max_seq_length: 32\n  per_device_train_batch_size: 2\n"
        << "  max_steps: 3\n  save_steps: 1\n  eval_sequences: 2\n"
        << "  compute_dtype: fp32\n  learning_rate: 1.0e-3\n"
        << "dpo:\n  dataset_mixer: {" << (dir_ / "prefs.jsonl").string()
        << ": 1.0}\n  max_steps: 2\n  per_device_train_batch_size: 2\n"
        << "  max_length: 32\n  max_prompt_length: 16\n  save_steps: 1\n"
        << "  compute_dtype: fp32\n"
        << "eval:\n  tasks: [arc_easy]\n  limit: 3\n  data_dir: " << ECOMLA_SHARED_DATA
        << "\n  dtype: fp32\n  perplexity_text: " << text
        << "\n  perplexity_ctx: 32\n  perplexity_chunks: 2\n"
        << "speed: {batch_sizes: [1, 2], contexts: [8, 16], steps: 2, dtype: fp32}\n";
    return path;
  }

  // Runs the recipe, returning the labels of the stages that ran ("kv50-xecomla kd", ...).
  std::set<std::string> run(const std::vector<std::string>& overrides = {},
                            const fs::path& output_dir = {},
                            std::function<ProgressCallback(const std::string&)> progress = {}) {
    const RecipeConfig config =
        read_recipe_config(write_config(output_dir.empty() ? dir_ / "out" : output_dir), overrides);
    std::set<std::string> ran;
    RecipeRun r;
    r.log = [&ran](const std::string& line) {
      const size_t end = line.find(": finished in");
      if (line.starts_with("[") && end != std::string::npos) {
        ran.insert(line.substr(line.find("] ") + 2, end - line.find("] ") - 2));
      }
    };
    r.progress_for = std::move(progress);
    last_ = run_recipe(config, r);
    return ran;
  }

  static std::vector<double> losses(const fs::path& stage_dir) {
    std::vector<double> out;
    std::ifstream in(stage_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const json e = json::parse(line);
      if (e.contains("loss")) out.push_back(e["loss"].get<double>());
    }
    return out;
  }

  test::TempDir dir_;
  RecipeResult last_;
};

TEST_F(RecipeRuns, EveryStageRunsOnceAndTheReportHoldsEveryModel) {
  const std::set<std::string> ran = run();
  // The original: eval, speed; each MLA model: convert, layerwise, kd, dpo, eval, speed.
  EXPECT_EQ(last_.stages_run, 14);
  EXPECT_EQ(ran.size(), 14u);
  EXPECT_TRUE(ran.contains("kv50-activation dpo"));

  const json results = json::parse(test::read_text(last_.results_json));
  ASSERT_EQ(results["models"].size(), 3u);
  const json& original = results["models"][0];
  EXPECT_EQ(original["name"], "original");
  EXPECT_EQ(original["kv_values_per_token"], 2 * 2 * 2 * 8);  // layers x (K, V) x heads x dim
  for (const json& m : results["models"]) {
    SCOPED_TRACE(m["name"].get<std::string>());
    const json& arc = m["tasks"]["arc_easy"];
    EXPECT_EQ(arc["metric"], "acc_norm");
    EXPECT_GE(arc["score"].get<double>(), 0.0);
    EXPECT_LE(arc["score"].get<double>(), 1.0);
    EXPECT_GT(m["perplexity"]["ppl"].get<double>(), 1.0);
    EXPECT_EQ(m["speed"].size(), 4u);
    for (const json& p : m["speed"]) EXPECT_GT(p["tokens_per_s"].get<double>(), 0.0);
    if (m["name"] == "original") continue;
    // Within the budget (the kv rank rounds down to a multiple of 8), and what the cache holds.
    EXPECT_LE(m["kv_ratio"].get<double>(), 0.5);
    EXPECT_DOUBLE_EQ(m["kv_ratio"].get<double>(),
                     m["kv_values_per_token"].get<double>() / (2 * 2 * 2 * 8));
    EXPECT_EQ(m["kv_bytes_per_token"], 2 * m["kv_values_per_token"].get<int64_t>());
    // 3 steps of 2 x 32 tokens per distillation stage, and the DPO pairs' tokens.
    EXPECT_EQ(m["stages"]["kd"]["tokens"], 3 * 2 * 32);
    EXPECT_EQ(m["stages"]["layerwise"]["tokens"], 3 * 2 * 32);
    EXPECT_GT(m["stages"]["dpo"]["tokens"].get<int64_t>(), 0);
    EXPECT_EQ(m["tokens_trained"].get<int64_t>(),
              m["stages"]["kd"]["tokens"].get<int64_t>() +
                  m["stages"]["layerwise"]["tokens"].get<int64_t>() +
                  m["stages"]["dpo"]["tokens"].get<int64_t>());
  }
  const std::string md = test::read_text(last_.report_md);
  for (const char* row : {"| original |", "| kv50-xecomla |", "| kv50-activation |"}) {
    EXPECT_NE(md.find(row), std::string::npos) << row;
  }
  for (const char* figure : {"score-vs-kv.svg", "loss-kd.svg", "loss-layerwise.svg", "loss-dpo.svg",
                             "decode-speed-b1.svg", "decode-speed-b2.svg"}) {
    EXPECT_TRUE(fs::exists(dir_ / "out" / "figures" / figure)) << figure;
  }
  EXPECT_NE(test::read_text(last_.report_html).find("<svg"), std::string::npos);

  // Run again: every stage is kept and the report is the same.
  EXPECT_TRUE(run().empty());
  EXPECT_EQ(last_.stages_skipped, 14);
  EXPECT_EQ(json::parse(test::read_text(last_.results_json)), results);
}

TEST_F(RecipeRuns, AChangedSectionRerunsItsStagesAndWhatFollowsOnly) {
  run();
  EXPECT_EQ(
      run({"kd.learning_rate=2.0e-3"}),
      (std::set<std::string>{"kv50-xecomla kd", "kv50-xecomla dpo", "kv50-xecomla eval",
                             "kv50-activation kd", "kv50-activation dpo", "kv50-activation eval"}));
  // One init's own section touches only that init's models.
  EXPECT_EQ(run({"kd.learning_rate=2.0e-3", "per_init.activation.dpo.beta=0.2"}),
            (std::set<std::string>{"kv50-activation dpo", "kv50-activation eval"}));
  // The evaluation reruns for every model, the decode speed not.
  EXPECT_EQ(run({"kd.learning_rate=2.0e-3", "per_init.activation.dpo.beta=0.2", "eval.limit=2"}),
            (std::set<std::string>{"original eval", "kv50-xecomla eval", "kv50-activation eval"}));
}

TEST_F(RecipeRuns, AnInterruptedTrainingStageContinuesFromItsCheckpoint) {
  run({}, dir_ / "uninterrupted");
  // Stop the first KD stage after its second step (its checkpoint written), as a kill would.
  auto interrupt = [](const std::string& stage) -> ProgressCallback {
    return [stage](const Progress& p) {
      if (stage == "kv50-xecomla kd" && p.unit == "steps" && p.done == 2) {
        throw std::runtime_error("interrupted");
      }
      return true;
    };
  };
  EXPECT_THROW(run({}, dir_ / "out", interrupt), std::runtime_error);
  const json stamp =
      json::parse(test::read_text(dir_ / "out" / "kv50-xecomla" / "kd" / "stage.json"));
  EXPECT_FALSE(stamp["done"].get<bool>());
  EXPECT_FALSE(fs::exists(dir_ / "out" / "kv50-xecomla" / "dpo"));

  const std::set<std::string> ran = run();
  EXPECT_FALSE(ran.contains("kv50-xecomla convert"));
  EXPECT_FALSE(ran.contains("kv50-xecomla layerwise"));
  EXPECT_TRUE(ran.contains("kv50-xecomla kd"));
  const std::vector<double> resumed = losses(dir_ / "out" / "kv50-xecomla" / "kd");
  const std::vector<double> whole = losses(dir_ / "uninterrupted" / "kv50-xecomla" / "kd");
  ASSERT_EQ(resumed.size(), 3u);
  ASSERT_EQ(whole.size(), 3u);
  for (size_t i = 0; i < whole.size(); ++i) EXPECT_NEAR(resumed[i], whole[i], 1e-5) << i;
}

TEST_F(RecipeRuns, BadConfigsFailBeforeAnythingRuns) {
  test::expect_format_error([&] { run({"kd.learning_rat=1e-4"}); },
                            {"recipe.yaml", "xecomla init, kd", "learning_rat"});
  test::expect_format_error([&] { run({"per_init.activation.stages=[dpo, kd]"}); },
                            {"recipe.yaml", "order"});
  test::expect_format_error([&] { run({"kv_budgets=[1.5]"}); }, {"recipe.yaml", "kv_budgets"});
  test::expect_format_error([&] { run({"convert.kv_lora_rank=8"}); },
                            {"recipe.yaml", "kv_budgets"});
  test::expect_format_error([&] { run({"evaluation={}"}); }, {"recipe.yaml", "evaluation"});
  EXPECT_THROW(run({"inits=[svd]"}), std::invalid_argument);
  EXPECT_THROW(run({"eval.tasks=[arc_easyy]"}), std::invalid_argument);
  EXPECT_FALSE(fs::exists(dir_ / "out" / "original"));
}

TEST(RecipeConfigFile, TheShippedExampleReadsAndItsSmokeSettingIsSmall) {
  const fs::path example = std::string(ECOMLA_TEST_DATA) + "/../../examples/recipe-smollm2.yaml";
  const RecipeConfig full = read_recipe_config(example);
  EXPECT_EQ(full.kv_budgets, (std::vector<double>{0.5, 0.25, 0.125}));
  ASSERT_EQ(full.inits.size(), 2u);
  EXPECT_EQ(full.inits[1].stages, (std::vector<std::string>{"kd", "dpo"}));
  EXPECT_EQ(full.eval.tasks.size(), 7u);
  const RecipeConfig smoke = read_recipe_config(example, {"smoke=true"});
  EXPECT_TRUE(smoke.smoke);
  EXPECT_EQ(smoke.eval.limit, 2);
  EXPECT_NE(smoke.inits[0].settings.at("kd").find("max_steps: 2"), std::string::npos);
}

}  // namespace
}  // namespace ecomla
