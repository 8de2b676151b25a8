#include "io/experiment_grid.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <set>

#include "io/config.h"
#include "io/edit_distance.h"
#include "kernels/error.h"

namespace qisa {

namespace fs = std::filesystem;

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }

const std::vector<std::string> kTopKeys = {"base", "out", "seeds", "grid", "exclude", "set", "eval", "baseline", "ladder",
                                           "compare"};
const std::vector<std::string> kEvalKeys = {"windows", "batch", "gen_prompts", "gen_tokens", "probe_windows",
                                            "timing_repeats"};

std::string closest(const std::string& got, const std::vector<std::string>& valid) {
  std::string best;
  int64_t best_d = 3;
  for (const auto& v : valid) {
    const int64_t d = edit_distance(got, v);
    if (d < best_d) best_d = d, best = v;
  }
  return best.empty() ? "" : "did you mean " + q(best) + "? ";
}

std::string list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

class GridParser {
 public:
  explicit GridParser(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& where, const std::string& problem, const std::string& hint) const {
    throw Error("experiment grid " + q(path_) + ": " + where + " " + problem, hint);
  }

  std::string scalar(const YAML::Node& n, const std::string& where) const {
    if (!n || !n.IsScalar()) fail(where, "must be a single value", "write e.g. " + where + ": value");
    return n.Scalar();
  }

