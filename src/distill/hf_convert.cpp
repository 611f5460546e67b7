// Hugging Face folder <-> opd checkpoint (see hf_convert.hpp).
#include "distill/hf_convert.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "distill/hf_convert_config.hpp"
#include "distill/model_io.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_dtype.hpp"
#include "model/param_specs.hpp"

namespace opd::distill {

namespace fs = std::filesystem;
using json = nlohmann::json;
using io::safetensors::DType;

namespace {

constexpr uint64_t kMaxConfigBytes = 16ull << 20;
constexpr int kMaxConfigDepth = 64;  // real configs nest 3 or 4 deep
// Datasets beside write_model's that let export give the folder back as it came.
constexpr const char* kHfConfig = "config/hf/config_json";
constexpr const char* kHfDtypes = "config/hf/tensor_dtypes";
constexpr const char* kHfModelType = "config/hf/model_type";

json read_config_json(const std::string& dir) {
  const fs::path p = fs::path(dir) / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(p, ec))
    input_error(dir, "has no config.json", "give a Hugging Face model folder (config.json and *.safetensors)");
  if (fs::file_size(p, ec) > kMaxConfigBytes)
    input_error(p.string(), "larger than " + std::to_string(kMaxConfigBytes) + " bytes; not a model config");
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in && !in.eof()) input_error(p.string(), "cannot read");
  return io::safetensors::parse_json_limited(ss.str(), p.string(), kMaxConfigDepth);
}

// The little-endian bytes of an f32 tensor in `dt`.
std::vector<unsigned char> encode(const core::Tensor& t, DType dt) {
  const auto n = static_cast<std::size_t>(t.numel());
  const float* src = t.data<float>();
  std::vector<unsigned char> out(n * io::safetensors::dtype_size(dt));
  if (dt == DType::F32) {
    if (n > 0) std::memcpy(out.data(), src, n * sizeof(float));
    return out;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const uint16_t h = dt == DType::F16 ? io::safetensors::f32_to_f16(src[i])
                                        : io::safetensors::f32_to_bf16(src[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

// Removes a temporary output directory unless released (the export was published).
class TempDirGuard {
 public:
  explicit TempDirGuard(fs::path p) : path_(std::move(p)) {}
  ~TempDirGuard() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  void release() { path_.clear(); }

 private:
  fs::path path_;
};

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) input_error(p.string(), "cannot write");
}

void refuse_existing(const std::string& path, const char* what) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(path, ec)))
    input_error(path, std::string(what) + " exists already; opd convert never overwrites",
                "remove it or choose another --out");
}

}  // namespace

DType parse_export_dtype(const std::string& text, const std::string& where) {
  if (text == "bf16" || text == "bfloat16") return DType::BF16;
  if (text == "fp16" || text == "f16" || text == "float16") return DType::F16;
  if (text == "fp32" || text == "f32" || text == "float32") return DType::F32;
  input_error(where, "unknown dtype '" + text + "'", "use bf16, fp16 or fp32");
}

const char* torch_dtype_name(DType dt) {
  switch (dt) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: return "float32";
  }
}

HfImportResult import_hf(const std::string& dir, const std::string& out_checkpoint,
                         const std::string& tokenizer_id, int64_t tokenizer_vocab) {
  refuse_existing(out_checkpoint, "the output checkpoint");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    input_error(dir, "not a directory", "give the Hugging Face model folder (config.json, *.safetensors)");
  const json cfg_json = read_config_json(dir);
  const std::string where = (fs::path(dir) / "config.json").string();
  const HfModelConfig hf = hf_to_model_config(cfg_json, where);
  const model::ModelConfig& c = hf.config;
  if (tokenizer_vocab > c.vocab_size)
    input_error(where + ".vocab_size",
                "the embedding has " + std::to_string(c.vocab_size) + " rows, fewer than the tokenizer's " +
                    std::to_string(tokenizer_vocab) + " tokens",
                "use the tokenizer the model was trained with");

  io::SafetensorsFolder folder(dir);
  const std::vector<model::ParamSpec> specs = model::parameter_specs(c);
  HfImportResult res;
  res.model_type = hf.model_type;
  res.config = c;

  // Every tensor of the folder must be one of the model's, except derived RoPE buffers and a
  // tied head stored twice (which must then equal the embedding bit for bit).
  std::set<std::string> wanted;
  for (const auto& sp : specs) wanted.insert(sp.name);
  std::vector<std::string> unknown;
  for (const std::string& name : folder.names()) {
    if (wanted.count(name)) continue;
    if (name.size() >= 20 && name.compare(name.size() - 20, 20, ".rotary_emb.inv_freq") == 0) {
      res.ignored.push_back(name);
    } else if (name == "lm_head.weight" && c.tie_embeddings) {
      const auto& head = folder.entry(name);
      const auto& emb = folder.entry("model.embed_tokens.weight");
      if (head.dtype != emb.dtype || head.shape != emb.shape ||
          folder.read_bytes(name) != folder.read_bytes("model.embed_tokens.weight"))
        input_error(where + ".tie_word_embeddings",
                    "is true, but lm_head.weight differs from model.embed_tokens.weight",
                    "set tie_word_embeddings to false in config.json if the head is its own");
      res.ignored.push_back(name);
    } else {
      unknown.push_back(name);
    }
  }
  if (!unknown.empty()) {
    std::string list;
    for (std::size_t i = 0; i < unknown.size() && i < 5; ++i)
      list += (i ? ", " : "") + io::safetensors::printable(unknown[i]);
    if (unknown.size() > 5) list += ", ... (" + std::to_string(unknown.size()) + " in all)";
    input_error(dir, "tensors that a " + hf.model_type + " model of this config does not have: " + list,
                "check config.json (model_type, tie_word_embeddings) against the weights");
  }
  json dtypes = json::object();
  for (const auto& sp : specs) {
    if (!folder.has(sp.name))
      input_error(dir, "the weights lack '" + sp.name + "', which a " + hf.model_type +
                           " model of this config.json has",
                  sp.name == "lm_head.weight" ? "set tie_word_embeddings to true if the head is the embedding"
                                              : "check that the weights and config.json belong together");
    const auto& e = folder.entry(sp.name);
    if (e.shape != sp.shape)
      input_error(dir, "'" + sp.name + "' has shape " + core::shape_str(e.shape) + ", config.json implies " +
                           core::shape_str(sp.shape));
    if (e.dtype != DType::F32 && e.dtype != DType::F16 && e.dtype != DType::BF16)
      input_error(folder.file_of(sp.name).path(),
                  "'" + sp.name + "' is " + io::safetensors::dtype_name(e.dtype) +
                      "; opd imports F32, F16 and BF16 weights");
    dtypes[sp.name] = io::safetensors::dtype_name(e.dtype);
  }

  // The checkpoint, laid out as write_model writes it (load_model reads it back).
  io::CheckpointWriter w(out_checkpoint);
  write_model_config(w, c, tokenizer_id);
  w.write_string(kHfConfig, cfg_json.dump(2));
  w.write_string(kHfDtypes, dtypes.dump());
  w.write_string(kHfModelType, hf.model_type);
  const fs::path abs = fs::absolute(dir, ec);
  w.set_attribute("converted_from", ec ? dir : abs.lexically_normal().string());
  for (const auto& sp : specs) {
    w.write_tensor("model/" + sp.name, folder.read_f32(sp.name));
    ++res.tensors;
  }
  w.commit();
  return res;
}

