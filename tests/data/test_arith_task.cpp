// Arithmetic task: exact formats, every scratchpad checked by parsing it back, reproducibility,
// digit ranges, validation errors, JSONL output.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "data/arith_task.hpp"
#include "data/dataset.hpp"
#include "data/verifier.hpp"

using opd::data::ArithExample;
using opd::data::ArithSpec;
using opd::data::make_arith;
using opd::data::make_arith_example;

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) out.push_back(cur);
  return out;
}

struct Problem {
  int64_t a, b;
  char op;
};

Problem parse_prompt(const std::string& prompt) {
  const std::size_t at = prompt.find_first_of("+*");
  EXPECT_NE(at, std::string::npos) << prompt;
  EXPECT_EQ(prompt.back(), '=') << prompt;
  return {std::stoll(prompt.substr(0, at)),
          std::stoll(prompt.substr(at + 1, prompt.size() - at - 2)), prompt[at]};
}

int digit(int64_t v, std::size_t d) {
  for (std::size_t i = 0; i < d; ++i) v /= 10;
  return static_cast<int>(v % 10);
}

int64_t pow10(std::size_t d) {
  int64_t p = 1;
  for (std::size_t i = 0; i < d; ++i) p *= 10;
  return p;
}

std::string reversed(std::string s) { return {s.rbegin(), s.rend()}; }

// Checks a `steps` scratchpad (without the marker line) against the problem, clause by clause.
void check_steps(const Problem& p, const std::string& pad) {
  const auto clauses = split(pad, ',');
  const std::string as = std::to_string(p.a), bs = std::to_string(p.b);
  if (p.op == '+') {
    const std::size_t n = std::max(as.size(), bs.size());
    ASSERT_EQ(clauses.size(), n) << pad;
    int carry = 0;
    std::string ones;
    for (std::size_t d = 0; d < n; ++d) {
      const std::string& c = clauses[d];
      // x+y+c=ST: 8 characters at fixed places.
      ASSERT_EQ(c.size(), 8u) << c;
      ASSERT_EQ(c[1], '+');
      ASSERT_EQ(c[3], '+');
      ASSERT_EQ(c[5], '=');
      const int x = c[0] - '0', y = c[2] - '0', cin = c[4] - '0',
                s = (c[6] - '0') * 10 + (c[7] - '0');
      EXPECT_EQ(x, digit(p.a, d)) << c;
      EXPECT_EQ(y, digit(p.b, d)) << c;
      EXPECT_EQ(cin, carry) << c;
      EXPECT_EQ(s, x + y + cin) << c;
      carry = s / 10;
      ones += c[7];
    }
    // The clauses determine the answer: final carry, then the ones digits in reverse.
    const int64_t from_steps = std::stoll((carry ? "1" : "") + reversed(ones));
    EXPECT_EQ(from_steps, p.a + p.b);
  } else {
    const std::size_t m = bs.size();
    ASSERT_EQ(clauses.size(), 2 * m - 1) << pad;
    std::vector<int64_t> shifted;
    for (std::size_t d = 0; d < m; ++d) {
      const std::string& c = clauses[d];
      const std::size_t star = c.find('*'), eq = c.find('=');
      ASSERT_NE(star, std::string::npos) << c;
      ASSERT_NE(eq, std::string::npos) << c;
      EXPECT_EQ(std::stoll(c.substr(0, star)), p.a) << c;
      const int y = std::stoi(c.substr(star + 1, eq - star - 1));
      EXPECT_EQ(y, digit(p.b, d)) << c;
      EXPECT_EQ(std::stoll(c.substr(eq + 1)), p.a * y) << c;
      shifted.push_back(p.a * y * pow10(d));
    }
    int64_t sum = shifted[0];
    for (std::size_t d = 1; d < m; ++d) {
      const std::string& c = clauses[m - 1 + d];
      const std::size_t plus = c.find('+'), eq = c.find('=');
      ASSERT_NE(plus, std::string::npos) << c;
      EXPECT_EQ(std::stoll(c.substr(0, plus)), sum) << c;
      EXPECT_EQ(std::stoll(c.substr(plus + 1, eq - plus - 1)), shifted[d]) << c;
      sum += shifted[d];
      EXPECT_EQ(std::stoll(c.substr(eq + 1)), sum) << c;
    }
    EXPECT_EQ(sum, p.a * p.b);
  }
}

