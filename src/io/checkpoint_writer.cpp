// io/checkpoint_writer.cpp: CheckpointWriter (see checkpoint.hpp), serial or collective over an
// MPI communicator with parallel HDF5.
#include "io/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "io/checkpoint_format.hpp"
#include "io/checksum.hpp"
#include "io/hdf5_file.hpp"

namespace opd::io {

namespace fs = std::filesystem;
using core::DType;
using core::Tensor;
using namespace format;

// Checksums are taken over the in-memory bytes and must equal those of the little-endian file.
static_assert(std::endian::native == std::endian::little, "opd checkpoints assume little-endian");

namespace {

// A block of a dataset: [offset, offset + count), at least one element.
struct Box {
  Shape offset, count;
  bool operator==(const Box&) const = default;
};

// Tensors of a parallel checkpoint have at most this many dimensions (the agreement record
// carries each rank's block in a fixed-size slot).
constexpr int kMaxDims = 8;
// Agreement record: call hash, failed flag, block rank (-1: no block), offset[8], count[8].
constexpr int kRecord = 3 + 2 * kMaxDims;

// Elements of a dataset of shape `global` covered by the union of `boxes` (which may overlap):
// the boxes' edges cut the dataset into a grid of cells, each wholly inside or outside every
// box; the covered cells' volumes are summed. For the layouts of a checkpoint (a grid of
// blocks, replicated whole blocks) the grid has about as many cells as there are blocks.
int64_t covered_elements(const std::vector<Box>& boxes, const Shape& global) {
  if (boxes.empty()) return 0;
  const std::size_t nd = global.size();
  if (nd == 0) return 1;  // a scalar tensor: any block is the whole
  std::vector<std::vector<int64_t>> cuts(nd);
  for (const Box& b : boxes)
    for (std::size_t d = 0; d < nd; ++d) {
      cuts[d].push_back(b.offset[d]);
      cuts[d].push_back(b.offset[d] + b.count[d]);
    }
  std::vector<std::size_t> cells(nd), stride(nd);
  std::size_t ncells = 1;
  for (std::size_t d = nd; d-- > 0;) {
    std::sort(cuts[d].begin(), cuts[d].end());
    cuts[d].erase(std::unique(cuts[d].begin(), cuts[d].end()), cuts[d].end());
    cells[d] = cuts[d].size() - 1;
    stride[d] = ncells;
    ncells *= cells[d];
  }
  std::vector<char> marked(ncells, 0);
  std::vector<std::size_t> lo(nd), hi(nd), idx(nd);
  for (const Box& b : boxes) {
    for (std::size_t d = 0; d < nd; ++d) {
      auto first = std::lower_bound(cuts[d].begin(), cuts[d].end(), b.offset[d]);
      auto last = std::lower_bound(cuts[d].begin(), cuts[d].end(), b.offset[d] + b.count[d]);
      lo[d] = static_cast<std::size_t>(first - cuts[d].begin());
      hi[d] = static_cast<std::size_t>(last - cuts[d].begin());
    }
    idx = lo;
    while (true) {  // every cell of the box (an odometer over the dimensions)
      std::size_t flat = 0;
      for (std::size_t d = 0; d < nd; ++d) flat += idx[d] * stride[d];
      marked[flat] = 1;
      std::size_t d = nd;
      while (d-- > 0 && ++idx[d] == hi[d]) idx[d] = lo[d];
      if (d == static_cast<std::size_t>(-1)) break;
    }
  }
  int64_t covered = 0;
  for (std::size_t flat = 0; flat < ncells; ++flat) {
    if (!marked[flat]) continue;
    int64_t volume = 1;
    for (std::size_t d = 0; d < nd; ++d) {
      std::size_t i = (flat / stride[d]) % cells[d];
      volume *= cuts[d][i + 1] - cuts[d][i];
    }
    covered += volume;
  }
  return covered;
}

std::string describe_value(const void* data, std::size_t bytes) {
  return std::to_string(bytes) + " bytes, fnv " + hex(fnv1a64(data, bytes));
}

}  // namespace

struct CheckpointWriter::Impl {
  // A dataset written in blocks: complete (and checksummed) at commit.
  struct Blocks {
    Shape global;
    DType dtype;
    std::vector<Box> boxes;  // the distinct blocks written (by every rank)
  };

