// RAII owners for every libibverbs object the backend creates (internal to transport/).
//
// Each owner is a std::unique_ptr with a deleter that destroys the object, logs a failure
// (never throws: destructors stay noexcept) and keeps a process-wide count of live objects
// per kind, so tests can check that failures and teardown leak no QP, CQ or MR
// (verbs::liveObjects() in verbs_info.h).
//
// Destruction order matters to the verbs API: QPs before the CQs they use, MRs and QPs
// before their PD, the PD and CQs before the device context, CQs before their completion
// channel. Owners are declared in the reverse of that order in the classes that hold them.
//
// Threads: the counters are atomics; the objects follow their owner's threading rule.
#pragma once

#include <infiniband/verbs.h>

#include <atomic>
#include <cstddef>
#include <memory>

namespace weft::transport::verbs {

enum class ObjectKind : int { kContext = 0, kPd, kChannel, kCq, kQp, kMr, kCount };

// Live object counters (increment on creation through track(), decrement in the deleter).
std::atomic<long>& liveCounter(ObjectKind kind);
// Logs a failed destroy call ("ibv_destroy_qp failed: Device or resource busy").
void logDestroyFailure(const char* call, int err);

template <typename T>
struct VerbsDeleter;

#define WEFT_VERBS_DELETER(Type, Kind, Call)            \
  template <>                                           \
  struct VerbsDeleter<Type> {                           \
    void operator()(Type* p) const noexcept {           \
      if (p == nullptr) return;                         \
      const int rc = Call(p);                           \
      if (rc != 0) logDestroyFailure(#Call, rc);        \
      liveCounter(ObjectKind::Kind).fetch_sub(1);       \
    }                                                   \
  };

WEFT_VERBS_DELETER(ibv_context, kContext, ibv_close_device)
WEFT_VERBS_DELETER(ibv_pd, kPd, ibv_dealloc_pd)
WEFT_VERBS_DELETER(ibv_comp_channel, kChannel, ibv_destroy_comp_channel)
WEFT_VERBS_DELETER(ibv_cq, kCq, ibv_destroy_cq)
WEFT_VERBS_DELETER(ibv_qp, kQp, ibv_destroy_qp)
WEFT_VERBS_DELETER(ibv_mr, kMr, ibv_dereg_mr)
#undef WEFT_VERBS_DELETER

template <typename T>
using VerbsPtr = std::unique_ptr<T, VerbsDeleter<T>>;
using ContextPtr = VerbsPtr<ibv_context>;
using PdPtr = VerbsPtr<ibv_pd>;
using ChannelPtr = VerbsPtr<ibv_comp_channel>;
using CqPtr = VerbsPtr<ibv_cq>;
using QpPtr = VerbsPtr<ibv_qp>;
using MrPtr = VerbsPtr<ibv_mr>;

// Wraps a freshly created object (nullptr stays empty and counts nothing).
template <typename T>
VerbsPtr<T> track(T* p, ObjectKind kind) {
  if (p != nullptr) liveCounter(kind).fetch_add(1);
  return VerbsPtr<T>(p);
}

// The device list of ibv_get_device_list.
struct DeviceListDeleter {
  void operator()(ibv_device** list) const noexcept {
    if (list != nullptr) ibv_free_device_list(list);
  }
};
using DeviceListPtr = std::unique_ptr<ibv_device*, DeviceListDeleter>;

// Page-aligned memory for receive / send buffers (freed with free()).
struct FreeDeleter {
  void operator()(void* p) const noexcept;
};
using AlignedBuffer = std::unique_ptr<char, FreeDeleter>;
// nullptr when the allocation fails.
AlignedBuffer allocateAligned(size_t bytes);

}  // namespace weft::transport::verbs
