// The experiment grid file: expansion into cells (combinations x seeds, exclusions, names,
// overrides), and errors that name the file, the key and the value before anything trains.
#include "io/experiment_grid.h"

#include <gtest/gtest.h>

#include "expect_error.h"
#include "io/config.h"
#include "kernels/error.h"
#include "test_util.h"

namespace qisa {
namespace {

class GridFile : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_file(tmp / "base.yaml",
                     "model:\n  attention: qisa\n  mask: causal\ndata:\n  corpus: c.h5\ntrain:\n  steps: 10\n");
  }
  std::string write(const std::string& text) {
    const std::string p = tmp / "grid.yaml";
    test::write_file(p, text);
    return p;
  }
  test::TempDir tmp;
};

const char* kPaperGrid =
    "base: base.yaml\nout: runs/x\nseeds: [1, 2]\n"
    "grid:\n  model.attention: [csa, qisa, qisa_a]\n  model.mask: [causal, reference]\n"
    "exclude:\n  - {model.attention: csa, model.mask: reference}\n"
    "set: {train.steps: 20}\n";

TEST_F(GridFile, ExpandsCombinationsTimesSeedsSeedMajor) {
  const ExperimentGrid g = load_experiment_grid(write(kPaperGrid));
  EXPECT_EQ(g.base, (std::filesystem::path(tmp.path()) / "base.yaml").string());  // relative to the grid file
  EXPECT_EQ(g.groups(), (std::vector<std::string>{"csa_causal", "qisa_causal", "qisa_reference", "qisa_a_causal",
                                                  "qisa_a_reference"}));
  const auto cells = g.cells();
  ASSERT_EQ(cells.size(), 10u);
  EXPECT_EQ(cells[0].name, "csa_causal_seed1");
  EXPECT_EQ(cells[4].name, "qisa_a_reference_seed1");
  EXPECT_EQ(cells[5].name, "csa_causal_seed2");
  EXPECT_EQ(cells[7].index, 7);
  EXPECT_EQ(cells[7].dir, "runs/x/qisa_reference_seed2");
  EXPECT_EQ(cells[7].overrides, (std::vector<std::string>{"train.steps=20", "model.attention=qisa", "model.mask=reference",
                                                         "train.seed=2", "log.dir=runs/x/qisa_reference_seed2"}));
  // the overrides give the cell's config
  const Config c = load_config(g.base, cells[7].overrides);
  EXPECT_EQ(c.model.attention, AttentionKind::qisa);
  EXPECT_EQ(c.model.mask, AttnMask::reference);
  EXPECT_EQ(c.train.seed, 2u);
  EXPECT_EQ(c.train.steps, 20);
  EXPECT_EQ(c.log.dir, "runs/x/qisa_reference_seed2");
  // default baseline: csa + causal
  EXPECT_EQ(g.baseline_group(), "csa_causal");
  EXPECT_EQ(find_cell(cells, "7").name, "qisa_reference_seed2");
  EXPECT_EQ(find_cell(cells, "qisa_a_causal_seed1").index, 3);
  test::expect_mentions(test::error_of([&] { find_cell(cells, "10"); }), {"no cell '10'", "0..9", "--list"});
}

TEST_F(GridFile, OtherKeysNameTheirCellsAndEmptyGridIsOneCellPerSeed) {
  const ExperimentGrid g =
      load_experiment_grid(write("base: base.yaml\nout: o\nseeds: [5]\ngrid:\n  model.n_layer: [1, 2]\n  train.lr: 0.01\n"));
  EXPECT_EQ(g.groups(), (std::vector<std::string>{"n_layer1_lr0.01", "n_layer2_lr0.01"}));
  EXPECT_EQ(g.baseline_group(), "");  // the grid does not vary attention or mask
  const ExperimentGrid one = load_experiment_grid(write("base: base.yaml\nout: o\nseeds: [1, 2]\n"));
  ASSERT_EQ(one.cells().size(), 2u);
  EXPECT_EQ(one.cells()[1].name, "base_seed2");
}

TEST_F(GridFile, ExtraSetOverridesComeLast) {
  const ExperimentGrid g = load_experiment_grid(write(kPaperGrid), {"train.steps=7"});
  const Config c = load_config(g.base, g.cells()[0].overrides);
  EXPECT_EQ(c.train.steps, 7);
}

