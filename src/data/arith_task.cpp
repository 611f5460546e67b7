// Arithmetic task: validation, the scratchpad formats, seeded generation and JSONL output.
#include "data/arith_task.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "data/seeded_random.hpp"

namespace opd::data {

namespace {

constexpr int kMaxDigits = 9;

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& it : items) s += (s.empty() ? "" : ", ") + it;
  return s;
}

bool contains(const std::vector<std::string>& items, const std::string& x) {
  return std::find(items.begin(), items.end(), x) != items.end();
}

// Digit d (0 = least significant) of a decimal string, 0 past its length.
int digit_at(const std::string& s, std::size_t d) {
  return d < s.size() ? s[s.size() - 1 - d] - '0' : 0;
}

std::string reversed_padded(const std::string& s, std::size_t width) {
  std::string r(s.rbegin(), s.rend());
  r.resize(std::max(width, r.size()), '0');
  return r;
}

std::string marker_line(const std::string& answer, const std::string& marker) {
  if (marker == "boxed") return "\\boxed{" + answer + "}";
  return "Answer: " + answer;
}

std::string add_steps(const std::string& a, const std::string& b) {
  const std::size_t n = std::max(a.size(), b.size());
  std::string out;
  int carry = 0;
  for (std::size_t d = 0; d < n; ++d) {
    const int x = digit_at(a, d), y = digit_at(b, d), s = x + y + carry;
    if (d > 0) out += ',';
    out += detail::concat(x, '+', y, '+', carry, '=', s / 10, s % 10);
    carry = s / 10;
  }
  return out;
}

std::string add_columns(const std::string& a, const std::string& b) {
  // One extra column holds the final carry, so the sum row is as wide as the operand rows.
  const std::size_t w = std::max(a.size(), b.size()) + 1;
  std::string carries, sums;
  int carry = 0;
  for (std::size_t d = 0; d < w; ++d) {
    const int s = digit_at(a, d) + digit_at(b, d) + carry;
    carries += static_cast<char>('0' + carry);
    sums += static_cast<char>('0' + s % 10);
    carry = s / 10;
  }
  return reversed_padded(a, w) + "+" + reversed_padded(b, w) + "\nc=" + carries + "\ns=" + sums;
}

std::string mul_steps(int64_t a, const std::string& b) {
  std::string out;
  std::vector<int64_t> shifted;  // partial products at their place value
  int64_t place = 1;
  for (std::size_t d = 0; d < b.size(); ++d, place *= 10) {
    const int y = digit_at(b, d);
    if (d > 0) out += ',';
    out += detail::concat(a, '*', y, '=', a * y);
    shifted.push_back(a * y * place);
  }
  int64_t sum = shifted[0];
  for (std::size_t d = 1; d < shifted.size(); ++d) {
    out += detail::concat(',', sum, '+', shifted[d], '=', sum + shifted[d]);
    sum += shifted[d];
  }
  return out;
}

std::string mul_columns(const std::string& a, int64_t av, const std::string& b) {
  const std::size_t w = a.size() + b.size();  // a product never has more digits than this
  std::string out = reversed_padded(a, 0) + "*" + reversed_padded(b, 0) + "\n";
  int64_t place = 1, sum = 0;
  for (std::size_t d = 0; d < b.size(); ++d, place *= 10) {
    const int64_t p = av * digit_at(b, d) * place;
    if (d > 0) out += '+';
    out += reversed_padded(std::to_string(p), w);
    sum += p;
  }
  return out + "=" + reversed_padded(std::to_string(sum), w);
}

// Operand with a digit count uniform in [lo, hi], then a value uniform among such numbers.
int64_t draw_operand(std::mt19937_64& gen, int lo, int hi) {
  const int digits = static_cast<int>(uniform_between(gen, lo, hi));
  if (digits == 1) return uniform_between(gen, 0, 9);
  int64_t low = 1;
  for (int i = 1; i < digits; ++i) low *= 10;
  return uniform_between(gen, low, low * 10 - 1);
}

