// Tests of CheckpointWriter / CheckpointReader: bit-exact round trips of every dtype and value
// kind, atomic publication, block (hyperslab) writes and reads, and every way a damaged or
// foreign file must be refused with an Input error rather than misread or crashed on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>

#include "io/checkpoint.hpp"
#include "io/checksum.hpp"
#include "io/hdf5_file.hpp"
#include "io/io_test_util.hpp"

namespace opd::io {
namespace {

namespace fs = std::filesystem;
using core::DType;
using core::Shape;
using core::Tensor;
using testing::read_file;
using testing::TempDir;
using testing::throws_input;
using testing::write_file;

template <class T>
Tensor make(const Shape& shape, const std::vector<T>& values) {
  Tensor t = Tensor::empty(shape, core::dtype_of<T>());
  EXPECT_EQ(static_cast<int64_t>(values.size()), t.numel());
  if (!values.empty()) std::memcpy(t.raw(), values.data(), t.bytes());
  return t;
}

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.bytes() == b.bytes() &&
         std::memcmp(a.raw(), b.raw(), a.bytes()) == 0;
}

// A checkpoint with one of everything, used by the damage tests.
void write_sample(const std::string& path) {
  CheckpointWriter w(path);
  std::vector<float> big(4096);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = 0.25f * static_cast<float>(i) - 7.0f;
  w.write_tensor("model/model.embed_tokens.weight", make<float>({64, 64}, big));
  w.write_tensor("model/model.norm.weight", make<float>({4}, {1.0f, 2.0f, 3.0f, 4.0f}));
  w.write_int("state/step", 120);
  w.write_string("config/job_toml", "[run]\nname = \"x\"\n");
  w.commit();
}

// Reads everything in `path`: true when it equals write_sample's content. Damage that is
// detected throws (the opd::Error propagates).
bool sample_matches(const std::string& path) {
  CheckpointReader r(path);
  Tensor e = r.read_tensor("model/model.embed_tokens.weight");
  if (e.shape() != Shape{64, 64}) return false;
  for (int64_t i = 0; i < e.numel(); ++i)
    if (e.data<float>()[i] != 0.25f * static_cast<float>(i) - 7.0f) return false;
  return r.read_tensor("model/model.norm.weight").to_vector() ==
             std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f} &&
         r.read_int("state/step") == 120 &&
         r.read_string("config/job_toml") == "[run]\nname = \"x\"\n" && r.list().size() == 4;
}

