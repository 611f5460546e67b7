// Rollout batches: every scored row predicts its target in the student's layout, and still does
// after the responses are moved behind the teacher's template.
#include <gtest/gtest.h>

#include "data/char_tokenizer.hpp"
#include "distill/rollout.hpp"

using namespace opd;

TEST(Relayout, RowsPredictTheirTargetsInBothLayouts) {
  data::CharTokenizer tok;
  std::vector<data::Example> ex = {{"12+3=", "2+3+0=05,1+0+0=01\nAnswer: 15", "15"},
                                   {"9+9=", "9+9+0=18\nAnswer: 18", "18"},
                                   {"1+1=", "1+1+0=02\nAnswer: 2", "2"}};
  distill::RolloutBatch rb = distill::make_fixed_batch(tok, ex, {0, 2, 1}, 64, "answer");
  ASSERT_EQ(rb.batch(), 3);
  const int64_t T = rb.seq_len();
  const int32_t* ids = rb.ids.data<int32_t>();
  for (std::size_t i = 0; i < rb.rows.size(); ++i) EXPECT_EQ(ids[rb.rows[i] + 1], rb.targets[i]);
  EXPECT_EQ(rb.correct, (std::vector<uint8_t>{1, 1, 1}));

  std::vector<std::string> teacher_prompts = {"Question: 12+3=\nWork: ", "Question: 1+1=\nWork: ",
                                              "Question: 9+9=\nWork: "};
  distill::Relayout r = distill::relayout(rb, tok, teacher_prompts);
  ASSERT_EQ(r.rows.size(), rb.rows.size());
  const int64_t T2 = r.ids.dim(1);
  EXPECT_GT(T2, T);
  const int32_t* ids2 = r.ids.data<int32_t>();
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    EXPECT_EQ(ids2[r.rows[i] + 1], rb.targets[i]) << i;
    EXPECT_EQ(r.rows[i] / T2, rb.rows[i] / T);  // same sequence
  }
  // The teacher's prompt sits in front of the same response.
  EXPECT_EQ(tok.decode(std::vector<int32_t>(ids2, ids2 + T2)),
            "Question: 12+3=\nWork: 2+3+0=05,1+0+0=01\nAnswer: 15");
}
