#!/usr/bin/env bash
# README's test command: installs dependencies (apt-get), builds with warnings as errors,
# runs the whole test suite, then the transport, launcher and harness suites again under
# AddressSanitizer + UBSan and the parameter server's thread pool under ThreadSanitizer, then the verbs tests on soft-RoCE in qemu VMs (needs root).
# WEFT_SKIP_SANITIZE=1 skips the sanitizer pass, WEFT_SKIP_SOFTROCE=1 the soft-RoCE stage
# (quicker local runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
start=$(date +%s)

echo "=== build (release, -Werror)"
WEFT_BUILD_DIR=build scripts/build.sh
echo "=== tests"
(cd build && ctest -j 2 --output-on-failure --timeout 600)

if [ "${WEFT_SKIP_SANITIZE:-0}" != 1 ]; then
  # The sanitizer pass covers processes and launcher (multiproc), the transport conformance
  # suite over UCX and the networked parameter server (servers and workers as processes).
  echo "=== build (ASan + UBSan)"
  cmake -S . -B build-asan -G Ninja -DWEFT_WERROR=ON -DCMAKE_BUILD_TYPE=Debug \
    -DWEFT_SANITIZE=address,undefined
  cmake --build build-asan -j "$(nproc)" --target weft_transport_tests weft_multiproc_tests \
    weft_ps_tests weft-ps-server weft-run weft-info
  echo "=== tests under ASan + UBSan"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  build-asan/bin/weft_transport_tests --gtest_brief=1
  build-asan/bin/weft_multiproc_tests --gtest_brief=1
  build-asan/bin/weft_ps_tests --gtest_brief=1
  # ThreadSanitizer on the parameter server's fork-join pool (stripes of one request on
  # several threads): repeated, since races show up in some runs only. UCX's memory hooks
  # (libucm, loaded with the transport) crash under TSan at thread start: turned off here.
  echo "=== thread pool tests under TSan"
  cmake -S . -B build-tsan -G Ninja -DWEFT_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DWEFT_SANITIZE=thread -DWEFT_WITH_TORCH=OFF -DWEFT_WITH_CUDA=OFF
  cmake --build build-tsan -j "$(nproc)" --target weft_unit_tests
  UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_MALLOC_HOOKS=no TSAN_OPTIONS=halt_on_error=1 \
    build-tsan/bin/weft_unit_tests --gtest_brief=1 --gtest_repeat=10 \
    --gtest_filter='PsForkJoin*:PsTable.Pool*'
fi
# ---- soft-RoCE stage: the verbs backend on a real verbs device ----------------------------
# scripts/softroce/ci.sh boots qemu VMs with Debian's kernel and rdma_rxe (no RDMA NIC or KVM
# needed): the whole verbs conformance suite with several ranks on rxe0 in one VM, then the
# transfer and peer-failure cases across two VMs. About 4 minutes on a 2-core host (plus the
# first-use downloads), capped at WEFT_SOFTROCE_TIME_LIMIT (1200 s). It fails when no VM can
# start here; WEFT_SKIP_SOFTROCE=1 skips it on purpose.
echo "=== verbs tests on soft-RoCE"
scripts/softroce/ci.sh build
# ---- end of the soft-RoCE stage ------------------------------------------------------------

echo "=== all tests passed in $(( $(date +%s) - start )) s"
