// Parameter-server tables: every optimizer against a plain reference, deterministic
// initializers, duplicate-key summing, NaN/Inf rejection (rows untouched), pulls of absent
// keys, the row index, export/import and bytes per row.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <thread>
#include <unordered_map>

#include "paramserver/server/initializer.h"
#include "paramserver/server/row_index.h"
#include "paramserver/server/row_store.h"
#include "paramserver/util/hash.h"
#include "ps_test_util.h"

namespace weft::ps {
namespace {

using testing::makeSpec;
using testing::makeTable;
using testing::pullRows;
using testing::pushRows;

// Straightforward double-precision reference of one row's optimizer.
struct RefRow {
  std::vector<double> w, a, b;  // values and state (acc | m, v | z, n)
  int t = 0;
};

void refUpdate(const OptimizerSpec& o, RefRow& r, const std::vector<double>& g) {
  ++r.t;
  for (size_t j = 0; j < r.w.size(); ++j) {
    switch (o.kind) {
      case OptimizerKind::kSgd: r.w[j] -= o.learning_rate * (g[j] + o.l2 * r.w[j]); break;
      case OptimizerKind::kAdagrad:
        r.a[j] += g[j] * g[j];
        r.w[j] -= o.learning_rate * g[j] / (std::sqrt(r.a[j]) + o.epsilon);
        break;
      case OptimizerKind::kAdam: {
        r.a[j] = o.beta1 * r.a[j] + (1 - o.beta1) * g[j];
        r.b[j] = o.beta2 * r.b[j] + (1 - o.beta2) * g[j] * g[j];
        const double mhat = r.a[j] / (1 - std::pow(double{o.beta1}, r.t));
        const double vhat = r.b[j] / (1 - std::pow(double{o.beta2}, r.t));
        r.w[j] -= o.learning_rate * mhat / (std::sqrt(vhat) + o.epsilon);
        break;
      }
      case OptimizerKind::kFtrl: {
        const double n_new = r.b[j] + g[j] * g[j];
        const double sigma = (std::sqrt(n_new) - std::sqrt(r.b[j])) / o.learning_rate;
        r.a[j] += g[j] - sigma * r.w[j];
        r.b[j] = n_new;
        const double z = r.a[j];
        r.w[j] = std::fabs(z) <= o.l1
                     ? 0.0
                     : -(z - (z > 0 ? 1 : -1) * o.l1) /
                           ((o.ftrl_beta + std::sqrt(n_new)) / o.learning_rate + o.l2);
        break;
      }
    }
  }
}

class PsOptimizerTest : public ::testing::TestWithParam<std::tuple<OptimizerKind, uint32_t>> {};

// Pushes a few steps of gradients (with duplicate keys in one request) and compares every
// value with the reference, which sums duplicates and updates once per distinct key.
TEST_P(PsOptimizerTest, MatchesReference) {
  const auto [kind, dim] = GetParam();
  TableSpec spec = makeSpec(1, "t", dim, kind);
  spec.init = {InitKind::kUniform, 3, -0.1f, 0.1f};
  spec.optimizer.learning_rate = 0.05f;
  spec.optimizer.l1 = 0.01f;
  spec.optimizer.l2 = 0.001f;
  auto table = makeTable(spec);
  const std::vector<uint64_t> keys = {10, 20, 10, 30};
  std::map<uint64_t, RefRow> ref;
  for (const uint64_t k : {10, 20, 30}) {
    std::vector<float> init(dim);
    initializeRow(spec.init, k, dim, init.data());
    RefRow& r = ref[k];
    r.w.assign(init.begin(), init.end());
    r.a.assign(dim, kind == OptimizerKind::kAdagrad ? spec.optimizer.initial_accumulator : 0.0);
    r.b.assign(dim, 0.0);
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (int step = 0; step < 5; ++step) {
    std::vector<float> grads(keys.size() * dim);
    for (float& g : grads) g = gauss(rng);
    ASSERT_TRUE(pushRows(*table, keys, grads).isOk());
    std::map<uint64_t, std::vector<double>> summed;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto& s = summed[keys[i]];
      s.resize(dim, 0.0);
      for (uint32_t j = 0; j < dim; ++j) s[j] += grads[i * dim + j];
    }
    for (auto& [k, g] : summed) refUpdate(spec.optimizer, ref[k], g);
    const std::vector<uint64_t> distinct = {10, 20, 30};
    const std::vector<float> got = pullRows(*table, distinct);
    for (size_t i = 0; i < distinct.size(); ++i) {
      for (uint32_t j = 0; j < dim; ++j) {
        const double want = ref[distinct[i]].w[j];
        EXPECT_NEAR(got[i * dim + j], want, 1e-5 + 1e-4 * std::fabs(want))
            << optimizerName(kind) << " step " << step << " key " << distinct[i] << " elem " << j;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllOptimizers, PsOptimizerTest,
    ::testing::Combine(::testing::Values(OptimizerKind::kSgd, OptimizerKind::kAdagrad,
                                         OptimizerKind::kAdam, OptimizerKind::kFtrl),
                       ::testing::Values(1u, 16u, 33u)),
    [](const ::testing::TestParamInfo<PsOptimizerTest::ParamType>& param_info) {
      return std::string(optimizerName(std::get<0>(param_info.param))) + "_dim" +
             std::to_string(std::get<1>(param_info.param));
    });

TEST(PsInitializer, DeterministicPerKeyWhateverTheOrder) {
  for (const InitKind kind : {InitKind::kZeros, InitKind::kUniform, InitKind::kNormal}) {
    TableSpec spec = makeSpec(1, "t", 8);
    spec.init = {kind, 42, kind == InitKind::kNormal ? 0.0f : -1.0f, 1.0f};
    auto a = makeTable(spec);
    auto b = makeTable(spec);
    std::vector<uint64_t> keys(100);
    for (size_t i = 0; i < keys.size(); ++i) keys[i] = mix64(i);
    std::vector<uint64_t> reversed(keys.rbegin(), keys.rend());
    const auto va = pullRows(*a, keys);
    const auto vb = pullRows(*b, reversed);
    for (size_t i = 0; i < keys.size(); ++i) {
      for (size_t j = 0; j < 8; ++j) {
        EXPECT_EQ(va[i * 8 + j], vb[(keys.size() - 1 - i) * 8 + j]);
      }
    }
    // A row created by a push started from the same values (SGD with a zero gradient).
    ASSERT_TRUE(pushRows(*a, {keys[3]}, std::vector<float>(8, 0.0f)).isOk());
    const auto created = pullRows(*a, {keys[3]});
    for (size_t j = 0; j < 8; ++j) EXPECT_EQ(created[j], va[3 * 8 + j]);
  }
}

TEST(PsInitializer, RangesAndMoments) {
  InitializerSpec uniform{InitKind::kUniform, 1, -0.5f, 0.25f};
  InitializerSpec normal{InitKind::kNormal, 1, 2.0f, 0.5f};
  InitializerSpec other_seed{InitKind::kNormal, 2, 2.0f, 0.5f};
  constexpr int kKeys = 4000;
  constexpr uint32_t kDim = 4;
  double sum = 0;
  double sq = 0;
  int same_as_other_seed = 0;
  for (int k = 0; k < kKeys; ++k) {
    float u[kDim], n[kDim], o[kDim];
    initializeRow(uniform, k, kDim, u);
    initializeRow(normal, k, kDim, n);
    initializeRow(other_seed, k, kDim, o);
    for (uint32_t j = 0; j < kDim; ++j) {
      EXPECT_GE(u[j], -0.5f);
      EXPECT_LT(u[j], 0.25f);
      sum += n[j];
      sq += (n[j] - 2.0) * (n[j] - 2.0);
      same_as_other_seed += n[j] == o[j];
    }
  }
  const double count = kKeys * kDim;
  EXPECT_NEAR(sum / count, 2.0, 0.02);  // deterministic inputs: no flakiness
  EXPECT_NEAR(std::sqrt(sq / count), 0.5, 0.02);
  EXPECT_EQ(same_as_other_seed, 0);
}

TEST(PsTable, DuplicateKeysAreSummedThenAppliedOnce) {
  TableSpec spec = makeSpec(1, "t", 2, OptimizerKind::kAdagrad);
  spec.optimizer.learning_rate = 1.0f;
  spec.optimizer.initial_accumulator = 0.0f;
  spec.optimizer.epsilon = 1e-8f;
  auto table = makeTable(spec);
  // Summed gradient (3, -4) once: w = -g/|g| = (-1, 1) per element. Applying the pieces one
  // after the other would give a different result.
  ASSERT_TRUE(pushRows(*table, {7, 7, 7}, {1, -1, 1, -2, 1, -1}).isOk());
  const auto w = pullRows(*table, {7});
  EXPECT_NEAR(w[0], -1.0f, 1e-6);
  EXPECT_NEAR(w[1], 1.0f, 1e-6);
  // pushPull returns the updated row at every position of a duplicated key.
  std::vector<float> out(6);
  const std::vector<uint64_t> keys = {8, 7, 8};
  const std::vector<float> grads = {1, 1, 0, 0, 1, 1};
  ASSERT_TRUE(table->pushPull(KeySpan::of(keys), FloatSpan::of(grads), out.data()).isOk());
  EXPECT_EQ(out[0], out[4]);
  EXPECT_EQ(out[1], out[5]);
  EXPECT_NEAR(out[0], -1.0f, 1e-6);  // key 8 got (2, 2) summed
  EXPECT_NEAR(out[2], -1.0f, 1e-6);  // key 7: zero gradient leaves w
}

TEST(PsTable, NonFiniteGradientRejectsWholeRequestAndLeavesRowsUntouched) {
  auto table = makeTable(makeSpec(1, "t", 3, OptimizerKind::kAdam));
  ASSERT_TRUE(pushRows(*table, {1, 2}, {1, 2, 3, 4, 5, 6}).isOk());
  const Bytes before = table->exportRows(nullptr);
  const size_t rows_before = table->rowCount();
  for (const float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
        -std::numeric_limits<float>::infinity()}) {
    // Key 1 and the new key 3 come before the bad element: none of them may change.
    const Status st = pushRows(*table, {1, 3, 2}, {1, 1, 1, 1, 1, 1, 1, bad, 1});
    ASSERT_FALSE(st.isOk());
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("gradient element 1 of key 2 (position 2)"), std::string::npos)
        << st.message();
    EXPECT_NE(st.message().find("no row changed"), std::string::npos);
    EXPECT_EQ(table->exportRows(nullptr), before);
    EXPECT_EQ(table->rowCount(), rows_before);
  }
}

TEST(PsTable, DuplicateGradientsSummingToInfinityRejectWholeRequest) {
  auto table = makeTable(makeSpec(1, "t", 1, OptimizerKind::kSgd));
  ASSERT_TRUE(pushRows(*table, {1, 5}, {1, 1}).isOk());
  const Bytes before = table->exportRows(nullptr);
  const float big = 3e38f;  // finite; twice it is not
  const Status st = pushRows(*table, {1, 9, 5, 5}, {1, 1, big, big});
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("of key 5 summed over its 2 positions"), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("no row changed"), std::string::npos);
  EXPECT_EQ(table->exportRows(nullptr), before);  // keys 1 and 9 untouched / not created
  EXPECT_EQ(table->rowCount(), 2u);
  // The same gradients once each are finite: accepted.
  EXPECT_TRUE(pushRows(*table, {5, 9}, {big, 1}).isOk());
}

TEST(PsTable, PullOfAbsentKeyReturnsInitializerAndCreatesNothing) {
  TableSpec spec = makeSpec(1, "t", 4);
  spec.init = {InitKind::kNormal, 5, 0.0f, 1.0f};
  auto table = makeTable(spec);
  const auto v = pullRows(*table, {99, 99});
  std::vector<float> want(4);
  initializeRow(spec.init, 99, 4, want.data());
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(v[j], want[j]);
    EXPECT_EQ(v[4 + j], want[j]);
  }
  EXPECT_EQ(table->rowCount(), 0u);
  EXPECT_EQ(table->rowAddress(99), nullptr);
}

TEST(PsTable, GradientCountMustMatchKeysTimesDim) {
  auto table = makeTable(makeSpec(1, "t", 4));
  const Status st = pushRows(*table, {1, 2}, {1, 2, 3});
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("3 gradient floats for 2 keys of dim 4"), std::string::npos);
}