  std::string final_path, temp_path;
  std::optional<h5::File> file;
  std::set<std::string> complete;       // datasets written whole, checksum set
  std::map<std::string, Blocks> blocks;  // datasets written in blocks
  bool committed = false;

  // Parallel writing (see checkpoint.hpp). Serial: comm may be MPI_COMM_NULL, rank 0 of 1.
  MPI_Comm comm = MPI_COMM_NULL;
  bool parallel = false;
  int rank = 0, size = 1;
  std::string failure;  // set (on every rank) by a collective failure: the writer is dead

  // Closing a parallel file is collective, so no destructor does it (see checkpoint.hpp): a
  // parallel file still open here is left for HDF5 to close at MPI_Finalize.
  ~Impl() {
    if (parallel && file && file->is_open()) file->abandon();
  }

  // Throws (the same on every rank: these states are collective) when nothing may be written.
  void check_usable() const {
    OPD_CHECK(!committed, "checkpoint ", final_path, ": written after commit()");
    OPD_CHECK(failure.empty(), "checkpoint ", final_path,
              ": used after a failed collective call (", failure, ")");
    OPD_CHECK(file && file->is_open(), "checkpoint ", final_path, ": the file is not open");
  }

  h5::File& f() {
    check_usable();
    return *file;
  }

  void check_new(const std::string& name) const {
    OPD_CHECK(!complete.count(name) && !blocks.count(name), "checkpoint ", final_path,
              ": dataset '", name, "' written twice");
  }

  // ---- collective agreement (parallel); serial: an error is simply thrown ----

  // Broadcasts strings from `root`; `n` (how many) is known to every rank.
  std::vector<std::string> bcast_strings(std::vector<std::string> v, std::size_t n, int root) {
    v.resize(n);
    std::vector<int64_t> lengths(n);
    for (std::size_t i = 0; i < n; ++i) lengths[i] = static_cast<int64_t>(v[i].size());
    MPI_Bcast(lengths.data(), static_cast<int>(n), MPI_INT64_T, root, comm);
    std::string joined;
    if (rank == root)
      for (const auto& s : v) joined += s;
    int64_t total = 0;
    for (int64_t l : lengths) total += l;
    joined.resize(static_cast<std::size_t>(total));
    if (total > 0) MPI_Bcast(joined.data(), static_cast<int>(total), MPI_CHAR, root, comm);
    std::size_t pos = 0;
    for (std::size_t i = 0; i < n; ++i) {
      v[i] = joined.substr(pos, static_cast<std::size_t>(lengths[i]));
      pos += static_cast<std::size_t>(lengths[i]);
    }
    return v;
  }

  // The error of rank `root`, on every rank.
  Error bcast_error(const std::optional<Error>& err, int root) {
    std::vector<std::string> v;
    if (rank == root)
      v = {err->kind() == ErrorKind::Input ? "I" : "X", err->message(), err->where(),
           err->hint()};
    v = bcast_strings(std::move(v), 4, root);
    return Error(v[0] == "I" ? ErrorKind::Input : ErrorKind::Internal, v[1], v[2], v[3]);
  }

  // Every rank is here with the same error: the writer dies together. The file is closed
  // collectively (errors ignored: it is discarded) unless `close_file` is false (a failure
  // while creating it, where some ranks may lack it), then it is left open to HDF5.
  [[noreturn]] void fail_collectively(const Error& e, bool close_file = true) {
    failure = e.what();
    if (file && file->is_open()) {
      if (close_file) {
        try {
          file->close();
        } catch (const Error&) {
        }
      } else {
        file->abandon();
      }
    }
    file.reset();
    throw e;
  }

