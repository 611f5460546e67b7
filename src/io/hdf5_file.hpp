// io/hdf5_file.hpp: a small RAII layer over the HDF5 C API (files, groups, datasets, dataspaces,
// attributes, types and property lists), where every failing call becomes an opd::Error that
// names the file and the object.
//
// Why a layer of our own: the C API hands out integer ids that leak on every early return, and
// it reports errors by printing a stack to stderr. Here each id is owned by exactly one object
// and closed in its destructor, HDF5's printing is switched off, and its innermost error message
// is carried into the opd::Error instead.
//
// Parallel HDF5: File::create / open_read_write take an optional MPI communicator. With one of
// several ranks the file is opened through MPI-IO (H5Pset_fapl_mpio) and is a *parallel
// file*: its creation, opening, closing, flushing, every dataset and attribute creation or
// attribute write, and every H5Dwrite/H5Dread of its datasets (H5FD_MPIO_COLLECTIVE transfers)
// are collective over the communicator: every rank calls them with the same arguments, a rank
// with nothing to move passes an empty block. MPI_COMM_NULL or a communicator of size 1 gives
// an ordinary serial file (no MPI call is made at all for MPI_COMM_NULL). The file-access and
// data-transfer property lists are built in one place each (file_access_plist, transfer_plist
// in the .cpp).
#pragma once

#include <hdf5.h>  // the parallel (OpenMPI) build: brings <mpi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace opd::io::h5 {

using core::Shape;

// Switches off HDF5's automatic error printing on the calling thread. Idempotent and cheap;
// every File constructor calls it, so nothing else needs to.
void silence_errors();

// Throws an Input opd::Error "FILE: OBJECT: WHAT (HDF5: innermost message)". Reads HDF5's
// current error stack first, so call it right after the failing HDF5 call.
[[noreturn]] void fail(const std::string& file, const std::string& object,
                       const std::string& what);

// Owns one HDF5 id and closes it with the matching H5?close. Move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Gives up ownership without closing (the id stays open until HDF5 shuts down).
  hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }
  // Closes now and returns HDF5's status (destructors ignore it; File::close checks it).
  herr_t close();
  void reset() { (void)close(); }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Typed owners, so that a dataspace is never closed with H5Dclose.
Handle owned_space(hid_t id);
Handle owned_type(hid_t id);
Handle owned_plist(hid_t id);

// Dataspace for a shape: rank 0 (shape {}) is a scalar space.
Handle make_space(const Shape& shape);
// Fixed-length UTF-8 string type of `size` bytes (at least 1), padded with NULs.
Handle make_string_type(std::size_t size);

// Something in a file that can carry attributes (the root group or a dataset).
class Object {
 public:
  Object(Handle handle, std::string file, std::string name)
      : handle_(std::move(handle)), file_(std::move(file)), name_(std::move(name)) {}

  hid_t id() const { return handle_.id(); }
  const std::string& file() const { return file_; }
  const std::string& name() const { return name_; }
  [[noreturn]] void fail(const std::string& what) const { h5::fail(file_, name_, what); }

  bool has_attribute(const std::string& attr) const;
  std::vector<std::string> attribute_names() const;
  // Writers replace an existing attribute of the same name.
  void write_attribute(const std::string& attr, const std::string& value);
  void write_attribute(const std::string& attr, int64_t value);
  void write_attribute(const std::string& attr, uint64_t value);
  // Readers fail (Input error) when the attribute is missing or of another class. Strings may
  // be fixed- or variable-length (h5py writes the latter).
  std::string read_attribute_string(const std::string& attr) const;
  int64_t read_attribute_int(const std::string& attr) const;
  uint64_t read_attribute_u64(const std::string& attr) const;
  double read_attribute_double(const std::string& attr) const;
  // H5T_class_t of an attribute (H5T_STRING, H5T_INTEGER, ...).
  H5T_class_t attribute_class(const std::string& attr) const;

 protected:
  Handle handle_;
  std::string file_, name_;
};

class Dataset : public Object {
 public:
  // `collective`: a dataset of a parallel file, whose reads and writes are collective transfers.
  Dataset(Handle handle, std::string file, std::string name, bool collective = false)
      : Object(std::move(handle), std::move(file), std::move(name)), collective_(collective) {}