TEST(PsTable, ManyKeysAcrossSlabsAndStripes) {
  TableOptions options;
  options.slab_bytes = 4096;  // a few rows per slab: many slabs
  options.stripes = 8;
  auto table = makeTable(makeSpec(1, "t", 3), options);
  std::vector<uint64_t> keys(5000);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = mix64(i + 1);
  std::vector<float> grads(keys.size() * 3);
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = static_cast<float>(i % 97);
  ASSERT_TRUE(pushRows(*table, keys, grads).isOk());
  EXPECT_EQ(table->rowCount(), keys.size());
  const auto v = pullRows(*table, keys);
  for (size_t i = 0; i < grads.size(); ++i) ASSERT_FLOAT_EQ(v[i], -0.01f * grads[i]) << i;
  const TableStats s = table->stats();
  EXPECT_EQ(s.rows, keys.size());
  EXPECT_GT(s.slabs, 10u);
  EXPECT_GE(s.bytes_per_row, static_cast<double>(s.row_stride));
  EXPECT_LT(s.bytes_per_row, 2.5 * static_cast<double>(s.row_stride) + 64);
  // locate: every key (in any order, with absent ones among them) at its row's slab and
  // offset, as rowAddress sees it.
  std::vector<uint64_t> asked(keys.rbegin(), keys.rend());
  for (uint64_t i = 0; i < 100; ++i) asked.insert(asked.begin() + 50 * i, mix64(1000000 + i));
  std::vector<RowLocation> where(asked.size());
  table->locate(KeySpan::of(asked), where.data());
  const std::vector<SlabInfo> slabs = table->slabs();
  size_t present = 0;
  for (size_t i = 0; i < asked.size(); ++i) {
    const uint8_t* row = table->rowAddress(asked[i]);
    ASSERT_EQ(where[i].present != 0, row != nullptr) << "key " << i;
    if (row == nullptr) continue;
    ++present;
    ASSERT_LT(where[i].slab_id, slabs.size());
    EXPECT_EQ(slabs[where[i].slab_id].base + where[i].offset, row) << "key " << i;
  }
  EXPECT_EQ(present, keys.size());
}