// Checks a `columns` scratchpad (without the marker line).
void check_columns(const Problem& p, const std::string& pad) {
  const auto lines = split(pad, '\n');
  const std::string as = std::to_string(p.a), bs = std::to_string(p.b);
  if (p.op == '+') {
    ASSERT_EQ(lines.size(), 3u) << pad;
    const std::size_t w = std::max(as.size(), bs.size()) + 1;
    const auto ops = split(lines[0], '+');
    ASSERT_EQ(ops.size(), 2u);
    ASSERT_EQ(ops[0].size(), w);
    ASSERT_EQ(ops[1].size(), w);
    EXPECT_EQ(std::stoll(reversed(ops[0])), p.a);
    EXPECT_EQ(std::stoll(reversed(ops[1])), p.b);
    ASSERT_EQ(lines[1].size(), w + 2);
    ASSERT_EQ(lines[2].size(), w + 2);
    EXPECT_EQ(lines[1].substr(0, 2), "c=");
    EXPECT_EQ(lines[2].substr(0, 2), "s=");
    int carry = 0;
    for (std::size_t d = 0; d < w; ++d) {
      EXPECT_EQ(lines[1][2 + d] - '0', carry) << pad;
      const int s = (ops[0][d] - '0') + (ops[1][d] - '0') + carry;
      EXPECT_EQ(lines[2][2 + d] - '0', s % 10) << pad;
      carry = s / 10;
    }
    EXPECT_EQ(carry, 0);
    EXPECT_EQ(std::stoll(reversed(lines[2].substr(2))), p.a + p.b);
  } else {
    ASSERT_EQ(lines.size(), 2u) << pad;
    EXPECT_EQ(lines[0], reversed(as) + "*" + reversed(bs));
    const std::size_t w = as.size() + bs.size();
    const std::size_t eq = lines[1].find('=');
    ASSERT_NE(eq, std::string::npos);
    const auto partials = split(lines[1].substr(0, eq), '+');
    ASSERT_EQ(partials.size(), bs.size());
    int64_t sum = 0;
    for (std::size_t d = 0; d < partials.size(); ++d) {
      ASSERT_EQ(partials[d].size(), w);
      EXPECT_EQ(std::stoll(reversed(partials[d])), p.a * digit(p.b, d) * pow10(d)) << pad;
      sum += std::stoll(reversed(partials[d]));
    }
    const std::string total = lines[1].substr(eq + 1);
    ASSERT_EQ(total.size(), w);
    EXPECT_EQ(std::stoll(reversed(total)), sum);
    EXPECT_EQ(sum, p.a * p.b);
  }
}

void check_example(const ArithExample& ex, const ArithSpec& spec) {
  const Problem p = parse_prompt(ex.prompt);
  const int64_t expected = p.op == '+' ? p.a + p.b : p.a * p.b;
  EXPECT_EQ(ex.answer, std::to_string(expected)) << ex.prompt;
  EXPECT_TRUE(opd::data::verify(ex.response, ex.answer, spec.marker)) << ex.response;
  EXPECT_TRUE(opd::data::verify(ex.response, ex.answer, "auto")) << ex.response;
  const std::string line =
      spec.marker == "boxed" ? "\\boxed{" + ex.answer + "}" : "Answer: " + ex.answer;
  ASSERT_GE(ex.response.size(), line.size());
  EXPECT_EQ(ex.response.substr(ex.response.size() - line.size()), line);
  EXPECT_NE(ex.response.back(), '\n');
  if (spec.scratchpad == "none") {
    EXPECT_EQ(ex.response, line);
    return;
  }
  ASSERT_GT(ex.response.size(), line.size() + 1);
  EXPECT_EQ(ex.response[ex.response.size() - line.size() - 1], '\n');
  const std::string pad = ex.response.substr(0, ex.response.size() - line.size() - 1);
  if (spec.scratchpad == "steps") check_steps(p, pad);
  if (spec.scratchpad == "columns") check_columns(p, pad);
}

ArithSpec spec_of(std::vector<char> ops, int lo, int hi, std::string pad, std::string marker,
                  int64_t count, uint64_t seed) {
  ArithSpec s;
  s.ops = std::move(ops);
  s.min_digits = lo;
  s.max_digits = hi;
  s.scratchpad = std::move(pad);
  s.marker = std::move(marker);
  s.count = count;
  s.seed = seed;
  return s;
}

}  // namespace

