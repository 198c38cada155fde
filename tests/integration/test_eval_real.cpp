// `ecomla eval` on the real default model against the real lm-evaluation-harness.
//
// Reference: tests/reference/lm_eval_smollm2.jsonl holds every request lm-eval 0.4.13 (HFLM over
// transformers 5.24, fp32) built and scored for the first 40 documents of eight tasks and the
// first WikiText page, from the same data files (tests/reference/lm_eval_*.py; prompts stored
// as hashes). ecomla must build the same prompts and continuations, get the same
// log-likelihoods and greedy flags, and so the same scores.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "support/tiny_model.h"

namespace ecomla {
namespace {

using json = nlohmann::json;

std::string fnv1a64(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ULL;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::vector<json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(json::parse(line));
  }
  return rows;
}

// CLI arguments of an eval run that logs its samples to DIR/NAME.jsonl, results to NAME.json.
std::string eval_args(const std::string& tasks, int64_t limit, const test::TempDir& dir,
                      const std::string& name) {
  return "eval " + std::string(ECOMLA_TEST_MODEL) + " --tasks " + tasks + " --limit " +
         std::to_string(limit) + " --data-dir " + ECOMLA_SHARED_DATA + " --log-samples " +
         (dir / (name + ".jsonl")).string() + " --output " + (dir / (name + ".json")).string();
}

TEST(EvalRealModel, MatchesLmEvaluationHarnessRequestByRequest) {
  test::TempDir dir;
  const std::string tasks =
      "arc_easy,arc_challenge,piqa,boolq,hellaswag,lambada_openai,mmlu_anatomy,"
      "mmlu_high_school_biology";
  ASSERT_EQ(test::run_cli(eval_args(tasks, 40, dir, "tasks")).first, 0);
  ASSERT_EQ(test::run_cli(eval_args("wikitext", 1, dir, "wiki")).first, 0);

  std::map<std::tuple<std::string, int64_t, int64_t>, json> reference;
  for (const json& r :
       read_jsonl(std::string(ECOMLA_TEST_DATA) + "/../reference/lm_eval_smollm2.jsonl")) {
    reference[{r["task"], r["doc"], r["request"]}] = r;
  }
  ASSERT_EQ(reference.size(), 1001u);
  size_t compared = 0;
  for (const char* name : {"tasks", "wiki"}) {
    for (const json& sample : read_jsonl(dir / (std::string(name) + ".jsonl"))) {
      const auto& arguments = sample["arguments"];
      for (size_t i = 0; i < arguments.size(); ++i) {
        const auto key = std::make_tuple(sample["task"].get<std::string>(),
                                         sample["doc_id"].get<int64_t>(), int64_t(i));
        ASSERT_TRUE(reference.contains(key)) << std::get<0>(key) << " " << std::get<1>(key);
        const json& ref = reference.at(key);
        const std::string where = sample["origin"].get<std::string>();
        EXPECT_EQ(fnv1a64(arguments[i][0].get<std::string>() + "\x1f" +
                          arguments[i][1].get<std::string>()),
                  ref["hash"].get<std::string>())
            << where << ": a different prompt or continuation than lm-eval's";
        // fp32 both sides; measured differences up to 6e-5 per request, 3e-4 on a WikiText page.
        EXPECT_NEAR(sample["resps"][i][0].get<double>(), ref["loglikelihood"].get<double>(), 2e-3)
            << where;
        if (!ref["greedy"].is_null()) {
          EXPECT_EQ(sample["resps"][i][1].get<bool>(), ref["greedy"].get<bool>()) << where;
        }
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, reference.size());

  // The scores lm-eval reported for the same documents, and its results schema.
  const json results = json::parse(test::read_text(dir / "tasks.json"));
  const std::map<std::string, std::map<std::string, double>> lm_eval_scores = {
      {"arc_easy", {{"acc", 0.475}, {"acc_norm", 0.4}}},
      {"arc_challenge", {{"acc", 0.25}, {"acc_norm", 0.3}}},
      {"piqa", {{"acc", 0.725}, {"acc_norm", 0.7}}},
      {"boolq", {{"acc", 0.25}}},
      {"hellaswag", {{"acc", 0.35}, {"acc_norm", 0.45}}},
      {"lambada_openai", {{"acc", 0.325}, {"perplexity", 58.652525698937076}}},
      {"mmlu_anatomy", {{"acc", 0.15}}},
      {"mmlu_high_school_biology", {{"acc", 0.125}}},
  };
  for (const auto& [task, metrics] : lm_eval_scores) {
    const json& entry = results["results"][task];
    for (const auto& [metric, value] : metrics) {
      EXPECT_NEAR(entry[metric + ",none"].get<double>(), value, 1e-3 * value) << task;
      EXPECT_TRUE(entry[metric + "_stderr,none"].is_number()) << task;
    }
    EXPECT_EQ(results["n-samples"][task]["effective"], 40);
    EXPECT_EQ(results["n-shot"][task], 0);
    EXPECT_TRUE(results["configs"][task].contains("doc_to_text"));
  }
  EXPECT_FALSE(results["results"].contains("mmlu_stem"));  // two of its 18 subjects ran
}

TEST(EvalRealModel, BadTasksFailBeforeTheModelLoads) {
  test::TempDir dir;
  const std::string model = ECOMLA_TEST_MODEL;
  EXPECT_NE(test::run_cli("eval " + model + " --tasks arc_easy,nope").first, 0);
  EXPECT_NE(
      test::run_cli("eval " + model + " --tasks piqa --data-dir " + dir.path().string()).first, 0);
  EXPECT_NE(test::run_cli("eval " + model + " --tasks piqa --task-file piqa").first, 0);
}

}  // namespace
}  // namespace ecomla