void check_formats(const std::string& scratchpad, const std::string& marker) {
  if (!contains(arith_scratchpads(), scratchpad))
    input_error("arith.scratchpad", "unknown scratchpad format '" + scratchpad + "'",
                "allowed: " + join(arith_scratchpads()));
  if (!contains(arith_markers(), marker))
    input_error("arith.marker", "unknown answer marker '" + marker + "'",
                "allowed: " + join(arith_markers()));
}

}  // namespace

const std::vector<std::string>& arith_scratchpads() {
  static const std::vector<std::string> v{"none", "steps", "columns"};
  return v;
}

const std::vector<std::string>& arith_markers() {
  static const std::vector<std::string> v{"answer", "boxed"};
  return v;
}

void validate(const ArithSpec& spec) {
  if (spec.ops.empty()) input_error("arith.ops", "no operation given", "allowed: '+', '*'");
  for (char op : spec.ops)
    if (op != '+' && op != '*')
      input_error("arith.ops", detail::concat("unknown operation '", op, "'"), "allowed: '+', '*'");
  if (spec.min_digits < 1 || spec.min_digits > kMaxDigits)
    input_error("arith.min_digits", detail::concat("is ", spec.min_digits),
                detail::concat("allowed: 1..", kMaxDigits));
  if (spec.max_digits < spec.min_digits || spec.max_digits > kMaxDigits)
    input_error("arith.max_digits",
                detail::concat("is ", spec.max_digits, " with min_digits ", spec.min_digits),
                detail::concat("allowed: min_digits..", kMaxDigits));
  check_formats(spec.scratchpad, spec.marker);
  if (spec.count < 1)
    input_error("arith.count", detail::concat("is ", spec.count), "ask for at least 1 example");
}

ArithExample make_arith_example(int64_t a, char op, int64_t b, const std::string& scratchpad,
                                const std::string& marker) {
  check_formats(scratchpad, marker);
  OPD_CHECK(a >= 0 && b >= 0, "operands must be non-negative: ", a, ", ", b);
  OPD_CHECK(op == '+' || op == '*', "unknown operation ", op);
  const std::string as = std::to_string(a), bs = std::to_string(b);
  OPD_CHECK(as.size() <= kMaxDigits && bs.size() <= kMaxDigits, "operands too long");
  ArithExample ex;
  ex.prompt = as + op + bs + "=";
  ex.answer = std::to_string(op == '+' ? a + b : a * b);
  std::string pad;
  if (scratchpad == "steps") {
    pad = op == '+' ? add_steps(as, bs) : mul_steps(a, bs);
  } else if (scratchpad == "columns") {
    pad = op == '+' ? add_columns(as, bs) : mul_columns(as, a, bs);
  }
  ex.response = (pad.empty() ? "" : pad + "\n") + marker_line(ex.answer, marker);
  return ex;
}

std::vector<ArithExample> make_arith(const ArithSpec& spec) {
  validate(spec);
  // One explicitly seeded std::mt19937_64 for the whole set: example i depends only on the seed
  // and the examples before it, so a larger count extends a smaller one with the same prefix.
  std::mt19937_64 gen(derive_seed(spec.seed, Stream::ArithTask, 0));
  std::vector<ArithExample> out;
  out.reserve(static_cast<std::size_t>(spec.count));
  for (int64_t i = 0; i < spec.count; ++i) {
    const char op = spec.ops[uniform_below(gen, spec.ops.size())];
    const int64_t a = draw_operand(gen, spec.min_digits, spec.max_digits);
    const int64_t b = draw_operand(gen, spec.min_digits, spec.max_digits);
    out.push_back(make_arith_example(a, op, b, spec.scratchpad, spec.marker));
  }
  return out;
}

void write_jsonl(const std::vector<ArithExample>& examples, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f)
      input_error(path, "cannot open for writing", "check that its folder exists and is writable");
    for (const auto& ex : examples) {
      nlohmann::json j;
      j["prompt"] = ex.prompt;
      j["response"] = ex.response;
      j["answer"] = ex.answer;
      f << j.dump() << '\n';
    }
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      input_error(path, "write failed", "check free disk space");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    input_error(path, "cannot rename " + tmp + " to it: " + ec.message());
  }
}

}  // namespace opd::data
