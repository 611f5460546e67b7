// `opd convert`: Hugging Face folders (written here by the tests' own safetensors writer) imported
// and exported again reproduce every tensor bit for bit, for Qwen2- (q/k/v biases, tied),
// Llama- (untied; tied with a stored head copy) and Qwen3-shaped (QK-norm) models, one file or
// shards; F16 and BF16 go to f32 and back exactly; an imported model's logits equal an
// independent PyTorch reference's (tests/io/reference_llama.py) to rel. 1e-4; and every bad
// input is one clear line, exit status 2, with nothing left behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "data/bpe_tokenizer.hpp"
#include "data/tokenizer.hpp"
#include "data/unicode_props.hpp"
#include "distill/model_io.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_dtype.hpp"
#include "io/test_safetensors_util.hpp"
#include "model/transformer.hpp"
#include "testing/process.hpp"

#ifndef OPD_PYTHON
#define OPD_PYTHON "/usr/bin/python3"
#endif

using namespace opd::testing;
namespace fs = std::filesystem;
namespace stt = opd::testing::st;
using json = nlohmann::json;

namespace {

std::string char_id() { return opd::data::make_tokenizer("char")->describe(); }

// Every tensor of `a` (a folder written by the test) is in `b` with the same dtype, shape and
// bytes, and `b` has no others (a tied head copy in `a` excepted: export leaves it out).
void expect_same_tensors(const fs::path& a, const fs::path& b, bool a_has_tied_copy = false) {
  opd::io::SafetensorsFolder fa(a), fb(b);
  auto names = fa.names();
  if (a_has_tied_copy) names.erase(std::find(names.begin(), names.end(), "lm_head.weight"));
  ASSERT_EQ(names, fb.names());
  for (const auto& n : names) {
    const auto& ea = fa.entry(n);
    const auto& eb = fb.entry(n);
    EXPECT_EQ(opd::io::safetensors::dtype_name(ea.dtype), std::string(opd::io::safetensors::dtype_name(eb.dtype))) << n;
    EXPECT_EQ(ea.shape, eb.shape) << n;
    EXPECT_TRUE(fa.read_bytes(n) == fb.read_bytes(n)) << n << " differs";
  }
}

void expect_config_kept(const fs::path& a, const fs::path& b) {
  const json ca = json::parse(read_file(a / "config.json")), cb = json::parse(read_file(b / "config.json"));
  for (const char* k : {"model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
                        "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                        "max_position_embeddings", "rope_theta", "rms_norm_eps", "tie_word_embeddings",
                        "bos_token_id", "eos_token_id", "torch_dtype", "hidden_act"})
    EXPECT_EQ(ca[k], cb[k]) << k;
}

struct Case {
  const char* label;
  stt::ModelShape shape;
  bool tied_copy;
  int shards;
};

std::vector<Case> cases() {
  stt::ModelShape qwen2;  // q/k/v biases, tied, padded vocabulary (112 rows > char's 100), BF16
  qwen2.vocab = 112;
  stt::ModelShape llama;
  llama.model_type = "llama";
  llama.tie = false;
  llama.vocab = 100;
  llama.heads = 4;
  llama.kv_heads = 4;
  llama.rope_theta = 10000.0;
  llama.eps = 1e-5;
  llama.dtype = "F16";
  stt::ModelShape qwen3;  // QK-norm; head_dim * heads != hidden, GQA 4:1
  qwen3.model_type = "qwen3";
  qwen3.tie = false;
  qwen3.vocab = 128;
  qwen3.heads = 8;
  qwen3.kv_heads = 2;
  qwen3.head_dim = 16;
  qwen3.layers = 3;
  stt::ModelShape llama_tied = llama;  // tied, with the head stored too, F32
  llama_tied.tie = true;
  llama_tied.dtype = "F32";
  return {{"qwen2", qwen2, false, 1}, {"llama", llama, false, 1}, {"qwen3", qwen3, false, 3},
          {"llama_tied", llama_tied, true, 2}};
}

class Convert : public ::testing::Test {
 protected:
  ScratchDir dir_{"convert"};

