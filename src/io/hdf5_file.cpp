// io/hdf5_file.cpp: the RAII HDF5 layer (see hdf5_file.hpp).
#include "io/hdf5_file.hpp"

#include <cstring>

#include "core/error.hpp"

namespace opd::io::h5 {

namespace {

// Collects the innermost description on HDF5's error stack: walking downward goes from the API
// call to the function that detected the problem, whose text ("truncated file: eof = ...",
// "file signature not found") is the useful one.
herr_t collect_error(unsigned /*n*/, const H5E_error2_t* err, void* client) {
  auto* out = static_cast<std::string*>(client);
  if (err && err->desc && *err->desc) *out = err->desc;
  return 0;
}

std::string take_hdf5_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

// True when `comm` makes a parallel file: a communicator of more than one rank. Makes no MPI
// call for MPI_COMM_NULL, so serial programs need not start MPI.
bool is_parallel_comm(MPI_Comm comm) {
  if (comm == MPI_COMM_NULL) return false;
  int size = 1;
  MPI_Comm_size(comm, &size);
  return size > 1;
}

// File access properties, built here only. A parallel file goes through MPI-IO
// (H5Pset_fapl_mpio, which duplicates the communicator). Checkpoints are published by rename,
// never read while written, and are read by every rank of a job at once, so HDF5's flock-based
// locking buys nothing and fails on some parallel file systems: it is off.
Handle file_access_plist(const std::string& path, bool parallel, MPI_Comm comm) {
  Handle fapl = owned_plist(H5Pcreate(H5P_FILE_ACCESS));
  if (!fapl.valid()) fail(path, "/", "cannot create a file-access property list");
  // The 1.8 format (superblock v2, object header v2) checksums the file's metadata, so damage
  // to it is detected instead of misread; every HDF5 since 1.8 reads it.
  if (H5Pset_libver_bounds(fapl.id(), H5F_LIBVER_V18, H5F_LIBVER_V18) < 0)
    fail(path, "/", "cannot set the file-format version bounds");
  // SEMI: closing the file with objects still open is an error (MPI-IO requires it anyway).
  if (H5Pset_fclose_degree(fapl.id(), H5F_CLOSE_SEMI) < 0)
    fail(path, "/", "cannot set the file close degree");
#if H5_VERSION_GE(1, 12, 1) || (H5_VERSION_GE(1, 10, 7) && !H5_VERSION_GE(1, 12, 0))
  // (Older releases lack the call; there, HDF5_USE_FILE_LOCKING=FALSE does the same.)
  if (H5Pset_file_locking(fapl.id(), false, true) < 0)
    fail(path, "/", "cannot disable file locking");
#endif
  if (parallel && H5Pset_fapl_mpio(fapl.id(), comm, MPI_INFO_NULL) < 0)
    fail(path, "/", "cannot set the MPI-IO file driver");
  return fapl;
}

// Data transfer properties for every H5Dread/H5Dwrite, built here only: collective MPI-IO
// transfers for the datasets of a parallel file, HDF5's defaults otherwise. Built per call (an
// H5Pcreate is cheap next to the I/O) so that no id outlives the library.
Handle transfer_plist(const Object& obj, bool collective) {
  if (!collective) return Handle(H5P_DEFAULT, nullptr);  // nothing to close
  Handle dxpl = owned_plist(H5Pcreate(H5P_DATASET_XFER));
  if (!dxpl.valid() || H5Pset_dxpl_mpio(dxpl.id(), H5FD_MPIO_COLLECTIVE) < 0)
    obj.fail("cannot create a collective transfer property list");
  return dxpl;
}

std::string strip_slash(const std::string& name) {
  std::size_t i = 0;
  while (i < name.size() && name[i] == '/') ++i;
  return name.substr(i);
}

std::vector<hsize_t> to_hsize(const Shape& s) {
  std::vector<hsize_t> v(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) v[i] = static_cast<hsize_t>(s[i]);
  return v;
}

// Selects [offset, offset + count) of `file_space` and returns the matching memory space.
Handle select_block(const Object& obj, hid_t file_space, const Shape& offset, const Shape& count) {
  int rank = H5Sget_simple_extent_ndims(file_space);
  if (rank < 0) obj.fail("cannot read the dataspace");
  OPD_CHECK(offset.size() == static_cast<std::size_t>(rank) && count.size() == offset.size(),
            obj.name(), ": block of rank ", offset.size(), "/", count.size(), " for rank ", rank);
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(file_space, dims.data(), nullptr);
  for (int i = 0; i < rank; ++i) {
    auto k = static_cast<std::size_t>(i);
    OPD_CHECK(offset[k] >= 0 && count[k] >= 0 &&
                  static_cast<hsize_t>(offset[k] + count[k]) <= dims[k],
              obj.name(), ": block offset ", core::shape_str(offset), " count ",
              core::shape_str(count), " outside the dataset");
  }
  if (core::shape_numel(count) == 0) {
    // Nothing to move, but the call must still happen (collective under MPI-IO).
    Handle mem = owned_space(H5Scopy(file_space));
    if (!mem.valid() || H5Sselect_none(file_space) < 0 || H5Sselect_none(mem.id()) < 0)
      obj.fail("cannot select an empty block");
    return mem;
  }
  auto start = to_hsize(offset), cnt = to_hsize(count);
  if (H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start.data(), nullptr, cnt.data(),
                          nullptr) < 0)
    obj.fail("cannot select block " + core::shape_str(offset) + " + " + core::shape_str(count));
  Handle mem = make_space(count);
  if (!mem.valid()) obj.fail("cannot create a memory dataspace");
  return mem;
}

}  // namespace

void silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

void fail(const std::string& file, const std::string& object, const std::string& what) {
  std::string hdf5 = take_hdf5_error();
  std::string msg;
  if (!object.empty()) msg = "'" + object + "': ";
  msg += what;
  if (!hdf5.empty()) msg += " (HDF5: " + hdf5 + ")";
  input_error(file, msg);
}

herr_t Handle::close() {
  herr_t rc = 0;
  if (id_ >= 0 && closer_) rc = closer_(id_);
  id_ = H5I_INVALID_HID;
  return rc;
}

Handle owned_space(hid_t id) { return Handle(id, H5Sclose); }
Handle owned_type(hid_t id) { return Handle(id, H5Tclose); }
Handle owned_plist(hid_t id) { return Handle(id, H5Pclose); }

Handle make_space(const Shape& shape) {
  if (shape.empty()) return owned_space(H5Screate(H5S_SCALAR));
  auto dims = to_hsize(shape);
  return owned_space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
}

Handle make_string_type(std::size_t size) {
  Handle t = owned_type(H5Tcopy(H5T_C_S1));
  if (!t.valid() || H5Tset_size(t.id(), size == 0 ? 1 : size) < 0 ||
      H5Tset_strpad(t.id(), H5T_STR_NULLPAD) < 0 || H5Tset_cset(t.id(), H5T_CSET_UTF8) < 0)
    return Handle();
  return t;
}

// ---- attributes --------------------------------------------------------------------------------

bool Object::has_attribute(const std::string& attr) const {
  htri_t r = H5Aexists(id(), attr.c_str());
  if (r < 0) fail("cannot query attribute '" + attr + "'");
  return r > 0;
}