// Slabs of 2 MiB or more are whole huge pages: 2 MiB aligned, mapped in 2 MiB multiples,
// holding as many rows as fit (no longer a power of two), the rows of one slab disjoint
// and inside it, and ids that round-trip through slabOf/offsetOf.
TEST(PsRowStore, BigSlabsAreWholeHugePagesFilledWithRows) {
  struct Case {
    size_t stride, target, rows, mapped;
  };
  const Case cases[] = {
      {48, size_t{4} << 20, (size_t{2} << 20) / 48, size_t{2} << 20},  // 2^16 rows = 3 MiB
      {104, size_t{4} << 20, (size_t{4} << 20) / 104, size_t{4} << 20},
      {4136, size_t{4} << 20, (size_t{4} << 20) / 4136, size_t{4} << 20},
      {48, (size_t{5} << 20) / 2, (size_t{2} << 20) / 48, size_t{2} << 20},  // 2.5 MiB
      {8 << 20, size_t{4} << 20, 1, size_t{8} << 20},                        // one huge row
      {48, 4096, 85, 85 * 48},  // small slabs: rows that fit, no huge-page rounding
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "stride " << c.stride << " target " << c.target);
    RowStore store(c.stride, c.target);
    EXPECT_EQ(store.rowsPerSlab(), c.rows);
    EXPECT_EQ(store.slabBytes(), c.rows * c.stride);
    EXPECT_EQ(store.mappedBytes(), c.mapped);
    std::vector<uint32_t> ids;
    ASSERT_TRUE(store.reserve(2 * c.rows + 1, ids).isOk());
    ASSERT_EQ(store.slabCount(), 3u);
    const auto slabs = store.slabs();
    std::vector<uint64_t> offsets;
    for (const uint32_t id : ids) {
      const SlabInfo& slab = slabs.at(store.slabOf(id));
      EXPECT_EQ(store.row(id), slab.base + store.offsetOf(id));
      EXPECT_LE(store.offsetOf(id) + c.stride, slab.bytes);
      offsets.push_back(uint64_t{store.slabOf(id)} << 40 | store.offsetOf(id));
    }
    std::sort(offsets.begin(), offsets.end());
    EXPECT_EQ(std::adjacent_find(offsets.begin(), offsets.end()), offsets.end());
    if (c.target >= (size_t{2} << 20)) {
      for (const SlabInfo& slab : slabs) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(slab.base) % (size_t{2} << 20), 0u);
      }
    }
    // Rows are writable to their last byte (the mapping covers them).
    for (const uint32_t id : ids) store.row(id)[c.stride - 1] = 1;
    store.release(ids.data(), ids.size());
  }
}