HfExportResult export_hf(const std::string& checkpoint, const std::string& out_dir,
                         const HfExportOptions& opt) {
  if (opt.dtype && *opt.dtype != DType::F32 && *opt.dtype != DType::F16 && *opt.dtype != DType::BF16)
    input_error("--dtype", "opd exports F32, F16 or BF16");
  fs::path out = fs::path(out_dir).lexically_normal();
  if (out.filename().empty() && out.has_parent_path()) out = out.parent_path();  // "dir/"
  refuse_existing(out.string(), "the output folder");
  io::CheckpointReader r(checkpoint);
  const model::ModelConfig c = read_model_config(r);
  c.validate(checkpoint + ":/config/model");
  HfExportResult res;
  res.model_type = hf_model_type_of(c, checkpoint);

  json base;  // the imported config.json, if this checkpoint came from a folder
  std::map<std::string, DType> imported;
  if (r.has(kHfConfig)) {
    base = io::safetensors::parse_json_limited(r.read_string(kHfConfig), checkpoint + ":/" + kHfConfig,
                                               kMaxConfigDepth);
    const json dtypes = r.has(kHfDtypes) ? io::safetensors::parse_json_limited(
                                               r.read_string(kHfDtypes), checkpoint + ":/" + kHfDtypes, 4)
                                         : json::object();
    for (const auto& [name, dt] : dtypes.items())
      if (dt.is_string())
        if (auto d = io::safetensors::parse_dtype(dt.get<std::string>())) imported[name] = *d;
  }

  std::vector<io::SafetensorsTensor> tensors;
  std::set<DType> used;
  for (const auto& sp : model::parameter_specs(c)) {
    DType dt = DType::F32;
    if (opt.dtype) dt = *opt.dtype;
    else if (auto it = imported.find(sp.name); it != imported.end()) dt = it->second;
    const io::DatasetInfo info = r.info("model/" + sp.name);
    if (info.shape != sp.shape || info.type != io::StoredType::F32)
      input_error(checkpoint, "model/" + sp.name + " is " + io::stored_type_name(info.type) +
                                  core::shape_str(info.shape) + ", the model config needs f32" +
                                  core::shape_str(sp.shape));
    tensors.push_back({sp.name, dt, sp.shape});
    used.insert(dt);
  }
  const std::string torch_dtype = used.size() == 1 ? torch_dtype_name(*used.begin()) : "";
  const json cfg = model_to_hf_config(c, base, torch_dtype, checkpoint);

  // Written into a sibling temporary directory, then renamed into place.
  fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) input_error(parent.string(), "cannot create the directory: " + ec.message());
  std::string tmp_name = ".";  // (built by appending: GCC 12 warns falsely on "." + string)
  tmp_name += out.filename().string();
  tmp_name += ".tmp-" + std::to_string(::getpid());
  const fs::path tmp = parent / tmp_name;
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec) || ec)
    input_error(tmp.string(), "cannot create the temporary output folder: " + ec.message());
  TempDirGuard guard(tmp);

  write_text(tmp / "config.json", cfg.dump(2) + "\n");
  res.files.push_back("config.json");
  auto bytes_of = [&](std::size_t i) {
    return encode(r.read_tensor("model/" + tensors[i].name), tensors[i].dtype);
  };
  for (const auto& f : io::write_safetensors_folder(tmp.string(), tensors, bytes_of, opt.max_shard_bytes))
    res.files.push_back(f);
  for (const auto& t : tensors) res.weight_bytes += t.bytes();
  fsync_dir(tmp);
  refuse_existing(out.string(), "the output folder");  // appeared meanwhile?
  if (std::rename(tmp.c_str(), out.c_str()) != 0)
    input_error(out.string(), std::string("cannot publish the folder (rename): ") + std::strerror(errno));
  guard.release();
  fsync_dir(parent);
  return res;
}

}  // namespace opd::distill