  // After a phase in which any rank may have failed: all ranks return, or all throw the error
  // of the lowest failing rank. Serial: throws `err` if set.
  void settle(const std::optional<Error>& err, bool close_file = true) {
    if (!parallel) {
      if (err) throw *err;
      return;
    }
    int first = err ? rank : size;
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first < size) fail_collectively(bcast_error(err, first), close_file);
  }

  // The start of every collective call: all ranks must make the same call (`call` describes it
  // and its collective arguments) and none may have failed its own checks (`err`). Gathers each
  // rank's block (`box`, none for an empty block or a call without one). Serial: throws `err`
  // if set and returns {box}.
  std::vector<std::optional<Box>> agree(const std::string& call, const std::optional<Box>& box,
                                        const std::optional<Error>& err) {
    if (!parallel) {
      if (err) throw *err;
      return {box};
    }
    int64_t mine[kRecord] = {};
    mine[0] = static_cast<int64_t>(fnv1a64(call.data(), call.size()));
    mine[1] = err ? 1 : 0;
    mine[2] = -1;
    if (!err && box) {
      OPD_CHECK(box->offset.size() <= static_cast<std::size_t>(kMaxDims), "block rank");
      mine[2] = static_cast<int64_t>(box->offset.size());
      for (std::size_t d = 0; d < box->offset.size(); ++d) {
        mine[3 + d] = box->offset[d];
        mine[3 + kMaxDims + d] = box->count[d];
      }
    }
    std::vector<int64_t> all(static_cast<std::size_t>(kRecord) * static_cast<std::size_t>(size));
    MPI_Allgather(mine, kRecord, MPI_INT64_T, all.data(), kRecord, MPI_INT64_T, comm);
    auto rec = [&](int r) { return all.data() + static_cast<std::ptrdiff_t>(r) * kRecord; };
    for (int r = 0; r < size; ++r)
      if (rec(r)[1] != 0) fail_collectively(bcast_error(err, r));
    for (int r = 1; r < size; ++r)
      if (rec(r)[0] != rec(0)[0]) {
        std::string c0 = bcast_strings({call}, 1, 0)[0];
        std::string cr = bcast_strings({call}, 1, r)[0];
        fail_collectively(Error(ErrorKind::Internal,
                                "the ranks made different collective calls: rank 0: " + c0 +
                                    "; rank " + std::to_string(r) + ": " + cr,
                                final_path,
                                "every rank must call the checkpoint writer's methods in the "
                                "same order, with the same names, shapes, dtypes and values"));
      }
    std::vector<std::optional<Box>> boxes(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
      int64_t nd = rec(r)[2];
      if (nd < 0) continue;
      const int64_t* off = rec(r) + 3;
      const int64_t* cnt = rec(r) + 3 + kMaxDims;
      boxes[static_cast<std::size_t>(r)] = Box{Shape(off, off + nd), Shape(cnt, cnt + nd)};
    }
    return boxes;
  }

  // Creates a dataset, writes all of it with `mem_type` (rank 0's copy: every rank passes the
  // same) and stamps its checksum. Collective in parallel.
  void write_whole(const std::string& name, hid_t file_type, hid_t mem_type, const Shape& shape,
                   const void* data, std::size_t bytes) {
    h5::Dataset d = f().create_dataset(name, file_type, shape);
    d.write_whole_or_nothing(mem_type, data, rank == 0);
    d.write_attribute(kChecksumAttr, fnv1a64(data, bytes));
    complete.insert(name);
  }

