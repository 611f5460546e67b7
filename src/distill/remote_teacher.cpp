#include "distill/remote_teacher.hpp"

#include <array>
#include <initializer_list>

#include "backend/ops.hpp"
#include "core/error.hpp"

namespace opd::distill {

namespace ops = opd::backend;

namespace {

constexpr int kTag = 77;  // one tag: MPI keeps messages between two ranks in order

// Messages travel through host memory (MPI): a device tensor is copied out first, and what
// arrives is a host tensor (the receiver moves what its device needs).
core::Tensor on_host(const core::Tensor& t) { return ops::on_device(t, core::Device::Host); }

// A tensor travels as a header (ndim or -1 for none, dtype, up to 6 dims) and its bytes;
// `later`: without waiting for the receiver (the bytes are copied).
void send_tensor(const comm::Communicator& world, const core::Tensor& device_or_host, int dest,
                 bool later = false) {
  const core::Tensor t = on_host(device_or_host);
  std::array<int64_t, 8> h{};
  h.fill(0);
  h[0] = t.defined() ? t.ndim() : -1;
  if (t.defined()) {
    OPD_CHECK(t.ndim() <= 6, "tensor of rank ", t.ndim(), " cannot travel");
    h[1] = static_cast<int64_t>(t.dtype());
    for (int i = 0; i < t.ndim(); ++i) h[static_cast<std::size_t>(2 + i)] = t.dim(i);
  }
  auto send = [&](const void* data, int64_t bytes) {
    if (later) world.isend(data, bytes, dest, kTag);
    else world.send(data, bytes, dest, kTag);
  };
  send(h.data(), sizeof h);
  if (t.defined() && t.numel() > 0) send(t.raw(), static_cast<int64_t>(t.bytes()));
}

core::Tensor recv_tensor(const comm::Communicator& world, int source) {
  std::array<int64_t, 8> h{};
  world.recv(h.data(), sizeof h, source, kTag);
  if (h[0] < 0) return {};
  core::Shape shape(h.begin() + 2, h.begin() + 2 + h[0]);
  core::Tensor t = core::Tensor::empty(shape, static_cast<core::DType>(h[1]));
  if (t.numel() > 0) world.recv(t.raw(), static_cast<int64_t>(t.bytes()), source, kTag);
  return t;
}

// The tensor of `root` (a header, then its bytes) on every rank of `group`, in host memory.
void broadcast_tensor(const comm::Communicator& group, core::Tensor& t, int root) {
  if (group.size() == 1) return;
  if (group.rank() == root) t = on_host(t);
  std::array<int64_t, 8> h{};
  if (group.rank() == root) {
    h[0] = t.defined() ? t.ndim() : -1;
    if (t.defined()) {
      h[1] = static_cast<int64_t>(t.dtype());
      for (int i = 0; i < t.ndim(); ++i) h[static_cast<std::size_t>(2 + i)] = t.dim(i);
    }
  }
  group.broadcast(h.data(), sizeof h, root);
  if (group.rank() != root)
    t = h[0] < 0 ? core::Tensor()
                 : core::Tensor::empty(core::Shape(h.begin() + 2, h.begin() + 2 + h[0]),
                                       static_cast<core::DType>(h[1]));
  if (t.defined() && t.numel() > 0) group.broadcast(t.raw(), static_cast<int64_t>(t.bytes()), root);
}

}  // namespace

RemoteTeacher::RemoteTeacher(const comm::Communicator& world, int teacher_rank, int reply_rank,
                             const comm::Communicator& tp, const model::ModelConfig& cfg,
                             float temperature, bool full, core::Device device)
    : world_(world),
      tp_(tp),
      teacher_rank_(teacher_rank),
      reply_rank_(reply_rank),
      cfg_(cfg),
      temperature_(temperature),
      device_(device) {
  if (!full) return;
  if (tp_.rank() == 0) head_ = recv_tensor(world_, reply_rank_);
  broadcast_tensor(tp_, head_, 0);
  head_ = ops::on_device(head_, device_);  // the student's ranks form the teacher's logits
}

ScoreReply RemoteTeacher::score(const ScoreRequest& req) {
  send_request(req);
  return receive_reply(req);
}

void RemoteTeacher::send_request(const ScoreRequest& req) {
  if (tp_.rank() != 0) return;  // the replica's first rank talks to the teacher for the group
  core::Tensor mode =
      core::Tensor::from_vector(std::vector<int32_t>{static_cast<int32_t>(req.mode)}, {1});
  for (const core::Tensor* t : std::initializer_list<const core::Tensor*>{
           &mode, &req.ids, &req.rows, &req.targets, &req.student_ids})
    send_tensor(world_, *t, teacher_rank_, true);
}

ScoreReply RemoteTeacher::receive_reply(const ScoreRequest& req) {
  ScoreReply reply;
  reply.signal.mode = req.mode;
  reply.temperature = temperature_;
  reply.head = head_;
  reply.signal.student_ids = req.student_ids;
  const std::initializer_list<core::Tensor*> answers = {
      &reply.signal.logq_y,           &reply.signal.entropy_q,  &reply.lse,
      &reply.signal.logq_student_ids, &reply.signal.teacher_ids, &reply.signal.logq_teacher_ids,
      &reply.hidden};
  if (tp_.rank() == 0)
    for (core::Tensor* t : answers) *t = recv_tensor(world_, reply_rank_);
  for (core::Tensor* t : answers) broadcast_tensor(tp_, *t, 0);
  // As from a LocalTeacher: the per-row arrays on the host, the hidden rows with the head.
  reply.hidden = ops::on_device(reply.hidden, device_);
  return reply;
}

void send_teacher_head(LocalTeacher& teacher, const comm::Communicator& world, int client) {
  if (!teacher.model().has_head()) return;  // the last pipeline stage holds it
  // The head is sharded by vocabulary rows: the shards in rank order are the whole head.
  const comm::Communicator& tp = teacher.model().tensor_parallel().group();
  const core::Tensor shard = on_host(teacher.model().lm_head().value);
  core::Tensor whole = core::Tensor::empty({shard.dim(0) * tp.size(), shard.dim(1)});
  tp.allgather(shard.data<float>(), shard.numel(), whole.data<float>());
  if (tp.rank() == 0) send_tensor(world, whole, client);
}

void serve_score_request(LocalTeacher& teacher, const comm::Communicator& world,
                         const comm::Communicator& replica, int client) {
  ScoreRequest req;
  core::Tensor mode;
  if (replica.rank() == 0) {
    mode = recv_tensor(world, client);
    req.ids = recv_tensor(world, client);
    req.rows = recv_tensor(world, client);
    req.targets = recv_tensor(world, client);
    req.student_ids = recv_tensor(world, client);
  }
  for (core::Tensor* t : {&mode, &req.ids, &req.rows, &req.targets, &req.student_ids})
    broadcast_tensor(replica, *t, 0);
  req.mode = static_cast<Signal>(mode.data<int32_t>()[0]);
  ScoreReply reply;
  if (req.rows.numel() > 0) reply = teacher.score(req);  // collective over the replica
  const model::Transformer& m = teacher.model();
  if (!m.has_head() || m.tensor_parallel().rank() != 0) return;  // the replying rank
  // Full mode needs only the hidden states; the other modes need no hidden states.
  const core::Tensor hidden = req.mode == Signal::Full ? reply.hidden : core::Tensor();
  for (const core::Tensor* t : std::initializer_list<const core::Tensor*>{
           &reply.signal.logq_y, &reply.signal.entropy_q, &reply.lse,
           &reply.signal.logq_student_ids, &reply.signal.teacher_ids,
           &reply.signal.logq_teacher_ids, &hidden})
    send_tensor(world, *t, client);
}

}  // namespace opd::distill
