// Synthetic arithmetic task: integer '+' and '*' problems with a scratchpad in one of several
// formats and a final-answer marker, generated deterministically from a seed, and written as JSONL.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace opd::data {

// What to generate. Each operand independently gets a digit count uniform in
// [min_digits, max_digits] and then a value uniform among the numbers with that many digits
// (1 digit: 0..9), so short and long operands are equally common whatever the range.
struct ArithSpec {
  std::vector<char> ops{'+'};          // '+' and/or '*', one drawn uniformly per example
  int min_digits = 1, max_digits = 3;  // 1 <= min <= max <= 9 (products then fit in int64)
  std::string scratchpad = "steps";    // "none" | "steps" | "columns"
  std::string marker = "answer";       // "answer" -> "Answer: 432" | "boxed" -> "\boxed{432}"
  int64_t count = 0;                   // number of examples, >= 1
  uint64_t seed = 0;
};

struct ArithExample {
  std::string prompt;    // "347+85="
  std::string response;  // scratchpad, then the marker line; no trailing newline, no EOS
  std::string answer;    // "432"
};

// Names accepted by the spec fields (for validation messages and the command line's help).
const std::vector<std::string>& arith_scratchpads();
const std::vector<std::string>& arith_markers();

// Input errors naming the field ("arith.max_digits") and its allowed values.
void validate(const ArithSpec& spec);

// The example for one problem a op b (a, b >= 0, at most 9 digits) in the given formats (unknown
// ones are Input errors, as in validate). Formats, for 347+85:
//   none:     Answer: 432
//   steps:    7+5+0=12,4+8+1=13,3+0+1=04\nAnswer: 432
//             one clause per column from the least significant digit: the two digits (0 when an
//             operand is shorter) and the carry in, then the two-digit column sum, whose first
//             digit is the next carry. Every clause has the same 8 characters, so each digit the
//             model copies sits at a fixed distance from where it is written.
//   columns:  7430+5800\nc=0110\ns=2340\nAnswer: 432
//             both operands reversed and zero-padded to (longest + 1) digits, the carry into each
//             column, the digit of each column; the answer is the last row read backwards.
// and for 23*45:
//   steps:    23*5=115,23*4=92,115+920=1035\nAnswer: 1035
//             the product with each digit of the second operand (least significant first), then
//             a running sum of the partial products shifted to their place.
//   columns:  32*54\n5110+0290=5301\nAnswer: 1035
//             reversed operands, each shifted partial product reversed and zero-padded to
//             (len a + len b) digits, then their reversed sum.
ArithExample make_arith_example(int64_t a, char op, int64_t b, const std::string& scratchpad,
                                const std::string& marker);

// spec.count examples, deterministic in spec.seed (and independent of the platform).
std::vector<ArithExample> make_arith(const ArithSpec& spec);

// One JSON object per line with "prompt", "response" and "answer". Written to path + ".tmp" and
// renamed, so a reader never sees a half-written file.
void write_jsonl(const std::vector<ArithExample>& examples, const std::string& path);

}  // namespace opd::data
