// TableSpec: everything that defines a parameter-server table. Workers send it in
// CreateTable, servers keep it with the table and write it into checkpoints.
//
// Contract: plain values; validateTableSpec() says whether a spec can be served, naming
// the field, its value and the allowed range.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace weft::ps {

inline constexpr uint32_t kMaxDim = 1024;  // f32 values per row
inline constexpr size_t kMaxTableNameBytes = 128;
inline constexpr uint32_t kMaxWorkers = 1u << 16;  // per table, for consistency clocks
// Count-min sketch counters per table (4 bytes each): 64 MiB bounds what one CreateTable
// can make a server allocate; 4 rows of 2^22 counters keep errors small for 10^9 keys.
inline constexpr uint32_t kMaxSketchCounters = 1u << 24;

enum class InitKind : uint8_t { kZeros = 0, kUniform = 1, kNormal = 2 };

// Initial row values, deterministic per (seed, key, element): the same key gets the same
// values on every server, in every process, whatever order keys arrive in.
struct InitializerSpec {
  InitKind kind = InitKind::kZeros;
  uint64_t seed = 0;
  float a = 0;  // uniform: lower bound; normal: mean
  float b = 0;  // uniform: upper bound; normal: standard deviation
  bool operator==(const InitializerSpec&) const = default;
};

enum class OptimizerKind : uint8_t { kSgd = 0, kAdagrad = 1, kAdam = 2, kFtrl = 3 };

// Server-side update rule. Fields a rule does not use are ignored (but still compared).
struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::kSgd;
  float learning_rate = 0.01f;       // all (FTRL: alpha)
  float beta1 = 0.9f;                // Adam
  float beta2 = 0.999f;              // Adam
  float epsilon = 1e-8f;             // Adagrad, Adam
  float l1 = 0;                      // FTRL
  float l2 = 0;                      // SGD (weight decay), FTRL
  float initial_accumulator = 0.1f;  // Adagrad
  float ftrl_beta = 1.0f;            // FTRL
  bool operator==(const OptimizerSpec&) const = default;
};

enum class ConsistencyModel : uint8_t { kAsp = 0, kBsp = 1, kSsp = 2 };

// BSP: a pull at clock c waits until every worker finished clock c-1.
// SSP(s): it waits until every worker finished clock c-s-1. ASP: it never waits.
struct ConsistencySpec {
  ConsistencyModel model = ConsistencyModel::kAsp;
  uint32_t staleness = 0;    // SSP only
  uint32_t num_workers = 0;  // workers that report clocks (0 with ASP: clocks unused)
  bool operator==(const ConsistencySpec&) const = default;
};

// Feature admission: a key gets a row only after pushes have carried it min_count times
// (estimated by a count-min sketch of sketch_depth rows of sketch_width counters).
struct AdmissionSpec {
  uint32_t min_count = 0;            // 0 or 1: every key is admitted at its first push
  uint32_t sketch_width = 1u << 16;  // counters per sketch row, a power of two
  uint32_t sketch_depth = 4;
  bool operator==(const AdmissionSpec&) const = default;
};

struct TableSpec {
  uint32_t id = 0;
  std::string name;
  uint32_t dim = 1;
  InitializerSpec init;
  OptimizerSpec optimizer;
  ConsistencySpec consistency;
  AdmissionSpec admission;
  uint32_t evict_after_clocks = 0;  // 0: never evict
  bool operator==(const TableSpec&) const = default;
};

Status validateTableSpec(const TableSpec& spec);

// Optimizer state floats kept per value element (SGD 0, Adagrad 1, Adam 2, FTRL 2).
uint32_t optimizerStateFloats(OptimizerKind kind);

std::string_view initKindName(InitKind kind);
std::string_view optimizerName(OptimizerKind kind);
std::string_view consistencyName(ConsistencyModel model);
// "table 3 'emb' (dim 16, adam, ssp(2))" for messages.
std::string describeTable(const TableSpec& spec);

}  // namespace weft::ps
