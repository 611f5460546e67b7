// safetensors reading and writing: the 16-bit float conversions (exact both ways on every
// pattern), the header parser on hand-built files, tensors read back exactly, opd's writer
// against the format's byte layout, and model folders (one file, shards with an index).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include <nlohmann/json.hpp>

#include "core/bf16.hpp"
#include "io/io_test_util.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_dtype.hpp"
#include "io/safetensors_format.hpp"
#include "io/test_safetensors_util.hpp"

namespace opd::io {
namespace {

namespace fs = std::filesystem;
namespace stt = opd::testing::st;
using safetensors::DType;
using testing::TempDir;
using testing::throws_input;

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::string f32s(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}
std::string u16s(const std::vector<uint16_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 2);
}

// ---- 16-bit floats ---------------------------------------------------------------------------

TEST(SafetensorsDtype, F16RoundTripIsIdentityOnEveryPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = safetensors::f16_to_f32(static_cast<uint16_t>(h));
    ASSERT_EQ(safetensors::f32_to_f16(f), h) << std::hex << h;
  }
}

TEST(SafetensorsDtype, F16WideningMatchesTheCompiler) {
  for (uint32_t h = 0; h < 65536; ++h) {
    _Float16 x;
    const auto hb = static_cast<uint16_t>(h);
    std::memcpy(&x, &hb, 2);
    const float want = static_cast<float>(x);
    const float got = safetensors::f16_to_f32(hb);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << h;
      ASSERT_EQ(bits(got) >> 31, bits(want) >> 31) << h;
    } else {
      ASSERT_EQ(bits(got), bits(want)) << std::hex << h;
    }
  }
}

TEST(SafetensorsDtype, F16NarrowingRoundsToNearestEven) {
  // Against the compiler's _Float16 conversion (round to nearest, ties to even), on random bit
  // patterns of every exponent and on the edges: overflow, the subnormal range, ties.
  std::mt19937 rng(7);
  std::vector<float> xs = {0.0f, -0.0f, 65504.0f, 65519.996f, 65520.0f, -65520.0f, 1e10f,
                           std::ldexp(1.0f, -24), std::ldexp(1.0f, -25), std::ldexp(1.5f, -25),
                           std::ldexp(1.0f, -26), std::ldexp(3.0f, -25), std::ldexp(1.0f, -14),
                           std::ldexp(1023.5f, -24), std::ldexp(2047.0f, -25), 1.0f + std::ldexp(1.0f, -11),
                           1.0f + std::ldexp(3.0f, -11), std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::denorm_min()};
  for (int i = 0; i < 2'000'000; ++i) {
    const float f = from_bits(rng());
    if (!std::isnan(f)) xs.push_back(f);
  }
  for (float f : xs) {
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &h, 2);
    ASSERT_EQ(safetensors::f32_to_f16(f), want) << f;
  }
}

TEST(SafetensorsDtype, Bf16RoundTripIsIdentityOnEveryPattern) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = safetensors::bf16_to_f32(static_cast<uint16_t>(b));
    ASSERT_EQ(bits(f), b << 16);
    ASSERT_EQ(safetensors::f32_to_bf16(f), b) << std::hex << b;
  }
}

