// The shipped recipe config on the default model with smoke: true: every stage of both inits at
// 12.5% KV for a couple of steps, a tiny evaluation, the report (issue 8's CTest case).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ecomla/recipe.h"
#include "support/tiny_model.h"

namespace ecomla {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(RecipeRealModel, TheShippedConfigInSmokeModeRunsEveryStageAndReports) {
  // The config's paths are relative to the repository root, as the README runs it.
  const fs::path root = fs::canonical(fs::path(ECOMLA_TEST_DATA) / ".." / "..");
  fs::current_path(root);
  test::TempDir dir;
  const RecipeConfig config = read_recipe_config(
      root / "examples" / "recipe-smollm2.yaml",
      {"smoke=true", "kv_budgets=[0.125]", "output_dir=" + (dir / "out").string(),
       std::string("model=") + ECOMLA_TEST_MODEL});
  const RecipeResult result = run_recipe(config, {});
  EXPECT_EQ(result.stages_run, 2 + (3 + 3) + (2 + 3));  // xecomla: 3 training stages, act: 2

  const json results = json::parse(test::read_text(result.results_json));
  ASSERT_EQ(results["models"].size(), 3u);
  for (const json& m : results["models"]) {
    SCOPED_TRACE(m["name"].get<std::string>());
    EXPECT_EQ(m["tasks"].size(), 7u);
    EXPECT_TRUE(m["tasks"]["mmlu"]["score"].is_number());
    EXPECT_TRUE(m["average"].is_number());
    EXPECT_GT(m["perplexity"]["ppl"].get<double>(), 1.0);
    EXPECT_EQ(m["speed"].size(), 4u);
    if (m["name"] != "original") {
      EXPECT_DOUBLE_EQ(m["kv_ratio"].get<double>(), 0.125);
      EXPECT_GT(m["tokens_trained"].get<int64_t>(), 0);
    }
  }
  EXPECT_NE(test::read_text(result.report_html).find("<svg"), std::string::npos);
}

}  // namespace
}  // namespace ecomla
