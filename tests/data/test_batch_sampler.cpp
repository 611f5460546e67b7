// BatchSampler and TextWindowSampler: batch contents on hand-built sequences, determinism,
// resume from a cursor, epoch coverage, overlong policies, text windows.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/error.hpp"
#include "data/batch_sampler.hpp"
#include "data/text_window_sampler.hpp"

using opd::data::BatchSampler;
using opd::data::Overlong;
using opd::data::TextWindowSampler;
using opd::data::TokenBatch;
using opd::data::TokenSequence;

namespace {

// Sequence i: tokens (1, 10i+1, ..., 10i+len-1) with the mask on all but the first two tokens;
// prompt_len 2.
TokenSequence seq(int32_t i, int32_t len) {
  TokenSequence s;
  s.tokens.push_back(1);
  for (int32_t t = 1; t < len; ++t) s.tokens.push_back(10 * i + t);
  s.loss_mask.assign(static_cast<std::size_t>(len), 1);
  s.loss_mask[0] = s.loss_mask[1] = 0;
  s.prompt_len = 2;
  return s;
}

std::vector<TokenSequence> many(int n, int len) {
  std::vector<TokenSequence> v;
  for (int i = 0; i < n; ++i) v.push_back(seq(i, len + i % 3));
  return v;
}

void expect_same(const TokenBatch& a, const TokenBatch& b) {
  EXPECT_EQ(a.inputs, b.inputs);
  EXPECT_EQ(a.targets, b.targets);
  EXPECT_EQ(a.sources, b.sources);
}

}  // namespace

TEST(BatchSampler, HandBuiltBatch) {
  // Sequences: 0 -> [1, 1, 2, 3] mask [0,0,1,1]; 1 -> [1, 11, 12] mask [0,0,1].
  std::vector<TokenSequence> v = {seq(0, 4), seq(1, 3)};
  BatchSampler s(v, 2, 5, 7, /*pad_id=*/0);
  const TokenBatch b = s.next();
  EXPECT_EQ(b.batch, 2);
  EXPECT_EQ(b.seq_len, 5);
  ASSERT_EQ(b.inputs.size(), 10u);
  ASSERT_EQ(b.sources.size(), 2u);
  for (int64_t r = 0; r < 2; ++r) {
    const int64_t src = b.sources[r];
    if (src == 0) {
      EXPECT_EQ(std::vector<int32_t>(b.inputs.begin() + r * 5, b.inputs.begin() + r * 5 + 5),
                (std::vector<int32_t>{1, 1, 2, 0, 0}));
      EXPECT_EQ(std::vector<int32_t>(b.targets.begin() + r * 5, b.targets.begin() + r * 5 + 5),
                (std::vector<int32_t>{-1, 2, 3, -1, -1}));
    } else {
      EXPECT_EQ(src, 1);
      EXPECT_EQ(std::vector<int32_t>(b.inputs.begin() + r * 5, b.inputs.begin() + r * 5 + 5),
                (std::vector<int32_t>{1, 11, 0, 0, 0}));
      EXPECT_EQ(std::vector<int32_t>(b.targets.begin() + r * 5, b.targets.begin() + r * 5 + 5),
                (std::vector<int32_t>{-1, 12, -1, -1, -1}));
    }
  }
  EXPECT_NE(b.sources[0], b.sources[1]);
  EXPECT_EQ(b.num_targets(), 3);
  EXPECT_EQ(b.input(0, 0), 1);
  EXPECT_EQ(s.cursor(), 2u);
}

TEST(BatchSampler, PadIdIsUsed) {
  BatchSampler s({seq(0, 2)}, 1, 4, 1, /*pad_id=*/99);
  const TokenBatch b = s.next();
  EXPECT_EQ(b.inputs, (std::vector<int32_t>{1, 99, 99, 99}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{-1, -1, -1, -1}));
}

TEST(BatchSampler, DeterministicInSeed) {
  BatchSampler a(many(10, 4), 3, 8, 123, 0), b(many(10, 4), 3, 8, 123, 0),
      c(many(10, 4), 3, 8, 124, 0);
  bool differs = false;
  for (int i = 0; i < 10; ++i) {
    const TokenBatch x = a.next(), y = b.next(), z = c.next();
    expect_same(x, y);
    differs |= x.sources != z.sources;
  }
  EXPECT_TRUE(differs);
}

TEST(BatchSampler, EpochsCoverEverySequenceOnce) {
  const int n = 12;
  BatchSampler s(many(n, 4), 4, 8, 5, 0);
  std::vector<std::vector<int64_t>> epochs;
  std::vector<int64_t> cur;
  for (int i = 0; i < 9; ++i) {  // 36 sequences = 3 epochs
    for (int64_t src : s.next().sources) {
      cur.push_back(src);
      if (cur.size() == n) {
        epochs.push_back(cur);
        cur.clear();
      }
    }
  }
  ASSERT_EQ(epochs.size(), 3u);
  for (std::size_t e = 0; e < epochs.size(); ++e) {
    EXPECT_EQ(epochs[e], s.epoch_order(e));
    auto sorted = epochs[e];
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < n; ++i) EXPECT_EQ(sorted[i], i);
  }
  EXPECT_NE(epochs[0], epochs[1]);  // reshuffled each epoch
  EXPECT_EQ(s.epoch(), 3u);
}