TEST(Checkpoint, RoundTripsEveryDtypeBitExactly) {
  TempDir dir;
  std::string path = dir / "a/b/step_00000001.h5";  // parents are created
  const float nan_payload = bits_to_float(0x7fc12345u);
  Tensor f32 = make<float>({2, 3}, {0.1f, -0.0f, std::numeric_limits<float>::infinity(),
                                    nan_payload, std::numeric_limits<float>::denorm_min(),
                                    -3.4e38f});
  Tensor bf16 = make<uint16_t>({2, 2, 2}, {0x3f80, 0xbf80, 0x7f80, 0x7fc1, 0x0001, 0x8000,
                                           0x4049, 0xffff});
  Tensor i32 = make<int32_t>({5}, {0, -1, std::numeric_limits<int32_t>::min(),
                                   std::numeric_limits<int32_t>::max(), 151643});
  Tensor i64 = make<int64_t>({3, 1}, {std::numeric_limits<int64_t>::min(),
                                      std::numeric_limits<int64_t>::max(), -42});
  Tensor scalar = make<float>({}, {2.75f});
  Tensor empty = Tensor::empty({0, 3}, DType::F32);
  {
    CheckpointWriter w(path);
    w.write_tensor("model/model.layers.0.self_attn.q_proj.weight", f32);
    w.write_tensor("/model/model.layers.0.mlp.up_proj.weight", bf16);  // leading slash dropped
    w.write_tensor("optimizer/exp_avg/ids", i32);
    w.write_tensor("optimizer/exp_avg_sq/counts", i64);
    w.write_tensor("state/scale", scalar);
    w.write_tensor("model/empty", empty);
    w.commit();
  }
  CheckpointReader r(path);
  EXPECT_TRUE(same_bytes(r.read_tensor("model/model.layers.0.self_attn.q_proj.weight"), f32));
  EXPECT_TRUE(same_bytes(r.read_tensor("model/model.layers.0.mlp.up_proj.weight"), bf16));
  EXPECT_TRUE(same_bytes(r.read_tensor("optimizer/exp_avg/ids"), i32));
  EXPECT_TRUE(same_bytes(r.read_tensor("optimizer/exp_avg_sq/counts"), i64));
  EXPECT_TRUE(same_bytes(r.read_tensor("state/scale"), scalar));
  Tensor e = r.read_tensor("model/empty");
  EXPECT_EQ(e.shape(), (Shape{0, 3}));

  Tensor into = Tensor::zeros({2, 2, 2}, DType::BF16);
  r.read_tensor_into("model/model.layers.0.mlp.up_proj.weight", into);
  EXPECT_TRUE(same_bytes(into, bf16));

  // list(): every dataset with its dtype and shape, in natural order.
  auto infos = r.list();
  ASSERT_EQ(infos.size(), 6u);
  EXPECT_EQ(infos[0].name, "model/empty");
  EXPECT_EQ(infos[1].name, "model/model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(infos[1].type, StoredType::BF16);
  EXPECT_EQ(infos[1].shape, (Shape{2, 2, 2}));
  EXPECT_TRUE(infos[1].is_tensor);
  EXPECT_EQ(infos[2].type, StoredType::F32);
  EXPECT_EQ(infos[3].name, "optimizer/exp_avg/ids");
  EXPECT_EQ(infos[3].type, StoredType::I32);
  EXPECT_EQ(infos[4].type, StoredType::I64);
  EXPECT_EQ(infos[4].shape, (Shape{3, 1}));
  EXPECT_EQ(infos[5].name, "state/scale");
  EXPECT_EQ(infos[5].shape, Shape{});
  EXPECT_TRUE(r.has("model"));
  EXPECT_TRUE(r.has("optimizer/exp_avg/ids"));
  EXPECT_FALSE(r.has("optimizer/exp_avg/nope"));
  EXPECT_FALSE(r.has("nope/deeper/still"));
}

TEST(Checkpoint, RoundTripsStringsScalarsVectorsAndAttributes) {
  TempDir dir;
  std::string path = dir / "step_00000002.h5";
  const std::string toml = "[run]\nname = \"é ✓ 日本\"\n\n[model]\nlayers = 2\n";
  const double tricky = std::nextafter(0.1, 1.0);
  const std::vector<int64_t> ints = {0, -1, std::numeric_limits<int64_t>::min(),
                                     std::numeric_limits<int64_t>::max()};
  const std::vector<uint64_t> u64s = {0, 1, std::numeric_limits<uint64_t>::max(),
                                      0x9e3779b97f4a7c15ULL};
  {
    CheckpointWriter w(path);
    w.write_string("config/job_toml", toml);
    w.write_string("config/empty", "");
    w.write_int("state/step", 120);
    w.write_int("state/neg", -7);
    w.write_double("state/lr", tricky);
    w.write_double("state/negzero", -0.0);
    w.write_ints("state/cursor", ints);
    w.write_ints("state/none", {});
    w.write_u64s("state/rng/sampler", u64s);
    w.set_attribute("layout", "tp=1 pp=1 dp=1");
    w.set_attribute("world_size", int64_t{4});
    w.set_attribute("world_size", int64_t{1});  // replaced, not duplicated
    w.commit();
  }
  CheckpointReader r(path);
  EXPECT_EQ(r.format_version(), 1);
  EXPECT_EQ(r.attribute_string("format"), "opd-checkpoint");
  EXPECT_EQ(r.attribute_int("format_version"), 1);
  EXPECT_EQ(r.attribute_string("layout"), "tp=1 pp=1 dp=1");
  EXPECT_EQ(r.attribute_int("world_size"), 1);
  EXPECT_FALSE(r.has_attribute("nope"));
  auto attrs = r.attributes();
  ASSERT_EQ(attrs.size(), 4u);
  EXPECT_EQ(attrs[0], (std::pair<std::string, std::string>{"format", "opd-checkpoint"}));
  EXPECT_EQ(attrs[3], (std::pair<std::string, std::string>{"world_size", "1"}));

  EXPECT_EQ(r.read_string("config/job_toml"), toml);
  EXPECT_EQ(r.read_string("config/empty"), "");
  EXPECT_EQ(r.read_int("state/step"), 120);
  EXPECT_EQ(r.read_int("state/neg"), -7);
  double lr = r.read_double("state/lr");
  EXPECT_EQ(std::memcmp(&lr, &tricky, 8), 0);
  EXPECT_TRUE(std::signbit(r.read_double("state/negzero")));
  EXPECT_EQ(r.read_ints("state/cursor"), ints);
  EXPECT_TRUE(r.read_ints("state/none").empty());
  EXPECT_EQ(r.read_u64s("state/rng/sampler"), u64s);
  DatasetInfo s = r.info("state/rng/sampler");
  EXPECT_EQ(s.type, StoredType::U64);
  EXPECT_EQ(s.shape, Shape{4});
  EXPECT_FALSE(s.is_tensor);
  EXPECT_EQ(r.info("config/job_toml").type, StoredType::String);
  for (const auto& info : r.list()) EXPECT_NO_THROW(r.verify(info.name)) << info.name;
}

TEST(Checkpoint, NothingAtFinalPathBeforeCommitAndNoTmpAfter) {
  TempDir dir;
  std::string path = dir / "step_00000003.h5";
  CheckpointWriter w(path);
  EXPECT_EQ(w.temp_path(), path + ".tmp");
  w.write_tensor("model/w", make<float>({2}, {1.0f, 2.0f}));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::exists(path + ".tmp"));
  w.commit();
  EXPECT_TRUE(w.committed());
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(CheckpointReader(path).read_tensor("model/w").to_vector(),
            (std::vector<float>{1.0f, 2.0f}));
}