TEST(SafetensorsDtype, Bf16NarrowingMatchesOpdsRounding) {
  std::mt19937 rng(11);
  for (int i = 0; i < 2'000'000; ++i) {
    const float f = from_bits(rng());
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(safetensors::bf16_to_f32(safetensors::f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(safetensors::f32_to_bf16(f), core::float_to_bf16(f)) << f;
  }
}

// ---- the header parser -----------------------------------------------------------------------

TEST(SafetensorsFormat, ParsesAHandBuiltFile) {
  const std::vector<stt::RawTensor> ts = {
      {"a", "F32", {2, 3}, f32s({1, 2, 3, 4, 5, 6})},
      {"b.weight", "BF16", {4}, u16s({0x3f80, 0x4000, 0xbf80, 0x0000})},
      {"empty", "F16", {0, 5}, ""},
      {"scalar", "I64", {}, std::string("\x07\0\0\0\0\0\0\0", 8)},
  };
  const std::string file = stt::file_bytes(ts, "{\"format\":\"pt\",\"note\":\"x\"}");
  const auto h = safetensors::parse_buffer(file.data(), file.size(), "mem");
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.metadata.at("note"), "x");
  EXPECT_EQ(h.file_size, file.size());
  EXPECT_EQ(h.data_bytes(), 24u + 8u + 8u);
  const auto* a = h.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::F32);
  EXPECT_EQ(a->shape, (core::Shape{2, 3}));
  EXPECT_EQ(a->begin, 0u);
  EXPECT_EQ(a->end, 24u);
  const auto* b = h.find("b.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::BF16);
  EXPECT_EQ(b->begin, 24u);
  EXPECT_EQ(h.find("empty")->numel(), 0);
  EXPECT_EQ(h.find("scalar")->shape, core::Shape{});
  EXPECT_EQ(h.find("scalar")->numel(), 1);
  EXPECT_EQ(h.find("nothing"), nullptr);
  // Tensors come out in data order.
  for (std::size_t i = 1; i < h.tensors.size(); ++i) EXPECT_LE(h.tensors[i - 1].begin, h.tensors[i].begin);
}

TEST(SafetensorsFormat, AcceptsPaddedHeadersAndTrailingBytes) {
  const std::vector<stt::RawTensor> ts = {{"x", "F32", {1}, f32s({3.5f})}};
  const std::string padded = stt::file_bytes(stt::header_json(ts), ts, 5) + "tail";
  const auto h = safetensors::parse_buffer(padded.data(), padded.size(), "mem");
  EXPECT_EQ(h.data_start, 8u + stt::header_json(ts).size() + 5);
  EXPECT_EQ(h.tensors.at(0).end, 4u);
}

TEST(SafetensorsFormat, DtypeNamesAndSizes) {
  const std::pair<const char*, std::size_t> known[] = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2},
      {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8}};
  for (const auto& [name, size] : known) {
    auto dt = safetensors::parse_dtype(name);
    ASSERT_TRUE(dt.has_value()) << name;
    EXPECT_EQ(safetensors::dtype_size(*dt), size) << name;
    EXPECT_STREQ(safetensors::dtype_name(*dt), name);
  }
  EXPECT_FALSE(safetensors::parse_dtype("f32").has_value());
  EXPECT_FALSE(safetensors::parse_dtype("F4").has_value());
}

// ---- files -----------------------------------------------------------------------------------

TEST(SafetensorsFile, ReadsF32F16AndBf16Exactly) {
  TempDir dir;
  const std::vector<float> f = {1.5f, -2.25f, 3e-8f, std::numeric_limits<float>::infinity(), -0.0f, 65504.0f};
  std::vector<uint16_t> h, b;
  for (float x : f) {
    const _Float16 hx = static_cast<_Float16>(x);
    uint16_t u;
    std::memcpy(&u, &hx, 2);
    h.push_back(u);
    b.push_back(static_cast<uint16_t>(bits(x) >> 16));
  }
  const std::vector<stt::RawTensor> ts = {{"f32", "F32", {2, 3}, f32s(f)},
                                          {"f16", "F16", {3, 2}, u16s(h)},
                                          {"bf16", "BF16", {6}, u16s(b)},
                                          {"ints", "I32", {1}, std::string(4, '\0')}};
  stt::write_bytes(dir / "m.safetensors", stt::file_bytes(ts));
  SafetensorsFile file(dir / "m.safetensors");
  const auto& hd = file.header();
  const core::Tensor t32 = file.read_f32(*hd.find("f32"));
  EXPECT_EQ(t32.shape(), (core::Shape{2, 3}));
  const core::Tensor t16 = file.read_f32(*hd.find("f16"));
  EXPECT_EQ(t16.shape(), (core::Shape{3, 2}));
  const core::Tensor tb = file.read_f32(*hd.find("bf16"));
  for (std::size_t i = 0; i < f.size(); ++i) {
    EXPECT_EQ(bits(t32.data<float>()[i]), bits(f[i]));
    _Float16 hx;
    std::memcpy(&hx, &h[i], 2);
    EXPECT_EQ(bits(t16.data<float>()[i]), bits(static_cast<float>(hx)));
    EXPECT_EQ(bits(tb.data<float>()[i]), static_cast<uint32_t>(b[i]) << 16);
  }
  EXPECT_EQ(file.read_bytes(*hd.find("bf16")), std::vector<unsigned char>(ts[2].bytes.begin(), ts[2].bytes.end()));
  EXPECT_TRUE(throws_input([&] { file.read_f32(*hd.find("ints")); }, {"tensor \"ints\" is I32", "F32, F16 and BF16"}));
}

TEST(SafetensorsFile, MissingAndNonRegularFilesAreInputErrors) {
  TempDir dir;
  EXPECT_TRUE(throws_input([&] { SafetensorsFile f(dir / "none.safetensors"); }, {"cannot open"}));
  EXPECT_TRUE(throws_input([&] { SafetensorsFile f(dir.path()); }, {"not a regular file"}));
  // A named pipe must be refused, not block the open waiting for a writer.
  ASSERT_EQ(::mkfifo((dir / "fifo.safetensors").c_str(), 0600), 0);
  EXPECT_TRUE(throws_input([&] { SafetensorsFile f(dir / "fifo.safetensors"); }, {"not a regular file"}));
}

