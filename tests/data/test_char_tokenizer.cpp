// CharTokenizer and make_tokenizer: fixed ids, round trips, <unk> handling, decode rules, errors.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "data/char_tokenizer.hpp"
#include "data/tokenizer.hpp"

using opd::data::CharTokenizer;

TEST(CharTokenizer, FixedIds) {
  CharTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 100);
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.unk_id(), 3);
  EXPECT_EQ(tok.encode("\n"), std::vector<int32_t>{4});
  EXPECT_EQ(tok.encode(" "), std::vector<int32_t>{5});
  EXPECT_EQ(tok.encode("~"), std::vector<int32_t>{99});
  EXPECT_EQ(tok.encode("0"), std::vector<int32_t>{5 + ('0' - 32)});
  EXPECT_EQ(tok.encode("12+3="), (std::vector<int32_t>{22, 23, 16, 24, 34}));
  EXPECT_EQ(tok.piece(0), "<pad>");
  EXPECT_EQ(tok.piece(2), "<eos>");
  EXPECT_EQ(tok.piece(4), "\\n");
  EXPECT_EQ(tok.piece(38), "A");
}

TEST(CharTokenizer, RoundTripsEveryCharacter) {
  CharTokenizer tok;
  std::string all = "\n";
  for (int c = 32; c <= 126; ++c) all += static_cast<char>(c);
  const auto ids = tok.encode(all);
  ASSERT_EQ(ids.size(), 96u);
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], static_cast<int32_t>(4 + i));
  EXPECT_EQ(tok.decode(ids), all);
  const std::string text = "347+85=7+5+0=12,4+8+1=13\nAnswer: 432 \\boxed{432}";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
}

TEST(CharTokenizer, OutsideCharactersAreUnk) {
  CharTokenizer tok;
  EXPECT_EQ(tok.encode("a\tb\r"), (std::vector<int32_t>{70, 3, 71, 3}));
  // "é" is two UTF-8 bytes and "€" three: each is one <unk>.
  EXPECT_EQ(tok.encode("\xC3\xA9x\xE2\x82\xAC"), (std::vector<int32_t>{3, 93, 3}));
  // A stray continuation byte is one <unk> too.
  EXPECT_EQ(tok.encode("\x80"
                       "a"),
            (std::vector<int32_t>{3, 70}));
  EXPECT_EQ(tok.decode({70, 3, 71}),
            "a\xEF\xBF\xBD"
            "b");
}

TEST(CharTokenizer, DecodeSkipsPadBosEos) {
  CharTokenizer tok;
  EXPECT_EQ(tok.decode({1, 22, 16, 22, 2, 0, 0}), "1+1");
  EXPECT_EQ(tok.decode({}), "");
}

TEST(CharTokenizer, DecodeRejectsIdsOutsideVocabulary) {
  CharTokenizer tok;
  try {
    tok.decode({22, 100});
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_NE(e.message().find("100"), std::string::npos);
    EXPECT_NE(e.message().find("position 1"), std::string::npos);
  }
  EXPECT_THROW(tok.decode({-1}), opd::Error);
}

TEST(Tokenizer, FactoryAndDescription) {
  auto tok = opd::data::make_tokenizer("char");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->name(), "char");
  EXPECT_EQ(tok->vocab_size(), 100);
  EXPECT_EQ(tok->describe(), CharTokenizer().describe());
  EXPECT_EQ(tok->describe(),
            "opd-char-v1 vocab_size=100 pad=0 bos=1 eos=2 unk=3 newline=4 "
            "printable_ascii=5..99:32..126");
  EXPECT_EQ(opd::data::tokenizer_kinds(), (std::vector<std::string>{"char", "hf", "tiktoken"}));
}

TEST(Tokenizer, UnknownKindListsKnownKinds) {
  try {
    opd::data::make_tokenizer("bpe2");
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), opd::ErrorKind::Input);
    EXPECT_EQ(e.exit_status(), 2);
    EXPECT_NE(e.message().find("'bpe2'"), std::string::npos);
    EXPECT_NE(e.hint().find("char"), std::string::npos);
  }
}
