// DeviceComm with the CUDA backend: NCCL calls on a stream of its own (backend/device_comm.hpp).
#include <cuda_runtime.h>

#include <cstring>
#include <thread>
#include <vector>

#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/device.hpp"
#include "backend/cuda/nccl_library.hpp"
#include "backend/device_comm.hpp"
#include "core/error.hpp"

namespace opd::backend {

using core::DType;
using core::Tensor;
namespace abi = cuda::nccl_abi;

namespace {

constexpr const char* kDebugHint =
    "NCCL_DEBUG=WARN (or INFO) in the environment makes NCCL say why; every rank must see one "
    "GPU of its own and reach the others";

void require_cuda(const char* op, const char* name, const Tensor& t) {
  OPD_CHECK(t.defined() && t.device() == core::Device::Cuda, "device ", op, ": ", name,
            " must be a CUDA tensor, got ", t.describe());
}

}  // namespace

struct DeviceComm::Impl {
  std::shared_ptr<const cuda::NcclLibrary> lib;
  abi::Comm comm = nullptr;
  int rank = 0, size = 1;
  cudaStream_t stream = nullptr;  // this group's NCCL work
  cudaEvent_t compute_done = nullptr;  // recorded on the compute stream before each call
  bool in_flight = false;  // work on the stream not yet waited for

  // Sends copy their bytes into staging buffers of ours. A buffer is queued (copied, its send
  // not yet started), launched (its send on the stream, `done` recorded after it) or idle.
  enum class State { Idle, Queued, Launched };
  struct Staging {
    void* ptr = nullptr;
    std::size_t bytes = 0;
    cudaEvent_t done = nullptr;
    State state = State::Idle;
  };
  struct Send {
    int peer = 0;
    std::size_t bytes = 0;
    std::size_t buffer = 0;  // index into staging
  };
  std::vector<Staging> staging;
  std::vector<Send> queued;
  void* gather = nullptr;  // allgather_columns' [P, M, C] buffer
  std::size_t gather_bytes = 0;
  std::vector<char> connected;  // per peer: the first-contact handshake is done
  void* scratch = nullptr;      // the handshake's two bytes
  std::size_t scratch_bytes = 0;

  void check(abi::Result r, const char* call) const {
    if (r != abi::kSuccess)
      internal_error("nccl", std::string(call) + " failed: " + lib->error_string(r) + " (" +
                                 kDebugHint + ")");
  }

  // This stream waits for what the compute stream (cuda::stream(), where the ops run) has
  // queued so far: the tensors handed to NCCL then hold their final values, and no later read
  // of a receive buffer by the compute stream is overtaken.
  void after_compute() {
    cuda::check(cudaEventRecord(compute_done, cuda::stream()), "nccl: record event");
    cuda::check(cudaStreamWaitEvent(stream, compute_done, 0), "nccl: stream wait");
  }

  // Blocks until this stream is idle. Polls instead of cudaStreamSynchronize so that a peer's
  // failure that NCCL detects (an async error) ends the wait with an error rather than a hang.
  void synchronize() {
    for (;;) {
      const cudaError_t st = cudaStreamQuery(stream);
      if (st == cudaSuccess) break;
      if (st != cudaErrorNotReady) cuda::check(st, "nccl: stream");
      abi::Result async = abi::kSuccess;
      check(lib->comm_get_async_error(comm, &async), "ncclCommGetAsyncError");
      if (async != abi::kSuccess && async != abi::kInProgress) {
        lib->comm_abort(comm);
        comm = nullptr;
        internal_error("nccl", "a collective failed: " + lib->error_string(async) + " (" +
                                   kDebugHint + ")");
      }
      std::this_thread::yield();
    }
    in_flight = false;
    for (Staging& b : staging)  // the stream is idle: every send has gone out
      if (b.state == State::Launched) b.state = State::Idle;
  }

