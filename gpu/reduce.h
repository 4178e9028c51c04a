// Reduction kernels for CUDA device buffers: dst[i] = dst[i] op src[i].
//
// Contract
//  - The types, operators and results are those of the CPU kernels (collectives/reduce/
//    reducer.h), bit for bit: integers wrap for sum/prod; f32/f64 one IEEE operation rounded
//    to nearest even (no FMA contraction, no flush to zero); f16/bf16 widened to f32, combined,
//    rounded back to nearest even with the exact bit operations of collectives/reduce/half.h;
//    float min/max propagate NaN and order -0 < +0; every NaN produced is the canonical
//    quiet NaN. kAvg reduces like kSum, and finalizeAvg() divides by the number of
//    contributions as the CPU finalize does.
//  - gpu/ sits below collectives/: only the enums and constexpr helpers of
//    collectives/api/types.h are used (header only, no link dependency).
//  - Asynchronous on `stream` (0: the legacy default stream); launch errors are returned,
//    errors of the running kernel surface at the next synchronization. Pointers must be
//    device or managed memory of the current device, aligned to the element size; dst and
//    src may be equal but must not partially overlap. 16-byte vector loads are used when dst
//    and src share their misalignment; head and tail elements go one at a time.
//  - Thread-safe (as CUDA launches are). count == 0 does nothing and checks nothing else.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "collectives/api/types.h"
#include "common/status.h"

namespace weft::gpu {

using coll::DataType;
using coll::ReduceOp;

// dst[i] = dst[i] op src[i] for i < count. Errors: kInvalidArgument (type/op pair, null or
// misaligned or non-device pointer), kUnavailable (no CUDA), kIoError (launch failed).
Status reduce(void* dst, const void* src, size_t count, DataType type, ReduceOp op,
              cudaStream_t stream = nullptr);

// For kAvg: inout[i] = inout[i] / n (n >= 1), like coll::finalizeReduce; nothing for other ops.
Status finalizeAvg(void* inout, size_t count, DataType type, ReduceOp op, size_t n,
                   cudaStream_t stream = nullptr);

namespace detail {
// Tests: the kernels' own code (element operations, head / vector / tail split) run on the
// CPU over host buffers as `threads` emulated GPU threads. Needs no GPU.
Status reduceOnHost(void* dst, const void* src, size_t count, DataType type, ReduceOp op,
                    size_t threads);
Status finalizeAvgOnHost(void* inout, size_t count, DataType type, ReduceOp op, size_t n,
                         size_t threads);
}  // namespace detail

}  // namespace weft::gpu
