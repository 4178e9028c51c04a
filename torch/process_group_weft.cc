#include "torch/process_group_weft.h"

#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>
#include <c10/util/accumulate.h>

#include <cstdint>
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

}  // namespace

// A point-to-point operation dropped while pending, with the tensors it reads or writes.
struct DetachedOp {
  coll::Request request;
  std::vector<at::Tensor> tensors;
};

struct SharedSession {
  std::mutex mu;  // serializes every use of the session (the communicator is single-threaded)
  std::unique_ptr<Session> session;
  std::vector<DetachedOp> detached;

  // Drops the detached operations that completed (lock held).
  void reap() {
    std::erase_if(detached, [](DetachedOp& d) { return d.request.done(); });
  }
  ~SharedSession() {
    // Their buffers must outlive them: wait, each bounded by its own deadline.
    for (DetachedOp& d : detached) {
      if (!d.request.done()) (void)d.request.wait();
    }
    detached.clear();
  }
};

namespace {

// Holds the session's lock for one operation; reaps finished detached operations first.
class SessionLock {
 public:
  explicit SessionLock(SharedSession& s) : lock_(s.mu) {
    if (!s.detached.empty()) s.reap();
  }

 private:
  std::lock_guard<std::mutex> lock_;
};

// isend / irecv: pending until the Weft request completes; waits drive its progress.
class PointToPointWork : public c10d::Work {
 public:
  PointToPointWork(int rank, c10d::OpType type, const char* op, std::shared_ptr<SharedSession> s,
                   coll::Request request, std::vector<at::Tensor> tensors)
      : c10d::Work(rank, type),
        op_(op),
        shared_(std::move(s)),
        request_(std::move(request)),
        tensors_(std::move(tensors)) {}
  ~PointToPointWork() override {
    // The request goes back to the communicator's pool under the lock (another thread may
    // be using the communicator).
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (request_.valid() && !request_.done()) {
      shared_->detached.push_back(DetachedOp{std::move(request_), std::move(tensors_)});
    }
    request_ = coll::Request();
  }

  bool isCompleted() override {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (!request_.done()) request_.test();
    return settle();
  }
  bool wait(std::chrono::milliseconds timeout) override {
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      if (!request_.done()) {
        Status st =
            timeout == ::kNoTimeout ? request_.wait() : request_.wait(Deadline::after(timeout));
        TORCH_CHECK(request_.done(), "weft ", op_,
                    " did not complete within the wait: ", st.toString(),
                    " (it stays pending: wait again)");
      }
      settle();
    }
    if (std::exception_ptr e = exception()) std::rethrow_exception(e);
    return true;
  }
  std::vector<at::Tensor> result() override { return tensors_; }

 private:
  // Records the outcome once the request is done (lock held); returns done().
  bool settle() {
    if (!request_.done()) return false;
    if (!settled_) {
      settled_ = true;
      Status st = request_.status();
      if (st.isOk()) {
        finish();
      } else {
        finish(std::make_exception_ptr(
            c10::Error(c10::str("weft ", op_, " failed: ", st.toString()), "")));
      }
    }
    return true;
  }

  const char* op_;
  std::shared_ptr<SharedSession> shared_;
  coll::Request request_;
  std::vector<at::Tensor> tensors_;
  bool settled_ = false;
};

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

// A tensor the backend copies to or from: CPU, of a's dtype (any layout).
void checkLike(const at::Tensor& a, const at::Tensor& b, const char* op) {
  TORCH_CHECK(b.device().is_cpu(), "weft ", op, ": only CPU tensors are supported, got ",
              describe(b));
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "weft ", op, ": dtype mismatch, ", describe(a),
              " vs ", describe(b));
}

void checkSameKind(const at::Tensor& a, const at::Tensor& b, int64_t numel, const char* op) {
  checkLike(a, b, op);
  TORCH_CHECK(b.numel() == numel, "weft ", op, ": expected ", numel, " elements, got ",
              describe(b));
}