  // Runs opd and expects success.
  void ok(const std::string& args) {
    auto r = run_opd(args, dir_.path());
    ASSERT_EQ(r.status, 0) << args << "\n" << r.err;
  }
  // Runs opd and expects the bad-input contract: status 2, one error line, the tree unchanged.
  std::string bad(const std::string& args) {
    const std::string before = tree_snapshot(dir_.path());
    auto r = run_opd(args, dir_.path());
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_EQ(r.err.rfind("opd: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(tree_snapshot(dir_.path()), before) << args;
    return r.err;
  }
  fs::path write_hf(const std::string& name, const stt::ModelShape& m, uint64_t seed, bool tied_copy = false,
                    int shards = 1) {
    stt::write_folder(dir_ / name, m, stt::random_weights(m, seed, tied_copy), shards);
    return dir_ / name;
  }
};

TEST_F(Convert, ImportExportIsBitExactForEveryFamily) {
  uint64_t seed = 1;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.label);
    const std::string hf = std::string("hf_") + c.label, ck = std::string(c.label) + ".h5",
                      back = std::string("back_") + c.label;
    write_hf(hf, c.shape, seed++, c.tied_copy, c.shards);
    ok("convert --from-hf " + hf + " --out " + ck + " --tokenizer char");
    ok("convert --to-hf " + ck + " --out " + back);
    expect_same_tensors(dir_ / hf, dir_ / back, c.tied_copy);
    expect_config_kept(dir_ / hf, dir_ / back);
    EXPECT_TRUE(fs::exists(dir_ / back / "model.safetensors"));
    // The checkpoint is an ordinary opd model checkpoint.
    opd::io::CheckpointReader r((dir_ / ck).string());
    EXPECT_EQ(r.read_string("config/tokenizer"), char_id());
    const auto cfg = opd::distill::read_model_config(r);
    EXPECT_EQ(cfg.vocab_size, c.shape.vocab);
    EXPECT_EQ(cfg.head_size(), c.shape.head_dim);
    EXPECT_EQ(cfg.n_kv_heads, c.shape.kv_heads);
    EXPECT_EQ(cfg.qkv_bias, c.shape.qkv_bias());
    EXPECT_EQ(cfg.qk_norm, c.shape.qk_norm());
    EXPECT_EQ(cfg.tie_embeddings, c.shape.tie);
    EXPECT_EQ(cfg.rope_theta, c.shape.rope_theta);
    EXPECT_EQ(cfg.norm_eps, c.shape.eps);
    EXPECT_EQ(cfg.max_seq_len, c.shape.max_pos);
    EXPECT_NO_THROW(opd::distill::load_model((dir_ / ck).string(), char_id()));
    auto ins = run_opd("inspect " + ck, dir_.path());
    EXPECT_EQ(ins.status, 0) << ins.err;
    // ... which the other commands take as a model. (Only unpadded vocabularies here: a random
    // model samples padding rows, which no tokenizer can decode.)
    if (c.shape.vocab == 100) {
      auto gen = run_opd("generate --model " + ck + " --prompt 12+3 --max-new-tokens 4 --tokenizer char", dir_.path());
      EXPECT_EQ(gen.status, 0) << gen.err;
      EXPECT_NE(gen.out.find("\"prompt\":\"12+3\""), std::string::npos) << gen.out;
    }
  }
}

TEST_F(Convert, ShardedFoldersRoundTripAndExportShardsAboveTheThreshold) {
  stt::ModelShape m;
  m.vocab = 100;
  m.dtype = "BF16";
  write_hf("hf", m, 42, false, 3);
  ok("convert --from-hf hf --out m.h5 --tokenizer char");
  ok("convert --to-hf m.h5 --out back --max-shard-size 4KiB");
  EXPECT_TRUE(fs::exists(dir_ / "back/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir_ / "back/model.safetensors"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(dir_ / "back"))
    if (e.path().extension() == ".safetensors") {
      ++shards;
      opd::io::SafetensorsFile f(e.path().string());
      if (f.header().tensors.size() > 1) EXPECT_LE(f.header().data_bytes(), 4096u) << e.path();
    }
  EXPECT_GT(shards, 2);
  expect_same_tensors(dir_ / "hf", dir_ / "back");
  // ... and the sharded export imports again to the same checkpoint tensors.
  ok("convert --from-hf back --out m2.h5 --tokenizer char");
  opd::io::CheckpointReader a((dir_ / "m.h5").string()), b((dir_ / "m2.h5").string());
  for (const auto& info : a.list())
    if (info.name.rfind("model/", 0) == 0)
      EXPECT_EQ(a.read_tensor(info.name).to_vector(), b.read_tensor(info.name).to_vector()) << info.name;
}

TEST_F(Convert, HalfPrecisionGoesToF32AndBackExactly) {
  for (const char* dt : {"BF16", "F16"}) {
    SCOPED_TRACE(dt);
    const std::string t = dt;
    stt::ModelShape m;
    m.vocab = 100;
    m.dtype = dt;
    write_hf("hf" + t, m, 7, false, 1);
    ok("convert --from-hf hf" + t + " --out a" + t + ".h5 --tokenizer char");
    ok("convert --to-hf a" + t + ".h5 --out f32" + t + " --dtype fp32");
    // The f32 export holds exactly the widened values.
    opd::io::SafetensorsFolder src(dir_ / ("hf" + t)), wide(dir_ / ("f32" + t));
    for (const auto& n : src.names()) {
      EXPECT_EQ(wide.entry(n).dtype, opd::io::safetensors::DType::F32) << n;
      const auto raw = src.read_bytes(n);
      const auto w = wide.read_f32(n).to_vector();
      ASSERT_EQ(w.size() * 2, raw.size());
      for (std::size_t i = 0; i < w.size(); ++i) {
        const uint16_t h = static_cast<uint16_t>(raw[2 * i] | (raw[2 * i + 1] << 8));
        _Float16 hf;
        std::memcpy(&hf, &h, 2);
        const float want = t == "F16" ? static_cast<float>(hf) : opd::io::safetensors::bf16_to_f32(h);
        ASSERT_EQ(w[i], want) << n << "[" << i << "]";
      }
    }
    EXPECT_EQ(json::parse(read_file(dir_ / ("f32" + t) / "config.json"))["torch_dtype"], "float32");
    // f32 folder -> checkpoint -> the original half format: the original bits.
    ok("convert --from-hf f32" + t + " --out b" + t + ".h5 --tokenizer char");
    ok("convert --to-hf b" + t + ".h5 --out half" + t + " --dtype " + (t == "F16" ? "fp16" : "bf16"));
    expect_same_tensors(dir_ / ("hf" + t), dir_ / ("half" + t));
  }
}

TEST_F(Convert, AModelTrainedInOpdExportsAsF32AndImportsBack) {
  opd::model::ModelConfig c;
  c.vocab_size = 100;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.d_ff = 64;
  c.qkv_bias = true;
  c.tie_embeddings = false;
  c.rope_theta = 5000;
  opd::model::Transformer m(c);
  m.init_weights(9);
  {
    opd::io::CheckpointWriter w((dir_ / "trained.h5").string());
    opd::distill::write_model(w, m, char_id());
    w.commit();
  }
  ok("convert --to-hf trained.h5 --out hf");
  const json cfg = json::parse(read_file(dir_ / "hf/config.json"));
  EXPECT_EQ(cfg["model_type"], "qwen2");
  EXPECT_EQ(cfg["architectures"][0], "Qwen2ForCausalLM");
  EXPECT_EQ(cfg["torch_dtype"], "float32");
  EXPECT_EQ(cfg["num_key_value_heads"], 2);
  EXPECT_EQ(cfg["head_dim"], 8);
  EXPECT_EQ(cfg["tie_word_embeddings"], false);
  EXPECT_EQ(cfg["rope_theta"], 5000.0);
  ok("convert --from-hf hf --out again.h5 --tokenizer char");
  opd::io::CheckpointReader r((dir_ / "again.h5").string());
  for (const auto& p : m.params().all())
    EXPECT_EQ(r.read_tensor("model/" + p.name).to_vector(), p.value.to_vector()) << p.name;
  EXPECT_EQ(opd::distill::read_model_config(r).describe(), c.describe());
  // Narrowed on request: bf16 of each value, rounded to nearest even.
  ok("convert --to-hf trained.h5 --out hf16 --dtype bf16");
  opd::io::SafetensorsFolder f(dir_ / "hf16");
  const auto& emb = m.params().get("model.embed_tokens.weight").value;
  const auto raw = f.read_bytes("model.embed_tokens.weight");
  for (int64_t i = 0; i < emb.numel(); i += 97)
    EXPECT_EQ(static_cast<uint16_t>(raw[2 * i] | (raw[2 * i + 1] << 8)),
              opd::io::safetensors::f32_to_bf16(emb.data<float>()[i]));
}

// ---- logits against the independent reference ------------------------------------------------

std::vector<std::vector<float>> opd_logits(const fs::path& ckpt, const std::vector<int32_t>& ids) {
  auto m = opd::distill::load_model(ckpt.string(), char_id());
  const auto T = static_cast<int64_t>(ids.size());
  std::vector<int32_t> pos(ids.size());
  for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>(i);
  const auto idt = opd::core::Tensor::from_vector(ids, {1, T});
  const auto pt = opd::core::Tensor::from_vector(pos, {1, T});
  const opd::core::Tensor& h = m->forward(idt, pt, false);
  opd::core::Tensor out = opd::core::Tensor::empty({T, m->config().vocab_size});
  m->logits(h, out);
  std::vector<std::vector<float>> rows;
  const auto all = out.to_vector();
  for (int64_t t = 0; t < T; ++t)
    rows.emplace_back(all.begin() + t * out.dim(1), all.begin() + (t + 1) * out.dim(1));
  return rows;
}

TEST_F(Convert, ImportedLogitsEqualAnIndependentReference) {
  const std::string py = OPD_PYTHON;
  if (run_command("'" + py + "' -c 'import torch, numpy'", dir_.path()).status != 0)
    GTEST_SKIP() << py << " has no torch (Debian: python3-torch); the reference cannot run";
  const std::string script = std::string(OPD_SOURCE_DIR) + "/tests/io/reference_llama.py";
  const std::vector<std::vector<int32_t>> seqs = {{5, 17, 99, 3, 42, 42, 8, 60, 1, 77, 23, 64, 11},
                                                  {0, 31, 2}};
  uint64_t seed = 100;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.label);
    const std::string hf = std::string("ref_") + c.label, ck = hf + ".h5";
    write_hf(hf, c.shape, seed++, c.tied_copy, c.shards);
    ok("convert --from-hf " + hf + " --out " + ck + " --tokenizer char");
    std::string args;
    for (const auto& s : seqs) {
      args += " --ids ";
      for (std::size_t i = 0; i < s.size(); ++i) args += (i ? "," : "") + std::to_string(s[i]);
    }
    auto r = run_command("'" + py + "' '" + script + "' " + hf + args, dir_.path());
    if (r.status == 77) GTEST_SKIP() << r.err;
    ASSERT_EQ(r.status, 0) << r.err;
    const json ref = json::parse(r.out)["logits"];
    ASSERT_EQ(ref.size(), seqs.size());
    for (std::size_t s = 0; s < seqs.size(); ++s) {
      const auto got = opd_logits(dir_ / ck, seqs[s]);
      ASSERT_EQ(ref[s].size(), got.size());
      // rel = max |opd - ref| / max |ref| over the sequence's logits.
      double diff = 0, scale = 0;
      for (std::size_t t = 0; t < got.size(); ++t) {
        ASSERT_EQ(ref[s][t].size(), got[t].size());
        for (std::size_t v = 0; v < got[t].size(); ++v) {
          const double want = ref[s][t][v].get<double>();
          diff = std::max(diff, std::abs(got[t][v] - want));
          scale = std::max(scale, std::abs(want));
        }
      }
      EXPECT_GT(scale, 1.0);  // logits of this size make the check meaningful
      EXPECT_LE(diff / scale, 1e-4) << "max diff " << diff << ", max |logit| " << scale;
      std::printf("[ %s ] sequence %zu: max |logit| %.3f, rel. difference %.2e\n", c.label, s, scale,
                  diff / scale);
    }
  }
}

// ---- bad input -------------------------------------------------------------------------------

TEST_F(Convert, BadFoldersAreClearErrorsAndWriteNothing) {
  stt::ModelShape m;
  m.vocab = 100;
  auto weights = stt::random_weights(m, 3);
  auto folder = [&](const std::string& name, const std::string& config, const std::vector<stt::RawTensor>& w) {
    fs::create_directories(dir_ / name);
    write_file(dir_ / name / "config.json", config);
    stt::write_bytes(dir_ / name / "model.safetensors", stt::file_bytes(w));
  };
  auto imp = [&](const std::string& name) { return bad("convert --from-hf " + name + " --out out.h5 --tokenizer char"); };
  auto replace = [](std::string s, const std::string& a, const std::string& b) {
    const auto at = s.find(a);
    EXPECT_NE(at, std::string::npos) << a;
    return s.replace(at, a.size(), b);
  };
  const std::string cfg = stt::config_json(m);

  EXPECT_NE(imp("nothing").find("not a directory"), std::string::npos);
  fs::create_directories(dir_ / "noconfig");
  EXPECT_NE(imp("noconfig").find("has no config.json"), std::string::npos);

  folder("truncated", cfg, weights);
  {
    const std::string bytes = read_file(dir_ / "truncated/model.safetensors");
    stt::write_bytes(dir_ / "truncated/model.safetensors", bytes.substr(0, bytes.size() / 2));
  }
  EXPECT_NE(imp("truncated").find("run past the data section"), std::string::npos);
  folder("garbage", cfg, weights);
  stt::write_bytes(dir_ / "garbage/model.safetensors", stt::le64(1u << 20) + "{not json");
  EXPECT_NE(imp("garbage").find("runs past the end of the file"), std::string::npos);
  folder("notjson", "{\"model_type\": ", weights);
  EXPECT_NE(imp("notjson").find("not valid JSON"), std::string::npos);
  folder("mistral", replace(cfg, "\"qwen2\"", "\"mistral\""), weights);
  EXPECT_NE(imp("mistral").find("\"mistral\" is not one opd implements"), std::string::npos);
  folder("scaled", replace(cfg, "\"hidden_act\"", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0},\n  \"hidden_act\""), weights);
  EXPECT_NE(imp("scaled").find("RoPE scaling \"llama3\" is not implemented"), std::string::npos);
  folder("gelu", replace(cfg, "\"silu\"", "\"gelu\""), weights);
  EXPECT_NE(imp("gelu").find("activation \"gelu\""), std::string::npos);
  folder("window", replace(cfg, "\"hidden_act\"", "\"use_sliding_window\": true,\n  \"hidden_act\""), weights);
  EXPECT_NE(imp("window").find("sliding-window"), std::string::npos);
  folder("deepconfig", replace(cfg, "\"hidden_act\"", "\"x\": " + std::string(100000, '[') + std::string(100000, ']') +
                                                      ",\n  \"hidden_act\""), weights);
  EXPECT_NE(imp("deepconfig").find("nests deeper than 64 levels"), std::string::npos);
  folder("layers", replace(cfg, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000000000"), weights);
  EXPECT_NE(imp("layers").find("beyond any model"), std::string::npos);
  folder("nodim", replace(cfg, "\"hidden_size\": 32,", ""), weights);
  EXPECT_NE(imp("nodim").find("no \"hidden_size\""), std::string::npos);
  folder("negdim", replace(cfg, "\"intermediate_size\": 48", "\"intermediate_size\": -48"), weights);
  EXPECT_NE(imp("negdim").find("intermediate_size: must be a positive integer"), std::string::npos);
  folder("wrongshape", replace(cfg, "\"intermediate_size\": 48", "\"intermediate_size\": 40"), weights);
  EXPECT_NE(imp("wrongshape").find("gate_proj.weight' has shape [48, 32], config.json implies [40, 32]"),
            std::string::npos);
  {
    auto missing = weights;
    missing.erase(missing.begin() + 3);
    folder("missing", cfg, missing);
    EXPECT_NE(imp("missing").find("the weights lack 'model.layers.0.self_attn.k_proj.weight'"), std::string::npos);
  }
  {
    auto extra = weights;
    extra.push_back({"model.layers.0.self_attn.o_proj.bias", "BF16", {32}, std::string(64, '\0')});
    folder("extra", cfg, extra);
    EXPECT_NE(imp("extra").find("does not have: \"model.layers.0.self_attn.o_proj.bias\""), std::string::npos);
  }
  {
    auto head = weights;
    head.push_back({"lm_head.weight", "BF16", {100, 32}, std::string(6400, '\1')});
    folder("tiedbutdiffers", cfg, head);
    EXPECT_NE(imp("tiedbutdiffers").find("lm_head.weight differs"), std::string::npos);
    folder("untiedmissing", replace(cfg, "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"), weights);
    EXPECT_NE(imp("untiedmissing").find("lack 'lm_head.weight'"), std::string::npos);
  }
  {
    auto ints = weights;
    ints[1] = {ints[1].name, "I16", ints[1].shape, ints[1].bytes};
    folder("ints", cfg, ints);
    EXPECT_NE(imp("ints").find("is I16; opd imports F32, F16 and BF16"), std::string::npos);
  }
  {
    stt::ModelShape small = m;
    small.vocab = 96;  // fewer rows than the char tokenizer's 100
    folder("smallvocab", stt::config_json(small), stt::random_weights(small, 3));
    EXPECT_NE(imp("smallvocab").find("fewer than the tokenizer's 100"), std::string::npos);
  }
}

TEST_F(Convert, AnExportFailingMidwayLeavesNothing) {
  // A checkpoint whose last tensor (the head) is damaged on disk: the export has written the
  // other tensors by the time its checksum fails, and must then remove everything.
  stt::ModelShape m;
  m.model_type = "llama";
  m.tie = false;
  m.vocab = 100;
  m.dtype = "F32";
  const auto weights = stt::random_weights(m, 11);
  stt::write_folder(dir_ / "hf", m, weights);
  ok("convert --from-hf hf --out m.h5 --tokenizer char");
  std::string bytes = read_file(dir_ / "m.h5");
  const std::string& head = weights.back().bytes;  // lm_head.weight, stored as the same f32 bytes
  ASSERT_EQ(weights.back().name, "lm_head.weight");
  const auto at = bytes.find(head.substr(0, 64));
  ASSERT_NE(at, std::string::npos);
  bytes[at + head.size() / 2] ^= 0x10;
  write_file(dir_ / "m.h5", bytes);
  const std::string err = bad("convert --to-hf m.h5 --out back --max-shard-size 2KB");
  EXPECT_NE(err.find("lm_head.weight"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir_ / "back"));
}

// A small byte-level tokenizer.json (the 256 byte tokens, two merges, an end-of-text token: 260).
void write_tokenizer_json(const fs::path& p) {
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    opd::data::unicode::append_utf8(s, opd::data::byte_to_unicode(static_cast<unsigned char>(b)));
    if (s == "\"" || s == "\\") s = "\\" + s;
    vocab += "\"" + s + "\": " + std::to_string(b) + ", ";
  }
  vocab += "\"he\": 256, \"hel\": 257, \"\u0120w\": 258";
  write_file(p, R"({"normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "decoder": {"type": "ByteLevel"}, "added_tokens": [{"id": 259, "content": "<|endoftext|>", "special": true}],
  "model": {"type": "BPE", "vocab": {)" + vocab + R"(}, "merges": ["h e", "he l"]}})");
}