namespace {
herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* client) {
  static_cast<std::vector<std::string>*>(client)->emplace_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> Object::attribute_names() const {
  std::vector<std::string> names;
  hsize_t idx = 0;
  if (H5Aiterate2(id(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr_name, &names) < 0)
    fail("cannot list attributes");
  return names;
}

namespace {
// Creates (replacing) a scalar attribute of `type` and writes `data` with `mem_type`.
void put_attribute(const Object& obj, const std::string& attr, hid_t type, hid_t mem_type,
                   const void* data) {
  if (obj.has_attribute(attr) && H5Adelete(obj.id(), attr.c_str()) < 0)
    obj.fail("cannot replace attribute '" + attr + "'");
  Handle space = make_space({});
  Handle a(H5Acreate2(obj.id(), attr.c_str(), type, space.id(), H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!a.valid()) obj.fail("cannot create attribute '" + attr + "'");
  if (H5Awrite(a.id(), mem_type, data) < 0) obj.fail("cannot write attribute '" + attr + "'");
  if (a.close() < 0) obj.fail("cannot close attribute '" + attr + "'");
}

Handle open_attribute(const Object& obj, const std::string& attr) {
  if (!obj.has_attribute(attr)) obj.fail("has no attribute '" + attr + "'");
  Handle a(H5Aopen(obj.id(), attr.c_str(), H5P_DEFAULT), H5Aclose);
  if (!a.valid()) obj.fail("cannot open attribute '" + attr + "'");
  Handle space = owned_space(H5Aget_space(a.id()));
  if (!space.valid() || H5Sget_simple_extent_npoints(space.id()) != 1)
    obj.fail("attribute '" + attr + "' is not a single value");
  return a;
}
}  // namespace

void Object::write_attribute(const std::string& attr, const std::string& value) {
  OPD_CHECK(value.find('\0') == std::string::npos, "attribute '", attr, "' contains a NUL byte");
  Handle t = make_string_type(value.size());
  if (!t.valid()) fail("cannot make a string type for attribute '" + attr + "'");
  std::string buf = value.empty() ? std::string(1, '\0') : value;
  put_attribute(*this, attr, t.id(), t.id(), buf.data());
}

void Object::write_attribute(const std::string& attr, int64_t value) {
  put_attribute(*this, attr, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void Object::write_attribute(const std::string& attr, uint64_t value) {
  put_attribute(*this, attr, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value);
}

H5T_class_t Object::attribute_class(const std::string& attr) const {
  Handle a = open_attribute(*this, attr);
  Handle t = owned_type(H5Aget_type(a.id()));
  if (!t.valid()) fail("cannot read the type of attribute '" + attr + "'");
  return H5Tget_class(t.id());
}

std::string Object::read_attribute_string(const std::string& attr) const {
  Handle a = open_attribute(*this, attr);
  Handle t = owned_type(H5Aget_type(a.id()));
  if (!t.valid() || H5Tget_class(t.id()) != H5T_STRING)
    fail("attribute '" + attr + "' is not a string");
  if (H5Tis_variable_str(t.id()) > 0) {
    Handle mem = owned_type(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.id(), H5T_VARIABLE);
    char* p = nullptr;
    if (H5Aread(a.id(), mem.id(), &p) < 0) fail("cannot read attribute '" + attr + "'");
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  std::size_t size = H5Tget_size(t.id());
  std::string buf(size, '\0');
  if (H5Aread(a.id(), t.id(), buf.data()) < 0) fail("cannot read attribute '" + attr + "'");
  // Fixed-length strings are NUL-padded (or NUL-terminated): the text ends at the first NUL.
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

int64_t Object::read_attribute_int(const std::string& attr) const {
  Handle a = open_attribute(*this, attr);
  Handle t = owned_type(H5Aget_type(a.id()));
  if (!t.valid() || H5Tget_class(t.id()) != H5T_INTEGER)
    fail("attribute '" + attr + "' is not an integer");
  int64_t v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_INT64, &v) < 0) fail("cannot read attribute '" + attr + "'");
  return v;
}

uint64_t Object::read_attribute_u64(const std::string& attr) const {
  Handle a = open_attribute(*this, attr);
  Handle t = owned_type(H5Aget_type(a.id()));
  if (!t.valid() || H5Tget_class(t.id()) != H5T_INTEGER)
    fail("attribute '" + attr + "' is not an integer");
  uint64_t v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_UINT64, &v) < 0) fail("cannot read attribute '" + attr + "'");
  return v;
}

double Object::read_attribute_double(const std::string& attr) const {
  Handle a = open_attribute(*this, attr);
  Handle t = owned_type(H5Aget_type(a.id()));
  H5T_class_t c = t.valid() ? H5Tget_class(t.id()) : H5T_NO_CLASS;
  if (c != H5T_FLOAT && c != H5T_INTEGER) fail("attribute '" + attr + "' is not a number");
  double v = 0;
  if (H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v) < 0) fail("cannot read attribute '" + attr + "'");
  return v;
}

// ---- datasets ----------------------------------------------------------------------------------

Shape Dataset::shape() const {
  Handle space = owned_space(H5Dget_space(id()));
  if (!space.valid()) fail("cannot read the dataspace");
  int rank = H5Sget_simple_extent_ndims(space.id());
  if (rank < 0) fail("cannot read the dataspace rank");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr) < 0)
    fail("cannot read the dataspace dimensions");
  Shape s(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) s[i] = static_cast<int64_t>(dims[i]);
  return s;
}