// A SlabSource provides later slabs (the server's transport memory); the store keeps each
// owner until it is destroyed and never unmaps that memory itself. A failing source, or one
// that returns no owner, leaves the store mapping slabs itself.
TEST(PsRowStore, SlabSourceProvidesSlabsAndFailuresFallBackToMmap) {
  static constexpr size_t kStride = 48;
  static constexpr size_t kSlab = 85 * kStride;  // 85 rows of 48 bytes fit in 4096
  auto released = std::make_shared<int>(0);
  {
    RowStore store(kStride, 4096);
    store.setSlabSource([released](size_t bytes) -> Result<SlabMemory> {
      EXPECT_EQ(bytes, kSlab);
      auto* mem = new std::vector<uint8_t>(bytes, 0);
      std::shared_ptr<void> owner(mem, [released](void* p) {
        ++*released;
        delete static_cast<std::vector<uint8_t>*>(p);
      });
      return SlabMemory{mem->data(), owner};
    });
    std::vector<uint32_t> ids;
    ASSERT_TRUE(store.reserve(2 * store.rowsPerSlab(), ids).isOk());
    ASSERT_EQ(store.slabCount(), 2u);
    for (const SlabInfo& slab : store.slabs()) EXPECT_NE(slab.owner, nullptr);
    store.setSlabSource([](size_t) -> Result<SlabMemory> {
      return WEFT_ERROR(StatusCode::kNoResource, "no shared memory left");
    });
    ASSERT_TRUE(store.reserve(store.rowsPerSlab(), ids).isOk());
    static uint8_t unowned[kSlab];
    store.setSlabSource([](size_t) -> Result<SlabMemory> { return SlabMemory{unowned, nullptr}; });
    ASSERT_TRUE(store.reserve(store.rowsPerSlab(), ids).isOk());
    const auto slabs = store.slabs();
    ASSERT_EQ(slabs.size(), 4u);
    EXPECT_EQ(slabs[2].owner, nullptr) << "a failed source: mapped by the store";
    EXPECT_EQ(slabs[3].owner, nullptr) << "a source without an owner: mapped by the store";
    EXPECT_NE(slabs[3].base, unowned) << "memory without an owner was taken";
    for (const uint32_t id : ids) store.row(id)[kStride - 1] = 1;  // every row writable
    EXPECT_EQ(*released, 0);
  }
  EXPECT_EQ(*released, 2) << "the store must drop each source slab's owner when destroyed";
}