TEST(SafetensorsWriter, WritesTheFormatsByteLayout) {
  TempDir dir;
  const std::vector<SafetensorsTensor> ts = {{"w", DType::F32, {2}}, {"b", DType::BF16, {1, 3}}};
  const std::vector<std::vector<unsigned char>> data = {{0, 0, 128, 63, 0, 0, 0, 64}, {1, 2, 3, 4, 5, 6}};
  write_safetensors(dir / "x.safetensors", ts, [&](std::size_t i) { return data[i]; });
  const std::string bytes = testing::read_file(dir / "x.safetensors");
  const std::string want_header =
      R"({"__metadata__":{"format":"pt"},"b":{"data_offsets":[8,14],"dtype":"BF16","shape":[1,3]},)"
      R"("w":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
  const std::size_t padded = (want_header.size() + 7) / 8 * 8;
  ASSERT_EQ(bytes.size(), 8 + padded + 14);
  EXPECT_EQ(bytes.substr(0, 8), stt::le64(padded));
  EXPECT_EQ(bytes.substr(8, padded), want_header + std::string(padded - want_header.size(), ' '));
  EXPECT_EQ(bytes.substr(8 + padded), std::string("\0\0\x80\x3f\0\0\0\x40\x01\x02\x03\x04\x05\x06", 14));
  // And opd's reader agrees.
  SafetensorsFile f(dir / "x.safetensors");
  EXPECT_EQ(f.read_f32(*f.header().find("w")).to_vector(), (std::vector<float>{1.0f, 2.0f}));
}

TEST(SafetensorsWriter, AWrongByteCountIsAnInternalError) {
  TempDir dir;
  const std::vector<SafetensorsTensor> ts = {{"w", DType::F32, {2}}};
  try {
    write_safetensors(dir / "x.safetensors", ts, [](std::size_t) { return std::vector<unsigned char>(7); });
    FAIL() << "no error";
  } catch (const opd::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Internal);
  }
}

TEST(SafetensorsWriter, ByteSizes) {
  EXPECT_EQ(parse_byte_size("5GB", "x"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("500MiB", "x"), 500ull << 20);
  EXPECT_EQ(parse_byte_size("1000", "x"), 1000u);
  EXPECT_EQ(parse_byte_size("2kb", "x"), 2000u);
  for (const char* bad : {"", "GB", "0", "5TB", "-3", "1.5GB", "99999999999999999999"})
    EXPECT_TRUE(throws_input([&] { parse_byte_size(bad, "--max-shard-size"); }, {"--max-shard-size"})) << bad;
}

// ---- folders ---------------------------------------------------------------------------------

std::vector<stt::RawTensor> some_tensors() {
  std::mt19937_64 rng(3);
  std::vector<stt::RawTensor> ts;
  for (int i = 0; i < 7; ++i)
    ts.push_back({"t." + std::to_string(i), i % 2 ? "BF16" : "F32", {3, i + 1},
                  stt::random_bytes(i % 2 ? "BF16" : "F32", 3 * (i + 1), rng, 1.0f)});
  return ts;
}

TEST(SafetensorsFolder, OneFileAndShardsWithAnIndexReadTheSame) {
  TempDir dir;
  const auto ts = some_tensors();
  fs::create_directories(dir / "one");
  stt::write_bytes(dir / "one/model.safetensors", stt::file_bytes(ts));
  fs::create_directories(dir / "three");
  std::string index = R"({"metadata":{"total_size":1},"weight_map":{)";
  for (int k = 0; k < 3; ++k) {
    std::vector<stt::RawTensor> part;
    for (std::size_t i = static_cast<std::size_t>(k); i < ts.size(); i += 3) {
      part.push_back(ts[i]);
      index += (index.back() == '{' ? "" : ",") + ("\"" + ts[i].name + "\":\"s" + std::to_string(k) + ".safetensors\"");
    }
    stt::write_bytes(dir / ("three/s" + std::to_string(k) + ".safetensors"), stt::file_bytes(part));
  }
  testing::write_file(dir / "three/model.safetensors.index.json", index + "}}");
  SafetensorsFolder one(dir / "one"), three(dir / "three");
  EXPECT_FALSE(one.sharded());
  EXPECT_TRUE(three.sharded());
  ASSERT_EQ(one.names(), three.names());
  EXPECT_EQ(one.names().size(), ts.size());
  for (const auto& t : ts) {
    EXPECT_EQ(one.read_bytes(t.name), std::vector<unsigned char>(t.bytes.begin(), t.bytes.end()));
    EXPECT_EQ(three.read_bytes(t.name), one.read_bytes(t.name));
    EXPECT_EQ(three.read_f32(t.name).to_vector(), one.read_f32(t.name).to_vector());
  }
  EXPECT_TRUE(throws_input([&] { one.entry("nope"); }, {"no tensor \"nope\""}));
}

TEST(SafetensorsFolder, BadFoldersAreInputErrors) {
  TempDir dir;
  const auto ts = some_tensors();
  auto fresh = [&](const std::string& name) {
    fs::create_directories(dir / name);
    return dir / name;
  };
  EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(dir / "missing"); }, {"not a directory"}));
  {
    const auto d = fresh("empty");
    testing::write_file(d + "/pytorch_model.bin", "x");
    EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(d); }, {"neither model.safetensors", "pytorch_model.bin"}));
  }
  {
    const auto d = fresh("escape");
    testing::write_file(d + "/model.safetensors.index.json", R"({"weight_map":{"t.0":"../x.safetensors"}})");
    EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(d); }, {"not a file name"}));
  }
  {
    const auto d = fresh("notjson");
    testing::write_file(d + "/model.safetensors.index.json", R"({"weight_map":)");
    EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(d); }, {"not valid JSON"}));
  }
  {
    const auto d = fresh("nomap");
    testing::write_file(d + "/model.safetensors.index.json", R"({"metadata":{}})");
    EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(d); }, {"weight_map"}));
  }
  {
    const auto d = fresh("wrongshard");
    stt::write_bytes(d + "/a.safetensors", stt::file_bytes({ts[0]}));
    stt::write_bytes(d + "/b.safetensors", stt::file_bytes({ts[1]}));
    testing::write_file(d + "/model.safetensors.index.json",
                        R"({"weight_map":{"t.0":"b.safetensors","t.1":"b.safetensors"}})");
    EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(d); }, {"puts \"t.0\" in \"b.safetensors\""}));
  }
  {
    const auto d = fresh("twice");
    stt::write_bytes(d + "/a.safetensors", stt::file_bytes({ts[0]}));
    stt::write_bytes(d + "/b.safetensors", stt::file_bytes({ts[0], ts[1]}));
    testing::write_file(d + "/model.safetensors.index.json",
                        R"({"weight_map":{"t.0":"a.safetensors","t.1":"b.safetensors"}})");
    EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(d); }, {"\"t.0\" is stored twice"}));
  }
  {
    const auto d = fresh("missingshard");
    testing::write_file(d + "/model.safetensors.index.json", R"({"weight_map":{"t.0":"gone.safetensors"}})");
    EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(d); }, {"gone.safetensors", "cannot open"}));
  }
  {
    const auto d = fresh("badshard");
    stt::write_bytes(d + "/model.safetensors", std::string("\x10\0\0\0\0\0\0\0{}", 10));
    EXPECT_TRUE(throws_input([&] { SafetensorsFolder f(d); }, {"model.safetensors", "header length 16"}));
  }
}