  int64_t count(const YAML::Node& n, const std::string& where, int64_t min) const {
    const std::string s = scalar(n, where);
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < min)
      fail(where, "= " + q(s) + " must be an integer >= " + std::to_string(min), "write a whole number");
    return v;
  }

  // A config key that the grid may vary or set.
  void check_key(const std::string& key, const std::string& where) const {
    const std::vector<std::string> keys = config_keys();
    if (std::find(keys.begin(), keys.end(), key) == keys.end())
      fail(where, "names " + q(key) + ", which is not a config key",
           closest(key, keys) + "keys look like model.attention or train.steps");
    if (key == "train.seed" || key == "log.dir")
      fail(where, "sets " + q(key) + ", which the experiment sets for each cell",
           key == "train.seed" ? "list the seeds under `seeds:`" : "set the experiment's folder with `out:`");
  }

  // `axes`: the grid's named axes, which exclude: and baseline: may name too.
  KeyValues key_values(const YAML::Node& n, const std::string& where, const ExperimentGrid* axes = nullptr) const {
    if (!n.IsMap()) fail(where, "must be a mapping of config keys to values", "write e.g. {model.mask: causal}");
    KeyValues kv;
    for (const auto& it : n) {
      const std::string key = it.first.as<std::string>();
      if (!axes || !axes->named.count(key)) check_key(key, where + "." + key);
      kv.emplace_back(key, scalar(it.second, where + "." + key));
    }
    return kv;
  }

  static bool plain_name(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    });
  }

  // grid.KEY: a config key with a list of values, or a named axis with a list of {name: ...,
  // config keys} (keys that change together).
  void parse_axis(ExperimentGrid& g, const std::string& key, const YAML::Node& n) const {
    const std::string where = "grid." + key;
    std::vector<std::string> values;
    const bool named = n.IsSequence() && n.size() > 0 && n[0].IsMap();
    if (named) {
      const std::vector<std::string> keys = config_keys();
      if (std::find(keys.begin(), keys.end(), key) != keys.end() || !plain_name(key) || key.find('.') != std::string::npos)
        fail(where, "lists named values, so its name must be a plain name, not a config key",
             "name the axis e.g. size or variant, and put the config keys inside each value");
      for (size_t i = 0; i < n.size(); ++i) {
        const std::string w = where + "[" + std::to_string(i) + "]";
        if (!n[i].IsMap() || !n[i]["name"])
          fail(w, "must be a mapping with name: and config keys", "write e.g. - {name: s16, model.n_embd: 16}");
        const std::string name = scalar(n[i]["name"], w + ".name");
        if (!plain_name(name)) fail(w + ".name", "= " + q(name) + " may hold only letters, digits, '.', '-', '_'", "it names run folders");
        YAML::Node keys_only = YAML::Clone(n[i]);
        keys_only.remove("name");
        if (keys_only.size() == 0) fail(w, "sets no config key", "add e.g. model.n_embd: 64");
        KeyValues kv = key_values(keys_only, w);
        for (const auto& [k, v] : kv)  // (two named axes may set a key: the later one's value wins)
          for (const auto& [gk, gv] : g.grid)
            if (gk == k) fail(w + "." + k, "is also a grid key", "vary a key in one place");
        g.named[key][name] = std::move(kv);
        values.push_back(name);
      }
    } else {
      check_key(key, where);
      for (const auto& [axis, vals] : g.named)
        for (const auto& [vn, kv] : vals)
          for (const auto& [k, v] : kv)
            if (k == key) fail(where, "is also set by grid." + axis, "vary a key in one place");
      if (n.IsScalar()) values.push_back(n.Scalar());
      else if (n.IsSequence() && n.size() > 0)
        for (size_t i = 0; i < n.size(); ++i) values.push_back(scalar(n[i], where + "[" + std::to_string(i) + "]"));
      else fail(where, "must be a non-empty list of values", "write e.g. " + key + ": [a, b]");
    }
    std::set<std::string> seen;
    for (const auto& v : values)
      if (!seen.insert(v).second) fail(where, "lists " + q(v) + " twice", "each value once");
    g.grid.emplace_back(key, std::move(values));
  }

  void parse_ladder(ExperimentGrid& g, const YAML::Node& n) const {
    if (!n.IsMap()) fail("ladder", "must be a mapping", "write e.g. ladder: {rungs: size, panels: corpus}");
    for (const auto& it : n) {
      const std::string k = it.first.as<std::string>();
      if (k != "rungs" && k != "panels") fail("ladder." + k, "is unknown", "valid: rungs, panels");
    }
    auto axis = [&](const char* k) {
      if (!n[k]) return std::string();
      const std::string a = scalar(n[k], std::string("ladder.") + k);
      const bool found = std::any_of(g.grid.begin(), g.grid.end(), [&](const auto& kv) { return kv.first == a; });
      if (!found) fail(std::string("ladder.") + k, "= " + q(a) + " is not a grid key", "name one of the keys under grid:");
      return a;
    };
    g.ladder.rungs = axis("rungs");
    g.ladder.panels = axis("panels");
    if (g.ladder.rungs.empty()) fail("ladder.rungs", "is missing", "name the grid key whose values are the rungs");
    if (g.ladder.rungs == g.ladder.panels) fail("ladder.panels", "is the rungs' key", "panels split by another grid key");
  }

  void parse_compare(ExperimentGrid& g, const YAML::Node& n) const {
    const char* hint = "write e.g. compare: [{variant: [qisa, csa-flops]}]";
    if (!n.IsSequence()) fail("compare", "must be a list of {grid key: [value, value]}", hint);
    for (size_t i = 0; i < n.size(); ++i) {
      const std::string where = "compare[" + std::to_string(i) + "]";
      if (!n[i].IsMap() || n[i].size() != 1) fail(where, "must name one grid key", hint);
      const std::string key = n[i].begin()->first.as<std::string>();
      const YAML::Node v = n[i].begin()->second;
      auto axis = std::find_if(g.grid.begin(), g.grid.end(), [&](const auto& kv) { return kv.first == key; });
      if (axis == g.grid.end()) fail(where + "." + key, "is not a grid key", "name one of the keys under grid:");
      if (!v.IsSequence() || v.size() != 2) fail(where + "." + key, "must list two of its values", hint);
      const std::string a = scalar(v[0], where + "." + key + "[0]"), b = scalar(v[1], where + "." + key + "[1]");
      for (const std::string& x : {a, b})
        if (std::find(axis->second.begin(), axis->second.end(), x) == axis->second.end())
          fail(where + "." + key, "lists " + q(x) + ", which is not one of its values", "valid: " + list(axis->second));
      if (a == b) fail(where + "." + key, "lists " + q(a) + " twice", "compare two different values");
      g.compare.push_back({key, a, b});
    }
  }

  ExperimentGrid parse(const std::vector<std::string>& extra_set) {
    std::error_code ec;
    if (!fs::exists(path_, ec)) throw Error("experiment grid " + q(path_) + " does not exist", "check the path");
    YAML::Node root;
    try {
      root = YAML::LoadFile(path_);
    } catch (const YAML::Exception& e) {
      throw Error("experiment grid " + q(path_) + " is not valid YAML: " + e.what(), "fix the line it names");
    }
    if (!root.IsMap()) fail("the file", "must be a mapping with base:, out:, seeds:, grid:", "see configs/paper/grid.yaml");
    for (const auto& it : root) {
      const std::string k = it.first.as<std::string>();
      if (std::find(kTopKeys.begin(), kTopKeys.end(), k) == kTopKeys.end())
        fail("key " + q(k), "is unknown", closest(k, kTopKeys) + "valid: " + list(kTopKeys));
    }
    ExperimentGrid g;
    g.source = path_;
    const std::string base = scalar(root["base"], "base");
    g.base = fs::path(base).is_absolute() ? base : (fs::path(path_).parent_path() / base).lexically_normal().string();
    g.out = scalar(root["out"], "out");

    if (!root["seeds"]) fail("seeds", "is missing", "write e.g. seeds: [1, 2, 3]");
    if (!root["seeds"].IsSequence() || root["seeds"].size() == 0)
      fail("seeds", "must be a non-empty list of integers", "write e.g. seeds: [1, 2, 3]");
    for (size_t i = 0; i < root["seeds"].size(); ++i) {
      const uint64_t s = static_cast<uint64_t>(count(root["seeds"][i], "seeds[" + std::to_string(i) + "]", 0));
      if (std::find(g.seeds.begin(), g.seeds.end(), s) != g.seeds.end())
        fail("seeds", "lists seed " + std::to_string(s) + " twice", "each seed once");
      g.seeds.push_back(s);
    }

    if (const YAML::Node grid = root["grid"]) {
      if (!grid.IsMap()) fail("grid", "must be a mapping of config keys to lists of values", "write e.g. model.mask: [causal, reference]");
      for (const auto& it : grid) parse_axis(g, it.first.as<std::string>(), it.second);
    }
    auto grid_value_ok = [&](const std::string& key, const std::string& value) {
      for (const auto& [k, vs] : g.grid)
        if (k == key) return std::find(vs.begin(), vs.end(), value) != vs.end();
      return false;
    };
    if (const YAML::Node ex = root["exclude"]) {
      if (!ex.IsSequence()) fail("exclude", "must be a list of mappings", "write e.g. - {model.attention: csa, model.mask: reference}");
      for (size_t i = 0; i < ex.size(); ++i) {
        const std::string where = "exclude[" + std::to_string(i) + "]";
        KeyValues kv = key_values(ex[i], where, &g);
        for (const auto& [k, v] : kv)
          if (!grid_value_ok(k, v))
            fail(where, "names " + k + " = " + q(v) + ", which is not one of the grid's values", "exclude combinations the grid makes");
        g.exclude.push_back(std::move(kv));
      }
    }
    if (const YAML::Node set = root["set"]) {
      g.set = key_values(set, "set");
      for (const auto& [k, v] : g.set)
        for (const auto& [gk, gv] : g.grid)
          if (k == gk) fail("set." + k, "is also a grid key", "set a key in one place");
    }  // (a named grid value may override set:, e.g. the steps of a FLOP-matched variant)
    for (const std::string& ov : extra_set) {
      const size_t eq = ov.find('=');
      if (eq == std::string::npos || eq == 0) throw Error("override " + q(ov) + " is not key=value", "write e.g. train.steps=100");
      const std::string key = ov.substr(0, eq);
      check_key(key, "override " + q(ov));
      for (const auto& [gk, gv] : g.grid)
        if (key == gk) fail("override " + q(ov), "sets a grid key", "change the grid's values instead");
      g.cli_set.emplace_back(key, ov.substr(eq + 1));  // applied after the grid's values
    }
    if (const YAML::Node ev = root["eval"]) {
      if (!ev.IsMap()) fail("eval", "must be a mapping", "write e.g. eval: {windows: 500}");
      for (const auto& it : ev) {
        const std::string k = it.first.as<std::string>();
        if (std::find(kEvalKeys.begin(), kEvalKeys.end(), k) == kEvalKeys.end())
          fail("eval." + k, "is unknown", closest(k, kEvalKeys) + "valid: " + list(kEvalKeys));
      }
      auto get = [&](const char* k, int64_t& v, int64_t min) {
        if (ev[k]) v = count(ev[k], std::string("eval.") + k, min);
      };
      get("windows", g.eval.windows, 1);
      get("batch", g.eval.batch, 0);
      get("gen_prompts", g.eval.gen_prompts, 0);
      get("gen_tokens", g.eval.gen_tokens, 1);
      get("probe_windows", g.eval.probe_windows, 0);
      get("timing_repeats", g.eval.timing_repeats, 1);
    }
    if (const YAML::Node b = root["baseline"]) {
      g.baseline = key_values(b, "baseline", &g);
      for (const auto& [k, v] : g.baseline)
        if (!grid_value_ok(k, v))
          fail("baseline." + k, "= " + q(v) + " is not one of the grid's values", "name a combination the grid runs");
    } else {  // the paper's baseline: classical causal attention, where the grid varies those keys
      for (const auto& [k, v] : KeyValues{{"model.attention", "csa"}, {"model.mask", "causal"}})
        if (grid_value_ok(k, v)) g.baseline.emplace_back(k, v);
    }

    if (const YAML::Node l = root["ladder"]) parse_ladder(g, l);
    if (const YAML::Node c = root["compare"]) parse_compare(g, c);
    std::map<std::string, std::string> seen_groups;
    for (const std::string& name : g.groups())
      if (!seen_groups.emplace(name, name).second)
        fail("grid", "makes two combinations named " + q(name), "give the named values distinct names");

    // Every cell's config must load: a bad value fails now, not after hours of other cells.
    for (const GridCell& c : g.cells()) {
      try {
        load_config(g.base, c.overrides);
      } catch (const Error& e) {
        throw Error("experiment grid " + q(path_) + ", cell " + c.name + ": " + e.what(), e.hint());
      }
    }
    return g;
  }

 private:
  std::string path_;
};

