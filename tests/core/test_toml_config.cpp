// core::toml_config: every message of the strict reader (unknown key with line and suggestion,
// wrong type, range, choice, missing key, syntax error, missing file) and --set overrides.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.hpp"
#include "core/toml_config.hpp"

using opd::Error;
using opd::ErrorKind;
using opd::core::apply_override;
using opd::core::ConfigTable;
using opd::core::parse_toml_file;
using opd::core::parse_toml_string;

namespace {

// The full what() of the Input error `f` throws; fails the test if it throws nothing or another
// kind.
std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Input) << e.what();
    EXPECT_EQ(e.exit_status(), 2);
    return e.what();
  }
  ADD_FAILURE() << "no opd::Error thrown";
  return {};
}

// Line numbers below are part of the tests: keep the layout.
const char* kJob =
    "# a job\n"                        // 1
    "[run]\n"                          // 2
    "name = \"exp\"\n"                 // 3
    "seed = 17\n"                      // 4
    "tags = [\"a\", \"b\"]\n"          // 5
    "\n"                               // 6
    "[[stage]]\n"                      // 7
    "name = \"pretrain\"\n"            // 8
    "steps = 100\n"                    // 9
    "[stage.optim]\n"                  // 10
    "lr = 3e-4\n"                      // 11
    "schedule = \"cosine\"\n"          // 12
    "\n"                               // 13
    "[[stage]]\n"                      // 14
    "name = \"distill\"\n"             // 15
    "steps = 200\n"                    // 16
    "[stage.optim]\n"                  // 17
    "lr = 1\n"                         // 18
    "lrr = 2\n"                        // 19
    "betas = [0.9, 0.95]\n";           // 20

// Reads everything kJob holds except stage[1].optim.lrr.
void read_job(ConfigTable& root) {
  auto run = root.table("run");
  EXPECT_EQ(run.get<std::string>("name", "x"), "exp");
  EXPECT_EQ(run.require<int64_t>("seed"), 17);
  EXPECT_EQ(run.get("tags", std::vector<std::string>{}), (std::vector<std::string>{"a", "b"}));
  auto stages = root.tables("stage");
  EXPECT_EQ(stages.size(), 2u);
  for (auto& st : stages) {
    st.require<std::string>("name");
    st.get_int("steps", 10, 1, 1000000);
    auto optim = st.table("optim");
    optim.get_double("lr", 1e-3, 0.0, 10.0);
    optim.get_choice("schedule", "constant", {"constant", "linear", "cosine"});
    optim.get("betas", std::vector<double>{0.9, 0.999});
  }
}

}  // namespace