TEST_F(Convert, TheFoldersOwnTokenizerJsonIsTheDefault) {
  stt::ModelShape m;
  m.vocab = 264;  // 260 tokens, padded to a multiple of 8
  write_hf("hf", m, 8);
  write_tokenizer_json(dir_ / "hf/tokenizer.json");
  ok("convert --from-hf hf --out m.h5");
  const std::string hf_id = opd::data::make_tokenizer("hf:" + (dir_ / "hf/tokenizer.json").string())->describe();
  opd::io::CheckpointReader r((dir_ / "m.h5").string());
  EXPECT_EQ(r.read_string("config/tokenizer"), hf_id);
  // The identity is the file's content, wherever it lies.
  fs::create_directories(dir_ / "elsewhere");
  fs::copy_file(dir_ / "hf/tokenizer.json", dir_ / "elsewhere/tokenizer.json");
  EXPECT_NO_THROW(opd::distill::load_model((dir_ / "m.h5").string(),
                                           opd::data::make_tokenizer("hf:" + (dir_ / "elsewhere/tokenizer.json").string())->describe()));
  // --tokenizer overrides it; a model smaller than the tokenizer is refused.
  ok("convert --from-hf hf --out c.h5 --tokenizer char");
  opd::io::CheckpointReader rc((dir_ / "c.h5").string());
  EXPECT_EQ(rc.read_string("config/tokenizer"), char_id());
  stt::ModelShape small = m;
  small.vocab = 256;
  write_hf("small", small, 8);
  write_tokenizer_json(dir_ / "small/tokenizer.json");
  EXPECT_NE(bad("convert --from-hf small --out s.h5").find("256 rows, fewer than the tokenizer's 260 tokens"),
            std::string::npos);
}

