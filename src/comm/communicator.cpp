#include "comm/communicator.hpp"

#include <mpi.h>

#include <chrono>
#include <cstring>
#include <list>

#include "comm/device_group.hpp"
#include "core/error.hpp"

namespace opd::comm {

namespace {
bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}
void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) internal_error("mpi", std::string(what) + " failed");
}

// Seconds this process has spent inside communication calls (transfers and waiting for peers).
double g_mpi_seconds = 0;
struct Timed {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  ~Timed() {
    g_mpi_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
};
}  // namespace

double mpi_seconds() { return g_mpi_seconds; }
void add_communication_seconds(double seconds) { g_mpi_seconds += seconds; }

struct Communicator::Handle {
  MPI_Comm comm = MPI_COMM_NULL;
  bool owned = false;  // split communicators are freed with their last copy
  struct Pending {
    MPI_Request request = MPI_REQUEST_NULL;
    std::vector<char> bytes;  // the copy being sent
  };
  std::list<Pending> pending;  // isends in flight (a list: the copies must not move)
  std::vector<MPI_Request> reductions;  // iallreduces in flight
  std::unique_ptr<DeviceGroup> device;  // created by the first device collective
  ~Handle() {
    device.reset();  // NCCL first: its communicator may still be finishing work
    if (!mpi_running()) return;
    for (auto& p : pending) MPI_Wait(&p.request, MPI_STATUS_IGNORE);
    for (auto& r : reductions) MPI_Wait(&r, MPI_STATUS_IGNORE);
    if (owned && comm != MPI_COMM_NULL) MPI_Comm_free(&comm);
  }
};

Communicator Communicator::world() {
  Communicator c;
  if (!mpi_running()) return c;
  c.handle_ = std::make_shared<Handle>();
  c.handle_->comm = MPI_COMM_WORLD;
  MPI_Comm_rank(MPI_COMM_WORLD, &c.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &c.size_);
  return c;
}

Communicator Communicator::split(int colour, int key) const {
  Communicator c;
  if (!handle_) return c;
  MPI_Comm out;
  check(MPI_Comm_split(handle_->comm, colour, key, &out), "MPI_Comm_split");
  c.handle_ = std::make_shared<Handle>();
  c.handle_->comm = out;
  c.handle_->owned = true;
  MPI_Comm_rank(out, &c.rank_);
  MPI_Comm_size(out, &c.size_);
  return c;
}

void Communicator::allreduce_sum(float* data, int64_t n) const {
  const Timed timed;
  if (size_ > 1) check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, handle_->comm), "allreduce");
}
void Communicator::allreduce_sum(double* data, int64_t n) const {
  const Timed timed;
  if (size_ > 1) check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, handle_->comm), "allreduce");
}
void Communicator::allreduce_sum(int64_t* data, int64_t n) const {
  const Timed timed;
  if (size_ > 1) check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_INT64_T, MPI_SUM, handle_->comm), "allreduce");
}
int Communicator::allreduce_max(int value) const {
  const Timed timed;
  if (size_ > 1) check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT, MPI_MAX, handle_->comm), "allreduce");
  return value;
}
double Communicator::allreduce_max(double value) const {
  const Timed timed;
  if (size_ > 1) check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, handle_->comm), "allreduce");
  return value;
}

std::vector<double> Communicator::allgather(const std::vector<double>& local) const {
  const Timed timed;
  if (size_ == 1) return local;
  int n = static_cast<int>(local.size());
  std::vector<int> counts(static_cast<std::size_t>(size_)), offsets(counts.size());
  check(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, handle_->comm), "allgather");
  int total = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) offsets[i] = total, total += counts[i];
  std::vector<double> all(static_cast<std::size_t>(total));
  check(MPI_Allgatherv(local.data(), n, MPI_DOUBLE, all.data(), counts.data(), offsets.data(),
                       MPI_DOUBLE, handle_->comm), "allgatherv");
  return all;
}

void Communicator::allgather(const float* local, int64_t n, float* out) const {
  const Timed timed;
  if (size_ == 1) {
    std::memcpy(out, local, static_cast<std::size_t>(n) * sizeof(float));
    return;
  }
  check(MPI_Allgather(local, static_cast<int>(n), MPI_FLOAT, out, static_cast<int>(n), MPI_FLOAT,
                      handle_->comm), "allgather");
}

