// Malformed and hostile safetensors files: each way a header can lie (length, JSON, nesting,
// duplicate keys, dtypes, shapes, offsets) is a clear Input error, and a deterministic mutation
// run (bit flips, byte edits, insertions, deletions, truncations, forged lengths) over valid
// files finds nothing that is accepted with inconsistent entries or that throws anything but an
// opd Input error. The same entry point runs under libFuzzer in tests/fuzz/.
#include <gtest/gtest.h>

#include <random>

#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_format.hpp"
#include "io/test_safetensors_util.hpp"

namespace opd::io {
namespace {

namespace stt = opd::testing::st;
using testing::TempDir;
using testing::throws_input;

// Parses a whole in-memory file, expecting an Input error containing every part.
::testing::AssertionResult refused(const std::string& file, std::initializer_list<std::string> parts) {
  return throws_input([&] { safetensors::parse_buffer(file.data(), file.size(), "bad.safetensors"); }, parts);
}
// A file made of this header text and `data` bytes of data.
std::string with_header(const std::string& header, std::size_t data = 64) {
  return stt::le64(header.size()) + header + std::string(data, '\0');
}

TEST(SafetensorsMalformed, Lengths) {
  EXPECT_TRUE(refused("", {"0 bytes is too short"}));
  EXPECT_TRUE(refused(std::string("\x02\0\0", 3), {"3 bytes is too short"}));
  EXPECT_TRUE(refused(stt::le64(100) + "{}", {"header length 100 runs past the end of the file (10 bytes)"}));
  EXPECT_TRUE(refused(stt::le64(~0ull) + "{}", {"runs past the end"}));
  EXPECT_TRUE(refused(stt::le64(1) + "{", {"cannot hold a JSON object"}));
  EXPECT_TRUE(refused(stt::le64(0), {"cannot hold a JSON object"}));
  // The size limit, without a 100 MB file: the length check takes the file size as given.
  const std::string len = stt::le64(150'000'000);
  EXPECT_TRUE(throws_input(
      [&] { safetensors::header_length(reinterpret_cast<const unsigned char*>(len.data()), 200'000'000, "big"); },
      {"exceeds the limit of 100000000 bytes"}));
}

TEST(SafetensorsMalformed, NotJson) {
  EXPECT_TRUE(refused(with_header("{\"a\":"), {"not valid JSON"}));
  EXPECT_TRUE(refused(with_header("hello world"), {"not valid JSON"}));
  EXPECT_TRUE(refused(with_header("{} trailing"), {"not valid JSON"}));
  EXPECT_TRUE(refused(with_header(std::string("{\"a\0\":1}", 8)), {"not valid JSON"}));
  EXPECT_TRUE(refused(with_header("{\"\xff\xfe\":{}}"), {"not valid JSON"}));
  EXPECT_TRUE(refused(with_header("[1,2]"), {"must be a JSON object"}));
  EXPECT_TRUE(refused(with_header("\"text\""), {"must be a JSON object"}));
  EXPECT_TRUE(refused(with_header("{\"a\":1e999}"), {"not valid JSON"}));
}

TEST(SafetensorsMalformed, DeepNesting) {
  const std::string deep = "{\"__metadata__\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_TRUE(refused(with_header(deep), {"nests deeper than 8 levels"}));
  std::string objs = "{\"__metadata__\":";
  for (int i = 0; i < 50000; ++i) objs += "{\"a\":";
  EXPECT_TRUE(refused(with_header(objs), {"nests deeper"}));
}

TEST(SafetensorsMalformed, DuplicateKeys) {
  EXPECT_TRUE(refused(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                  R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})"),
                      {"the key \"a\" twice"}));
  EXPECT_TRUE(refused(with_header(R"({"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})"),
                      {"the key \"dtype\" twice"}));
}