TEST_F(GridFile, ErrorsNameFileKeyAndValue) {
  const std::string base = "base: base.yaml\nout: o\n";
  struct Case {
    std::string text;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {base + "seeds: [1]\ngrid:\n  model.atention: [csa]\n", {"grid.yaml", "model.atention", "did you mean 'model.attention'"}},
      {base + "seeds: [1]\ngrid:\n  model.attention: [csa, quantum]\n",
       {"grid.yaml", "cell quantum_seed1", "model.attention", "quantum"}},
      {base + "seeds: [1]\ngrid:\n  train.seed: [1, 2]\n", {"train.seed", "seeds:"}},
      {base + "seeds: [1]\nset: {log.dir: x}\n", {"log.dir", "out:"}},
      {base + "grid:\n  model.mask: [causal]\n", {"seeds", "missing"}},
      {base + "seeds: [1, 1]\n", {"seed 1 twice"}},
      {base + "seeds: [one]\n", {"seeds[0]", "'one'", "integer"}},
      {base + "seeds: [1]\ngrid:\n  model.mask: []\n", {"grid.model.mask", "non-empty"}},
      {base + "seeds: [1]\ngrid:\n  model.mask: [causal]\nexclude:\n  - {model.mask: reference}\n",
       {"exclude[0]", "'reference'", "not one of the grid's values"}},
      {base + "seeds: [1]\ngrid:\n  model.mask: [causal]\nset: {model.mask: causal}\n", {"set.model.mask", "grid key"}},
      {base + "seeds: [1]\ngrid:\n  model.mask: [causal]\nbaseline: {model.mask: reference}\n",
       {"baseline.model.mask", "'reference'"}},
      {base + "seeds: [1]\neval: {windos: 5}\n", {"eval.windos", "did you mean 'windows'"}},
      {base + "seeds: [1]\neval: {windows: 0}\n", {"eval.windows", ">= 1"}},
      {base + "seeds: [1]\nsedes: [1]\n", {"'sedes'", "did you mean 'seeds'"}},
      {"base: nothere.yaml\nout: o\nseeds: [1]\n", {"cell base_seed1", "nothere.yaml", "does not exist"}},
      {base + "seeds: [1\n", {"grid.yaml", "not valid YAML"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string path = write(c.text);
    test::expect_mentions(test::error_of([&] { load_experiment_grid(path); }), c.mentions);
  }
  test::expect_mentions(test::error_of([&] { load_experiment_grid(write(kPaperGrid), {"model.mask=causal"}); }),
                        {"override 'model.mask=causal'", "grid key"});
  test::expect_mentions(test::error_of([&] { load_experiment_grid(tmp / "none.yaml"); }), {"none.yaml", "does not exist"});
}

// Named axes: values that set several config keys at once, a baseline per combination,
// a ladder and comparisons (configs/ladder/ladder.yaml is built of these).
const char* kLadderGrid =
    "base: base.yaml\nout: o\nseeds: [1, 2]\n"
    "grid:\n"
    "  size:\n"
    "    - {name: s8, model.n_embd: 8, model.block_size: 8, train.batch_size: 4}\n"
    "    - {name: s16, model.n_embd: 16, model.block_size: 16, train.batch_size: 2}\n"
    "  model.mask: [causal]\n"
    "  variant:\n"
    "    - {name: csa, model.attention: csa}\n"
    "    - {name: qisa-g, model.attention: qisa, model.qisa_score: gaussian}\n"
    "    - {name: csa-long, model.attention: csa, train.steps: 30}\n"
    "exclude:\n  - {size: s8, variant: csa-long}\n"
    "set: {train.steps: 20, train.lr: 0.01}\n"
    "baseline: {variant: csa}\n"
    "ladder: {rungs: size}\n"
    "compare:\n  - {variant: [qisa-g, csa-long]}\n";

TEST_F(GridFile, NamedAxesSetTheirKeysTogether) {
  const ExperimentGrid g = load_experiment_grid(write(kLadderGrid), {"train.lr=0.02"});
  EXPECT_EQ(g.groups(), (std::vector<std::string>{"s8_causal_csa", "s8_causal_qisa-g", "s16_causal_csa",
                                                  "s16_causal_qisa-g", "s16_causal_csa-long"}));
  const auto cells = g.cells();
  ASSERT_EQ(cells.size(), 10u);
  const GridCell& c = cells[4];  // s16_causal_csa-long_seed1
  EXPECT_EQ(c.name, "s16_causal_csa-long_seed1");
  EXPECT_EQ(c.values, (KeyValues{{"size", "s16"}, {"model.mask", "causal"}, {"variant", "csa-long"}}));
  // set:, then the named values (their train.steps over set's), then --set, then the runner's
  EXPECT_EQ(c.overrides, (std::vector<std::string>{"train.steps=20", "train.lr=0.01", "model.n_embd=16", "model.block_size=16",
                                                  "train.batch_size=2", "model.mask=causal", "model.attention=csa",
                                                  "train.steps=30", "train.lr=0.02", "train.seed=1",
                                                  "log.dir=o/s16_causal_csa-long_seed1"}));
  const Config cfg = load_config(g.base, c.overrides);
  EXPECT_EQ(cfg.model.n_embd, 16);
  EXPECT_EQ(cfg.train.steps, 30);
  EXPECT_FLOAT_EQ(cfg.train.lr, 0.02f);
  EXPECT_EQ(load_config(g.base, cells[1].overrides).model.qisa_score, QisaScore::gaussian);
  // each combination against csa at its own size; csa itself has none
  EXPECT_EQ(g.baseline_of("s16_causal_qisa-g"), "s16_causal_csa");
  EXPECT_EQ(g.baseline_of("s8_causal_qisa-g"), "s8_causal_csa");
  EXPECT_EQ(g.baseline_of("s8_causal_csa"), "s8_causal_csa");
  EXPECT_EQ(g.with_value("s16_causal_qisa-g", "variant", "csa-long"), "s16_causal_csa-long");
  EXPECT_EQ(g.with_value("s8_causal_qisa-g", "variant", "csa-long"), "");  // excluded
  EXPECT_EQ(g.ladder.rungs, "size");
  EXPECT_EQ(g.ladder.panels, "");
  ASSERT_EQ(g.compare.size(), 1u);
  EXPECT_EQ(g.compare[0].a + "/" + g.compare[0].b, "qisa-g/csa-long");
  EXPECT_EQ(g.overrides_of("size", "s8"),
            (std::vector<std::string>{"model.n_embd=8", "model.block_size=8", "train.batch_size=4"}));
  EXPECT_EQ(g.overrides_of("model.mask", "causal"), (std::vector<std::string>{"model.mask=causal"}));
  // a full baseline (every grid key) is one combination for all, as before
  const ExperimentGrid paper = load_experiment_grid(write(kPaperGrid));
  EXPECT_EQ(paper.baseline_of("qisa_a_reference"), "csa_causal");
}

TEST_F(GridFile, NamedAxisErrorsNameTheValue) {
  const std::string head = "base: base.yaml\nout: o\nseeds: [1]\ngrid:\n";
  struct Case {
    std::string text;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {head + "  model.n_embd:\n    - {name: a, model.n_head: 1}\n", {"grid.model.n_embd", "plain name, not a config key"}},
      {head + "  size:\n    - {model.n_embd: 8}\n", {"grid.size[0]", "name:"}},
      {head + "  size:\n    - {name: 'a b', model.n_embd: 8}\n", {"grid.size[0].name", "'a b'", "letters"}},
      {head + "  size:\n    - {name: a}\n", {"grid.size[0]", "sets no config key"}},
      {head + "  size:\n    - {name: a, model.n_emb: 8}\n", {"grid.size[0].model.n_emb", "did you mean 'model.n_embd'"}},
      {head + "  size:\n    - {name: a, train.seed: 8}\n", {"grid.size[0].train.seed", "seeds:"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\n    - {name: a, model.n_embd: 16}\n", {"grid.size", "'a' twice"}},
      {head + "  model.mask: [causal]\n  size:\n    - {name: a, model.mask: causal}\n", {"grid.size[0].model.mask", "grid key"}},
      {head + "  size:\n    - {name: a, model.mask: causal}\n  model.mask: [causal]\n", {"grid.model.mask", "grid.size"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\n    - {name: b, model.n_embd: 6, model.n_head: 4}\n",
       {"cell b_seed1", "n_embd"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\nexclude:\n  - {size: big}\n", {"exclude[0]", "'big'"}},
      {head + "  a:\n    - {name: p, model.n_embd: 8}\n    - {name: p_q, model.n_embd: 16}\n"
              "  b:\n    - {name: q_r, model.n_layer: 1}\n    - {name: r, model.n_layer: 2}\n",
       {"two combinations named 'p_q_r'", "distinct names"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\nladder: {rungs: sizes}\n", {"ladder.rungs", "'sizes'", "not a grid key"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\nladder: {panels: size}\n", {"ladder.rungs", "missing"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\nladder: {rungs: size, steps: 3}\n", {"ladder.steps", "unknown"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\ncompare:\n  - {size: [a, b]}\n", {"compare[0].size", "'b'"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\ncompare:\n  - {size: [a]}\n", {"compare[0].size", "two"}},
      {head + "  size:\n    - {name: a, model.n_embd: 8}\ncompare:\n  - {variant: [a, b]}\n", {"compare[0].variant", "not a grid key"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::string path = write(c.text);
    test::expect_mentions(test::error_of([&] { load_experiment_grid(path); }), c.mentions);
  }
}

}  // namespace
}  // namespace qisa