  // A whole dataset of values: agreement (name and value), then write_whole.
  void write_values(const char* what, const std::string& raw_name, hid_t file_type,
                    hid_t mem_type, const Shape& shape, const void* data, std::size_t bytes) {
    check_usable();
    std::optional<Error> err;
    std::string name;
    try {
      name = normalize_name(raw_name);
      check_new(name);
    } catch (const Error& e) {
      err = e;
    } catch (const std::exception& e) {  // bad_alloc...: shared too
      err = Error(ErrorKind::Internal, e.what(), final_path);
    }
    agree(std::string(what) + " '" + name + "' " + core::shape_str(shape) + " (" +
              describe_value(data, bytes) + ")",
          std::nullopt, err);
    write_whole(name, file_type, mem_type, shape, data, bytes);
  }

  void set_root_attribute(const std::string& name, const std::string& call,
                          const std::function<void(h5::Object&)>& write) {
    check_usable();
    std::optional<Error> err;
    try {
      OPD_CHECK(name != "format" && name != "format_version", "root attribute '", name,
                "' is reserved");
    } catch (const Error& e) {
      err = e;
    } catch (const std::exception& e) {  // bad_alloc...: shared too
      err = Error(ErrorKind::Internal, e.what(), final_path);
    }
    agree(call, std::nullopt, err);
    h5::Object root = f().root();
    write(root);
  }
};

CheckpointWriter::CheckpointWriter(std::string final_path, MPI_Comm comm)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.comm = comm;
  if (comm != MPI_COMM_NULL) {
    MPI_Comm_rank(comm, &im.rank);
    MPI_Comm_size(comm, &im.size);
    im.parallel = im.size > 1;
  }
  std::optional<Error> err;
  try {
    OPD_CHECK(!final_path.empty(), "empty checkpoint path");
    im.final_path = final_path;
    im.temp_path = im.final_path + ".tmp";
    if (im.rank == 0) {  // one rank makes the directories; the agreement orders it before all
      std::error_code ec;
      fs::create_directories(parent_dir(im.final_path), ec);
      if (ec)
        input_error(parent_dir(im.final_path),
                    "cannot create the checkpoint directory: " + ec.message());
    }
  } catch (const Error& e) {
    err = e;
  } catch (const std::exception& e) {  // bad_alloc...: shared too
    err = Error(ErrorKind::Internal, e.what(), im.final_path);
  }
  im.agree("open checkpoint '" + final_path + "'", std::nullopt, err);
  try {
    im.file.emplace(h5::File::create(im.temp_path, im.parallel ? comm : MPI_COMM_NULL));
    h5::Object root = im.file->root();
    root.write_attribute("format", std::string(kCheckpointFormat));
    root.write_attribute("format_version", kCheckpointFormatVersion);
  } catch (const Error& e) {
    err = e;
  } catch (const std::exception& e) {  // bad_alloc...: shared too
    err = Error(ErrorKind::Internal, e.what(), im.final_path);
  }
  try {
    // A rank may lack the file (its create failed): leave it open rather than close it.
    im.settle(err, /*close_file=*/false);
  } catch (const Error&) {
    im.file.reset();  // serial: closes; parallel: already abandoned
    std::error_code ec;
    if (im.rank == 0) fs::remove(im.temp_path, ec);
    throw;
  }
}

CheckpointWriter::~CheckpointWriter() {
  if (!impl_ || impl_->committed) return;
  // Closes a serial file (errors ignored: the file is discarded anyway); a parallel one still
  // open is abandoned, since closing it is collective.
  if (impl_->parallel && impl_->file && impl_->file->is_open()) impl_->file->abandon();
  impl_->file.reset();
  if (impl_->rank != 0 || impl_->temp_path.empty()) return;
  std::error_code ec;
  fs::remove(impl_->temp_path, ec);
}

const std::string& CheckpointWriter::final_path() const { return impl_->final_path; }
const std::string& CheckpointWriter::temp_path() const { return impl_->temp_path; }
bool CheckpointWriter::committed() const { return impl_->committed; }