TEST(ArithTask, ExactFormats) {
  auto ex = make_arith_example(347, '+', 85, "steps", "answer");
  EXPECT_EQ(ex.prompt, "347+85=");
  EXPECT_EQ(ex.answer, "432");
  EXPECT_EQ(ex.response, "7+5+0=12,4+8+1=13,3+0+1=04\nAnswer: 432");
  EXPECT_EQ(make_arith_example(347, '+', 85, "columns", "answer").response,
            "7430+5800\nc=0110\ns=2340\nAnswer: 432");
  EXPECT_EQ(make_arith_example(347, '+', 85, "none", "answer").response, "Answer: 432");
  EXPECT_EQ(make_arith_example(347, '+', 85, "none", "boxed").response, "\\boxed{432}");
  EXPECT_EQ(make_arith_example(347, '+', 85, "steps", "boxed").response,
            "7+5+0=12,4+8+1=13,3+0+1=04\n\\boxed{432}");

  ex = make_arith_example(23, '*', 45, "steps", "answer");
  EXPECT_EQ(ex.prompt, "23*45=");
  EXPECT_EQ(ex.answer, "1035");
  EXPECT_EQ(ex.response, "23*5=115,23*4=92,115+920=1035\nAnswer: 1035");
  EXPECT_EQ(make_arith_example(23, '*', 45, "columns", "answer").response,
            "32*54\n5110+0290=5301\nAnswer: 1035");
}

TEST(ArithTask, EdgeCases) {
  EXPECT_EQ(make_arith_example(0, '+', 0, "steps", "answer").response, "0+0+0=00\nAnswer: 0");
  EXPECT_EQ(make_arith_example(999, '+', 1, "steps", "answer").response,
            "9+1+0=10,9+0+1=10,9+0+1=10\nAnswer: 1000");
  EXPECT_EQ(make_arith_example(999, '+', 1, "columns", "answer").response,
            "9990+1000\nc=0111\ns=0001\nAnswer: 1000");
  EXPECT_EQ(make_arith_example(5, '+', 123, "steps", "answer").response,
            "5+3+0=08,0+2+0=02,0+1+0=01\nAnswer: 128");
  EXPECT_EQ(make_arith_example(23, '*', 40, "steps", "answer").response,
            "23*0=0,23*4=92,0+920=920\nAnswer: 920");
  EXPECT_EQ(make_arith_example(7, '*', 8, "steps", "answer").response, "7*8=56\nAnswer: 56");
  EXPECT_EQ(make_arith_example(0, '*', 8, "columns", "answer").response, "0*8\n00=00\nAnswer: 0");
  EXPECT_EQ(make_arith_example(999, '*', 999, "steps", "answer").answer, "998001");
  try {
    make_arith_example(1, '+', 2, "steps", "last_line");
    ADD_FAILURE() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_EQ(e.where(), "arith.marker");
  }
}

TEST(ArithTask, EveryScratchpadParsesBackCorrectly) {
  for (const char* pad : {"none", "steps", "columns"})
    for (const char* marker : {"answer", "boxed"}) {
      const auto spec = spec_of({'+', '*'}, 1, 4, pad, marker, 400, 11);
      const auto exs = make_arith(spec);
      ASSERT_EQ(exs.size(), 400u);
      for (const auto& ex : exs) {
        SCOPED_TRACE(ex.prompt + " | " + ex.response);
        check_example(ex, spec);
      }
    }
}

TEST(ArithTask, StepsAdditionIsShort) {
  const auto exs = make_arith(spec_of({'+'}, 3, 3, "steps", "answer", 200, 3));
  // Three 8-character clauses, two commas, the newline, "Answer: " and 3 or 4 answer digits.
  for (const auto& ex : exs) {
    EXPECT_EQ(ex.response.size(), 35u + ex.answer.size()) << ex.response;
    EXPECT_LE(ex.response.size(), 39u);
  }
}

TEST(ArithTask, ReproducibleInSeed) {
  const auto spec = spec_of({'+', '*'}, 1, 3, "steps", "answer", 300, 42);
  const auto a = make_arith(spec), b = make_arith(spec);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt, b[i].prompt);
    EXPECT_EQ(a[i].response, b[i].response);
  }
  auto other = spec;
  other.seed = 43;
  const auto c = make_arith(other);
  int same = 0;
  for (std::size_t i = 0; i < a.size(); ++i) same += a[i].prompt == c[i].prompt;
  EXPECT_LT(same, 30);
  // A longer set extends a shorter one with the same seed.
  auto longer = spec;
  longer.count = 500;
  const auto d = make_arith(longer);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].prompt, d[i].prompt);
}