TEST(SafetensorsFolder, WriterShardsAboveTheThresholdAndReadsBack) {
  TempDir dir;
  const auto raw = some_tensors();
  std::vector<SafetensorsTensor> ts;
  uint64_t total = 0;
  for (const auto& r : raw) {
    ts.push_back({r.name, *safetensors::parse_dtype(r.dtype), r.shape});
    total += r.bytes.size();
  }
  auto bytes_of = [&](std::size_t i) {
    return std::vector<unsigned char>(raw[i].bytes.begin(), raw[i].bytes.end());
  };
  fs::create_directories(dir / "single");
  EXPECT_EQ(write_safetensors_folder(dir / "single", ts, bytes_of, total),
            std::vector<std::string>{"model.safetensors"});
  fs::create_directories(dir / "sharded");
  const auto files = write_safetensors_folder(dir / "sharded", ts, bytes_of, 60);
  ASSERT_GT(files.size(), 2u);
  EXPECT_EQ(files.back(), "model.safetensors.index.json");
  EXPECT_EQ(files.front(), "model-00001-of-" + std::string(5 - std::to_string(files.size() - 1).size(), '0') +
                               std::to_string(files.size() - 1) + ".safetensors");
  for (std::size_t k = 0; k + 1 < files.size(); ++k) {
    SafetensorsFile f(dir / ("sharded/" + files[k]));
    uint64_t data = f.header().data_bytes();
    // Over the threshold only when one tensor alone is.
    if (f.header().tensors.size() > 1) EXPECT_LE(data, 60u) << files[k];
    EXPECT_EQ(f.header().data_start % 8, 0u);
  }
  const auto index = nlohmann::json::parse(testing::read_file(dir / "sharded/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), raw.size());
  SafetensorsFolder single(dir / "single"), sharded(dir / "sharded");
  for (const auto& r : raw) {
    EXPECT_EQ(single.read_bytes(r.name), bytes_of(&r - raw.data()));
    EXPECT_EQ(sharded.read_bytes(r.name), bytes_of(&r - raw.data()));
  }
}

}  // namespace
}  // namespace opd::io
