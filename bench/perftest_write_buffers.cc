// LD_PRELOAD shim for Debian's ucx_perftest (bench/scripts/ucx_compare.py): writes every host
// buffer that ucp_mem_map(UCP_MEM_MAP_ALLOCATE) hands out, once, right after it is mapped.
//
// Why: ucx_perftest's tag tests never write their send buffer. A private anonymous page that
// was never written is backed by the kernel's shared zero page when it is read, so a CMA or
// TCP copy out of such a buffer reads the same 4 KiB over and over, always cache-hot, and
// moves large messages up to twice as fast as a copy of real data (1 MiB tag_bw over
// sysv,cma here). weft-perf zero-fills its buffers (real pages). With this shim both tools
// send real pages; `weft-perf --send-buffer untouched` and a plain ucx_perftest both send the
// zero page. Either pair is like for like; a mix is not.
//
// It announces itself on stderr once per buffer, so that the script can check that it was
// loaded (a preload that silently does nothing would make the comparison wrong again).
#include <dlfcn.h>
#include <ucp/api/ucp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

using MemMapFn = ucs_status_t (*)(ucp_context_h, const ucp_mem_map_params_t*, ucp_mem_h*);

MemMapFn realMemMap() {
  static MemMapFn fn = reinterpret_cast<MemMapFn>(dlsym(RTLD_NEXT, "ucp_mem_map"));
  if (fn == nullptr) {
    std::fprintf(stderr, "weft-perftest-write-buffers: ucp_mem_map not found after this "
                         "preload (%s)\n", dlerror());
    std::abort();
  }
  return fn;
}

bool allocatesHostMemory(const ucp_mem_map_params_t* params) {
  if (params == nullptr || !(params->field_mask & UCP_MEM_MAP_PARAM_FIELD_FLAGS) ||
      !(params->flags & UCP_MEM_MAP_ALLOCATE)) {
    return false;
  }
  if (!(params->field_mask & UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE)) return true;
  return params->memory_type == UCS_MEMORY_TYPE_HOST ||
         params->memory_type == UCS_MEMORY_TYPE_UNKNOWN;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) ucs_status_t ucp_mem_map(
    ucp_context_h context, const ucp_mem_map_params_t* params, ucp_mem_h* memh_p) {
  const ucs_status_t st = realMemMap()(context, params, memh_p);
  if (st != UCS_OK || !allocatesHostMemory(params)) return st;
  ucp_mem_attr_t attr;
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  const ucs_status_t qst = ucp_mem_query(*memh_p, &attr);
  if (qst != UCS_OK) {
    std::fprintf(stderr, "weft-perftest-write-buffers: ucp_mem_query failed (%s); buffer left "
                         "unwritten\n", ucs_status_string(qst));
    return st;
  }
  std::memset(attr.address, 0, attr.length);
  std::fprintf(stderr, "weft-perftest-write-buffers: wrote %zu bytes at %p\n", attr.length,
               attr.address);
  return st;
}
