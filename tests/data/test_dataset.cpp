// Dataset loaders (strict JSONL with line numbers, text files) and sequence building with masks.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "data/char_tokenizer.hpp"
#include "data/dataset.hpp"
#include "data/sequence.hpp"

namespace fs = std::filesystem;
using opd::data::load_jsonl;

namespace {

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "opd_dataset_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& content) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }
  // The Input error load_jsonl raises for this content.
  opd::Error load_error(const std::string& content) {
    const std::string path = write("bad.jsonl", content);
    try {
      load_jsonl(path);
    } catch (const opd::Error& e) {
      return e;
    }
    ADD_FAILURE() << "no error for: " << content;
    return opd::Error(opd::ErrorKind::Internal, "none");
  }
  fs::path dir_;
};

using Dataset = TempDir;

}  // namespace

TEST_F(Dataset, LoadsJsonl) {
  const std::string path =
      write("ok.jsonl",
            "{\"prompt\": \"1+1=\", \"response\": \"Answer: 2\", \"answer\": \"2\"}\n"
            "\n"
            "{\"prompt\": \"2+2=\", \"answer\": 4, \"source\": \"hand\"}\r\n"
            "{\"prompt\": \"only\", \"answer\": null}");
  const auto exs = load_jsonl(path);
  ASSERT_EQ(exs.size(), 3u);
  EXPECT_EQ(exs[0].prompt, "1+1=");
  EXPECT_EQ(exs[0].response, "Answer: 2");
  EXPECT_EQ(exs[0].answer, "2");
  EXPECT_EQ(exs[1].prompt, "2+2=");
  EXPECT_EQ(exs[1].response, "");
  EXPECT_EQ(exs[1].answer, "4");
  EXPECT_EQ(exs[2].prompt, "only");
  EXPECT_EQ(exs[2].answer, "");
}

TEST_F(Dataset, ErrorsCarryPathAndLine) {
  const std::string path = (dir_ / "bad.jsonl").string();
  const std::string good = "{\"prompt\": \"a\"}\n";
  struct Case {
    std::string content, where, needle;
  };
  const std::vector<Case> cases = {
      {good + good + "{\"prompt\": \"a\"\n", path + ":3", "malformed JSON"},
      {good + "\n\n{\"answer\": \"1\"}\n", path + ":4", "missing field \"prompt\""},
      {"{\"prompt\": 5}\n", path + ":1", "\"prompt\" must be a string, not number"},
      {good + "{\"prompt\": \"a\", \"response\": [1]}\n", path + ":2",
       "\"response\" must be a string, not array"},
      {"{\"prompt\": \"a\", \"answer\": 1.5}\n", path + ":1",
       "\"answer\" must be a string or an integer, not number"},
      {"[\"prompt\"]\n", path + ":1", "expected a JSON object, found array"},
      {"\n  \n", path, "no examples"},
  };
  for (const auto& c : cases) {
    const opd::Error e = load_error(c.content);
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input) << c.content;
    EXPECT_EQ(e.where(), c.where) << c.content;
    EXPECT_NE(e.message().find(c.needle), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty());
    EXPECT_NE(std::string(e.what()).find(c.where + ": "), std::string::npos) << e.what();
  }
}

TEST_F(Dataset, MissingFiles) {
  const std::string missing = (dir_ / "nope.jsonl").string();
  try {
    load_jsonl(missing);
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_EQ(e.where(), missing);
  }
  EXPECT_THROW(opd::data::load_text(missing), opd::Error);
}

TEST_F(Dataset, LoadsText) {
  const std::string text = std::string("line one\nline two\n\0tail", 23);
  EXPECT_EQ(opd::data::load_text(write("t.txt", text)), text);
  EXPECT_EQ(opd::data::load_text(write("empty.txt", "")), "");
}

TEST(Sequence, ResponseOnlyMask) {
  opd::data::CharTokenizer tok;
  const auto s = opd::data::build_sequence(tok, "1+2=", "Answer: 3", true);
  // <bos> 1 + 2 = A n s w e r : ' ' 3 <eos>
  ASSERT_EQ(s.tokens.size(), 1u + 4u + 9u + 1u);
  EXPECT_EQ(s.prompt_len, 5);
  EXPECT_EQ(s.tokens.front(), 1);
  EXPECT_EQ(s.tokens.back(), 2);
  EXPECT_EQ(s.tokens[1], 22);  // '1'
  EXPECT_EQ(s.tokens[5], 38);  // 'A'
  const std::vector<uint8_t> mask = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(s.loss_mask, mask);
  EXPECT_EQ(tok.decode(s.tokens), "1+2=Answer: 3");
}

TEST(Sequence, FullTextMask) {
  opd::data::CharTokenizer tok;
  const auto s = opd::data::build_sequence(tok, "ab", "c", false);
  EXPECT_EQ(s.tokens, (std::vector<int32_t>{1, 70, 71, 72, 2}));
  EXPECT_EQ(s.loss_mask, (std::vector<uint8_t>{0, 1, 1, 1, 1}));
  EXPECT_EQ(s.prompt_len, 3);
  // An empty response still teaches the model to stop.
  const auto e = opd::data::build_sequence(tok, "ab", "", true);
  EXPECT_EQ(e.tokens, (std::vector<int32_t>{1, 70, 71, 2}));
  EXPECT_EQ(e.loss_mask, (std::vector<uint8_t>{0, 0, 0, 1}));
}

TEST(Sequence, PromptOnly) {
  opd::data::CharTokenizer tok;
  const auto p = opd::data::build_prompt(tok, "9*9=");
  EXPECT_EQ(p.tokens, (std::vector<int32_t>{1, 30, 15, 30, 34}));
  EXPECT_EQ(p.loss_mask, (std::vector<uint8_t>(5, 0)));
  EXPECT_EQ(p.prompt_len, 5);
}

TEST(DatasetLoader, NumberOutOfRangeIsAnInputErrorWithItsLine) {
  // Found by fuzzing (tests/fuzz/fuzz_jsonl): nlohmann reports an overflowing number as
  // out_of_range, not parse_error, and it escaped the loader.
  const auto path = std::filesystem::temp_directory_path() / "opd_overflow.jsonl";
  std::ofstream(path) << "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"answer\": 777E7777}\n";
  try {
    opd::data::load_jsonl(path.string());
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_NE(std::string(e.what()).find(":2"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}