TEST_F(Convert, BadCommandLinesAndExistingOutputsAreRefused) {
  stt::ModelShape m;
  m.vocab = 100;
  write_hf("hf", m, 5);
  ok("convert --from-hf hf --out m.h5 --tokenizer char");
  ok("convert --to-hf m.h5 --out back");
  EXPECT_NE(bad("convert --from-hf hf --out m.h5 --tokenizer char").find("exists already"), std::string::npos);
  EXPECT_NE(bad("convert --to-hf m.h5 --out back").find("exists already"), std::string::npos);
  EXPECT_NE(bad("convert --to-hf m.h5 --out back/").find("exists already"), std::string::npos);
  EXPECT_NE(bad("convert --from-hf hf --out n.h5").find("has no tokenizer.json, so --tokenizer SPEC is required"),
            std::string::npos);
  EXPECT_NE(bad("convert --from-hf hf --out n.h5 --tokenizer nope").find("unknown tokenizer kind"), std::string::npos);
  EXPECT_NE(bad("convert --from-hf hf --out n.h5 --tokenizer char --dtype bf16").find("--dtype applies to --to-hf"),
            std::string::npos);
  EXPECT_NE(bad("convert --to-hf m.h5 --out x --dtype fp8").find("unknown dtype 'fp8'"), std::string::npos);
  EXPECT_NE(bad("convert --to-hf m.h5 --out x --max-shard-size 5TB").find("not a positive size"), std::string::npos);
  EXPECT_NE(bad("convert --to-hf hf/config.json --out x").find("config.json"), std::string::npos);
  EXPECT_NE(bad("convert --out x").find("exactly one of --from-hf"), std::string::npos);
  auto r = run_opd("convert --from-hf hf --to-hf m.h5 --out x", dir_.path());
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "x"));
}

}  // namespace
