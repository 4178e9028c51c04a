// CPU reduction kernels: out[i] = a[i] op b[i] for every DataType x ReduceOp pair.
//
// Contract
//  - Buffers are host memory, any alignment. `out` may be the same pointer as `a` or `b`
//    (in place) but must not partially overlap either of them. `count` is in elements.
//  - Kernels never fail and never allocate; validation happens once, in Reducer::create() or
//    in the free functions below. All functions are thread-safe.
//  - Results are bit-identical whichever instruction set runs them (scalar, AVX2+F16C,
//    AVX-512), so ranks on different CPUs agree. The rules that make this hold:
//     * integers: sum and prod wrap modulo 2^bits (signed ones as two's complement);
//     * f32/f64: one IEEE operation per element, round to nearest even;
//     * f16/bf16: both inputs are widened to f32 (exact), combined in f32, and the result is
//       rounded back to nearest even (see half.h), one rounding per pairwise step;
//     * min/max on floats: if either input is NaN the result is NaN; min(-0, +0) is -0 and
//       max(-0, +0) is +0 (IEEE 754-2019 minimum/maximum);
//     * every NaN a float kernel produces is the canonical positive quiet NaN (f32
//       0x7FC00000, f64 0x7FF8000000000000, f16 0x7E00, bf16 0x7FC0): payloads are not kept,
//       because which input's payload x86 propagates depends on operand order.
//  - kAvg reduces like kSum; finalize() then divides by the number of contributions n:
//    integers use truncating division of the (wrapped) sum, f32/f64 one IEEE division
//    rounded to nearest even, f16/bf16 a division in f32 rounded back once.
//  - The instruction set is chosen at first use from the CPU (__builtin_cpu_supports); the
//    binary runs on any x86-64 and uses only the scalar kernels elsewhere.
#pragma once

#include <cstddef>
#include <ostream>
#include <string_view>

#include "collectives/api/types.h"
#include "common/result.h"
#include "common/status.h"

namespace weft::coll {

// out[i] = a[i] op b[i], i < count (see the contract above for aliasing).
using ReduceFn = void (*)(void* out, const void* a, const void* b, size_t count);
// inout[i] = inout[i] / n for kAvg (n >= 1); does nothing for the other ops.
using FinalizeFn = void (*)(void* inout, size_t count, size_t n);

// A validated (type, op) pair bound to the kernels of the instruction set in use when it was
// created. Cheap to copy; keep one per collective call instead of looking kernels up per chunk.
class Reducer {
 public:
  static Result<Reducer> create(DataType type, ReduceOp op);

  DataType dataType() const { return type_; }
  ReduceOp op() const { return op_; }
  size_t elementSize() const { return sizeOf(type_); }

  // inout op= in.
  void reduce(void* inout, const void* in, size_t count) const { fn_(inout, inout, in, count); }
  // out = a op b.
  void reduce(void* out, const void* a, const void* b, size_t count) const {
    fn_(out, a, b, count);
  }
  // Turns a sum of n contributions into their average (kAvg only; n >= 1).
  void finalize(void* inout, size_t count, size_t n) const { finalize_(inout, count, n); }
  bool needsFinalize() const { return op_ == ReduceOp::kAvg; }

 private:
  Reducer(DataType type, ReduceOp op, ReduceFn fn, FinalizeFn finalizeFn)
      : type_(type), op_(op), fn_(fn), finalize_(finalizeFn) {}

  DataType type_;
  ReduceOp op_;
  ReduceFn fn_;
  FinalizeFn finalize_;
};

// One-off forms of the Reducer methods; they validate type, op and n on every call.
Status reduce(DataType type, ReduceOp op, void* inout, const void* in, size_t count);
Status reduce(DataType type, ReduceOp op, void* out, const void* a, const void* b, size_t count);
Status finalizeReduce(DataType type, ReduceOp op, void* inout, size_t count, size_t n);

// Instruction sets the kernels exist for, from slowest to fastest.
enum class KernelIsa : uint8_t { kScalar, kAvx2, kAvx512 };
std::string_view toString(KernelIsa isa);
std::ostream& operator<<(std::ostream& os, KernelIsa isa);

// The best instruction set this CPU (and this build) supports.
KernelIsa bestKernelIsa();
// The instruction set new Reducers (and the free functions) use.
KernelIsa kernelIsa();
// Tests and benchmarks: makes new Reducers use `isa` (existing ones keep theirs).
// kNotSupported when the CPU or the build lacks it.
Status setKernelIsa(KernelIsa isa);

}  // namespace weft::coll