// A name part for a grid value: attention and mask values and named values stand alone
// ("qisa_causal", "s16"); other keys add their last component ("n_layer4"); anything outside
// [A-Za-z0-9._-] becomes '-'.
std::string name_part(const ExperimentGrid& g, const std::string& key, const std::string& value) {
  const bool alone = key == "model.attention" || key == "model.mask" || g.named.count(key);
  std::string s = alone ? value : key.substr(key.rfind('.') + 1) + value;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '-';
  return s;
}

bool matches(const KeyValues& values, const KeyValues& pattern) {
  for (const auto& [k, v] : pattern) {
    // init-capture: clang < 16 cannot capture a structured binding
    auto it = std::find_if(values.begin(), values.end(), [&key = k](const auto& kv) { return kv.first == key; });
    if (it == values.end() || it->second != v) return false;
  }
  return true;
}

// Every combination of the grid's values (first key slowest), minus the excluded ones.
std::vector<KeyValues> combinations(const ExperimentGrid& g) {
  std::vector<KeyValues> out{{}};
  for (const auto& [key, values] : g.grid) {
    std::vector<KeyValues> next;
    for (const auto& partial : out)
      for (const auto& v : values) {
        KeyValues kv = partial;
        kv.emplace_back(key, v);
        next.push_back(std::move(kv));
      }
    out = std::move(next);
  }
  std::erase_if(out, [&](const KeyValues& kv) {
    return std::any_of(g.exclude.begin(), g.exclude.end(), [&](const KeyValues& ex) { return matches(kv, ex); });
  });
  return out;
}

