// ProcessGroupWeft: a c10d::ProcessGroup (torch 1.13 API) that runs PyTorch's collectives
// on a Weft world communicator, for CPU tensors.
//
// Contract
//  - Constructed by the backend creator (weft_torch_module.cc) with the c10d store of the
//    group, rank, size and timeout; collective over the group (see weft_session.h).
//  - Every operation runs synchronously inside the call (blocking Weft collectives bounded
//    by the options' timeout, else the group's) and returns an already-completed Work whose
//    getFuture() holds the output tensors. Failures raise at the call (RuntimeError naming
//    the operation, and the tensor's dtype / device when it is the cause); Weft errors are
//    sticky, so a group stays broken after a timeout or a dead peer.
//  - Tensors: CPU, contiguous (dense), dtypes f32, f64, f16, bf16, i32, i64, u8, i8;
//    reductions sum, avg, product, min, max, and band/bor/bxor on integer types.
//  - gather / scatter (opts.rootRank): the root passes one list of `size` tensors, each
//    with the single tensor's dtype and number of elements (shapes may differ), staged
//    through one flat buffer; other ranks pass no list (or an empty one).
//  - alltoall_base (all_to_all_single): input and output split along dim 0 with the same
//    elements per index of dim 0; split sizes are rows of dim 0, one per rank, summing to
//    dim 0; an empty list means equal splits (dim 0 divisible by size). Both lists empty
//    runs Weft's alltoall, else alltoallv, so every rank must choose the same form (as with
//    gloo and MPI); rank j's output_split_sizes[i] must equal rank i's
//    input_split_sizes[j]. Overlapping input and output are allowed (the input is copied).
//  - alltoall (lists of `size` tensors, any sizes): input[j] goes to rank j, output[i]
//    comes from rank i (numel equal to rank i's input[this rank]); one alltoallv over
//    flat copies of both lists.
//  - allgather_coalesced: outputs[r][j] receives rank r's inputs[j]; one allgather of the
//    flattened inputs (every rank must pass the same number of elements per tensor, as the
//    other backends assume; WEFT_CHECK=1 catches a different total).
//  - Not supported (the c10d::ProcessGroup default raises "ProcessGroup weft does not
//    support <op>"): recvAnysource (recv without a source),
//    monitoredBarrier, sequence numbers.
//  - send / recv (isend / irecv, batch_isend_irecv) are non-blocking: they post the
//    message and return a pending Work, so pairs that send to each other before receiving
//    (rings, exchanges) overlap instead of deadlocking. Work::wait(timeout) and
//    is_completed() drive progress; a failure (dead peer, timeout, truncation: the receive
//    tensor is smaller than the message) raises at wait(). A Work dropped while pending
//    keeps its tensors alive until the operation completes (reaped by later calls, waited
//    for, each bounded by its deadline, when the group is destroyed). recv without a source
//    is not supported (see above).
//  - Threads: calls from several threads, and Work waits, are serialized by an internal
//    mutex.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <vector>

#include "collectives/api/collectives.h"
#include "torch/weft_session.h"

namespace weft::torchpg {

// What a group and its pending point-to-point Works share (process_group_weft.cc).
struct SharedSession;

class ProcessGroupWeft : public c10d::ProcessGroup {
 public:
  ProcessGroupWeft(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                   std::chrono::milliseconds timeout);
  ~ProcessGroupWeft() override;

  const std::string getBackendName() const override { return "weft"; }

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                           const c10d::BroadcastOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce_coalesced(
      std::vector<at::Tensor>& tensors, const c10d::AllreduceCoalescedOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor>& tensors,
                                        const c10d::ReduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                           std::vector<at::Tensor>& inputs,
                                           const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather_coalesced(std::vector<std::vector<at::Tensor>>& outputs,
                                                     std::vector<at::Tensor>& inputs,
                                                     const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce_scatter(std::vector<at::Tensor>& outputs,
                                                std::vector<std::vector<at::Tensor>>& inputs,
                                                const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(
      at::Tensor& output, at::Tensor& input, const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs,
                                        std::vector<at::Tensor>& inputs,
                                        const c10d::GatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> scatter(std::vector<at::Tensor>& outputs,
                                         std::vector<std::vector<at::Tensor>>& inputs,
                                         const c10d::ScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                               std::vector<int64_t>& outputSplitSizes,
                                               std::vector<int64_t>& inputSplitSizes,
                                               const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall(std::vector<at::Tensor>& outputs,
                                          std::vector<at::Tensor>& inputs,
                                          const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor>& tensors, int dst_rank,
                                      int tag) override;
  c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor>& tensors, int src_rank,
                                      int tag) override;

 private:
  c10::intrusive_ptr<c10d::Work> pointToPoint(std::vector<at::Tensor>& tensors, int peer, int tag,
                                              bool is_send);
  coll::CallOptions callOptions(std::chrono::milliseconds timeout) const;

  std::chrono::milliseconds timeout_;
  // The session, its lock and the detached point-to-point operations, shared with the
  // pending Works (which may outlive the group).
  std::shared_ptr<SharedSession> shared_;
};

}  // namespace weft::torchpg