TEST(Checkpoint, WriterDestroyedWithoutCommitLeavesNothing) {
  TempDir dir;
  std::string path = dir / "ckpt/step_00000004.h5";
  {
    CheckpointWriter w(path);
    w.write_tensor("model/w", make<float>({3}, {1, 2, 3}));
    w.write_int("state/step", 4);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  // Also when the writer is abandoned because of an exception mid-save.
  try {
    CheckpointWriter w(path);
    w.write_int("state/step", 4);
    w.write_int("state/step", 5);  // written twice: an internal error
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Internal);
    EXPECT_NE(std::string(e.what()).find("written twice"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Checkpoint, CommitReplacesAnOlderFileOfTheSameName) {
  TempDir dir;
  std::string path = dir / "step_00000005.h5";
  {
    CheckpointWriter w(path);
    w.write_int("state/step", 1);
    w.commit();
  }
  CheckpointWriter w(path);
  w.write_int("state/step", 2);
  EXPECT_EQ(CheckpointReader(path).read_int("state/step"), 1);  // old one intact meanwhile
  w.commit();
  EXPECT_EQ(CheckpointReader(path).read_int("state/step"), 2);
}

TEST(Checkpoint, BlocksOfAGlobalShapeAssembleAndReadBackAsAnyBlock) {
  TempDir dir;
  std::string path = dir / "step_00000006.h5";
  // Global [4, 6] i32 with value 10*row + col, written as four 2x3 blocks (a 2x2 "rank grid").
  auto value = [](int64_t r, int64_t c) { return static_cast<int32_t>(10 * r + c); };
  {
    CheckpointWriter w(path);
    for (int64_t br = 0; br < 2; ++br)
      for (int64_t bc = 0; bc < 2; ++bc) {
        std::vector<int32_t> v;
        for (int64_t r = 0; r < 2; ++r)
          for (int64_t c = 0; c < 3; ++c) v.push_back(value(2 * br + r, 3 * bc + c));
        w.write_tensor("model/sharded", make<int32_t>({2, 3}, v), {4, 6}, {2 * br, 3 * bc});
      }
    w.commit();
  }
  CheckpointReader r(path);
  Tensor whole = r.read_tensor("model/sharded");  // checksum (set at commit) verified
  ASSERT_EQ(whole.shape(), (Shape{4, 6}));
  for (int64_t i = 0; i < 24; ++i) EXPECT_EQ(whole.data<int32_t>()[i], value(i / 6, i % 6));
  // Resharded: columns 1..4 of rows 1..3.
  Tensor blk = r.read_block("model/sharded", {1, 1}, {3, 4});
  ASSERT_EQ(blk.shape(), (Shape{3, 4}));
  for (int64_t i = 0; i < 12; ++i)
    EXPECT_EQ(blk.data<int32_t>()[i], value(1 + i / 4, 1 + i % 4));
  Tensor dst = Tensor::zeros({4, 3}, DType::I32);
  r.read_tensor_into("model/sharded", dst, {0, 3});
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(dst.data<int32_t>()[i], value(i / 3, 3 + i % 3));
  EXPECT_TRUE(throws_input([&] { r.read_block("model/sharded", {2, 0}, {3, 6}); },
                           {"outside dataset 'model/sharded'", "[4, 6]"}));
}

TEST(Checkpoint, BlocksThatDoNotCoverTheDatasetFailTheCommit) {
  TempDir dir;
  std::string path = dir / "step_00000007.h5";
  {
    CheckpointWriter w(path);
    w.write_tensor("model/half", make<float>({2}, {1, 2}), {4}, {0});
    try {
      w.commit();
      FAIL() << "commit accepted a half-written dataset";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Internal);
      EXPECT_NE(std::string(e.what()).find("cover 2 of 4"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Checkpoint, MissingFileIsAnInputError) {
  TempDir dir;
  std::string path = dir / "step_00000099.h5";
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(path); },
                           {"checkpoint " + path + " does not exist"}));
}

TEST(Checkpoint, TmpFileIsRefusedAsUnpublished) {
  TempDir dir;
  std::string path = dir / "step_00000008.h5";
  CheckpointWriter w(path);
  w.write_int("state/step", 8);
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(w.temp_path()); }, {"unpublished"}));
  // Even a complete, valid file under a .tmp name.
  w.commit();
  fs::copy_file(path, path + ".tmp");
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(path + ".tmp"); }, {"unpublished"}));
}

