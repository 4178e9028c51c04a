// Internal to collectives/reduce: the table of reduction kernels of one instruction set.
#pragma once

#include <array>
#include <cstddef>

#include "collectives/api/types.h"
#include "collectives/reduce/reducer.h"

namespace weft::coll::detail {

// One ReduceFn per (DataType, ReduceOp); nullptr where the pair is invalid (bitwise on floats).
class KernelTable {
 public:
  ReduceFn at(DataType type, ReduceOp op) const { return fns_[index(type, op)]; }
  void set(DataType type, ReduceOp op, ReduceFn fn) { fns_[index(type, op)] = fn; }

 private:
  static size_t index(DataType type, ReduceOp op) {
    return static_cast<size_t>(type) * kNumReduceOps + static_cast<size_t>(op);
  }

  std::array<ReduceFn, kNumDataTypes * kNumReduceOps> fns_{};
};

// Each fills `table` with the kernels of one instruction set (kernels_<isa>.cc). The SIMD
// ones execute instructions of their set while filling: call them only when the CPU has it.
void fillScalarKernels(KernelTable& table);
#if defined(__x86_64__)
void fillAvx2Kernels(KernelTable& table);    // needs AVX2 and F16C
void fillAvx512Kernels(KernelTable& table);  // needs AVX-512 F, BW, DQ, VL
#endif

}  // namespace weft::coll::detail