  // A staging buffer of at least `need` bytes that no queued or running send uses.
  std::size_t take_staging(std::size_t need) {
    for (Staging& b : staging)
      if (b.state == State::Launched) {
        const cudaError_t st = cudaEventQuery(b.done);
        if (st == cudaSuccess) b.state = State::Idle;
        else if (st != cudaErrorNotReady) cuda::check(st, "nccl: staging event");
      }
    std::size_t pick = staging.size();
    for (std::size_t i = 0; i < staging.size(); ++i)
      if (staging[i].state == State::Idle && (pick == staging.size() || staging[i].bytes >= need))
        pick = i;  // an idle buffer, preferably one large enough
    if (pick == staging.size()) {
      staging.emplace_back();
      cuda::check(cudaEventCreateWithFlags(&staging.back().done, cudaEventDisableTiming),
                  "nccl: staging event");
    }
    Staging& b = staging[pick];
    grow(b.ptr, b.bytes, need);
    b.state = State::Queued;
    return pick;
  }

  void* grow(void*& buf, std::size_t& have, std::size_t need) {
    if (have < need) {
      if (buf) cuda::check(cudaFree(buf), "nccl: free staging");
      buf = nullptr;
      have = 0;
      cuda::check(cudaMalloc(&buf, need), "nccl: staging buffer");
      have = need;
    }
    return buf;
  }

  // NCCL sets up a point-to-point connection at its first use, inside ncclGroupEnd, and that
  // blocks until the peer sets up the matching one. If one side's first group held both
  // directions and the other's only one, the first would wait for a setup the second makes
  // only after its data has arrived: a deadlock. So the first contact between two ranks is a
  // symmetric one-byte exchange that connects both directions at once, on both sides.
  void connect(int peer) {
    if (connected[static_cast<std::size_t>(peer)]) return;
    char* bytes = static_cast<char*>(grow(scratch, scratch_bytes, 2));
    check(lib->group_start(), "ncclGroupStart");
    check(lib->send(bytes, 1, abi::kInt8, peer, comm, stream), "ncclSend (handshake)");
    check(lib->recv(bytes + 1, 1, abi::kInt8, peer, comm, stream), "ncclRecv (handshake)");
    check(lib->group_end(), "ncclGroupEnd");
    synchronize();
    connected[static_cast<std::size_t>(peer)] = 1;
  }

  // Starts the queued sends, and the receive if any, as one NCCL group (so that they progress
  // together), without waiting for them.
  void launch(void* recv_data, std::size_t recv_bytes, int recv_peer) {
    if (queued.empty() && recv_bytes == 0) return;
    after_compute();  // covers the staging copies, queued on the compute stream
    check(lib->group_start(), "ncclGroupStart");
    for (const Send& q : queued)
      check(lib->send(staging[q.buffer].ptr, q.bytes, abi::kInt8, q.peer, comm, stream), "ncclSend");
    if (recv_bytes > 0)
      check(lib->recv(recv_data, recv_bytes, abi::kInt8, recv_peer, comm, stream), "ncclRecv");
    check(lib->group_end(), "ncclGroupEnd");
    for (const Send& q : queued) {
      Staging& b = staging[q.buffer];
      cuda::check(cudaEventRecord(b.done, stream), "nccl: staging event");
      b.state = State::Launched;
    }
    queued.clear();
    in_flight = true;
  }
};

int cuda_device_count() { return cuda::device_count(); }

std::string require_device_comm() {
  if (cuda::device_count() == 0)
    input_error("nccl", "collectives on CUDA tensors need a CUDA device, and none is visible",
                "run on a GPU node (one rank per GPU), or with device = \"cpu\"");
  auto lib = cuda::nccl();
  return lib->version_string() + " (" + lib->path + ")";
}

DeviceCommId new_device_comm_id() {
  auto lib = cuda::nccl();
  abi::UniqueId id{};
  const abi::Result r = lib->get_unique_id(&id);
  if (r != abi::kSuccess)
    input_error("nccl", "ncclGetUniqueId failed: " + lib->error_string(r), kDebugHint);
  DeviceCommId out{};
  static_assert(sizeof(id.internal) == kDeviceCommIdBytes, "NCCL's unique id is 128 bytes");
  std::memcpy(out.data(), id.internal, kDeviceCommIdBytes);
  return out;
}

DeviceComm::DeviceComm(int rank, int size, const DeviceCommId& id) : impl_(std::make_unique<Impl>()) {
  OPD_CHECK(size >= 1 && rank >= 0 && rank < size, "device group rank ", rank, " of ", size);
  require_device_comm();
  Impl& m = *impl_;
  m.lib = cuda::nccl();
  m.rank = rank;
  m.size = size;
  m.connected.assign(static_cast<std::size_t>(size), 0);
  abi::UniqueId uid{};
  std::memcpy(uid.internal, id.data(), kDeviceCommIdBytes);
  const abi::Result r = m.lib->comm_init_rank(&m.comm, size, uid, rank);
  if (r != abi::kSuccess)
    input_error("nccl", "ncclCommInitRank (rank " + std::to_string(rank) + " of " +
                            std::to_string(size) + ") failed: " + m.lib->error_string(r),
                kDebugHint);
  // Non-blocking: neither the compute stream nor the legacy one (host copies) may wait for NCCL
  // work (a queued receive would otherwise stall every op), and NCCL work waits for the ops only
  // through after_compute().
  cuda::check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "nccl: stream");
  cuda::check(cudaEventCreateWithFlags(&m.compute_done, cudaEventDisableTiming), "nccl: event");
}

