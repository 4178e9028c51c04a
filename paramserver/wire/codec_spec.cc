// TableSpec body (CreateTable payload and checkpoint file header). Layout in PROTOCOL.md.
#include "paramserver/wire/codec.h"

namespace weft::ps::wire {
namespace {

constexpr size_t kSpecFixedBytes = 84;

void appendOptimizer(const OptimizerSpec& o, ByteWriter& w) {
  w.put(o.learning_rate);
  w.put(o.beta1);
  w.put(o.beta2);
  w.put(o.epsilon);
  w.put(o.l1);
  w.put(o.l2);
  w.put(o.initial_accumulator);
  w.put(o.ftrl_beta);
}

bool readOptimizer(ByteReader& in, OptimizerSpec& o) {
  return in.get(o.learning_rate) && in.get(o.beta1) && in.get(o.beta2) && in.get(o.epsilon) &&
         in.get(o.l1) && in.get(o.l2) && in.get(o.initial_accumulator) && in.get(o.ftrl_beta);
}

struct Enums {
  uint8_t init = 0;
  uint8_t optimizer = 0;
  uint8_t model = 0;
};

bool readFixed(ByteReader& in, TableSpec& s, Enums& e) {
  return in.get(s.dim) && in.get(e.init) && in.get(e.optimizer) && in.get(e.model) &&
         in.skipZeros(1) && in.get(s.init.seed) && in.get(s.init.a) && in.get(s.init.b) &&
         readOptimizer(in, s.optimizer) && in.get(s.consistency.staleness) &&
         in.get(s.consistency.num_workers) && in.get(s.admission.min_count) &&
         in.get(s.admission.sketch_width) && in.get(s.admission.sketch_depth) &&
         in.get(s.evict_after_clocks);
}

Status specError(uint32_t id, const std::string& what) {
  return WEFT_ERROR(StatusCode::kInvalidArgument, "table spec of table ", id, ": ", what);
}

}  // namespace

void appendTableSpec(const TableSpec& spec, Bytes& out) {
  ByteWriter w(out);
  w.put(spec.dim);
  w.put(static_cast<uint8_t>(spec.init.kind));
  w.put(static_cast<uint8_t>(spec.optimizer.kind));
  w.put(static_cast<uint8_t>(spec.consistency.model));
  w.putZeros(1);
  w.put(spec.init.seed);
  w.put(spec.init.a);
  w.put(spec.init.b);
  appendOptimizer(spec.optimizer, w);
  w.put(spec.consistency.staleness);
  w.put(spec.consistency.num_workers);
  w.put(spec.admission.min_count);
  w.put(spec.admission.sketch_width);
  w.put(spec.admission.sketch_depth);
  w.put(spec.evict_after_clocks);
  w.put(static_cast<uint16_t>(spec.name.size()));
  w.putZeros(2);
  w.putBytes(spec.name.data(), spec.name.size());
}

Result<TableSpec> readTableSpec(ByteReader& in, uint32_t id) {
  TableSpec spec;
  spec.id = id;
  Enums e;
  uint16_t name_length = 0;
  const size_t start = in.position();
  if (!readFixed(in, spec, e) || !in.get(name_length) || !in.skipZeros(2)) {
    return specError(id, strCat("shorter than its ", kSpecFixedBytes,
                                " fixed bytes, or reserved bytes are not zero"));
  }
  if (in.position() - start != kSpecFixedBytes) {
    return Status(StatusCode::kInternal, "table spec layout does not match kSpecFixedBytes");
  }
  if (name_length > kMaxTableNameBytes) {
    return specError(id,
                     strCat("name of ", name_length, " bytes (at most ", kMaxTableNameBytes, ")"));
  }
  if (!in.getString(name_length, spec.name)) {
    return specError(id, strCat("name of ", name_length, " bytes is truncated"));
  }
  spec.init.kind = static_cast<InitKind>(e.init);
  spec.optimizer.kind = static_cast<OptimizerKind>(e.optimizer);
  spec.consistency.model = static_cast<ConsistencyModel>(e.model);
  WEFT_RETURN_IF_ERROR(validateTableSpec(spec));
  return spec;
}

}  // namespace weft::ps::wire