std::vector<std::string> Communicator::gather(const std::string& mine, int root) const {
  if (size_ == 1) return {mine};
  const Timed timed;
  int n = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<std::size_t>(size_)), offsets(counts.size());
  check(MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, handle_->comm), "gather");
  int total = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) offsets[i] = total, total += counts[i];
  std::string all(rank_ == root ? static_cast<std::size_t>(total) : 0, '\0');
  check(MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), counts.data(), offsets.data(), MPI_CHAR,
                    root, handle_->comm),
        "gatherv");
  if (rank_ != root) return {};
  std::vector<std::string> out;
  for (std::size_t i = 0; i < counts.size(); ++i)
    out.push_back(all.substr(static_cast<std::size_t>(offsets[i]), static_cast<std::size_t>(counts[i])));
  return out;
}

const void* Communicator::native_handle() const { return handle_ ? &handle_->comm : nullptr; }

const DeviceGroup& Communicator::device_group() const {
  if (!handle_) {
    // The one-rank communicator without MPI: one process-wide group. Never destroyed, because
    // tearing NCCL down at exit races the CUDA runtime's own teardown.
    static const DeviceGroup* self = new DeviceGroup(Communicator());
    return *self;
  }
  if (!handle_->device) handle_->device = std::make_unique<DeviceGroup>(*this);
  return *handle_->device;
}

bool Communicator::has_device_group() const { return handle_ && handle_->device; }

void Communicator::broadcast(void* data, int64_t bytes, int root) const {
  const Timed timed;
  if (size_ > 1) check(MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, handle_->comm), "broadcast");
}

void Communicator::send(const void* data, int64_t bytes, int dest, int tag) const {
  const Timed timed;
  OPD_CHECK(size_ > 1, "send on a one-rank communicator");
  check(MPI_Send(data, static_cast<int>(bytes), MPI_BYTE, dest, tag, handle_->comm), "send");
}

void Communicator::isend(const void* data, int64_t bytes, int dest, int tag) const {
  const Timed timed;
  OPD_CHECK(size_ > 1, "isend on a one-rank communicator");
  auto& pending = handle_->pending;
  for (auto it = pending.begin(); it != pending.end();) {  // reap the completed ones
    int done = 0;
    check(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE), "test");
    it = done ? pending.erase(it) : std::next(it);
  }
  pending.emplace_back();
  auto& p = pending.back();
  p.bytes.assign(static_cast<const char*>(data), static_cast<const char*>(data) + bytes);
  check(MPI_Isend(p.bytes.data(), static_cast<int>(bytes), MPI_BYTE, dest, tag, handle_->comm,
                  &p.request),
        "isend");
}

void Communicator::wait_sends() const {
  const Timed timed;
  if (!handle_) return;
  for (auto& p : handle_->pending) check(MPI_Wait(&p.request, MPI_STATUS_IGNORE), "wait");
  handle_->pending.clear();
}

void Communicator::iallreduce_sum(float* data, int64_t n) const {
  if (size_ == 1) return;
  const Timed timed;
  handle_->reductions.emplace_back();
  check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, handle_->comm,
                       &handle_->reductions.back()),
        "iallreduce");
}

void Communicator::progress() const {
  if (!handle_ || handle_->reductions.empty()) return;
  const Timed timed;
  int done = 0;
  check(MPI_Testall(static_cast<int>(handle_->reductions.size()), handle_->reductions.data(), &done,
                    MPI_STATUSES_IGNORE),
        "testall");
}

void Communicator::wait_reductions() const {
  if (!handle_) return;
  const Timed timed;
  check(MPI_Waitall(static_cast<int>(handle_->reductions.size()), handle_->reductions.data(),
                    MPI_STATUSES_IGNORE),
        "waitall");
  handle_->reductions.clear();
}

void Communicator::recv(void* data, int64_t bytes, int source, int tag) const {
  const Timed timed;
  OPD_CHECK(size_ > 1, "recv on a one-rank communicator");
  check(MPI_Recv(data, static_cast<int>(bytes), MPI_BYTE, source, tag, handle_->comm,
                 MPI_STATUS_IGNORE), "recv");
}

void Communicator::barrier() const {
  const Timed timed;
  if (size_ > 1) check(MPI_Barrier(handle_->comm), "barrier");
}

}  // namespace opd::comm
