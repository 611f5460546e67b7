// The tokenizer's parts without downloaded files: pre-token splits of each pattern family
// (expected splits worked out by hand from the regexes), NFC against Unicode's
// NormalizationTest.txt when Debian's unicode-data has it, SHA-256 test vectors, the byte
// mapping, merges, and make_tokenizer on a small tokenizer.json written here.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "data/bpe_pretokenizer.hpp"
#include "core/sha256.hpp"
#include "data/bpe_tokenizer.hpp"
#include "data/tokenizer.hpp"
#include "data/unicode_nfc.hpp"
#include "data/unicode_props.hpp"

using namespace opd::data;
using Pieces = std::vector<std::string>;

namespace {

Pieces split(const SplitPattern& p, const std::string& text) { return PreTokenizer(p).split(text); }

SplitPattern hf(const char* regex) { return *split_pattern_from_hf_regex(regex); }
const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

TEST(BpeUnits, Gpt2Splits) {
  const SplitPattern p = gpt2_split_pattern();
  EXPECT_EQ(split(p, "Hello, world!"), (Pieces{"Hello", ",", " world", "!"}));
  // Contractions are case-sensitive in GPT-2: 'S is punctuation then a letter.
  EXPECT_EQ(split(p, "it's IT'S"), (Pieces{"it", "'s", " IT", "'", "S"}));
  EXPECT_EQ(split(p, "a   b"), (Pieces{"a", "  ", " b"}));
  EXPECT_EQ(split(p, "x  \n"), (Pieces{"x", "  \n"}));  // whitespace at the end: one piece
  EXPECT_EQ(split(p, "2024 years"), (Pieces{"2024", " years"}));
  EXPECT_EQ(split(p, " ...!?"), (Pieces{" ...!?"}));
}

TEST(BpeUnits, Cl100kAndQwenSplits) {
  const SplitPattern llama = hf(kLlama3), qwen = hf(kQwen2);
  EXPECT_EQ(llama.max_digits, 3);
  EXPECT_EQ(qwen.max_digits, 1);
  EXPECT_EQ(split(llama, "12345"), (Pieces{"123", "45"}));
  EXPECT_EQ(split(qwen, "12345"), (Pieces{"1", "2", "3", "4", "5"}));
  // Case-insensitive contractions; one non-letter may lead a letter run.
  EXPECT_EQ(split(llama, "IT'S (ok)"), (Pieces{"IT", "'S", " (", "ok", ")"}));
  EXPECT_EQ(split(llama, "$hello"), (Pieces{"$hello"}));
  // Punctuation takes the newlines after it; \s*[\r\n]+ stops at the last newline.
  EXPECT_EQ(split(llama, "end.\n\nNext"), (Pieces{"end", ".\n\n", "Next"}));
  EXPECT_EQ(split(llama, "a \n  b"), (Pieces{"a", " \n", " ", " b"}));
  EXPECT_EQ(split(llama, "a\n  "), (Pieces{"a", "\n", "  "}));
  // tiktoken's current cl100k spelling adds \s++$: trailing whitespace is one piece.
  EXPECT_EQ(split(cl100k_split_pattern(), "a\n  "), (Pieces{"a", "\n  "}));
  EXPECT_FALSE(split_pattern_from_hf_regex(R"(\p{L}+|\s+)"));
}

TEST(BpeUnits, O200kSplits) {
  const SplitPattern p = o200k_split_pattern();
  // Case-aware letter runs: an upper-case run followed by lower case splits before the last
  // capital only when the lower case follows it directly.
  EXPECT_EQ(split(p, "HelloWorld"), (Pieces{"Hello", "World"}));
  EXPECT_EQ(split(p, "HTMLParser"), (Pieces{"HTMLParser"}));
  EXPECT_EQ(split(p, "I'm can't"), (Pieces{"I'm", " can't"}));
  EXPECT_EQ(split(p, "a/b\n/c"), (Pieces{"a", "/b", "\n", "/c"}));
  EXPECT_EQ(split(p, "x, //\n"), (Pieces{"x", ",", " //\n"}));
  // A combining mark before capitals: [U]*[W]+ without the optional prefix matches the mark
  // alone (it is both U and W), before the second alternative is tried.
  EXPECT_EQ(split(p, "\xCC\x81" "ABC"), (Pieces{"\xCC\x81", "ABC"}));
}

TEST(BpeUnits, UnicodePropertiesAndUtf8) {
  using namespace unicode;
  EXPECT_EQ(props('A') & kClassMask, kLu);
  EXPECT_EQ(props(0x4E16) & kClassMask, kLo);     // 世
  EXPECT_EQ(props(0x0301) & kClassMask, kMark);   // combining acute
  EXPECT_EQ(props(0x0663) & kClassMask, kNumber); // Arabic-Indic three
  EXPECT_TRUE(is_space(props(0x3000)));           // ideographic space
  EXPECT_TRUE(is_space(props(0x85)));
  EXPECT_FALSE(is_space(props(0xFEFF)));          // not White_Space
  uint32_t cp;
  EXPECT_EQ(decode_utf8("\xF0\x9F\x8C\x8D", 0, cp), 4u);
  EXPECT_EQ(cp, 0x1F30Du);
  EXPECT_EQ(decode_utf8("\xC0\xAF", 0, cp), 1u);  // overlong: one invalid byte
  EXPECT_EQ(cp, kInvalid);
  EXPECT_EQ(decode_utf8("\xED\xA0\x80", 0, cp), 1u);  // surrogate
  for (int b = 0; b < 256; ++b)
    EXPECT_EQ(byte_from_unicode(byte_to_unicode(static_cast<unsigned char>(b))), b);
  EXPECT_EQ(byte_to_unicode(' '), 0x120u);  // 'Ġ'
  EXPECT_EQ(byte_to_unicode('\n'), 0x10Au); // 'Ċ'
}

TEST(BpeUnits, Nfc) {
  using unicode::nfc;
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");                 // e + acute -> é
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1"), "\xEA\xB0\x80");  // Hangul L + V -> 가
  EXPECT_EQ(nfc("a\xCC\xA3\xCC\x87"), nfc("a\xCC\x87\xCC\xA3"));  // marks reordered
  EXPECT_EQ(nfc("x\xFFy"), "x\xFFy");                        // invalid bytes pass through
}

// Unicode's own conformance file: for every line, NFC(c1..c5) == c2 (NFC column).
TEST(BpeUnits, NfcNormalizationTest) {
  const char* path = "/usr/share/unicode/NormalizationTest.txt.bz2";
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << path << " is missing (Debian package unicode-data)";
  FILE* f = popen((std::string("bzip2 -dc ") + path).c_str(), "r");
  if (!f) GTEST_SKIP() << "bzip2 is not available";
  auto field = [](const std::string& s) {
    std::string out;
    std::size_t i = 0;
    while (i < s.size()) {
      std::size_t j = s.find(' ', i);
      if (j == std::string::npos) j = s.size();
      if (j > i) unicode::append_utf8(out, static_cast<uint32_t>(std::stoul(s.substr(i, j - i), nullptr, 16)));
      i = j + 1;
    }
    return out;
  };
  char buf[4096];
  int lines = 0, failures = 0;
  while (fgets(buf, sizeof buf, f)) {
    std::string line(buf);
    if (line.empty() || line[0] == '#' || line[0] == '@') continue;
    std::vector<std::string> cols;
    std::size_t i = 0;
    for (int k = 0; k < 5; ++k) {
      const std::size_t j = line.find(';', i);
      if (j == std::string::npos) break;
      cols.push_back(field(line.substr(i, j - i)));
      i = j + 1;
    }
    if (cols.size() != 5) continue;
    ++lines;
    for (int c : {0, 1, 2})
      if (unicode::nfc(cols[c]) != cols[1] && ++failures < 10) ADD_FAILURE() << "line: " << line;
    for (int c : {3, 4})
      if (unicode::nfc(cols[c]) != cols[3] && ++failures < 10) ADD_FAILURE() << "line: " << line;
  }
  pclose(f);
  EXPECT_GT(lines, 15000);
  EXPECT_EQ(failures, 0);
}

TEST(BpeUnits, Sha256) {
  EXPECT_EQ(opd::core::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(opd::core::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(opd::core::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(opd::core::sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(BpeUnits, MergesLowestRankLeftmostFirst) {
  // Ids: 0 'a', 1 'b', 2 'aa', 3 'ab', 4 'aab'. Merges: (a,a) rank 0, (a,b) rank 1, (aa,b) 2.
  BpeMergeTable t({{0, 0, 2, 0}, {0, 1, 3, 1}, {2, 1, 4, 2}});
  std::vector<int32_t> ids{0, 0, 0, 1};  // "aaab": (a,a) leftmost -> [aa, a, b] -> [aa, ab]
  bpe_merge(t, ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 3}));
  std::vector<int32_t> long_ids(1001, 0);  // the heap path: 500 'aa' and one 'a'
  bpe_merge(t, long_ids);
  ASSERT_EQ(long_ids.size(), 501u);
  EXPECT_EQ(long_ids.front(), 2);
  EXPECT_EQ(long_ids.back(), 0);
}

// A small byte-level tokenizer.json: the 256 byte tokens, two merges, one added token.
TEST(BpeUnits, MakeTokenizerFromTokenizerJson) {
  const auto dir = std::filesystem::temp_directory_path() / ("opd_bpe_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& extra_merge) {
    std::string vocab;
    for (int b = 0; b < 256; ++b) {
      std::string s;
      unicode::append_utf8(s, byte_to_unicode(static_cast<unsigned char>(b)));
      if (s == "\"" || s == "\\") s = "\\" + s;
      vocab += "\"" + s + "\": " + std::to_string(b) + ", ";
    }
    vocab += "\"he\": 256, \"hel\": 257, \"Ġw\": 258";
    std::ofstream(dir / "tokenizer.json")
        << R"({"normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "decoder": {"type": "ByteLevel"}, "added_tokens": [{"id": 259, "content": "<|endoftext|>", "special": true}],
  "model": {"type": "BPE", "vocab": {)" << vocab << R"(}, "merges": ["h e", "he l")" << extra_merge << "]}}";
  };
  write("");
  const std::string spec = "hf:" + (dir / "tokenizer.json").string();
  auto tok = make_tokenizer(spec);
  EXPECT_EQ(tok->name(), "hf");
  EXPECT_EQ(tok->vocab_size(), 260);
  EXPECT_EQ(tok->eos_id(), 259);
  EXPECT_EQ(tok->encode("hello w<|endoftext|>"),
            (std::vector<int32_t>{257, 'l', 'o', ' ', 'w', 259}));  // byte ids equal the bytes here
  EXPECT_EQ(tok->decode(tok->encode("hello w")), "hello w");
  const std::string before = tok->describe();
  write(", \"Ġ w\"");  // one more merge: the identity must change with the file
  auto tok2 = make_tokenizer(spec);
  EXPECT_NE(tok2->describe(), before);
  EXPECT_EQ(tok2->encode(" w"), (std::vector<int32_t>{258}));
  EXPECT_THROW(make_tokenizer("hf:" + (dir / "missing.json").string()), opd::Error);
  EXPECT_THROW(make_tokenizer("hf"), opd::Error);
  EXPECT_THROW(make_tokenizer("sentencepiece:x"), opd::Error);
  std::ofstream(dir / "bad.json") << R"({"model": {"type": "Unigram"}})";
  EXPECT_THROW(make_tokenizer("hf:" + (dir / "bad.json").string()), opd::Error);
  std::ofstream(dir / "garbage.json") << "{not json";
  EXPECT_THROW(make_tokenizer("hf:" + (dir / "garbage.json").string()), opd::Error);
  EXPECT_EQ(make_tokenizer("char")->name(), "char");
  std::filesystem::remove_all(dir);
}
