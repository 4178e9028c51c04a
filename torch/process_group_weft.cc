#include "torch/process_group_weft.h"

#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>

#include <string>
#include <utility>

namespace weft::torchpg {

namespace {

constexpr const char* kStoreAddrKey = "weft_store_addr";

// A Work that completed inside the call; its future holds the output tensors (DDP's
// communication hooks chain on it).
class CompletedWork : public c10d::Work {
 public:
  CompletedWork(int rank, c10d::OpType type, std::vector<at::Tensor> outputs)
      : c10d::Work(rank, type), outputs_(std::move(outputs)) {
    future_ =
        c10::make_intrusive<c10::ivalue::Future>(c10::ListType::create(c10::TensorType::get()));
    future_->markCompleted(c10::IValue(outputs_));
    finish();
  }
  bool isCompleted() override { return true; }
  bool isSuccess() const override { return true; }
  bool wait(std::chrono::milliseconds /*timeout*/) override { return true; }
  std::vector<at::Tensor> result() override { return outputs_; }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return future_; }

 private:
  std::vector<at::Tensor> outputs_;
  c10::intrusive_ptr<c10::ivalue::Future> future_;
};

c10::intrusive_ptr<c10d::Work> done(int rank, c10d::OpType type, std::vector<at::Tensor> out) {
  return c10::make_intrusive<CompletedWork>(rank, type, std::move(out));
}

// Raises (RuntimeError in Python) when a Weft call failed.
void check(const Status& s, const char* op) {
  TORCH_CHECK(s.isOk(), "weft ", op, " failed: ", s.toString());
}

std::string describe(const at::Tensor& t) {
  return c10::str("a ", t.scalar_type(), " tensor on ", t.device(), " with sizes ", t.sizes());
}

coll::DataType dataType(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat: return coll::DataType::kF32;
    case at::kDouble: return coll::DataType::kF64;
    case at::kHalf: return coll::DataType::kF16;
    case at::kBFloat16: return coll::DataType::kBF16;
    case at::kInt: return coll::DataType::kI32;
    case at::kLong: return coll::DataType::kI64;
    case at::kByte: return coll::DataType::kU8;
    case at::kChar: return coll::DataType::kI8;
    default: break;
  }
  TORCH_CHECK(false, "weft ", op, ": unsupported dtype in ", describe(t),
              " (supported: float32, float64, float16, bfloat16, int32, int64, uint8, int8)");
}

// Validates a tensor Weft can use in place: CPU, dense and contiguous, supported dtype.
coll::DataType checkTensor(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.device().is_cpu(), "weft ", op, ": only CPU tensors are supported, got ",
              describe(t));
  TORCH_CHECK(t.layout() == at::kStrided && t.is_contiguous(), "weft ", op,
              ": the tensor must be dense and contiguous (call .contiguous()), got ", describe(t));
  return dataType(t, op);
}

// The single tensor of a per-device tensor list (CPU: exactly one).
at::Tensor& single(std::vector<at::Tensor>& tensors, const char* op) {
  TORCH_CHECK(tensors.size() == 1, "weft ", op, ": expects one tensor per call, got ",
              tensors.size());
  return tensors[0];
}

void checkSameKind(const at::Tensor& a, const at::Tensor& b, int64_t numel, const char* op) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "weft ", op, ": dtype mismatch, ", describe(a),
              " vs ", describe(b));
  TORCH_CHECK(b.numel() == numel, "weft ", op, ": expected ", numel, " elements, got ",
              describe(b));
}

coll::ReduceOp reduceOp(const c10d::ReduceOp& op, const char* name) {
  switch (op.op_) {
    case c10d::ReduceOp::SUM: return coll::ReduceOp::kSum;
    case c10d::ReduceOp::AVG: return coll::ReduceOp::kAvg;
    case c10d::ReduceOp::PRODUCT: return coll::ReduceOp::kProd;
    case c10d::ReduceOp::MIN: return coll::ReduceOp::kMin;
    case c10d::ReduceOp::MAX: return coll::ReduceOp::kMax;
    case c10d::ReduceOp::BAND: return coll::ReduceOp::kBand;
    case c10d::ReduceOp::BOR: return coll::ReduceOp::kBor;
    case c10d::ReduceOp::BXOR: return coll::ReduceOp::kBxor;
    default: break;
  }
  TORCH_CHECK(false, "weft ", name, ": unsupported reduce op ", static_cast<int>(op.op_),
              " (supported: SUM, AVG, PRODUCT, MIN, MAX, BAND, BOR, BXOR)");
}