  Shape shape() const;
  Handle type() const;  // the stored (file) datatype
  // Writes/reads the block [offset, offset + count) of the dataset from/to contiguous memory of
  // `mem_type`. An empty offset means the whole dataset (count is then ignored). A block with
  // no elements selects nothing but still calls H5Dwrite/H5Dread: with MPI-IO those are
  // collective and every rank must take part.
  void write(hid_t mem_type, const void* data, const Shape& offset = {},
             const Shape& count = {});
  void read(hid_t mem_type, void* data, const Shape& offset = {}, const Shape& count = {}) const;
  // Writes the whole dataset (scalars included) from `data` when `select` is true; otherwise
  // selects nothing and `data` is not read. In a parallel file every rank calls it (collective)
  // and one rank selects: the way to store a value that every rank holds.
  void write_whole_or_nothing(hid_t mem_type, const void* data, bool select);
  // Changes the current shape of a chunked dataset within its maximum shape (grows or
  // truncates; truncated elements are gone). Fails (Input error) on a contiguous dataset.
  void set_extent(const Shape& shape);
  bool collective() const { return collective_; }

 private:
  bool collective_ = false;
};

// One HDF5 file. Object names are slash paths relative to the root ("model/x.weight").
class File {
 public:
  // Creates (truncating) a file; intermediate groups of dataset names are created as needed.
  // With a communicator of more than one rank: a parallel file (collective, see the top).
  static File create(const std::string& path, MPI_Comm comm = MPI_COMM_NULL);
  // Always serial: any number of processes may open the same file read-only at once (HDF5's
  // file locking is off, see file_access_plist).
  static File open_read_only(const std::string& path);
  // Opens an existing file for reading and writing (append-style logs that are reopened).
  static File open_read_write(const std::string& path, MPI_Comm comm = MPI_COMM_NULL);

  File(File&&) = default;
  File& operator=(File&&) = default;
  ~File() = default;

  const std::string& path() const { return path_; }
  bool is_open() const { return handle_.valid(); }
  // True for a parallel file (opened through MPI-IO over a communicator of several ranks).
  bool parallel() const { return parallel_; }
  // Closes the file, failing if HDF5 cannot flush it. Every object opened from it must have been
  // closed first (the file is opened with H5F_CLOSE_SEMI so that a leak is an error, not a file
  // silently held open). Collective for a parallel file. Afterwards is_open() is false, even
  // when closing failed.
  void close();
  // Forgets the file without closing it: the id stays open until HDF5 shuts down (for a
  // parallel file that is MPI_Finalize, collectively). For the one case where closing is
  // impossible: a parallel file abandoned by a rank whose peers may not be closing it too
  // (closing is collective and would wait for them forever).
  void abandon() { (void)handle_.release(); }
  // Writes everything buffered for this file to disk (H5Fflush), so that another process can
  // read it while it stays open.
  void flush();

  Object root() const;
  // True when `name` leads to an object (walks the path, so a missing parent is not an error).
  bool exists(const std::string& name) const;
  // H5I_DATASET, H5I_GROUP, or H5I_BADID when there is nothing at `name`.
  H5I_type_t object_type(const std::string& name) const;
  Dataset create_dataset(const std::string& name, hid_t file_type, const Shape& shape);
  // A chunked dataset of the given current shape whose first dimension is unlimited, so that
  // set_extent can grow it (rows appended over time); `chunk` is the chunk shape (same rank,
  // every entry >= 1). Intermediate groups are created as for create_dataset.
  Dataset create_extendible_dataset(const std::string& name, hid_t file_type, const Shape& shape,
                                    const Shape& chunk);
  Dataset open_dataset(const std::string& name) const;
  // Unlinks the object at `name` (which must exist and be closed), then every parent group that
  // this leaves empty. The file does not shrink; the space is simply unreachable.
  void remove(const std::string& name);
  // Every dataset in the file, as slash paths, in HDF5's name order.
  std::vector<std::string> dataset_names() const;

 private:
  File(Handle h, std::string path, bool parallel)
      : handle_(std::move(h)), path_(std::move(path)), parallel_(parallel) {}
  Handle handle_;
  std::string path_;
  bool parallel_ = false;
};

}  // namespace opd::io::h5