TEST(Checkpoint, TruncatedFileIsAnInputErrorNotACrash) {
  TempDir dir;
  std::string path = dir / "step_00000009.h5";
  write_sample(path);
  ASSERT_TRUE(sample_matches(path));
  std::string bytes = read_file(path);
  ASSERT_GT(bytes.size(), 16000u);
  std::string cut = dir / "step_00000010.h5";
  write_file(cut, bytes.substr(0, bytes.size() / 2));
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(cut); },
                           {cut + " is not a readable opd checkpoint (truncated or corrupt?)",
                            "truncated"}));
  // Any other length short of the whole file, too.
  for (std::size_t len : {std::size_t{0}, std::size_t{7}, std::size_t{100}, std::size_t{2048},
                          bytes.size() / 4, bytes.size() * 3 / 4, bytes.size() - 1}) {
    write_file(cut, bytes.substr(0, len));
    EXPECT_TRUE(throws_input([&] { (void)sample_matches(cut); }, {cut})) << "length " << len;
  }
}

TEST(Checkpoint, NonHdf5FileIsAnInputError) {
  TempDir dir;
  std::string path = dir / "step_00000011.h5";
  write_file(path, "this is a text file, not a checkpoint\n");
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(path); },
                           {path + " is not a readable opd checkpoint", "signature"}));
  fs::create_directory(dir / "adir.h5");
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(dir / "adir.h5"); },
                           {"not a readable opd checkpoint", "not a regular file"}));
}

TEST(Checkpoint, FlippedDataByteIsAChecksumErrorNamingTheDataset) {
  TempDir dir;
  std::string path = dir / "step_00000012.h5";
  // A recognisable pattern that occurs exactly once in the file: the raw bytes of the tensor.
  std::vector<int32_t> pattern(256);
  for (std::size_t i = 0; i < pattern.size(); ++i)
    pattern[i] = static_cast<int32_t>(0x5eed0000u + 977u * i);
  {
    CheckpointWriter w(path);
    w.write_tensor("model/victim", make<int32_t>({16, 16}, pattern));
    w.write_tensor("model/bystander", make<float>({3}, {1, 2, 3}));
    w.commit();
  }
  std::string bytes = read_file(path);
  std::string needle(reinterpret_cast<const char*>(pattern.data()), pattern.size() * 4);
  std::size_t at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(bytes.find(needle, at + 1), std::string::npos);
  bytes[at + 517] ^= 0x10;
  write_file(path, bytes);

  CheckpointReader r(path);  // the metadata is intact: it opens
  EXPECT_TRUE(throws_input([&] { r.read_tensor("model/victim"); },
                           {path, "'model/victim' fails its checksum", "corrupt"}));
  Tensor dst = Tensor::empty({16, 16}, DType::I32);
  EXPECT_TRUE(throws_input([&] { r.read_tensor_into("model/victim", dst); }, {"checksum"}));
  EXPECT_TRUE(throws_input([&] { r.verify("model/victim"); }, {"checksum"}));
  EXPECT_EQ(r.read_tensor("model/bystander").to_vector(), (std::vector<float>{1, 2, 3}));
}