Handle Dataset::type() const {
  Handle t = owned_type(H5Dget_type(id()));
  if (!t.valid()) fail("cannot read the datatype");
  return t;
}

void Dataset::write(hid_t mem_type, const void* data, const Shape& offset, const Shape& count) {
  Handle dxpl = transfer_plist(*this, collective_);
  if (offset.empty()) {
    if (H5Dwrite(id(), mem_type, H5S_ALL, H5S_ALL, dxpl.id(), data) < 0)
      fail("cannot write the data (disk full?)");
    return;
  }
  Handle fspace = owned_space(H5Dget_space(id()));
  if (!fspace.valid()) fail("cannot read the dataspace");
  Handle mspace = select_block(*this, fspace.id(), offset, count);
  if (H5Dwrite(id(), mem_type, mspace.id(), fspace.id(), dxpl.id(), data) < 0)
    fail("cannot write block at " + core::shape_str(offset) + " (disk full?)");
}

void Dataset::write_whole_or_nothing(hid_t mem_type, const void* data, bool select) {
  if (select) {
    write(mem_type, data);
    return;
  }
  Handle dxpl = transfer_plist(*this, collective_);
  Handle fspace = owned_space(H5Dget_space(id()));
  if (!fspace.valid()) fail("cannot read the dataspace");
  Handle mspace = owned_space(H5Scopy(fspace.id()));
  if (!mspace.valid() || H5Sselect_none(fspace.id()) < 0 || H5Sselect_none(mspace.id()) < 0)
    fail("cannot select nothing");
  // H5Dwrite wants a buffer even when it moves nothing.
  static const unsigned char dummy[16] = {};
  if (H5Dwrite(id(), mem_type, mspace.id(), fspace.id(), dxpl.id(), data ? data : dummy) < 0)
    fail("cannot take part in the write (disk full?)");
}

void Dataset::read(hid_t mem_type, void* data, const Shape& offset, const Shape& count) const {
  Handle dxpl = transfer_plist(*this, collective_);
  if (offset.empty()) {
    if (H5Dread(id(), mem_type, H5S_ALL, H5S_ALL, dxpl.id(), data) < 0)
      fail("cannot read the data (truncated or corrupt file?)");
    return;
  }
  Handle fspace = owned_space(H5Dget_space(id()));
  if (!fspace.valid()) fail("cannot read the dataspace");
  Handle mspace = select_block(*this, fspace.id(), offset, count);
  if (H5Dread(id(), mem_type, mspace.id(), fspace.id(), dxpl.id(), data) < 0)
    fail("cannot read block at " + core::shape_str(offset) + " (truncated or corrupt file?)");
}