DeviceComm::~DeviceComm() {
  if (!impl_) return;
  Impl& m = *impl_;
  // No throwing here: at worst a resource stays allocated until the process ends.
  if (m.stream) cudaStreamSynchronize(m.stream);
  if (m.comm) m.lib->comm_destroy(m.comm);
  for (const Impl::Staging& b : m.staging) {
    if (b.ptr) cudaFree(b.ptr);
    if (b.done) cudaEventDestroy(b.done);
  }
  if (m.gather) cudaFree(m.gather);
  if (m.scratch) cudaFree(m.scratch);
  if (m.compute_done) cudaEventDestroy(m.compute_done);
  if (m.stream) cudaStreamDestroy(m.stream);
}

int DeviceComm::rank() const { return impl_->rank; }
int DeviceComm::size() const { return impl_->size; }

namespace {
abi::DataType reduction_type(const cuda::NcclLibrary& lib, const Tensor& x) {
  if (x.dtype() == DType::F32) return abi::kFloat32;
  if (x.dtype() == DType::BF16) {
    if (lib.version < 21000)
      input_error("nccl", "a bf16 sum needs NCCL >= 2.10; " + lib.path + " is " + lib.version_string(),
                  "point OPD_NCCL_LIBRARY at a newer libnccl.so.2");
    return abi::kBfloat16;
  }
  internal_error("nccl", "device all-reduce of " + x.describe() + ": only f32 and bf16 are summed");
}
}  // namespace

void DeviceComm::start_allreduce_sum(Tensor& x) {
  require_cuda("allreduce_sum", "x", x);
  Impl& m = *impl_;
  const abi::DataType type = reduction_type(*m.lib, x);
  if (x.numel() == 0) return;
  m.after_compute();
  m.check(m.lib->all_reduce(x.raw(), x.raw(), static_cast<std::size_t>(x.numel()), type, abi::kSum,
                            m.comm, m.stream),
          "ncclAllReduce");
  m.in_flight = true;
}

void DeviceComm::wait() {
  if (impl_->in_flight) impl_->synchronize();
}

void DeviceComm::allreduce_sum(Tensor& x) {
  start_allreduce_sum(x);
  wait();
}

void DeviceComm::broadcast(Tensor& x, int root) {
  require_cuda("broadcast", "x", x);
  Impl& m = *impl_;
  OPD_CHECK(root >= 0 && root < m.size, "device broadcast from rank ", root, " of ", m.size);
  if (x.bytes() == 0) return;
  m.after_compute();
  m.check(m.lib->broadcast(x.raw(), x.raw(), x.bytes(), abi::kInt8, root, m.comm, m.stream),
          "ncclBroadcast");
  m.synchronize();
}

void DeviceComm::allgather(const Tensor& local, Tensor& out) {
  require_cuda("allgather", "local", local);
  require_cuda("allgather", "out", out);
  Impl& m = *impl_;
  OPD_CHECK(out.dtype() == local.dtype() && out.numel() == local.numel() * m.size,
            "device allgather: ", local.describe(), " from ", m.size, " ranks into ", out.describe());
  if (local.bytes() == 0) return;
  m.after_compute();
  m.check(m.lib->all_gather(local.raw(), out.raw(), local.bytes(), abi::kInt8, m.comm, m.stream),
          "ncclAllGather");
  m.synchronize();
}

