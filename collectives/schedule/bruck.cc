// Bruck's algorithms: ceil(log2 size) messages per rank, at the price of local rotations
// (kCopy steps through scratch).
#include <algorithm>
#include <vector>

#include "collectives/schedule/algorithms.h"
#include "collectives/schedule/builder.h"

namespace weft::coll {

using detail::inSlice;
using detail::modRank;
using detail::outSlice;
using detail::PlanBuilder;
using detail::scrSlice;

// Scratch holds tmp[i] = the block of rank r+i, i = 0..size-1. Step k (d = 2^k) sends
// tmp[0, m) to r-d and receives tmp[d, d+m) from r+d, m = min(d, size-d); the last slot
// rotates tmp into the output (two copies).
Plan buildBruckAllgather(const CollSpec& spec) {
  const int p = spec.size;
  const int r = spec.rank;
  if (p == 1) return detail::singleRankPlan("bruck", spec, false);
  PlanBuilder b("bruck", spec);
  const size_t n = spec.count;
  const auto up = static_cast<size_t>(p);
  b.copy(0, inSlice(0, n), scrSlice(0, n));
  size_t slot = 0;
  for (int d = 1; d < p; d *= 2, ++slot) {
    const auto m = static_cast<size_t>(std::min(d, p - d));
    b.send(slot, modRank(r - d, p), d == 1 ? inSlice(0, n) : scrSlice(0, m * n));
    b.recv(slot, modRank(r + d, p), scrSlice(static_cast<size_t>(d) * n, m * n));
  }
  const auto ur = static_cast<size_t>(r);
  b.copy(slot, scrSlice(0, (up - ur) * n), outSlice(ur * n, (up - ur) * n));
  b.copy(slot, scrSlice((up - ur) * n, ur * n), outSlice(0, ur * n));
  return b.finish();
}

namespace {

// Bruck alltoall. tmp[i] (i = 1..size-1, in scratch) starts as the input block for rank r+i;
// step k (d = 2^k) sends the tmp blocks whose index has bit k set to r+d and receives the
// same indices from r-d; afterwards tmp[i] holds the block from rank r-i, which belongs in
// output block r-i. A block is written straight to the output at the step of its highest
// bit (it does not move after that). A step's blocks travel as one message: packed through
// scratch unless they already are one contiguous range.
class BruckAlltoall {
 public:
  explicit BruckAlltoall(const CollSpec& spec)
      : spec_(spec), p_(spec.size), r_(spec.rank), n_(spec.count), b_("bruck", spec) {}

  Plan build();

 private:
  struct StepShape {
    std::vector<int> blocks;  // indices with bit k set
    bool packSend = false;    // not contiguous in tmp
    bool unpackRecv = false;  // destinations not one contiguous range
  };
  StepShape shape(int k) const;
  Slice tmp(int i, int count = 1) const {
    return scrSlice(static_cast<size_t>(i - 1) * n_, static_cast<size_t>(count) * n_);
  }
  // Where block i goes when step k receives it.
  Slice destination(int i, int k) const {
    if (detail::log2Floor(i) == k)
      return outSlice(static_cast<size_t>(modRank(r_ - i, p_)) * n_, n_);
    return tmp(i);
  }
  void step(int k, const StepShape& s, size_t slot);

  CollSpec spec_;
  int p_, r_;
  size_t n_;
  PlanBuilder b_;
  size_t packAt_ = 0;  // scratch offsets of the pack buffers
  size_t unpackAt_ = 0;
};

BruckAlltoall::StepShape BruckAlltoall::shape(int k) const {
  StepShape s;
  for (int i = 1; i < p_; ++i) {
    if (i & (1 << k)) s.blocks.push_back(i);
  }
  for (size_t j = 1; j < s.blocks.size(); ++j) {
    if (s.blocks[j] != s.blocks[j - 1] + 1) s.packSend = true;
    const Slice a = destination(s.blocks[j - 1], k);
    const Slice c = destination(s.blocks[j], k);
    if (a.buffer != c.buffer || a.offset + n_ != c.offset) s.unpackRecv = true;
  }
  return s;
}

// Three slots per step: pack, exchange, unpack.
void BruckAlltoall::step(int k, const StepShape& s, size_t slot) {
  const auto m = static_cast<int>(s.blocks.size());
  const int to = modRank(r_ + (1 << k), p_);
  const int from = modRank(r_ - (1 << k), p_);
  Slice send = tmp(s.blocks[0], m);
  if (s.packSend) {
    send = scrSlice(packAt_, static_cast<size_t>(m) * n_);
    for (int j = 0; j < m; ++j) {
      b_.copy(slot, tmp(s.blocks[static_cast<size_t>(j)]),
              detail::subSlice(send, static_cast<size_t>(j) * n_, n_));
    }
  }
  Slice recv = destination(s.blocks[0], k);
  recv.count = static_cast<size_t>(m) * n_;
  if (s.unpackRecv) recv = scrSlice(unpackAt_, static_cast<size_t>(m) * n_);
  b_.send(slot + 1, to, send);
  b_.recv(slot + 1, from, recv);
  if (!s.unpackRecv) return;
  for (int j = 0; j < m; ++j) {
    b_.copy(slot + 2, detail::subSlice(recv, static_cast<size_t>(j) * n_, n_),
            destination(s.blocks[static_cast<size_t>(j)], k));
  }
}

Plan BruckAlltoall::build() {
  const auto up = static_cast<size_t>(p_);
  const auto ur = static_cast<size_t>(r_);
  // Slot 0: every input read happens here (input and output may alias).
  b_.copy(0, inSlice(ur * n_, n_), outSlice(ur * n_, n_));
  b_.copy(0, inSlice((ur + 1) * n_, (up - ur - 1) * n_), tmp(1, p_ - r_ - 1));
  b_.copy(0, inSlice(0, ur * n_), tmp(p_ - r_, r_));
  std::vector<StepShape> shapes;
  size_t packMax = 0;  // blocks; the unpack buffer follows the pack buffer
  for (int k = 0; (1 << k) < p_; ++k) {
    shapes.push_back(shape(k));
    if (shapes.back().packSend) packMax = std::max(packMax, shapes.back().blocks.size());
  }
  packAt_ = (up - 1) * n_;
  unpackAt_ = packAt_ + packMax * n_;
  for (size_t k = 0; k < shapes.size(); ++k) step(static_cast<int>(k), shapes[k], 1 + 3 * k);
  return b_.finish();
}

}  // namespace

Plan buildBruckAlltoall(const CollSpec& spec) {
  if (spec.size == 1) return detail::singleRankPlan("bruck", spec, false);
  return BruckAlltoall(spec).build();
}

}  // namespace weft::coll