// A table whose stripes run on a 2-thread pool gives bit-identical rows and replies to a
// serial one: pushes with duplicate keys, unaligned gradients, admission, new and old rows.
// Dim 4, admission after two sightings (some keys of a request have no row yet).
TableSpec admittingSpec(OptimizerKind kind) {
  TableSpec spec = makeSpec(1, "t", 4, kind);
  spec.admission.min_count = 2;
  return spec;
}

TableOptions onPool(ForkJoinPool& pool) {
  TableOptions options;
  options.pool = &pool;
  return options;
}

TEST(PsTable, PoolRunsStripesInParallelWithIdenticalResults) {
  ForkJoinPool pool(2);
  const TableOptions parallel = onPool(pool);
  const TableSpec spec = admittingSpec(OptimizerKind::kAdagrad);
  auto a = makeTable(spec);
  auto b = makeTable(spec, parallel);
  std::mt19937_64 rng(7);
  for (int round = 0; round < 60; ++round) {
    const size_t n = 1 + rng() % 2000;  // below and above Table::kParallelKeys
    std::vector<uint64_t> keys(n);
    for (uint64_t& k : keys) k = mix64(rng() % 3000);  // duplicates within and across
    std::vector<float> storage(n * 4 + 1);
    for (float& g : storage) g = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 64;
    const bool unaligned = round % 3 == 0;
    const auto* bytes = reinterpret_cast<const uint8_t*>(storage.data()) + (unaligned ? 2 : 0);
    const FloatSpan grads(bytes, n * 4);
    std::vector<float> out_a(n * 4), out_b(n * 4);
    if (round % 2 == 0) {
      ASSERT_TRUE(a->push(KeySpan::of(keys), grads).isOk());
      ASSERT_TRUE(b->push(KeySpan::of(keys), grads).isOk());
    } else {
      ASSERT_TRUE(a->pushPull(KeySpan::of(keys), grads, out_a.data()).isOk());
      ASSERT_TRUE(b->pushPull(KeySpan::of(keys), grads, out_b.data()).isOk());
      ASSERT_EQ(0, std::memcmp(out_a.data(), out_b.data(), out_a.size() * 4)) << round;
    }
    ASSERT_EQ(pullRows(*a, keys), pullRows(*b, keys)) << round;
  }
  EXPECT_EQ(a->rowCount(), b->rowCount());
  EXPECT_EQ(a->stats().admission_dropped, b->stats().admission_dropped);
  EXPECT_EQ(a->exportRows(nullptr), b->exportRows(nullptr));  // values, state, clocks
}

