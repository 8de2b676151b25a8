// The whole GPT against the golden files of SPEC §4 on the CPU backend (the cases are in
// tests/gpt_golden_cases.h, shared with the CUDA backend's suites).
#include <gtest/gtest.h>

#include <map>

#include "gpt_golden_cases.h"

namespace qisa {
namespace {

using namespace test::gpt_golden;

class GptGolden : public ::testing::TestWithParam<const char*> {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(2);
};

TEST_P(GptGolden, ParameterNamesAndShapesMatchTheSpecTable) {
  const Golden g = load_golden(GetParam());
  ParamTable table(g.cfg);
  std::map<std::string, std::vector<int64_t>> golden_shapes;
  for (const auto& t : g.state.params) golden_shapes[t.name] = t.shape;
  ASSERT_EQ(table.entries().size(), golden_shapes.size());
  for (const auto& e : table.entries()) {
    ASSERT_TRUE(golden_shapes.count(e.name)) << e.name;
    EXPECT_EQ(golden_shapes[e.name], e.shape) << e.name;
  }
}

TEST_P(GptGolden, ForwardLogitsLossAndHeads) { forward_logits_loss_and_heads(*be, GetParam()); }
TEST_P(GptGolden, EveryGradient) { every_gradient(*be, GetParam()); }
TEST_P(GptGolden, AdamWSemanticsOnGoldenGradients) { adamw_semantics_on_golden_gradients(*be, GetParam()); }
TEST_P(GptGolden, TwoTrainingSteps) { two_training_steps(*be, GetParam()); }

INSTANTIATE_TEST_SUITE_P(AllGoldenModels, GptGolden, ::testing::ValuesIn(kModels),
                         [](const auto& info) { return model_name(info.param); });

}  // namespace
}  // namespace qisa