void CheckpointWriter::write_tensor(const std::string& raw_name, const Tensor& local,
                                    const Shape& global_shape, const Shape& offset) {
  Impl& im = *impl_;
  im.check_usable();
  std::optional<Error> err;
  std::string name, call;
  Shape global, off;
  DType dt = DType::F32;
  bool empty = false, whole = false, first = false;
  try {
    name = normalize_name(raw_name);
    OPD_CHECK(local.defined() && local.is_host(), "checkpoint tensor '", name,
              "' must be a host tensor (copy device tensors to the host first)");
    dt = local.dtype();
    global = global_shape.empty() ? local.shape() : global_shape;
    call = "write_tensor '" + name + "' " + core::dtype_name(dt) + core::shape_str(global);
    // Parallel: a rank holding nothing passes a block without elements (shape, offset ignored).
    empty = im.parallel && local.numel() == 0;
    if (!empty) {
      off = offset.empty() ? Shape(global.size(), 0) : offset;
      OPD_CHECK(local.ndim() == static_cast<int>(global.size()) && off.size() == global.size(),
                "checkpoint tensor '", name, "': local ", local.describe(), " at offset ",
                core::shape_str(off), " does not fit global shape ", core::shape_str(global));
      for (std::size_t i = 0; i < global.size(); ++i)
        OPD_CHECK(off[i] >= 0 && off[i] + local.shape()[i] <= global[i], "checkpoint tensor '",
                  name, "': block ", local.describe(), " at ", core::shape_str(off), " outside ",
                  core::shape_str(global));
    }
    OPD_CHECK(!im.parallel || global.size() <= static_cast<std::size_t>(kMaxDims),
              "checkpoint tensor '", name, "' has ", global.size(),
              " dimensions; a parallel checkpoint takes at most ", kMaxDims);
    // Serial: a block that is the whole dataset is written (and checksummed) at once.
    // Parallel: every tensor is block-written, so that all ranks take the same path.
    whole = !im.parallel && global == local.shape();
    auto it = im.blocks.find(name);
    first = it == im.blocks.end();
    if (whole || first) {
      im.check_new(name);
    } else {
      OPD_CHECK(it->second.global == global && it->second.dtype == dt, "checkpoint tensor '",
                name, "': block of ", core::dtype_name(dt), core::shape_str(global),
                " for a dataset of ", core::dtype_name(it->second.dtype),
                core::shape_str(it->second.global));
    }
  } catch (const Error& e) {
    err = e;
  } catch (const std::exception& e) {  // bad_alloc...: shared too
    err = Error(ErrorKind::Internal, e.what(), im.final_path);
  }
  std::optional<Box> mine;
  if (!err && !whole && local.numel() > 0) mine = Box{off, local.shape()};
  std::vector<std::optional<Box>> boxes = im.agree(call, mine, err);

  if (whole) {
    im.write_whole(name, file_type_of(dt), mem_type_of(dt), global, local.raw(), local.bytes());
    h5::Dataset d = im.f().open_dataset(name);
    d.write_attribute(kDtypeAttr, std::string(core::dtype_name(dt)));
    return;
  }
  // One block of a larger dataset: create it on the first block, then write the hyperslab.
  if (first) {
    h5::Dataset d = im.f().create_dataset(name, file_type_of(dt), global);
    d.write_attribute(kDtypeAttr, std::string(core::dtype_name(dt)));
    im.blocks.emplace(name, Impl::Blocks{global, dt, {}});
  }
  Impl::Blocks& b = im.blocks.at(name);
  // Identical blocks (replicated data) are written once, by the lowest rank passing them.
  bool write_mine = mine.has_value();
  for (int r = 0; r < im.size; ++r) {
    const auto& box = boxes[static_cast<std::size_t>(r)];
    if (!box) continue;
    if (r < im.rank && box == mine) write_mine = false;
    if (std::find(b.boxes.begin(), b.boxes.end(), *box) == b.boxes.end()) b.boxes.push_back(*box);
  }
  h5::Dataset d = im.f().open_dataset(name);
  if (write_mine)
    d.write(mem_type_of(dt), local.raw(), off, local.shape());
  else  // take part in the collective write with an empty selection
    d.write_whole_or_nothing(mem_type_of(dt), nullptr, false);
}