TEST(Checkpoint, FlippedBytesAnywhereAreRefusedOrHarmless) {
  // Flip one bit at a time across the whole file: each variant must either be refused with an
  // Input error or read back exactly (a flip in unused space). Never a crash, never wrong data.
  TempDir dir;
  std::string path = dir / "step_00000013.h5";
  write_sample(path);
  std::string bytes = read_file(path);
  std::string victim = dir / "step_00000014.h5";
  int refused = 0, harmless = 0;
  for (std::size_t pos = 0; pos < bytes.size(); pos += 13) {
    std::string damaged = bytes;
    damaged[pos] ^= static_cast<char>(1u << (pos % 8));
    write_file(victim, damaged);
    try {
      ASSERT_TRUE(sample_matches(victim)) << "wrong data read after flipping byte " << pos;
      ++harmless;
    } catch (const Error& e) {
      ASSERT_EQ(e.kind(), ErrorKind::Input) << "byte " << pos << ": " << e.what();
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  // The 16 KiB of tensor data alone are a large share of the file: each flip there is refused.
  EXPECT_GT(refused, static_cast<int>(bytes.size() / 13 / 2));
  std::cout << "flipped " << refused + harmless << " positions: " << refused << " refused, "
            << harmless << " harmless\n";
}

TEST(Checkpoint, ForeignOrNewerFormatsAreRefused) {
  TempDir dir;
  std::string plain = dir / "plain.h5";
  {  // An HDF5 file that is not a checkpoint.
    h5::File f = h5::File::create(plain);
    f.close();
  }
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(plain); },
                           {plain + " is not an opd checkpoint", "format"}));
  std::string other = dir / "other.h5";
  {
    h5::File f = h5::File::create(other);
    f.root().write_attribute("format", std::string("safetensors-ish"));
    f.close();
  }
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(other); }, {"safetensors-ish"}));
  std::string newer = dir / "newer.h5";
  {
    h5::File f = h5::File::create(newer);
    f.root().write_attribute("format", std::string("opd-checkpoint"));
    f.root().write_attribute("format_version", int64_t{2});
    f.close();
  }
  EXPECT_TRUE(throws_input([&] { CheckpointReader r(newer); },
                           {"newer opd", "format_version 2", "reads up to 1"}));
}

TEST(Checkpoint, ReadsWithTheWrongShapeTypeOrNameSayWhat) {
  TempDir dir;
  std::string path = dir / "step_00000015.h5";
  {
    CheckpointWriter w(path);
    w.write_tensor("model/w", Tensor::zeros({4, 6}, DType::F32));
    w.write_int("state/step", 3);
    w.write_string("config/job_toml", "x");
    w.commit();
  }
  CheckpointReader r(path);
  Tensor wrong_shape = Tensor::empty({6, 4}, DType::F32);
  EXPECT_TRUE(throws_input([&] { r.read_tensor_into("model/w", wrong_shape); },
                           {"'model/w' is f32[4, 6] but the destination is f32[6, 4]"}));
  Tensor wrong_type = Tensor::empty({4, 6}, DType::BF16);
  EXPECT_TRUE(throws_input([&] { r.read_tensor_into("model/w", wrong_type); },
                           {"f32[4, 6]", "bf16[4, 6]"}));
  EXPECT_TRUE(throws_input([&] { r.read_tensor("model/missing"); },
                           {path, "has no dataset 'model/missing'"}));
  EXPECT_TRUE(throws_input([&] { r.read_int("model/w"); }, {"'model/w' is f32[4, 6]", "i64"}));
  EXPECT_TRUE(throws_input([&] { r.read_double("state/step"); }, {"'state/step' is i64[]"}));
  EXPECT_TRUE(throws_input([&] { r.read_tensor("config/job_toml"); }, {"not a tensor"}));
  EXPECT_TRUE(throws_input([&] { r.read_string("state/step"); }, {"expected a string"}));
  EXPECT_TRUE(throws_input([&] { r.attribute_string("nope"); }, {"no attribute 'nope'"}));
}

TEST(Checkpoint, Fnv1aMatchesTheReferenceVectors) {
  // Published FNV-1a 64 test vectors.
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar", 6), 0x85944171f73967e8ULL);
  EXPECT_EQ(fnv1a64("bar", 3, fnv1a64("foo", 3)), fnv1a64("foobar", 6));
}

}  // namespace
}  // namespace opd::io