// pushPull may write its result over its own gradients (a server answering a by-reference
// PushPull in the client's memory): the same rows and results as with separate buffers,
// with and without duplicate keys, unadmitted keys, and on a pool.
TEST(PsTable, PushPullOverItsOwnGradientsMatchesSeparateBuffers) {
  ForkJoinPool pool(2);
  const TableSpec spec = admittingSpec(OptimizerKind::kAdam);
  for (const bool on_pool : {false, true}) {
    const TableOptions options = on_pool ? onPool(pool) : TableOptions{};
    auto a = makeTable(spec, options);
    auto b = makeTable(spec, options);
    std::mt19937_64 rng(11);
    for (int round = 0; round < 40; ++round) {
      const size_t n = 1 + rng() % 1500;
      std::vector<uint64_t> keys(n);
      const bool dups = round % 2 == 1;
      for (uint64_t& k : keys) k = mix64(rng() % (dups ? 500 : 1000000));
      std::vector<float> grads(n * 4);
      for (float& g : grads) g = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 64;
      std::vector<float> out(n * 4);
      ASSERT_TRUE(a->pushPull(KeySpan::of(keys), FloatSpan::of(grads), out.data()).isOk());
      std::vector<float> in_place = grads;
      ASSERT_TRUE(b->pushPull(KeySpan::of(keys), FloatSpan::of(in_place), in_place.data()).isOk());
      ASSERT_EQ(0, std::memcmp(out.data(), in_place.data(), out.size() * 4))
          << "round " << round << (on_pool ? " on a pool" : "");
    }
    EXPECT_EQ(a->exportRows(nullptr), b->exportRows(nullptr));
  }
}

TEST(PsForkJoin, EveryPartRunsOnceAcrossJobsAndConcurrentCallers) {
  ForkJoinPool pool(3);
  EXPECT_EQ(pool.threads(), 3u);
  std::vector<std::atomic<uint32_t>> hits(64);
  auto job = [&](uint32_t parts, uint32_t round) {
    pool.run(parts, [&](uint32_t i) { hits[i].fetch_add(round % 7 + 1); });
  };
  std::atomic<uint64_t> expected{0};
  auto caller = [&](uint32_t seed) {
    for (uint32_t r = 0; r < 3000; ++r) {
      const uint32_t parts = (r * 7 + seed) % 64 + 1;
      job(parts, r);
      expected.fetch_add(uint64_t{parts} * (r % 7 + 1));
    }
  };
  std::thread other(caller, 3);  // its runs find the pool busy at times and run inline
  caller(0);
  other.join();
  uint64_t total = 0;
  for (auto& h : hits) total += h.load();
  EXPECT_EQ(total, expected.load());
  // Destroyed at once, before its helpers first looked at the job counter: no hang.
  for (int i = 0; i < 100; ++i) ForkJoinPool(3);
  ForkJoinPool inline_only(1);
  uint32_t count = 0;
  inline_only.run(5, [&](uint32_t) { ++count; });
  EXPECT_EQ(count, 5u);
}