void DeviceComm::allgather_columns(const Tensor& local, Tensor& full) {
  require_cuda("allgather_columns", "local", local);
  require_cuda("allgather_columns", "full", full);
  Impl& m = *impl_;
  const int64_t P = m.size;
  OPD_CHECK(local.ndim() == 2 && full.ndim() == 2 && full.dtype() == local.dtype() &&
                full.dim(0) == local.dim(0) && full.dim(1) == local.dim(1) * P,
            "device allgather_columns: ", local.describe(), " into ", full.describe());
  const auto M = static_cast<std::size_t>(local.dim(0));
  const std::size_t row = static_cast<std::size_t>(local.dim(1)) * core::dtype_size(local.dtype());
  if (local.bytes() == 0) return;
  // NCCL delivers [P, M, C] (rank-major); one strided copy per rank puts block p's rows at
  // columns [p C, (p + 1) C) of every row of full.
  char* buf = static_cast<char*>(m.grow(m.gather, m.gather_bytes, local.bytes() * static_cast<std::size_t>(P)));
  m.after_compute();
  m.check(m.lib->all_gather(local.raw(), buf, local.bytes(), abi::kInt8, m.comm, m.stream),
          "ncclAllGather");
  char* out = static_cast<char*>(full.raw());
  for (int64_t p = 0; p < P; ++p)
    cuda::check(cudaMemcpy2DAsync(out + static_cast<std::size_t>(p) * row, row * static_cast<std::size_t>(P),
                                  buf + static_cast<std::size_t>(p) * M * row, row, row, M,
                                  cudaMemcpyDeviceToDevice, m.stream),
                "allgather_columns: interleave");
  m.synchronize();
}

void DeviceComm::send(const Tensor& x, int peer) {
  require_cuda("send", "x", x);
  Impl& m = *impl_;
  OPD_CHECK(peer >= 0 && peer < m.size && peer != m.rank, "device send to rank ", peer, " from ",
            m.rank, " of ", m.size);
  if (x.bytes() == 0) return;
  m.connect(peer);
  const std::size_t i = m.take_staging(x.bytes());
  // On the compute stream: ordered after the ops that wrote x and before any that overwrite it.
  cuda::check(cudaMemcpyAsync(m.staging[i].ptr, x.raw(), x.bytes(), cudaMemcpyDeviceToDevice,
                              cuda::stream()),
              "device send: staging copy");
  m.queued.push_back({peer, x.bytes(), i});
}

void DeviceComm::start_sends() { impl_->launch(nullptr, 0, 0); }

void DeviceComm::recv(Tensor& x, int peer) {
  require_cuda("recv", "x", x);
  Impl& m = *impl_;
  OPD_CHECK(peer >= 0 && peer < m.size && peer != m.rank, "device recv from rank ", peer, " at ",
            m.rank, " of ", m.size);
  if (x.bytes() > 0) m.connect(peer);
  m.launch(x.raw(), x.bytes(), peer);
  if (m.in_flight) m.synchronize();
}

void DeviceComm::flush_sends() {
  impl_->launch(nullptr, 0, 0);
  if (impl_->in_flight) impl_->synchronize();
}

bool DeviceComm::sends_queued() const { return !impl_->queued.empty(); }

void take_column_block(const Tensor& full, int64_t block, Tensor& local) {
  require_cuda("take_column_block", "full", full);
  require_cuda("take_column_block", "local", local);
  OPD_CHECK(local.ndim() == 2 && full.ndim() == 2 && full.dtype() == local.dtype() &&
                full.dim(0) == local.dim(0) && local.dim(1) > 0 && full.dim(1) % local.dim(1) == 0 &&
                block >= 0 && block < full.dim(1) / local.dim(1),
            "take_column_block ", block, " of ", full.describe(), " into ", local.describe());
  if (local.bytes() == 0) return;
  const std::size_t row = static_cast<std::size_t>(local.dim(1)) * core::dtype_size(local.dtype());
  const std::size_t P = static_cast<std::size_t>(full.dim(1) / local.dim(1));
  cuda::check(cudaMemcpy2DAsync(local.raw(), row,
                                static_cast<const char*>(full.raw()) + static_cast<std::size_t>(block) * row,
                                row * P, row, static_cast<std::size_t>(local.dim(0)),
                                cudaMemcpyDeviceToDevice, cuda::stream()),
              "take_column_block");
}

}  // namespace opd::backend