void CheckpointWriter::write_string(const std::string& raw_name, const std::string& text) {
  Impl& im = *impl_;
  im.check_usable();
  std::optional<Error> err;
  std::string name;
  try {
    name = normalize_name(raw_name);
    OPD_CHECK(text.find('\0') == std::string::npos, "checkpoint string '", name,
              "' contains a NUL byte");
    im.check_new(name);
  } catch (const Error& e) {
    err = e;
  } catch (const std::exception& e) {  // bad_alloc...: shared too
    err = Error(ErrorKind::Internal, e.what(), im.final_path);
  }
  im.agree("write_string '" + name + "' (" + describe_value(text.data(), text.size()) + ")",
           std::nullopt, err);
  h5::Handle t = h5::make_string_type(text.size());
  OPD_CHECK(t.valid(), "cannot make an HDF5 string type");
  // HDF5 has no zero-length fixed strings: the empty text is stored as one NUL (padding).
  std::string buf = text.empty() ? std::string(1, '\0') : text;
  h5::Dataset d = im.f().create_dataset(name, t.id(), {});
  d.write_whole_or_nothing(t.id(), buf.data(), im.rank == 0);
  d.write_attribute(kChecksumAttr, fnv1a64(text.data(), text.size()));
  im.complete.insert(name);
}

void CheckpointWriter::write_int(const std::string& name, int64_t value) {
  impl_->write_values("write_int", name, H5T_STD_I64LE, H5T_NATIVE_INT64, {}, &value,
                      sizeof value);
}

void CheckpointWriter::write_double(const std::string& name, double value) {
  impl_->write_values("write_double", name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {}, &value,
                      sizeof value);
}

void CheckpointWriter::write_ints(const std::string& name, const std::vector<int64_t>& values) {
  impl_->write_values("write_ints", name, H5T_STD_I64LE, H5T_NATIVE_INT64,
                      {static_cast<int64_t>(values.size())}, values.data(),
                      values.size() * sizeof(int64_t));
}

void CheckpointWriter::write_u64s(const std::string& name, const std::vector<uint64_t>& values) {
  impl_->write_values("write_u64s", name, H5T_STD_U64LE, H5T_NATIVE_UINT64,
                      {static_cast<int64_t>(values.size())}, values.data(),
                      values.size() * sizeof(uint64_t));
}

void CheckpointWriter::set_attribute(const std::string& name, const std::string& value) {
  impl_->set_root_attribute(
      name, "set_attribute '" + name + "' = '" + value + "'",
      [&](h5::Object& root) { root.write_attribute(name, value); });
}

void CheckpointWriter::set_attribute(const std::string& name, int64_t value) {
  impl_->set_root_attribute(
      name, "set_attribute '" + name + "' = " + std::to_string(value),
      [&](h5::Object& root) { root.write_attribute(name, value); });
}