size_t count(const at::Tensor& t) {
  return static_cast<size_t>(t.numel());
}

}  // namespace

ProcessGroupWeft::ProcessGroupWeft(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                   std::chrono::milliseconds timeout)
    : c10d::ProcessGroup(rank, size), timeout_(timeout) {
  std::unique_ptr<TcpStoreServer> server;
  if (rank == 0) {
    Result<std::unique_ptr<TcpStoreServer>> s = Session::hostStore();
    check(s.status(), "init (hosting the Weft store)");
    server = std::move(*s);
    std::string addr = Session::storeAddress(*server);
    store->set(kStoreAddrKey, std::vector<uint8_t>(addr.begin(), addr.end()));
  }
  store->wait({kStoreAddrKey}, timeout);
  std::vector<uint8_t> v = store->get(kStoreAddrKey);
  double timeout_s = std::chrono::duration<double>(timeout).count();
  Result<std::unique_ptr<Session>> session =
      Session::join(rank, size, std::string(v.begin(), v.end()), std::move(server), timeout_s);
  check(session.status(), "init");
  session_ = std::move(*session);
}

ProcessGroupWeft::~ProcessGroupWeft() = default;

coll::CallOptions ProcessGroupWeft::callOptions(std::chrono::milliseconds timeout) const {
  coll::CallOptions o;
  o.deadline = Deadline::after(timeout == c10d::kUnsetTimeout ? timeout_ : timeout);
  return o;
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::broadcast(std::vector<at::Tensor>& tensors,
                                                           const c10d::BroadcastOptions& opts) {
  at::Tensor& t = single(tensors, "broadcast");
  coll::DataType type = checkTensor(t, "broadcast");
  std::lock_guard<std::mutex> lock(mu_);
  check(coll::broadcast(session_->comm(), t.data_ptr(), count(t), type,
                        static_cast<int>(opts.rootRank), callOptions(opts.timeout)),
        "broadcast");
  return done(rank_, c10d::OpType::BROADCAST, tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::allreduce(std::vector<at::Tensor>& tensors,
                                                           const c10d::AllreduceOptions& opts) {
  at::Tensor& t = single(tensors, "allreduce");
  coll::DataType type = checkTensor(t, "allreduce");
  coll::ReduceOp op = reduceOp(opts.reduceOp, "allreduce");
  std::lock_guard<std::mutex> lock(mu_);
  check(coll::allreduce(session_->comm(), t.data_ptr(), t.data_ptr(), count(t), type, op,
                        callOptions(opts.timeout)),
        "allreduce");
  return done(rank_, c10d::OpType::ALLREDUCE, tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::allreduce_coalesced(
    std::vector<at::Tensor>& tensors, const c10d::AllreduceCoalescedOptions& opts) {
  for (at::Tensor& t : tensors) {
    std::vector<at::Tensor> one{t};
    allreduce(one, opts);
  }
  return done(rank_, c10d::OpType::ALLREDUCE_COALESCED, tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::reduce(std::vector<at::Tensor>& tensors,
                                                        const c10d::ReduceOptions& opts) {
  at::Tensor& t = single(tensors, "reduce");
  coll::DataType type = checkTensor(t, "reduce");
  coll::ReduceOp op = reduceOp(opts.reduceOp, "reduce");
  int root = static_cast<int>(opts.rootRank);
  std::lock_guard<std::mutex> lock(mu_);
  check(coll::reduce(session_->comm(), t.data_ptr(), rank_ == root ? t.data_ptr() : nullptr,
                     count(t), type, op, root, callOptions(opts.timeout)),
        "reduce");
  return done(rank_, c10d::OpType::REDUCE, tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::allgather(
    std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
    const c10d::AllgatherOptions& opts) {
  at::Tensor& in = single(inputs, "allgather");
  checkTensor(in, "allgather");
  TORCH_CHECK(outputs.size() == 1 && outputs[0].size() == static_cast<size_t>(size_),
              "weft allgather: expects one output list of ", size_, " tensors");
  for (const at::Tensor& o : outputs[0]) checkSameKind(in, o, in.numel(), "allgather");
  at::Tensor flat = at::empty({size_ * in.numel()}, in.options());
  _allgather_base(flat, in, opts);
  for (int r = 0; r < size_; ++r) {
    outputs[0][static_cast<size_t>(r)].copy_(flat.narrow(0, r * in.numel(), in.numel())
                                                 .view(outputs[0][static_cast<size_t>(r)].sizes()));
  }
  return done(rank_, c10d::OpType::ALLGATHER, outputs[0]);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::_allgather_base(
    at::Tensor& output, at::Tensor& input, const c10d::AllgatherOptions& opts) {
  coll::DataType type = checkTensor(input, "allgather");
  checkTensor(output, "allgather");
  checkSameKind(input, output, size_ * input.numel(), "allgather");
  std::lock_guard<std::mutex> lock(mu_);
  check(coll::allgather(session_->comm(), input.data_ptr(), output.data_ptr(), count(input), type,
                        callOptions(opts.timeout)),
        "allgather");
  return done(rank_, c10d::OpType::_ALLGATHER_BASE, {output});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::reduce_scatter(
    std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
    const c10d::ReduceScatterOptions& opts) {
  at::Tensor& out = single(outputs, "reduce_scatter");
  checkTensor(out, "reduce_scatter");
  TORCH_CHECK(inputs.size() == 1 && inputs[0].size() == static_cast<size_t>(size_),
              "weft reduce_scatter: expects one input list of ", size_, " tensors");
  for (const at::Tensor& i : inputs[0]) checkSameKind(out, i, out.numel(), "reduce_scatter");
  at::Tensor flat = at::empty({size_ * out.numel()}, out.options());
  for (int r = 0; r < size_; ++r) {
    flat.narrow(0, r * out.numel(), out.numel())
        .copy_(inputs[0][static_cast<size_t>(r)].reshape(-1));
  }
  _reduce_scatter_base(out, flat, opts);
  return done(rank_, c10d::OpType::REDUCE_SCATTER, outputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::_reduce_scatter_base(
    at::Tensor& output, at::Tensor& input, const c10d::ReduceScatterOptions& opts) {
  coll::DataType type = checkTensor(output, "reduce_scatter");
  checkTensor(input, "reduce_scatter");
  checkSameKind(output, input, size_ * output.numel(), "reduce_scatter");
  coll::ReduceOp op = reduceOp(opts.reduceOp, "reduce_scatter");
  std::lock_guard<std::mutex> lock(mu_);
  check(coll::reduceScatter(session_->comm(), input.data_ptr(), output.data_ptr(), count(output),
                            type, op, callOptions(opts.timeout)),
        "reduce_scatter");
  return done(rank_, c10d::OpType::_REDUCE_SCATTER_BASE, {output});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::barrier(const c10d::BarrierOptions& opts) {
  std::lock_guard<std::mutex> lock(mu_);
  check(coll::barrier(session_->comm(), callOptions(opts.timeout)), "barrier");
  return done(rank_, c10d::OpType::BARRIER, {});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::send(std::vector<at::Tensor>& tensors,
                                                      int dst_rank, int tag) {
  return pointToPoint(tensors, dst_rank, tag, /*is_send=*/true);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::recv(std::vector<at::Tensor>& tensors,
                                                      int src_rank, int tag) {
  return pointToPoint(tensors, src_rank, tag, /*is_send=*/false);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::pointToPoint(std::vector<at::Tensor>& tensors,
                                                              int peer, int tag, bool is_send) {
  const char* op = is_send ? "send" : "recv";
  at::Tensor& t = single(tensors, op);
  coll::DataType type = checkTensor(t, op);
  std::lock_guard<std::mutex> lock(mu_);
  coll::CallOptions o = callOptions(c10d::kUnsetTimeout);
  check(is_send ? coll::send(session_->comm(), t.data_ptr(), count(t), type, peer, tag, o)
                : coll::recv(session_->comm(), t.data_ptr(), count(t), type, peer, tag, o),
        op);
  return done(rank_, is_send ? c10d::OpType::SEND : c10d::OpType::RECV, tensors);
}

}  // namespace weft::torchpg