void Dataset::set_extent(const Shape& shape) {
  auto dims = to_hsize(shape);
  if (H5Dset_extent(id(), dims.data()) < 0)
    fail("cannot change the extent to " + core::shape_str(shape) + " (not a chunked dataset?)");
}

// ---- files -------------------------------------------------------------------------------------

File File::create(const std::string& path, MPI_Comm comm) {
  silence_errors();
  bool parallel = is_parallel_comm(comm);
  Handle fapl = file_access_plist(path, parallel, comm);
  Handle f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id()), H5Fclose);
  if (!f.valid()) fail(path, "", "cannot create the file (directory writable?)");
  return File(std::move(f), path, parallel);
}

File File::open_read_only(const std::string& path) {
  silence_errors();
  Handle fapl = file_access_plist(path, false, MPI_COMM_NULL);
  Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id()), H5Fclose);
  if (!f.valid()) fail(path, "", "cannot open as HDF5");
  return File(std::move(f), path, false);
}

File File::open_read_write(const std::string& path, MPI_Comm comm) {
  silence_errors();
  bool parallel = is_parallel_comm(comm);
  Handle fapl = file_access_plist(path, parallel, comm);
  Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.id()), H5Fclose);
  if (!f.valid()) fail(path, "", "cannot open as HDF5 for writing");
  return File(std::move(f), path, parallel);
}

void File::flush() {
  if (H5Fflush(handle_.id(), H5F_SCOPE_LOCAL) < 0) fail(path_, "", "cannot flush (disk full?)");
}

void File::close() {
  if (!handle_.valid()) return;
  if (handle_.close() < 0) fail(path_, "", "cannot close the file (disk full, or objects left open)");
}

Object File::root() const {
  Handle g(H5Gopen2(handle_.id(), "/", H5P_DEFAULT), H5Gclose);
  if (!g.valid()) fail(path_, "/", "cannot open the root group");
  return Object(std::move(g), path_, "/");
}

bool File::exists(const std::string& name) const { return object_type(name) != H5I_BADID; }