TEST(SafetensorsMalformed, Entries) {
  auto entry = [](const std::string& body) { return with_header("{\"t\":" + body + "}", 64); };
  EXPECT_TRUE(refused(entry("3"), {"tensor \"t\"", "must be an object"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[1]})"), {"needs dtype, shape and data_offsets"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1})"), {"unknown field \"extra\""}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})"), {"unknown dtype \"F33\"", "BF16"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})"), {"unknown dtype 7"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":"1","data_offsets":[0,4]})"), {"shape must be an array"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"), {"non-negative integer, got -1"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[1.5],"data_offsets":[0,4]})"), {"non-negative integer, got 1.5"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[true],"data_offsets":[0,4]})"), {"non-negative integer"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]})"),
                      {"dimension 18446744073709551615 is too large"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})"),
                      {"has too many elements"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]})"),
                      {"too large in bytes"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]})"),
                      {"33 dimensions"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), {"data_offsets must be [begin, end]"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[1],"data_offsets":{"a":0}})"), {"data_offsets must be [begin, end]"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), {"begin must be a non-negative integer"}));
  EXPECT_TRUE(refused(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), {"end before they begin"}));
  EXPECT_TRUE(refused(with_header("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"), {"empty name"}));
  EXPECT_TRUE(refused(with_header(R"({"__metadata__":[1]})"), {"__metadata__ must be an object"}));
  EXPECT_TRUE(refused(with_header(R"({"__metadata__":{"k":1}})"), {"__metadata__ value of \"k\" must be a string"}));
}

TEST(SafetensorsMalformed, OffsetsOutOfRange) {
  // 64 bytes of data.
  EXPECT_TRUE(refused(with_header(R"({"t":{"dtype":"F32","shape":[17],"data_offsets":[0,68]}})"),
                      {"tensor \"t\"", "[0, 68] run past the data section (64 bytes)"}));
  EXPECT_TRUE(refused(with_header(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})"),
                      {"run past the data section"}));
  EXPECT_TRUE(refused(with_header(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 3),
                      {"run past the data section (3 bytes)"}));
  // A header that claims data in the file but none remains after it.
  EXPECT_TRUE(refused(with_header(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 0),
                      {"run past the data section (0 bytes)"}));
}

TEST(SafetensorsMalformed, OffsetsInconsistentWithDtypeAndShape) {
  EXPECT_TRUE(refused(with_header(R"({"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}})"),
                      {"span 12 bytes, but F32 [2,3] needs 24"}));
  // The wrong element size: 4 BF16 values are 8 bytes, not 16.
  EXPECT_TRUE(refused(with_header(R"({"t":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}})"),
                      {"BF16 [4] needs 8"}));
  EXPECT_TRUE(refused(with_header(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[0,4]}})"), {"needs 0"}));
}

TEST(SafetensorsMalformed, Overlaps) {
  EXPECT_TRUE(refused(with_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                  R"("b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]}})"),
                      {"tensors \"a\" and \"b\" overlap"}));
  EXPECT_TRUE(refused(with_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]},)"
                                  R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})"),
                      {"overlap"}));
  EXPECT_TRUE(refused(with_header(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},)"
                                  R"("b":{"dtype":"U8","shape":[1],"data_offsets":[31,32]}})"),
                      {"overlap"}));
  // Adjacent, empty inside another, and a gap are all fine.
  const std::string ok = with_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                     R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},)"
                                     R"("b":{"dtype":"F32","shape":[4],"data_offsets":[16,32]},)"
                                     R"("c":{"dtype":"U8","shape":[2],"data_offsets":[40,42]}})");
  EXPECT_EQ(safetensors::parse_buffer(ok.data(), ok.size(), "ok").tensors.size(), 4u);
}

TEST(SafetensorsMalformed, FilesOnDiskGiveTheSameErrors) {
  TempDir dir;
  testing::write_file(dir / "trunc.safetensors", std::string("\x08\0\0", 3));
  EXPECT_TRUE(throws_input([&] { SafetensorsFile f(dir / "trunc.safetensors"); }, {"trunc.safetensors", "too short"}));
  testing::write_file(dir / "past.safetensors", stt::le64(4096) + "{}");
  EXPECT_TRUE(throws_input([&] { SafetensorsFile f(dir / "past.safetensors"); }, {"past.safetensors", "runs past the end"}));
  // A valid file cut inside its data section.
  const std::vector<stt::RawTensor> ts = {{"t", "F32", {4}, std::string(16, '\1')}};
  const std::string whole = stt::file_bytes(ts);
  testing::write_file(dir / "cut.safetensors", whole.substr(0, whole.size() - 1));
  EXPECT_TRUE(throws_input([&] { SafetensorsFile f(dir / "cut.safetensors"); }, {"cut.safetensors", "run past the data section"}));
}