// The single tensor list of a per-device list of lists (CPU: exactly one), holding one
// tensor per rank.
std::vector<at::Tensor>& rankList(std::vector<std::vector<at::Tensor>>& lists, int size,
                                  const char* op, const char* what) {
  TORCH_CHECK(lists.size() == 1 && lists[0].size() == static_cast<size_t>(size), "weft ", op,
              ": expects one ", what, " list of ", size, " tensors (one per rank), got ",
              lists.size(), " list(s)",
              lists.empty() ? "" : c10::str(", the first of ", lists[0].size(), " tensors"));
  return lists[0];
}

int checkRoot(int64_t root, int size, const char* op) {
  TORCH_CHECK(root >= 0 && root < size, "weft ", op, ": root rank ", root,
              " is out of range for a group of ", size, " ranks");
  return static_cast<int>(root);
}

// gather's outputs / scatter's inputs: on the root one tensor per rank, each like `ref`
// (dtype, number of elements), returned; elsewhere nullptr after checking there is no list
// (torch passes none, or one empty list).
std::vector<at::Tensor>* rootList(std::vector<std::vector<at::Tensor>>& lists, int rank, int root,
                                  int size, const at::Tensor& ref, const char* op,
                                  const char* what) {
  if (rank == root) {
    std::vector<at::Tensor>& list = rankList(lists, size, op, what);
    for (const at::Tensor& t : list) checkSameKind(ref, t, ref.numel(), op);
    return &list;
  }
  TORCH_CHECK(lists.empty() || (lists.size() == 1 && lists[0].empty()), "weft ", op,
              ": only the root (rank ", root, ") passes ", what, " tensors; rank ", rank,
              " passed ", lists.size(), " list(s)",
              lists.empty() ? "" : c10::str(", the first of ", lists[0].size(), " tensors"));
  return nullptr;
}

// The blocks one after the other in a new contiguous 1-d tensor (blocks: not empty).
at::Tensor flatten(const std::vector<at::Tensor>& blocks) {
  std::vector<at::Tensor> flat;
  flat.reserve(blocks.size());
  for (const at::Tensor& b : blocks) flat.push_back(b.reshape(-1));
  return at::cat(flat);
}

// The inverse: copies the consecutive pieces of the 1-d `flat` into the blocks (their shapes).
void unflatten(const at::Tensor& flat, std::vector<at::Tensor>& blocks) {
  int64_t offset = 0;
  for (at::Tensor& b : blocks) {
    b.copy_(flat.narrow(0, offset, b.numel()).view(b.sizes()));
    offset += b.numel();
  }
}

// Elements per index of dim 0 (the unit of alltoall_base's split sizes).
int64_t rowElems(const at::Tensor& t) {
  return c10::multiply_integers(t.sizes().slice(1));
}

// alltoall_base: the per-rank element counts of `t` (input or output) from its split sizes
// (rows of dim 0; empty: equal splits).
std::vector<size_t> splitCounts(const std::vector<int64_t>& splits, const at::Tensor& t, int size,
                                const char* what) {
  const int64_t rows = t.size(0);
  std::vector<size_t> counts(static_cast<size_t>(size));
  if (splits.empty()) {
    TORCH_CHECK(rows % size == 0, "weft alltoall_base: the ", what, "'s dim 0 (", rows,
                ") does not split equally among ", size, " ranks; pass ", what,
                "_split_sizes, got ", describe(t));
    for (size_t& c : counts) c = static_cast<size_t>(rows / size * rowElems(t));
    return counts;
  }
  TORCH_CHECK(splits.size() == static_cast<size_t>(size), "weft alltoall_base: ", what,
              "_split_sizes has ", splits.size(), " entries, expected one per rank (", size, ")");
  int64_t sum = 0;
  for (size_t r = 0; r < splits.size(); ++r) {
    TORCH_CHECK(splits[r] >= 0, "weft alltoall_base: ", what, "_split_sizes[", r, "] = ", splits[r],
                " is negative");
    sum += splits[r];
    counts[r] = static_cast<size_t>(splits[r] * rowElems(t));
  }
  TORCH_CHECK(sum == rows, "weft alltoall_base: ", what, "_split_sizes ", c10::IntArrayRef(splits),
              " sum to ", sum, " but the ", what, "'s dim 0 is ", rows, " (", describe(t), ")");
  return counts;
}

