// libFuzzer target: weft-ps-codec-fuzz (clang, -DWEFT_FUZZ=ON). See fuzz_entry.h.
//   build/bin/weft-ps-codec-fuzz -max_total_time=60
#include <cstdio>
#include <cstdlib>

#include "paramserver/fuzz/fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const weft::Status st = weft::ps::fuzz::runCodecInput({data, size});
  if (!st.isOk()) {
    std::fprintf(stderr, "invariant violated: %s\n", st.toString().c_str());
    std::abort();
  }
  return 0;
}