TEST(BatchSampler, EpochBoundaryInsideABatch) {
  // 5 sequences, batches of 3: the second batch holds 2 of epoch 0 and 1 of epoch 1.
  BatchSampler s(many(5, 4), 3, 8, 9, 0);
  s.next();
  const TokenBatch b = s.next();
  const auto e0 = s.epoch_order(0), e1 = s.epoch_order(1);
  EXPECT_EQ(b.sources, (std::vector<int64_t>{e0[3], e0[4], e1[0]}));
}

TEST(BatchSampler, SetCursorResumesIdentically) {
  BatchSampler a(many(7, 4), 3, 8, 77, 0);
  for (int i = 0; i < 5; ++i) a.next();
  const uint64_t saved = a.cursor();
  EXPECT_EQ(saved, 15u);
  std::vector<TokenBatch> expected;
  for (int i = 0; i < 6; ++i) expected.push_back(a.next());

  BatchSampler b(many(7, 4), 3, 8, 77, 0);  // a fresh sampler, as after a restart
  b.set_cursor(saved);
  for (const auto& e : expected) expect_same(b.next(), e);

  // Rewinding the same sampler also works (its cached epoch order is only a cache).
  a.set_cursor(saved);
  expect_same(a.next(), expected[0]);
  // A cursor not aligned with batches works too.
  BatchSampler c(many(7, 4), 3, 8, 77, 0);
  c.set_cursor(saved + 1);
  EXPECT_EQ(c.next().sources[0], expected[0].sources[1]);
}

TEST(BatchSampler, OverlongRejectedOrTruncated) {
  std::vector<TokenSequence> v = {seq(0, 4), seq(1, 7), seq(2, 5)};
  try {
    BatchSampler(v, 1, 4, 0, 0, Overlong::Reject);
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_EQ(e.where(), "example 1");
    EXPECT_NE(e.message().find("has 7 tokens"), std::string::npos) << e.what();
    EXPECT_NE(e.message().find("seq_len + 1 = 5"), std::string::npos) << e.what();
  }
  BatchSampler t(v, 3, 4, 0, 0, Overlong::Truncate);
  EXPECT_EQ(t.num_truncated(), 1);
  const TokenBatch b = t.next();
  for (int64_t r = 0; r < 3; ++r) {
    if (b.sources[r] != 1) continue;
    EXPECT_EQ(std::vector<int32_t>(b.inputs.begin() + r * 4, b.inputs.begin() + r * 4 + 4),
              (std::vector<int32_t>{1, 11, 12, 13}));
    EXPECT_EQ(std::vector<int32_t>(b.targets.begin() + r * 4, b.targets.begin() + r * 4 + 4),
              (std::vector<int32_t>{-1, 12, 13, 14}));
  }
  // Exactly seq_len + 1 tokens fit without truncation.
  BatchSampler fits({seq(0, 5)}, 1, 4, 0, 0);
  EXPECT_EQ(fits.next().targets, (std::vector<int32_t>{-1, 2, 3, 4}));
}

TEST(BatchSampler, BadArguments) {
  EXPECT_THROW(BatchSampler({}, 1, 4, 0, 0), opd::Error);
  EXPECT_THROW(BatchSampler({seq(0, 3)}, 0, 4, 0, 0), opd::Error);
  EXPECT_THROW(BatchSampler({seq(0, 3)}, 1, 0, 0, 0), opd::Error);
}

TEST(TextWindowSampler, WindowsAreConsecutiveTokens) {
  std::vector<int32_t> text(100);
  for (int i = 0; i < 100; ++i) text[i] = 1000 + i;
  TextWindowSampler s(text, 4, 10, 3);
  std::map<int64_t, int> starts;
  for (int k = 0; k < 200; ++k) {
    const TokenBatch b = s.next();
    ASSERT_EQ(b.inputs.size(), 40u);
    for (int64_t r = 0; r < 4; ++r) {
      const int64_t st = b.sources[r];
      ASSERT_GE(st, 0);
      ASSERT_LE(st, 89);  // the last window, 89..99, ends at the last token
      ++starts[st];
      for (int64_t t = 0; t < 10; ++t) {
        EXPECT_EQ(b.input(r, t), 1000 + st + t);
        EXPECT_EQ(b.target(r, t), 1000 + st + t + 1);
      }
    }
  }
  EXPECT_EQ(starts.size(), 90u);  // 800 draws reach every one of the 90 starts
  EXPECT_EQ(s.cursor(), 800u);
}

TEST(TextWindowSampler, DeterministicAndResumable) {
  std::vector<int32_t> text(500);
  for (int i = 0; i < 500; ++i) text[i] = i % 97;
  TextWindowSampler a(text, 3, 16, 11), b(text, 3, 16, 11), c(text, 3, 16, 12);
  for (int i = 0; i < 4; ++i) expect_same(a.next(), b.next());
  EXPECT_NE(a.next().sources, c.next().sources);
  const uint64_t saved = a.cursor();
  const TokenBatch want = a.next();
  TextWindowSampler d(text, 3, 16, 11);
  d.set_cursor(saved);
  expect_same(d.next(), want);
  EXPECT_EQ(want.sources[0], d.window_start(saved));
}

TEST(TextWindowSampler, TooShortText) {
  try {
    TextWindowSampler(std::vector<int32_t>(10, 5), 1, 10, 0);
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_NE(e.message().find("10 tokens"), std::string::npos);
  }
  EXPECT_NO_THROW(TextWindowSampler(std::vector<int32_t>(11, 5), 1, 10, 0));
}