void CheckpointWriter::commit() {
  Impl& im = *impl_;
  im.check_usable();
  im.agree("commit", std::nullopt, std::nullopt);
  // Datasets written in blocks: every element must have been written (else the file would hold
  // zeros where a block is missing). Every rank knows every block, so all reach this verdict.
  std::optional<Error> err;
  try {
    for (auto& [name, b] : im.blocks) {
      int64_t total = core::shape_numel(b.global);
      int64_t covered = covered_elements(b.boxes, b.global);
      OPD_CHECK(covered == total, "checkpoint ", im.final_path, ": dataset '", name,
                "' blocks cover ", covered, " of ", total, " elements");
    }
  } catch (const Error& e) {
    err = e;
  } catch (const std::exception& e) {  // bad_alloc...: shared too
    err = Error(ErrorKind::Internal, e.what(), im.final_path);
  }
  im.settle(err);

  if (!im.parallel) {
    // The checksum is taken over the data read back.
    h5::File& file = im.f();
    for (auto& [name, b] : im.blocks) {
      Tensor back = Tensor::empty(b.global, b.dtype);
      h5::Dataset d = file.open_dataset(name);
      d.read(mem_type_of(b.dtype), back.raw());
      d.write_attribute(kChecksumAttr, fnv1a64(back.raw(), back.bytes()));
    }
    file.close();
    im.file.reset();
    fsync_path(im.temp_path, false);
    if (std::rename(im.temp_path.c_str(), im.final_path.c_str()) != 0)
      input_error(im.final_path,
                  std::string("cannot publish the checkpoint (rename from .tmp): ") +
                      std::strerror(errno));
    im.committed = true;
    fsync_path(parent_dir(im.final_path), true);
    return;
  }

  // Parallel. 1. Close collectively: MPI-IO makes every rank's writes visible to other
  // processes that open the file after the close (the settle is the barrier between).
  try {
    im.file->close();
  } catch (const Error& e) {
    err = e;
  } catch (const std::exception& e) {  // bad_alloc...: shared too
    err = Error(ErrorKind::Internal, e.what(), im.final_path);
  }
  im.file.reset();
  im.settle(err);

  // 2. Checksums over the data read back, shared out: rank k mod size reads dataset k whole,
  // serially (the reader's read-only open, no locking), and the results are OR-reduced (each
  // slot is non-zero on at most one rank).
  std::vector<uint64_t> sums(im.blocks.size(), 0);
  try {
    std::optional<h5::File> rf;
    std::size_t k = 0;
    for (auto& [name, b] : im.blocks) {
      if (static_cast<int>(k % static_cast<std::size_t>(im.size)) == im.rank) {
        if (!rf) rf.emplace(h5::File::open_read_only(im.temp_path));
        Tensor back = Tensor::empty(b.global, b.dtype);
        h5::Dataset d = rf->open_dataset(name);
        d.read(mem_type_of(b.dtype), back.raw());
        sums[k] = fnv1a64(back.raw(), back.bytes());
      }
      ++k;
    }
    if (rf) rf->close();
  } catch (const Error& e) {
    err = e;
  } catch (const std::exception& e) {  // bad_alloc...: shared too
    err = Error(ErrorKind::Internal, e.what(), im.final_path);
  }
  im.settle(err);
  if (!sums.empty())
    MPI_Allreduce(MPI_IN_PLACE, sums.data(), static_cast<int>(sums.size()), MPI_UINT64_T, MPI_BOR,
                  im.comm);

  // 3. Rank 0 stamps the checksums (a serial reopen: no other rank has the file open), then
  // publishes: fsync, rename, fsync the directory. The outcome is shared, so that every rank
  // throws the same error or returns after the file is in place.
  int renamed = 0;
  if (im.rank == 0) {
    try {
      h5::File wf = h5::File::open_read_write(im.temp_path);
      std::size_t k = 0;
      for (auto& [name, b] : im.blocks) {
        h5::Dataset d = wf.open_dataset(name);
        d.write_attribute(kChecksumAttr, sums[k++]);
      }
      wf.close();
      fsync_path(im.temp_path, false);
      if (std::rename(im.temp_path.c_str(), im.final_path.c_str()) != 0)
        input_error(im.final_path,
                    std::string("cannot publish the checkpoint (rename from .tmp): ") +
                        std::strerror(errno));
      renamed = 1;
      fsync_path(parent_dir(im.final_path), true);
    } catch (const Error& e) {
      err = e;
    } catch (const std::exception& e) {  // bad_alloc...: shared too
      err = Error(ErrorKind::Internal, e.what(), im.final_path);
    }
  }
  MPI_Bcast(&renamed, 1, MPI_INT, 0, im.comm);
  if (renamed) im.committed = true;  // published, even if the directory fsync then failed
  im.settle(err);
  im.committed = true;
}

}  // namespace opd::io