H5I_type_t File::object_type(const std::string& raw_name) const {
  std::string name = strip_slash(raw_name);
  if (name.empty()) return H5I_GROUP;
  // H5Lexists only looks at the last component, and fails when a parent is missing: walk.
  std::size_t pos = 0;
  while (true) {
    std::size_t slash = name.find('/', pos);
    std::string prefix = name.substr(0, slash);
    if (H5Lexists(handle_.id(), prefix.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return H5I_BADID;
    }
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  Handle o(H5Oopen(handle_.id(), name.c_str(), H5P_DEFAULT), H5Oclose);
  if (!o.valid()) {
    H5Eclear2(H5E_DEFAULT);
    return H5I_BADID;  // a dangling soft link, say
  }
  return H5Iget_type(o.id());
}

Dataset File::create_dataset(const std::string& raw_name, hid_t file_type, const Shape& shape) {
  std::string name = strip_slash(raw_name);
  Handle lcpl = owned_plist(H5Pcreate(H5P_LINK_CREATE));
  if (!lcpl.valid() || H5Pset_create_intermediate_group(lcpl.id(), 1) < 0)
    fail(path_, name, "cannot create a link-creation property list");
  Handle space = make_space(shape);
  if (!space.valid()) fail(path_, name, "cannot create a dataspace for " + core::shape_str(shape));
  // Default layout: contiguous, unfiltered. MPI-IO writes it collectively without chunk
  // bookkeeping, and the raw bytes sit in the file as they are in memory.
  Handle d(H5Dcreate2(handle_.id(), name.c_str(), file_type, space.id(), lcpl.id(), H5P_DEFAULT,
                      H5P_DEFAULT),
           H5Dclose);
  if (!d.valid()) fail(path_, name, "cannot create the dataset");
  return Dataset(std::move(d), path_, name, parallel_);
}

Dataset File::create_extendible_dataset(const std::string& raw_name, hid_t file_type,
                                        const Shape& shape, const Shape& chunk) {
  std::string name = strip_slash(raw_name);
  OPD_CHECK(!shape.empty() && chunk.size() == shape.size(), name, ": extendible dataset of shape ",
            core::shape_str(shape), " with chunk ", core::shape_str(chunk));
  Handle lcpl = owned_plist(H5Pcreate(H5P_LINK_CREATE));
  if (!lcpl.valid() || H5Pset_create_intermediate_group(lcpl.id(), 1) < 0)
    fail(path_, name, "cannot create a link-creation property list");
  auto dims = to_hsize(shape), chunk_dims = to_hsize(chunk);
  std::vector<hsize_t> max_dims = dims;
  max_dims[0] = H5S_UNLIMITED;
  Handle space = owned_space(
      H5Screate_simple(static_cast<int>(dims.size()), dims.data(), max_dims.data()));
  if (!space.valid()) fail(path_, name, "cannot create a dataspace for " + core::shape_str(shape));
  // Unlimited dimensions require the chunked layout.
  Handle dcpl = owned_plist(H5Pcreate(H5P_DATASET_CREATE));
  if (!dcpl.valid() ||
      H5Pset_chunk(dcpl.id(), static_cast<int>(chunk_dims.size()), chunk_dims.data()) < 0)
    fail(path_, name, "cannot set the chunk shape " + core::shape_str(chunk));
  Handle d(H5Dcreate2(handle_.id(), name.c_str(), file_type, space.id(), lcpl.id(), dcpl.id(),
                      H5P_DEFAULT),
           H5Dclose);
  if (!d.valid()) fail(path_, name, "cannot create the dataset");
  return Dataset(std::move(d), path_, name, parallel_);
}

Dataset File::open_dataset(const std::string& raw_name) const {
  std::string name = strip_slash(raw_name);
  if (object_type(name) != H5I_DATASET) fail(path_, name, "no such dataset");
  Handle d(H5Dopen2(handle_.id(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.valid()) fail(path_, name, "cannot open the dataset");
  return Dataset(std::move(d), path_, name, parallel_);
}

void File::remove(const std::string& raw_name) {
  std::string name = strip_slash(raw_name);
  if (!exists(name)) fail(path_, name, "no such object to remove");
  if (H5Ldelete(handle_.id(), name.c_str(), H5P_DEFAULT) < 0)
    fail(path_, name, "cannot remove the object");
  for (std::size_t slash = name.rfind('/'); slash != std::string::npos && slash > 0;
       slash = name.rfind('/')) {
    name.resize(slash);
    H5G_info_t info;
    if (H5Gget_info_by_name(handle_.id(), name.c_str(), &info, H5P_DEFAULT) < 0)
      fail(path_, name, "cannot read the group");
    if (info.nlinks > 0) break;
    if (H5Ldelete(handle_.id(), name.c_str(), H5P_DEFAULT) < 0)
      fail(path_, name, "cannot remove the empty group");
  }
}

namespace {
struct VisitState {
  std::vector<std::string>* names;
};

herr_t collect_dataset(hid_t group, const char* name, const H5L_info_t* info, void* client) {
  if (info->type != H5L_TYPE_HARD) return 0;
  hid_t o = H5Oopen(group, name, H5P_DEFAULT);
  if (o < 0) return -1;
  if (H5Iget_type(o) == H5I_DATASET) static_cast<VisitState*>(client)->names->emplace_back(name);
  H5Oclose(o);
  return 0;
}
}  // namespace

std::vector<std::string> File::dataset_names() const {
  std::vector<std::string> names;
  VisitState st{&names};
  if (H5Lvisit(handle_.id(), H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &st) < 0)
    fail(path_, "/", "cannot list the file's objects (corrupt file?)");
  return names;
}

}  // namespace opd::io::h5
