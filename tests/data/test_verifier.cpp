// Answer extraction and verification: markers, last occurrence, braces, normalisation, auto.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "data/verifier.hpp"

using opd::data::extract_answer;
using opd::data::normalize_answer;
using opd::data::verify;

namespace {
std::string or_none(const std::optional<std::string>& s) { return s ? *s : "<none>"; }
}  // namespace

TEST(Verifier, AnswerMarker) {
  EXPECT_EQ(or_none(extract_answer("7+5+0=12\nAnswer: 432", "answer")), "432");
  EXPECT_EQ(or_none(extract_answer("Answer: 12\nAnswer: 13", "answer")), "13");  // last wins
  EXPECT_EQ(or_none(extract_answer("Answer:432", "answer")), "432");
  EXPECT_EQ(or_none(extract_answer("Answer:   0432  \nmore text", "answer")), "432");
  EXPECT_EQ(or_none(extract_answer("Answer: +17.", "answer")), "17");
  EXPECT_EQ(or_none(extract_answer("Answer: -007", "answer")), "-7");
  EXPECT_EQ(or_none(extract_answer("Answer: 1,035", "answer")), "1035");
  EXPECT_EQ(or_none(extract_answer("Answer: 4 3 2", "answer")), "4 3 2");  // not an integer
  EXPECT_EQ(or_none(extract_answer("Answer: x=5", "answer")), "x=5");
  EXPECT_EQ(or_none(extract_answer("Answer:", "answer")), "<none>");
  EXPECT_EQ(or_none(extract_answer("Answer:   \n5", "answer")), "<none>");
  EXPECT_EQ(or_none(extract_answer("answer: 5", "answer")), "<none>");  // case matters
  EXPECT_EQ(or_none(extract_answer("no marker 432", "answer")), "<none>");
  EXPECT_EQ(or_none(extract_answer("", "answer")), "<none>");
}

TEST(Verifier, BoxedMarker) {
  EXPECT_EQ(or_none(extract_answer("so \\boxed{432}", "boxed")), "432");
  EXPECT_EQ(or_none(extract_answer("\\boxed{1} then \\boxed{ 2 }.", "boxed")), "2");
  EXPECT_EQ(or_none(extract_answer("\\boxed{\\frac{1}{2}}", "boxed")), "\\frac{1}{2}");
  EXPECT_EQ(or_none(extract_answer("\\boxed{007}", "boxed")), "7");
  // The last box is unterminated (a truncated generation): no answer, not the earlier box.
  EXPECT_EQ(or_none(extract_answer("\\boxed{1} \\boxed{43", "boxed")), "<none>");
  EXPECT_EQ(or_none(extract_answer("\\boxed{{1}", "boxed")), "<none>");
  EXPECT_EQ(or_none(extract_answer("\\boxed{}", "boxed")), "<none>");
  EXPECT_EQ(or_none(extract_answer("Answer: 5", "boxed")), "<none>");
}

TEST(Verifier, AutoTakesWhicheverComesLast) {
  EXPECT_EQ(or_none(extract_answer("Answer: 5", "auto")), "5");
  EXPECT_EQ(or_none(extract_answer("\\boxed{6}", "auto")), "6");
  EXPECT_EQ(or_none(extract_answer("Answer: 5\n\\boxed{6}", "auto")), "6");
  EXPECT_EQ(or_none(extract_answer("\\boxed{6}\nAnswer: 5", "auto")), "5");
  EXPECT_EQ(or_none(extract_answer("Answer: \\boxed{7}", "auto")), "7");
  EXPECT_EQ(or_none(extract_answer("nothing", "auto")), "<none>");
}

TEST(Verifier, Normalisation) {
  EXPECT_EQ(normalize_answer(" 42 "), "42");
  EXPECT_EQ(normalize_answer("+42"), "42");
  EXPECT_EQ(normalize_answer("00042"), "42");
  EXPECT_EQ(normalize_answer("000"), "0");
  EXPECT_EQ(normalize_answer("-0"), "0");
  EXPECT_EQ(normalize_answer("- 5"), "-5");
  EXPECT_EQ(normalize_answer("12,345,678"), "12345678");
  EXPECT_EQ(normalize_answer("12,34"), "12,34");  // not thousands groups: left alone
  EXPECT_EQ(normalize_answer("1234,567"), "1234,567");
  EXPECT_EQ(normalize_answer("3.50"), "3.50");  // not an integer: left alone
  EXPECT_EQ(normalize_answer("+"), "+");
  EXPECT_EQ(normalize_answer(""), "");
}

TEST(Verifier, Verify) {
  EXPECT_TRUE(verify("4+8+1=13\nAnswer: 432", "432", "answer"));
  EXPECT_TRUE(verify("Answer: 0432", " 432", "answer"));
  EXPECT_FALSE(verify("Answer: 433", "432", "answer"));
  EXPECT_FALSE(verify("Answer: 4320", "432", "answer"));
  EXPECT_FALSE(verify("432", "432", "answer"));
  EXPECT_TRUE(verify("\\boxed{432}", "432", "boxed"));
  EXPECT_FALSE(verify("\\boxed{432}", "432", "answer"));
  EXPECT_TRUE(verify("\\boxed{432}", "432", "auto"));
  EXPECT_TRUE(verify("Answer: -5", "-05", "auto"));
  EXPECT_FALSE(verify("Answer: ", "", "answer"));  // an empty answer never verifies
}

TEST(Verifier, UnknownMarkerIsInputError) {
  try {
    extract_answer("Answer: 1", "last_line");
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_NE(e.hint().find("answer, boxed, auto"), std::string::npos);
  }
}
