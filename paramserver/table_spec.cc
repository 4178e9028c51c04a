#include "paramserver/table_spec.h"

#include <bit>
#include <cmath>

namespace weft::ps {
namespace {

Status fieldError(const TableSpec& spec, std::string_view field, double value,
                  std::string_view allowed) {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "table ", spec.id, " '", spec.name, "': ", field,
                    " = ", value, " is out of range (allowed: ", allowed, ")");
}

bool finite(float x) {
  return std::isfinite(x);
}

Status validateInit(const TableSpec& spec) {
  const InitializerSpec& in = spec.init;
  if (static_cast<uint8_t>(in.kind) > static_cast<uint8_t>(InitKind::kNormal)) {
    return fieldError(spec, "initializer", static_cast<int>(in.kind), "0..2");
  }
  if (!finite(in.a) || !finite(in.b)) {
    return fieldError(spec, "initializer a/b", finite(in.a) ? in.b : in.a, "finite");
  }
  if (in.kind == InitKind::kUniform && !(in.a <= in.b)) {
    return fieldError(spec, "uniform upper bound b", in.b, ">= a");
  }
  if (in.kind == InitKind::kNormal && !(in.b >= 0)) {
    return fieldError(spec, "normal stddev b", in.b, ">= 0");
  }
  return Status::ok();
}

Status validateOptimizer(const TableSpec& spec) {
  const OptimizerSpec& o = spec.optimizer;
  if (static_cast<uint8_t>(o.kind) > static_cast<uint8_t>(OptimizerKind::kFtrl)) {
    return fieldError(spec, "optimizer", static_cast<int>(o.kind), "0..3");
  }
  if (!(finite(o.learning_rate) && o.learning_rate > 0)) {
    return fieldError(spec, "learning_rate", o.learning_rate, "finite, > 0");
  }
  if (!(o.beta1 >= 0 && o.beta1 < 1)) return fieldError(spec, "beta1", o.beta1, "[0, 1)");
  if (!(o.beta2 >= 0 && o.beta2 < 1)) return fieldError(spec, "beta2", o.beta2, "[0, 1)");
  if (!(finite(o.epsilon) && o.epsilon > 0)) {
    return fieldError(spec, "epsilon", o.epsilon, "finite, > 0");
  }
  if (!(finite(o.l1) && o.l1 >= 0)) return fieldError(spec, "l1", o.l1, "finite, >= 0");
  if (!(finite(o.l2) && o.l2 >= 0)) return fieldError(spec, "l2", o.l2, "finite, >= 0");
  if (!(finite(o.initial_accumulator) && o.initial_accumulator >= 0)) {
    return fieldError(spec, "initial_accumulator", o.initial_accumulator, "finite, >= 0");
  }
  if (!(finite(o.ftrl_beta) && o.ftrl_beta >= 0)) {
    return fieldError(spec, "ftrl_beta", o.ftrl_beta, "finite, >= 0");
  }
  return Status::ok();
}

Status validateRest(const TableSpec& spec) {
  const ConsistencySpec& c = spec.consistency;
  if (static_cast<uint8_t>(c.model) > static_cast<uint8_t>(ConsistencyModel::kSsp)) {
    return fieldError(spec, "consistency model", static_cast<int>(c.model), "0..2");
  }
  if (c.num_workers > kMaxWorkers) {
    return fieldError(spec, "num_workers", c.num_workers, strCat("0..", kMaxWorkers));
  }
  if (c.model != ConsistencyModel::kAsp && c.num_workers == 0) {
    return fieldError(spec, "num_workers", 0, ">= 1 with BSP or SSP");
  }
  const AdmissionSpec& a = spec.admission;
  if (a.min_count > 1) {
    if (!std::has_single_bit(a.sketch_width) || a.sketch_width > kMaxSketchCounters) {
      return fieldError(spec, "sketch_width", a.sketch_width, "a power of two <= 2^24");
    }
    if (a.sketch_depth < 1 || a.sketch_depth > 16) {
      return fieldError(spec, "sketch_depth", a.sketch_depth, "1..16");
    }
    if (uint64_t{a.sketch_width} * a.sketch_depth > kMaxSketchCounters) {
      return fieldError(spec, "sketch_width * sketch_depth",
                        static_cast<double>(a.sketch_width) * a.sketch_depth, "<= 2^24");
    }
  }
  return Status::ok();
}

}  // namespace

Status validateTableSpec(const TableSpec& spec) {
  if (spec.name.empty() || spec.name.size() > kMaxTableNameBytes) {
    return WEFT_ERROR(StatusCode::kInvalidArgument, "table ", spec.id, ": name of ",
                      spec.name.size(), " bytes (allowed: 1..", kMaxTableNameBytes, ")");
  }
  if (spec.dim < 1 || spec.dim > kMaxDim) {
    return fieldError(spec, "dim", spec.dim, strCat("1..", kMaxDim));
  }
  WEFT_RETURN_IF_ERROR(validateInit(spec));
  WEFT_RETURN_IF_ERROR(validateOptimizer(spec));
  return validateRest(spec);
}

uint32_t optimizerStateFloats(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd: return 0;
    case OptimizerKind::kAdagrad: return 1;
    case OptimizerKind::kAdam:
    case OptimizerKind::kFtrl: return 2;
  }
  return 0;
}

std::string_view initKindName(InitKind kind) {
  switch (kind) {
    case InitKind::kZeros: return "zeros";
    case InitKind::kUniform: return "uniform";
    case InitKind::kNormal: return "normal";
  }
  return "unknown";
}

std::string_view optimizerName(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd: return "sgd";
    case OptimizerKind::kAdagrad: return "adagrad";
    case OptimizerKind::kAdam: return "adam";
    case OptimizerKind::kFtrl: return "ftrl";
  }
  return "unknown";
}

std::string_view consistencyName(ConsistencyModel model) {
  switch (model) {
    case ConsistencyModel::kAsp: return "asp";
    case ConsistencyModel::kBsp: return "bsp";
    case ConsistencyModel::kSsp: return "ssp";
  }
  return "unknown";
}

std::string describeTable(const TableSpec& spec) {
  std::string model(consistencyName(spec.consistency.model));
  if (spec.consistency.model == ConsistencyModel::kSsp) {
    model += strCat("(", spec.consistency.staleness, ")");
  }
  return strCat("table ", spec.id, " '", spec.name, "' (dim ", spec.dim, ", ",
                optimizerName(spec.optimizer.kind), ", ", model, ")");
}

}  // namespace weft::ps