std::string group_name(const ExperimentGrid& g, const KeyValues& kv) {
  std::string s;
  for (const auto& [k, v] : kv) s += (s.empty() ? "" : "_") + name_part(g, k, v);
  return s.empty() ? "base" : s;
}

}  // namespace

std::vector<std::string> ExperimentGrid::overrides_of(const std::string& key, const std::string& value) const {
  std::vector<std::string> out;
  auto axis = named.find(key);
  if (axis == named.end()) return {key + "=" + value};
  auto it = axis->second.find(value);
  if (it != axis->second.end())
    for (const auto& [k, v] : it->second) out.push_back(k + "=" + v);
  return out;
}

std::vector<GridCell> ExperimentGrid::cells() const {
  std::vector<GridCell> result;
  const std::vector<KeyValues> combos = combinations(*this);
  for (uint64_t seed : seeds)
    for (const KeyValues& kv : combos) {
      GridCell c;
      c.index = static_cast<int>(result.size());
      c.group = group_name(*this, kv);
      c.name = c.group + "_seed" + std::to_string(seed);
      c.seed = seed;
      c.values = kv;
      c.dir = (fs::path(out) / c.name).string();
      for (const auto& [k, v] : set) c.overrides.push_back(k + "=" + v);
      for (const auto& [k, v] : kv)
        for (std::string& o : overrides_of(k, v)) c.overrides.push_back(std::move(o));
      for (const auto& [k, v] : cli_set) c.overrides.push_back(k + "=" + v);
      c.overrides.push_back("train.seed=" + std::to_string(seed));
      c.overrides.push_back("log.dir=" + c.dir);
      result.push_back(std::move(c));
    }
  return result;
}