TEST(ArithTask, FormatsDifferOnTheSameProblems) {
  const auto steps = make_arith(spec_of({'+', '*'}, 1, 3, "steps", "answer", 100, 5));
  const auto columns = make_arith(spec_of({'+', '*'}, 1, 3, "columns", "answer", 100, 5));
  const auto none = make_arith(spec_of({'+', '*'}, 1, 3, "none", "boxed", 100, 5));
  for (std::size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].prompt, columns[i].prompt);
    EXPECT_EQ(steps[i].prompt, none[i].prompt);
    EXPECT_EQ(steps[i].answer, columns[i].answer);
    EXPECT_NE(steps[i].response, columns[i].response);
    EXPECT_EQ(none[i].response, "\\boxed{" + none[i].answer + "}");
  }
}

TEST(ArithTask, DigitRangesAndOpsRespected) {
  const auto exs = make_arith(spec_of({'*', '+'}, 2, 4, "none", "answer", 3000, 9));
  std::map<std::size_t, int> lengths;
  std::map<char, int> ops;
  for (const auto& ex : exs) {
    const Problem p = parse_prompt(ex.prompt);
    for (int64_t v : {p.a, p.b}) {
      const std::size_t len = std::to_string(v).size();
      EXPECT_GE(len, 2u);
      EXPECT_LE(len, 4u);
      ++lengths[len];
    }
    ++ops[p.op];
  }
  // Digit counts are uniform: about 2000 operands of each length.
  ASSERT_EQ(lengths.size(), 3u);
  for (const auto& [len, n] : lengths) EXPECT_NEAR(n, 2000, 200) << len;
  EXPECT_NEAR(ops['+'], 1500, 150);
  EXPECT_NEAR(ops['*'], 1500, 150);

  // One-digit operands include 0 and 9; the set of values is covered.
  std::set<int64_t> singles;
  for (const auto& ex : make_arith(spec_of({'+'}, 1, 1, "none", "answer", 500, 1))) {
    const Problem p = parse_prompt(ex.prompt);
    singles.insert(p.a);
    singles.insert(p.b);
  }
  EXPECT_EQ(singles.size(), 10u);
}

TEST(ArithTask, ValidationNamesFieldAndAllowedValues) {
  auto expect_error = [](ArithSpec s, const std::string& field, const std::string& allowed) {
    try {
      opd::data::validate(s);
      ADD_FAILURE() << "no error for " << field;
    } catch (const opd::Error& e) {
      EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
      EXPECT_EQ(e.where(), field);
      EXPECT_NE(e.hint().find(allowed), std::string::npos) << e.what();
    }
  };
  ArithSpec ok;
  ok.count = 10;
  EXPECT_NO_THROW(opd::data::validate(ok));
  auto s = ok;
  s.ops = {'-'};
  expect_error(s, "arith.ops", "'+', '*'");
  s = ok;
  s.ops = {};
  expect_error(s, "arith.ops", "'+', '*'");
  s = ok;
  s.min_digits = 0;
  expect_error(s, "arith.min_digits", "1..9");
  s = ok;
  s.min_digits = 3;
  s.max_digits = 2;
  expect_error(s, "arith.max_digits", "min_digits..9");
  s = ok;
  s.max_digits = 10;
  expect_error(s, "arith.max_digits", "min_digits..9");
  s = ok;
  s.scratchpad = "cols";
  expect_error(s, "arith.scratchpad", "none, steps, columns");
  s = ok;
  s.marker = "Answer";
  expect_error(s, "arith.marker", "answer, boxed");
  s = ok;
  s.count = 0;
  expect_error(s, "arith.count", "at least 1");
  EXPECT_THROW(make_arith(s), opd::Error);
}

TEST(ArithTask, WriteJsonlRoundTrips) {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "opd_arith_XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const fs::path dir = tmpl;
  const std::string path = (dir / "train.jsonl").string();
  const auto exs = make_arith(spec_of({'+'}, 1, 3, "columns", "boxed", 50, 2));
  opd::data::write_jsonl(exs, path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const auto back = opd::data::load_jsonl(path);
  ASSERT_EQ(back.size(), exs.size());
  for (std::size_t i = 0; i < exs.size(); ++i) {
    EXPECT_EQ(back[i].prompt, exs[i].prompt);
    EXPECT_EQ(back[i].response, exs[i].response);
    EXPECT_EQ(back[i].answer, exs[i].answer);
  }
  EXPECT_THROW(opd::data::write_jsonl(exs, (dir / "missing" / "x.jsonl").string()), opd::Error);
  fs::remove_all(dir);
}