TEST(TomlConfig, TypedGetters) {
  toml::table t = parse_toml_string(
      "b = true\ni = -5\nf = 2.5\nfi = 3\ns = \"hi\"\nvi = [1, 2, 3]\nvs = [\"x\"]\n"
      "vd = [1, 2.5]\nu = 4000000000\n",
      "t.toml");
  ConfigTable c(t, "t.toml");
  EXPECT_EQ(c.get("b", false), true);
  EXPECT_EQ(c.get<int64_t>("i", 0), -5);
  EXPECT_EQ(c.get("i", 0), -5);  // int: range-checked against int
  EXPECT_EQ(c.get("f", 0.0), 2.5);
  EXPECT_EQ(c.get("fi", 0.0), 3.0);  // an integer is accepted for a double
  EXPECT_EQ(c.get<float>("f", 0.f), 2.5f);
  EXPECT_EQ(c.get("s", "default"), "hi");
  EXPECT_EQ(c.get("vi", std::vector<int64_t>{}), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(c.get("vs", std::vector<std::string>{}), (std::vector<std::string>{"x"}));
  EXPECT_EQ(c.get("vd", std::vector<double>{}), (std::vector<double>{1.0, 2.5}));
  EXPECT_EQ(c.get<uint32_t>("u", 0), 4000000000u);
  EXPECT_EQ(c.get("absent", 42), 42);
  EXPECT_EQ(c.get("absent_s", "dflt"), "dflt");
  EXPECT_FALSE(c.find<int64_t>("absent").has_value());
  EXPECT_EQ(c.find<int64_t>("i"), std::optional<int64_t>(-5));
  EXPECT_TRUE(c.has("vs"));
  EXPECT_FALSE(c.has("nope"));
  EXPECT_NO_THROW(c.finish());
}

TEST(TomlConfig, ReadingEverythingPassesFinish) {
  toml::table t = parse_toml_string(kJob, "job.toml");
  ConfigTable root(t, "job.toml");
  read_job(root);
  root.tables("stage")[1].table("optim").ignore("lrr");
  EXPECT_NO_THROW(root.finish());
}

TEST(TomlConfig, UnknownKeyWithLineAndSuggestion) {
  toml::table t = parse_toml_string(kJob, "job.toml");
  ConfigTable root(t, "job.toml");
  read_job(root);
  EXPECT_EQ(input_error_of([&] { root.finish(); }),
            "job.toml:19:1: unknown key 'stage[1].optim.lrr' (did you mean 'lr'?)");
  // The sub-table alone reports the same key.
  EXPECT_EQ(input_error_of([&] { root.tables("stage")[1].table("optim").finish(); }),
            "job.toml:19:1: unknown key 'stage[1].optim.lrr' (did you mean 'lr'?)");
}

TEST(TomlConfig, UnknownKeyFirstInFileOrderAndNoFarSuggestion) {
  toml::table t = parse_toml_string("zeta = 1\n[run]\nseed = 1\nwhatever = 2\n", "j.toml");
  ConfigTable root(t, "j.toml");
  root.table("run").get("seed", 0);
  // 'zeta' sorts after 'run' but comes first in the file; nothing read is close to it.
  EXPECT_EQ(input_error_of([&] { root.finish(); }), "j.toml:1:1: unknown key 'zeta'");
  root.ignore("zeta");
  EXPECT_EQ(input_error_of([&] { root.finish(); }), "j.toml:4:1: unknown key 'run.whatever'");
}

TEST(TomlConfig, UnopenedSubtableIsUnknownButIgnoredOneIsNot) {
  toml::table t = parse_toml_string("[model]\ndim = 4\n[extra]\nfoo = 1\n", "m.toml");
  ConfigTable root(t, "m.toml");
  root.table("model").get("dim", 0);
  EXPECT_EQ(input_error_of([&] { root.finish(); }), "m.toml:3:2: unknown key 'extra'");
  root.ignore("extra");
  EXPECT_NO_THROW(root.finish());
}

TEST(TomlConfig, SuggestionUsesTranspositions) {
  toml::table t = parse_toml_string("[run]\nsede = 3\n", "s.toml");
  ConfigTable root(t, "s.toml");
  auto run = root.table("run");
  run.get("seed", 0);
  EXPECT_EQ(input_error_of([&] { run.finish(); }),
            "s.toml:2:1: unknown key 'run.sede' (did you mean 'seed'?)");
}

TEST(TomlConfig, WrongType) {
  toml::table t = parse_toml_string(
      "[run]\n\n\n\n\n\nseed    = \"x\"\nsteps = 1e6\nflag = 1\n", "job.toml");
  ConfigTable run = ConfigTable(t, "job.toml").table("run");
  EXPECT_EQ(input_error_of([&] { run.get<int64_t>("seed", 0); }),
            "job.toml:7:11: key 'run.seed' must be an integer, got string");
  EXPECT_EQ(input_error_of([&] { run.require<int64_t>("steps"); }),
            "job.toml:8:9: key 'run.steps' must be an integer, got float (write it without a "
            "decimal point or exponent)");
  EXPECT_EQ(input_error_of([&] { run.get("flag", false); }),
            "job.toml:9:8: key 'run.flag' must be a boolean (true or false), got integer");
  EXPECT_EQ(input_error_of([&] { run.get("seed", 0.0); }),
            "job.toml:7:11: key 'run.seed' must be a number, got string");
  EXPECT_EQ(input_error_of([&] { run.table("seed"); }),
            "job.toml:7:11: key 'run.seed' must be a table, got string");
}

TEST(TomlConfig, WrongTypeInsideArrays) {
  toml::table t = parse_toml_string("ids = [1, 2, \"three\"]\nnames = 5\n", "a.toml");
  ConfigTable c(t, "a.toml");
  EXPECT_EQ(input_error_of([&] { c.get("ids", std::vector<int64_t>{}); }),
            "a.toml:1:14: key 'ids[2]' must be an integer, got string");
  EXPECT_EQ(input_error_of([&] { c.get("names", std::vector<std::string>{}); }),
            "a.toml:2:9: key 'names' must be an array of strings, got integer");
  EXPECT_EQ(input_error_of([&] { c.tables("names"); }),
            "a.toml:2:9: key 'names' must be an array of tables, got integer");
}

TEST(TomlConfig, SingleTableWhereArrayOfTablesExpected) {
  toml::table t = parse_toml_string("[stage]\nsteps = 1\n", "a.toml");
  ConfigTable c(t, "a.toml");
  EXPECT_EQ(input_error_of([&] { c.tables("stage"); }),
            "a.toml:1:1: key 'stage' must be an array of tables, got table (write each element "
            "as [[stage]])");
}

TEST(TomlConfig, OutOfRange) {
  toml::table t = parse_toml_string(kJob, "job.toml");
  ConfigTable root(t, "job.toml");
  auto optim = root.tables("stage")[1].table("optim");
  EXPECT_EQ(input_error_of([&] { optim.get_double("lr", 1e-3, 0.0, 0.5); }),
            "job.toml:18:6: key 'stage[1].optim.lr' must be in [0, 0.5], got 1");
  auto st = root.tables("stage")[0];
  EXPECT_EQ(input_error_of([&] { st.get_int("steps", 1, 1, 50); }),
            "job.toml:9:9: key 'stage[0].steps' must be in [1, 50], got 100");
  EXPECT_EQ(st.get_int("steps", 1, 1, 100), 100);
  EXPECT_EQ(st.get_int("absent", 7, 1, 5), 7);  // the default is the caller's business
  // Integer types narrower than int64 are range-checked against the type.
  EXPECT_EQ(st.get<uint8_t>("steps", 0), 100);
  auto st1 = root.tables("stage")[1];
  EXPECT_EQ(input_error_of([&] { st1.get<int8_t>("steps", 0); }),
            "job.toml:16:9: key 'stage[1].steps' must be in [-128, 127], got 200");
  EXPECT_EQ(input_error_of([&] { st1.require_int("steps", 0, 10); }),
            "job.toml:16:9: key 'stage[1].steps' must be in [0, 10], got 200");
  EXPECT_EQ(input_error_of([&] { optim.require_double("lr", 2.0, 3.0); }),
            "job.toml:18:6: key 'stage[1].optim.lr' must be in [2, 3], got 1");
}

TEST(TomlConfig, BadChoice) {
  toml::table t = parse_toml_string("[optim]\nschedule = \"cosin\"\nkind = \"adam\"\n", "c.toml");
  auto optim = ConfigTable(t, "c.toml").table("optim");
  EXPECT_EQ(input_error_of([&] {
              optim.get_choice("schedule", "constant", {"constant", "linear", "cosine"});
            }),
            "c.toml:2:12: key 'optim.schedule' must be one of \"constant\", \"linear\", "
            "\"cosine\"; got \"cosin\" (did you mean \"cosine\"?)");
  EXPECT_EQ(input_error_of([&] { optim.require_choice("kind", {"sgd", "adamw"}); }),
            "c.toml:3:8: key 'optim.kind' must be one of \"sgd\", \"adamw\"; got \"adam\" "
            "(did you mean \"adamw\"?)");
  EXPECT_EQ(optim.get_choice("absent", "linear", {"constant", "linear"}), "linear");
}

TEST(TomlConfig, MissingRequiredKey) {
  toml::table t = parse_toml_string("top = 1\n\n[run]\nname = \"x\"\n", "m.toml");
  ConfigTable root(t, "m.toml");
  auto run = root.table("run");
  EXPECT_EQ(input_error_of([&] { run.require<int64_t>("seed"); }),
            "m.toml:3:1: missing required key 'run.seed' (add it to [run])");
  EXPECT_EQ(input_error_of([&] { run.require_int("seed", 0, 10); }),
            "m.toml:3:1: missing required key 'run.seed' (add it to [run])");
  EXPECT_EQ(input_error_of([&] { root.table("model"); }),
            "m.toml: missing required key 'model' (add it at the top level)");
  EXPECT_FALSE(root.find_table("model").has_value());
  // An absent optional table reads as empty, so defaults apply and finish() passes.
  auto model = root.table_or_empty("model");
  EXPECT_EQ(model.path(), "model");
  EXPECT_EQ(model.get("dim", 8), 8);
  EXPECT_TRUE(root.tables("stage").empty());
  root.get("top", 0);
  EXPECT_EQ(input_error_of([&] { root.finish(); }), "m.toml:4:1: unknown key 'run.name'");
  run.get("name", "");
  EXPECT_NO_THROW(root.finish());
}

TEST(TomlConfig, SyntaxErrorNamesLineAndColumn) {
  const std::string msg =
      input_error_of([] { parse_toml_string("a = 1\nb = 2\nc = = 3\n", "bad.toml"); });
  EXPECT_EQ(msg, "bad.toml:3:5: Error while parsing value: could not determine value type");
  const std::string dup =
      input_error_of([] { parse_toml_string("a = 1\n\na = 2\n", "dup.toml"); });
  EXPECT_EQ(dup.rfind("dup.toml:3:5: ", 0), 0u) << dup;
  EXPECT_NE(dup.find("redefine"), std::string::npos) << dup;
}

TEST(TomlConfig, Files) {
  EXPECT_EQ(input_error_of([] { parse_toml_file("/nonexistent/dir/job.toml"); }),
            "/nonexistent/dir/job.toml: file not found (check the path of the job file)");
  const auto dir = std::filesystem::temp_directory_path();
  const std::string path = (dir / "opd_test_toml_config_files.toml").string();
  {
    std::ofstream f(path);
    f << "[run]\nseed = 5\nbad = [\n";
  }
  const std::string msg = input_error_of([&] { parse_toml_file(path); });
  EXPECT_EQ(msg.rfind(path + ":", 0), 0u) << msg;
  {
    std::ofstream f(path);
    f << "[run]\nseed = 5\nsed = 1\n";
  }
  toml::table t = parse_toml_file(path);
  ConfigTable root(t, path);
  EXPECT_EQ(root.table("run").get("seed", 0), 5);
  EXPECT_EQ(input_error_of([&] { root.finish(); }),
            path + ":3:1: unknown key 'run.sed' (did you mean 'seed'?)");
  std::filesystem::remove(path);
}

TEST(TomlOverride, ValuesParseAsTomlElseString) {
  toml::table t = parse_toml_string("[run]\nseed = 1\n", "o.toml");
  apply_override(t, "run.seed=7");
  apply_override(t, "run.lr=3e-4");
  apply_override(t, "run.flag=true");
  apply_override(t, "run.ids=[1,2]");
  apply_override(t, "run.quoted=\"a b\"");
  apply_override(t, "run.bare = exp-1/x ");
  apply_override(t, "run.sub={x = 1}");
  ConfigTable run = ConfigTable(t, "o.toml").table("run");
  EXPECT_EQ(run.get("seed", 0), 7);
  EXPECT_EQ(run.get("lr", 0.0), 3e-4);
  EXPECT_EQ(run.get("flag", false), true);
  EXPECT_EQ(run.get("ids", std::vector<int64_t>{}), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(run.get("quoted", ""), "a b");
  EXPECT_EQ(run.get("bare", ""), "exp-1/x");
  EXPECT_EQ(run.table("sub").get("x", 0), 1);
}

TEST(TomlOverride, ArrayOfTablesByIndexAndByName) {
  toml::table t = parse_toml_string(kJob, "job.toml");
  apply_override(t, "stage.0.steps=5");
  apply_override(t, "stage.distill.steps=6");
  apply_override(t, "stage.distill.optim.lr=0.25");
  ConfigTable root(t, "job.toml");
  auto stages = root.tables("stage");
  EXPECT_EQ(stages[0].get("steps", 0), 5);
  EXPECT_EQ(stages[1].get("steps", 0), 6);
  EXPECT_EQ(stages[1].table("optim").get("lr", 0.0), 0.25);
  EXPECT_EQ(stages[0].table("optim").get("lr", 0.0), 3e-4);

  EXPECT_EQ(input_error_of([&] { apply_override(t, "stage.5.steps=1"); }),
            "--set stage.5.steps=1: index 5 is out of range: 'stage' has 2 element(s)");
  EXPECT_EQ(input_error_of([&] { apply_override(t, "stage.finetune.steps=1"); }),
            "--set stage.finetune.steps=1: no element of 'stage' has name 'finetune' (names: "
            "'pretrain', 'distill'; or an index: stage.0)");
  EXPECT_EQ(input_error_of([&] { apply_override(t, "stage.0=1"); }),
            "--set stage.0=1: 'stage' is an array of tables; name an element and a key (e.g. "
            "--set stage.0.KEY=VALUE or stage.NAME.KEY=VALUE)");
  EXPECT_EQ(input_error_of([&] { apply_override(t, "run.seed.x=1"); }),
            "--set run.seed.x=1: 'run.seed' is an integer, not a table");
}

TEST(TomlOverride, NewKeyIsRejectedByFinishAsSetOnTheCommandLine) {
  toml::table t = parse_toml_string(kJob, "job.toml");
  apply_override(t, "stage.1.optim.lrr=5");    // replaces a file key: still the file's line
  apply_override(t, "stage.0.optim.wd=0.1");   // a new key: no line
  apply_override(t, "newtable.x=1");           // a new table
  ConfigTable root(t, "job.toml");
  read_job(root);
  root.tables("stage")[1].table("optim").ignore("lrr");
  EXPECT_EQ(input_error_of([&] { root.finish(); }),
            "(set on the command line): unknown key 'newtable'");
  root.ignore("newtable");
  EXPECT_EQ(input_error_of([&] { root.finish(); }),
            "(set on the command line): unknown key 'stage[0].optim.wd'");
}

TEST(TomlOverride, WrongTypeFromCommandLine) {
  toml::table t = parse_toml_string("[run]\nseed = 1\nname = \"x\"\n", "o.toml");
  apply_override(t, "run.seed=abc");
  apply_override(t, "run.name=inf");
  ConfigTable run = ConfigTable(t, "o.toml").table("run");
  EXPECT_EQ(input_error_of([&] { run.get("seed", 0); }),
            "(set on the command line): key 'run.seed' must be an integer, got string");
  EXPECT_EQ(input_error_of([&] { run.get("name", ""); }),
            "(set on the command line): key 'run.name' must be a string, got float (on the "
            "command line, quote it: --set run.name='\"...\"')");
}

TEST(TomlOverride, BadSyntax) {
  toml::table t;
  EXPECT_EQ(input_error_of([&] { apply_override(t, "run.seed"); }),
            "--set run.seed: expected KEY=VALUE (e.g. --set stage.0.optim.lr=3e-4)");
  EXPECT_EQ(input_error_of([&] { apply_override(t, "=3"); }),
            "--set =3: empty key before '=' (e.g. --set run.seed=1)");
  EXPECT_EQ(input_error_of([&] { apply_override(t, "run..seed=3"); }),
            "--set run..seed=3: empty segment in key 'run..seed' (segments are separated by one "
            "'.')");
  EXPECT_EQ(input_error_of([&] { apply_override(t, "run.seed="); }),
            "--set run.seed=: empty value after '=' (for an empty string write KEY='\"\"')");
  EXPECT_TRUE(t.empty());
}

TEST(TomlConfig, EditDistance) {
  using opd::core::edit_distance;
  EXPECT_EQ(edit_distance("lrr", "lr"), 1u);
  EXPECT_EQ(edit_distance("sede", "seed"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("same", "same"), 0u);
}