std::vector<std::string> ExperimentGrid::groups() const {
  std::vector<std::string> out;
  for (const KeyValues& kv : combinations(*this)) out.push_back(group_name(*this, kv));
  return out;
}

std::string ExperimentGrid::baseline_group() const {
  if (baseline.empty()) return "";
  for (const KeyValues& kv : combinations(*this))
    if (matches(kv, baseline)) return group_name(*this, kv);
  return "";
}

std::string ExperimentGrid::group_of(const KeyValues& values) const { return group_name(*this, values); }

// `group`'s values with those of `replace` put in, and the combination that has them ("" if none).
static std::string group_with(const ExperimentGrid& g, const std::string& group, const KeyValues& replace) {
  KeyValues want = g.values_of(group);
  for (auto& [k, v] : want)
    for (const auto& [rk, rv] : replace)
      if (rk == k) v = rv;
  for (const KeyValues& kv : combinations(g))
    if (kv == want) return group_name(g, kv);
  return "";
}

std::string ExperimentGrid::with_value(const std::string& group, const std::string& key, const std::string& value) const {
  return group_with(*this, group, {{key, value}});
}

KeyValues ExperimentGrid::values_of(const std::string& group) const {
  for (const KeyValues& kv : combinations(*this))
    if (group_name(*this, kv) == group) return kv;
  return {};
}

std::string ExperimentGrid::baseline_of(const std::string& group) const {
  return baseline.empty() ? "" : group_with(*this, group, baseline);
}

ExperimentGrid load_experiment_grid(const std::string& path, const std::vector<std::string>& extra_set) {
  return GridParser(path).parse(extra_set);
}

const GridCell& find_cell(const std::vector<GridCell>& cells, const std::string& key) {
  for (const GridCell& c : cells)
    if (c.name == key) return c;
  int64_t i = -1;
  auto [p, ec] = std::from_chars(key.data(), key.data() + key.size(), i);
  if (ec == std::errc() && p == key.data() + key.size() && i >= 0 && i < static_cast<int64_t>(cells.size()))
    return cells[static_cast<size_t>(i)];
  throw Error("no cell " + q(key) + " in this grid (" + std::to_string(cells.size()) + " cells)",
              "pass an index 0.." + std::to_string(cells.size() - 1) + " or a name such as " + q(cells.front().name) +
                  " (qisa experiment GRID --list shows them)");
}

}  // namespace qisa