// ---- deterministic mutation ------------------------------------------------------------------

// What the parser promises about any header it accepts.
void check_accepted(const safetensors::Header& h, std::size_t size) {
  ASSERT_LE(h.data_start, size);
  ASSERT_EQ(h.file_size, size);
  uint64_t prev_end = 0;
  for (const auto& t : h.tensors) {
    ASSERT_LE(t.begin, t.end);
    ASSERT_LE(t.end, h.data_bytes());
    uint64_t n = safetensors::dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      ASSERT_GE(d, 0);
      n *= static_cast<uint64_t>(d);
    }
    ASSERT_EQ(n, t.bytes());
    if (t.begin != t.end) {
      ASSERT_GE(t.begin, prev_end);
      prev_end = t.end;
    }
  }
}

std::vector<std::string> seeds() {
  std::mt19937_64 rng(5);
  std::vector<std::string> out;
  std::vector<stt::RawTensor> ts = {{"model.embed_tokens.weight", "BF16", {3, 4}, stt::random_bytes("BF16", 12, rng, 1)},
                                    {"model.norm.weight", "F32", {4}, stt::random_bytes("F32", 4, rng, 1)},
                                    {"x", "F16", {2, 1, 2}, stt::random_bytes("F16", 4, rng, 1)},
                                    {"e", "I64", {0}, ""}};
  out.push_back(stt::file_bytes(ts, "{\"format\":\"pt\",\"a\":\"b\"}"));
  out.push_back(stt::file_bytes(stt::header_json(ts), ts, 6));
  out.push_back(stt::file_bytes({ts[1]}));
  out.push_back(with_header("{}", 0));
  return out;
}

TEST(SafetensorsMalformed, DeterministicMutationFindsNoCrashOrInconsistency) {
  std::mt19937_64 rng(20240601);
  const std::vector<std::string> base = seeds();
  const char* tokens[] = {"\"", "[", "]", "{", "}", ",", ":", "-1", "0", "18446744073709551615",
                          "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"", "\"F32\"",
                          "\"BF16\"", "1e5", "null", "\\u0000", "99999999999999999999"};
  int accepted = 0, refused_n = 0;
  for (int iter = 0; iter < 30000; ++iter) {
    std::string f = base[static_cast<std::size_t>(iter) % base.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !f.empty(); ++e) {
      const std::size_t at = rng() % f.size();
      switch (rng() % 8) {
        case 0: f[at] = static_cast<char>(f[at] ^ (1 << (rng() % 8))); break;  // bit flip
        case 1: f[at] = static_cast<char>(rng()); break;                         // byte
        case 2: f.erase(at, 1 + rng() % 8); break;                              // delete
        case 3: f.insert(at, tokens[rng() % std::size(tokens)]); break;          // token
        case 4: f.resize(at); break;                                            // truncate
        case 5: f.append(rng() % 32, static_cast<char>(rng())); break;           // extend
        case 6: {  // forge the header length
          const uint64_t n = rng() % 3 == 0 ? rng() : f.size() - 8 + (rng() % 17) - 8;
          if (f.size() >= 8) f.replace(0, 8, stt::le64(n));
          break;
        }
        default: {  // a digit changed inside the header (offsets, shapes)
          for (std::size_t k = at; k < f.size(); ++k)
            if (f[k] >= '0' && f[k] <= '9') {
              f[k] = static_cast<char>('0' + rng() % 10);
              break;
            }
        }
      }
    }
    try {
      const auto h = safetensors::parse_buffer(f.data(), f.size(), "mutant");
      check_accepted(h, f.size());
      if (::testing::Test::HasFatalFailure()) FAIL() << "iteration " << iter;
      ++accepted;
    } catch (const opd::Error& e) {
      ASSERT_EQ(e.kind(), ErrorKind::Input) << e.what();
      ++refused_n;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": not an opd::Error: " << e.what();
    }
  }
  EXPECT_GT(accepted, 100);
  EXPECT_GT(refused_n, 10000);
}

}  // namespace
}  // namespace opd::io
