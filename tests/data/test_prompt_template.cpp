// Prompt templates: {prompt} is replaced once; a template without exactly one slot is refused.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "data/prompt_template.hpp"

using namespace opd::data;

TEST(PromptTemplate, AppliesAndValidates) {
  EXPECT_EQ(apply_template("Q: {prompt}\nA: ", "1+2="), "Q: 1+2=\nA: ");
  EXPECT_EQ(apply_template(kPlainTemplate, "7*8="), "7*8=");
  EXPECT_NO_THROW(validate_template("<{prompt}>", "t"));
  EXPECT_THROW(validate_template("no slot", "t"), opd::Error);
  EXPECT_THROW(validate_template("{prompt}{prompt}", "t"), opd::Error);
  try {
    validate_template("x", "stage[2].template");
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.exit_status(), 2);
    EXPECT_NE(std::string(e.what()).find("stage[2].template"), std::string::npos);
  }
}