// Exclusive prefix sums: where each block starts.
std::vector<size_t> displacements(const std::vector<size_t>& counts) {
  std::vector<size_t> displs(counts.size());
  size_t at = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    displs[r] = at;
    at += counts[r];
  }
  return displs;
}

bool overlaps(const at::Tensor& a, const at::Tensor& b) {
  auto a0 = reinterpret_cast<uintptr_t>(a.data_ptr());
  auto b0 = reinterpret_cast<uintptr_t>(b.data_ptr());
  return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
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
  shared_ = std::make_shared<SharedSession>();
  shared_->session = std::move(*session);
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
  SessionLock lock(*shared_);
  check(coll::broadcast(shared_->session->comm(), t.data_ptr(), count(t), type,
                        static_cast<int>(opts.rootRank), callOptions(opts.timeout)),
        "broadcast");
  return done(rank_, c10d::OpType::BROADCAST, tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::allreduce(std::vector<at::Tensor>& tensors,
                                                           const c10d::AllreduceOptions& opts) {
  at::Tensor& t = single(tensors, "allreduce");
  coll::DataType type = checkTensor(t, "allreduce");
  coll::ReduceOp op = reduceOp(opts.reduceOp, "allreduce");
  SessionLock lock(*shared_);
  check(coll::allreduce(shared_->session->comm(), t.data_ptr(), t.data_ptr(), count(t), type, op,
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
  SessionLock lock(*shared_);
  check(coll::reduce(shared_->session->comm(), t.data_ptr(), rank_ == root ? t.data_ptr() : nullptr,
                     count(t), type, op, root, callOptions(opts.timeout)),
        "reduce");
  return done(rank_, c10d::OpType::REDUCE, tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::allgather(
    std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
    const c10d::AllgatherOptions& opts) {
  at::Tensor& in = single(inputs, "allgather");
  checkTensor(in, "allgather");
  std::vector<at::Tensor>& outs = rankList(outputs, size_, "allgather", "output");
  for (const at::Tensor& o : outs) checkSameKind(in, o, in.numel(), "allgather");
  at::Tensor flat = at::empty({size_ * in.numel()}, in.options());
  _allgather_base(flat, in, opts);
  unflatten(flat, outs);
  return done(rank_, c10d::OpType::ALLGATHER, outs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::allgather_coalesced(
    std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
    const c10d::AllgatherOptions& opts) {
  const char* op = "allgather_coalesced";
  TORCH_CHECK(!inputs.empty(), "weft ", op, ": the input list is empty");
  TORCH_CHECK(outputs.size() == static_cast<size_t>(size_), "weft ", op, ": expects ", size_,
              " output lists (one per rank), got ", outputs.size());
  checkTensor(inputs[0], op);
  for (const at::Tensor& in : inputs) checkLike(inputs[0], in, op);
  for (size_t r = 0; r < outputs.size(); ++r) {
    TORCH_CHECK(outputs[r].size() == inputs.size(), "weft ", op, ": output list ", r, " has ",
                outputs[r].size(), " tensors, the input list ", inputs.size());
    for (size_t j = 0; j < inputs.size(); ++j) {
      checkTensor(outputs[r][j], op);
      checkSameKind(inputs[j], outputs[r][j], inputs[j].numel(), op);
    }
  }
  at::Tensor flat_in = flatten(inputs);
  at::Tensor flat_out = at::empty({size_ * flat_in.numel()}, flat_in.options());
  _allgather_base(flat_out, flat_in, opts);
  std::vector<at::Tensor> results;
  for (int64_t r = 0; r < size_; ++r) {
    unflatten(flat_out.narrow(0, r * flat_in.numel(), flat_in.numel()), outputs[r]);
    results.insert(results.end(), outputs[r].begin(), outputs[r].end());
  }
  return done(rank_, c10d::OpType::ALLGATHER_COALESCED, results);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::_allgather_base(
    at::Tensor& output, at::Tensor& input, const c10d::AllgatherOptions& opts) {
  coll::DataType type = checkTensor(input, "allgather");
  checkTensor(output, "allgather");
  checkSameKind(input, output, size_ * input.numel(), "allgather");
  SessionLock lock(*shared_);
  check(coll::allgather(shared_->session->comm(), input.data_ptr(), output.data_ptr(), count(input),
                        type, callOptions(opts.timeout)),
        "allgather");
  return done(rank_, c10d::OpType::_ALLGATHER_BASE, {output});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::reduce_scatter(
    std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
    const c10d::ReduceScatterOptions& opts) {
  at::Tensor& out = single(outputs, "reduce_scatter");
  checkTensor(out, "reduce_scatter");
  std::vector<at::Tensor>& ins = rankList(inputs, size_, "reduce_scatter", "input");
  for (const at::Tensor& i : ins) checkSameKind(out, i, out.numel(), "reduce_scatter");
  at::Tensor flat = flatten(ins);
  _reduce_scatter_base(out, flat, opts);
  return done(rank_, c10d::OpType::REDUCE_SCATTER, outputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::_reduce_scatter_base(
    at::Tensor& output, at::Tensor& input, const c10d::ReduceScatterOptions& opts) {
  coll::DataType type = checkTensor(output, "reduce_scatter");
  checkTensor(input, "reduce_scatter");
  checkSameKind(output, input, size_ * output.numel(), "reduce_scatter");
  coll::ReduceOp op = reduceOp(opts.reduceOp, "reduce_scatter");
  SessionLock lock(*shared_);
  check(coll::reduceScatter(shared_->session->comm(), input.data_ptr(), output.data_ptr(),
                            count(output), type, op, callOptions(opts.timeout)),
        "reduce_scatter");
  return done(rank_, c10d::OpType::_REDUCE_SCATTER_BASE, {output});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::gather(
    std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
    const c10d::GatherOptions& opts) {
  at::Tensor& in = single(inputs, "gather");
  coll::DataType type = checkTensor(in, "gather");
  int root = checkRoot(opts.rootRank, size_, "gather");
  std::vector<at::Tensor>* outs = rootList(outputs, rank_, root, size_, in, "gather", "output");
  // The root's receive buffer, block r from rank r.
  at::Tensor flat = outs ? at::empty({size_ * in.numel()}, in.options()) : at::Tensor();
  {
    SessionLock lock(*shared_);
    check(coll::gather(shared_->session->comm(), in.data_ptr(), outs ? flat.data_ptr() : nullptr,
                       count(in), type, root, callOptions(opts.timeout)),
          "gather");
  }
  if (!outs) return done(rank_, c10d::OpType::GATHER, {});
  unflatten(flat, *outs);
  return done(rank_, c10d::OpType::GATHER, *outs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::scatter(
    std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
    const c10d::ScatterOptions& opts) {
  at::Tensor& out = single(outputs, "scatter");
  coll::DataType type = checkTensor(out, "scatter");
  int root = checkRoot(opts.rootRank, size_, "scatter");
  std::vector<at::Tensor>* ins = rootList(inputs, rank_, root, size_, out, "scatter", "input");
  at::Tensor flat = ins ? flatten(*ins) : at::Tensor();  // the root's send buffer
  SessionLock lock(*shared_);
  check(coll::scatter(shared_->session->comm(), ins ? flat.data_ptr() : nullptr, out.data_ptr(),
                      count(out), type, root, callOptions(opts.timeout)),
        "scatter");
  return done(rank_, c10d::OpType::SCATTER, outputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::alltoall_base(
    at::Tensor& output, at::Tensor& input, std::vector<int64_t>& outputSplitSizes,
    std::vector<int64_t>& inputSplitSizes, const c10d::AllToAllOptions& opts) {
  const char* op = "alltoall_base";
  coll::DataType type = checkTensor(input, op);
  checkTensor(output, op);
  checkLike(input, output, op);
  TORCH_CHECK(input.dim() >= 1 && output.dim() >= 1, "weft ", op,
              ": the tensors are split along dim 0 and need one, got ", describe(input), " and ",
              describe(output));
  TORCH_CHECK(rowElems(input) == rowElems(output), "weft ", op,
              ": input and output differ in elements per index of dim 0: ", describe(input), " vs ",
              describe(output));
  std::vector<size_t> sendCounts = splitCounts(inputSplitSizes, input, size_, "input");
  std::vector<size_t> recvCounts = splitCounts(outputSplitSizes, output, size_, "output");
  // Both lists empty selects alltoall, else alltoallv (as gloo and MPI): ranks must agree.
  const bool equal = inputSplitSizes.empty() && outputSplitSizes.empty();
  TORCH_CHECK(!equal || input.numel() == output.numel(), "weft ", op,
              ": with equal splits input and output need the same number of elements, got ",
              describe(input), " and ", describe(output));
  // Weft's alltoallv is never in place; a copy also keeps alltoall off partial overlaps.
  at::Tensor send = overlaps(input, output) ? input.clone() : input;
  SessionLock lock(*shared_);
  if (equal) {
    check(coll::alltoall(shared_->session->comm(), send.data_ptr(), output.data_ptr(),
                         sendCounts[0], type, callOptions(opts.timeout)),
          op);
  } else {
    check(coll::alltoallv(shared_->session->comm(), send.data_ptr(), sendCounts,
                          displacements(sendCounts), output.data_ptr(), recvCounts,
                          displacements(recvCounts), type, callOptions(opts.timeout)),
          op);
  }
  return done(rank_, c10d::OpType::ALLTOALL_BASE, {output});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::alltoall(std::vector<at::Tensor>& outputs,
                                                          std::vector<at::Tensor>& inputs,
                                                          const c10d::AllToAllOptions& opts) {
  TORCH_CHECK(
      inputs.size() == static_cast<size_t>(size_) && outputs.size() == static_cast<size_t>(size_),
      "weft alltoall: expects ", size_, " input and ", size_,
      " output tensors (one per rank), got ", inputs.size(), " and ", outputs.size());
  coll::DataType type = dataType(inputs[0], "alltoall");
  std::vector<size_t> sendCounts, recvCounts;
  int64_t recvTotal = 0;
  for (int r = 0; r < size_; ++r) {
    const at::Tensor& in = inputs[static_cast<size_t>(r)];
    const at::Tensor& out = outputs[static_cast<size_t>(r)];
    checkLike(inputs[0], in, "alltoall");
    checkLike(inputs[0], out, "alltoall");
    sendCounts.push_back(count(in));
    recvCounts.push_back(count(out));
    recvTotal += out.numel();
  }
  // One copy each way: the lists become the contiguous buffers of one alltoallv.
  at::Tensor send = flatten(inputs);
  at::Tensor recv = at::empty({recvTotal}, inputs[0].options());
  {
    SessionLock lock(*shared_);
    check(coll::alltoallv(shared_->session->comm(), send.data_ptr(), sendCounts,
                          displacements(sendCounts), recv.data_ptr(), recvCounts,
                          displacements(recvCounts), type, callOptions(opts.timeout)),
          "alltoall");
  }
  unflatten(recv, outputs);
  return done(rank_, c10d::OpType::ALLTOALL, outputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupWeft::barrier(const c10d::BarrierOptions& opts) {
  SessionLock lock(*shared_);
  check(coll::barrier(shared_->session->comm(), callOptions(opts.timeout)), "barrier");
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
  SessionLock lock(*shared_);
  coll::CallOptions o = callOptions(c10d::kUnsetTimeout);
  coll::Communicator& comm = shared_->session->comm();
  Result<coll::Request> r = is_send ? coll::isend(comm, t.data_ptr(), count(t), type, peer, tag, o)
                                    : coll::irecv(comm, t.data_ptr(), count(t), type, peer, tag, o);
  check(r.status(), op);
  return c10::make_intrusive<PointToPointWork>(rank_,
                                               is_send ? c10d::OpType::SEND : c10d::OpType::RECV,
                                               op, shared_, std::move(*r), tensors);
}

}  // namespace weft::torchpg