TEST(PsTable, ExportImportAndEraseAreExact) {
  auto a = makeTable(makeSpec(1, "t", 2, OptimizerKind::kAdam));
  auto b = makeTable(makeSpec(1, "t", 2, OptimizerKind::kAdam));
  ASSERT_TRUE(pushRows(*a, {1, 2, 3, 4}, {1, 2, 3, 4, 5, 6, 7, 8}).isOk());
  ASSERT_TRUE(pushRows(*a, {2, 4}, {1, 1, 1, 1}).isOk());
  const Bytes odd = a->exportRows([](uint64_t k) { return k % 2 == 1; });
  EXPECT_EQ(odd.size(), 2 * a->recordBytes());
  ASSERT_TRUE(b->importRows(a->exportRows(nullptr)).isOk());
  EXPECT_EQ(pullRows(*a, {1, 2, 3, 4}), pullRows(*b, {1, 2, 3, 4}));
  // Optimizer state came along: the same push gives the same result on both.
  ASSERT_TRUE(pushRows(*a, {2}, {0.5f, -0.5f}).isOk());
  ASSERT_TRUE(pushRows(*b, {2}, {0.5f, -0.5f}).isOk());
  EXPECT_EQ(pullRows(*a, {2}), pullRows(*b, {2}));
  EXPECT_EQ(b->eraseRows([](uint64_t k) { return k >= 3; }), 2u);
  EXPECT_EQ(b->rowCount(), 2u);
  EXPECT_EQ(b->rowAddress(3), nullptr);
  Bytes broken = odd;
  broken.pop_back();
  EXPECT_FALSE(b->importRows(broken).isOk());
}

TEST(PsRowIndex, MatchesUnorderedMapUnderRandomInsertErase) {
  RowIndex index;
  std::unordered_map<uint64_t, uint32_t> model;
  std::mt19937_64 rng(3);
  for (uint32_t step = 0; step < 40000; ++step) {
    const uint64_t key = rng() % 3000;
    const uint64_t h = hashKey(key, kIndexSeed);
    if (rng() % 3 == 0) {
      const uint32_t got = index.erase(key, h);
      auto it = model.find(key);
      ASSERT_EQ(got, it == model.end() ? RowIndex::kNone : it->second);
      if (it != model.end()) model.erase(it);
    } else if (index.find(key, h) == RowIndex::kNone) {
      index.insert(key, h, step);
      model[key] = step;
    }
    ASSERT_EQ(index.size(), model.size());
  }
  for (const auto& [k, v] : model) ASSERT_EQ(index.find(k, hashKey(k, kIndexSeed)), v);
  size_t visited = 0;
  index.forEach([&](uint64_t k, uint32_t id) {
    ++visited;
    EXPECT_EQ(model.at(k), id);
  });
  EXPECT_EQ(visited, model.size());
}

TEST(PsTable, InvalidSpecsAreRejected) {
  EXPECT_FALSE(Table::create(makeSpec(1, "", 4)).isOk());
  EXPECT_FALSE(Table::create(makeSpec(1, "t", 0)).isOk());
  EXPECT_FALSE(Table::create(makeSpec(1, "t", kMaxDim + 1)).isOk());
  TableSpec bsp = makeSpec(1, "t", 1);
  bsp.consistency.model = ConsistencyModel::kBsp;
  auto st = Table::create(bsp);
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.status().message().find("num_workers"), std::string::npos);
  TableOptions odd;
  odd.stripes = 3;
  EXPECT_FALSE(Table::create(makeSpec(1, "t", 1), odd).isOk());
}

}  // namespace
}  // namespace weft::ps
