#!/usr/bin/env bash
# README's test command: installs dependencies (apt-get), builds with warnings as errors,
# runs the whole test suite, then the transport, launcher and harness suites again under
# AddressSanitizer + UBSan.
# WEFT_SKIP_SANITIZE=1 skips the sanitizer pass (quicker local runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
start=$(date +%s)

echo "=== build (release, -Werror)"
WEFT_BUILD_DIR=build scripts/build.sh
echo "=== tests"
(cd build && ctest -j 2 --output-on-failure --timeout 600)

if [ "${WEFT_SKIP_SANITIZE:-0}" != 1 ]; then
  # The sanitizer pass covers the layers below the collectives: common (unit), processes and
  # launcher (multiproc) and the transport conformance suite over UCX.
  echo "=== build (ASan + UBSan)"
  cmake -S . -B build-asan -G Ninja -DWEFT_WERROR=ON -DCMAKE_BUILD_TYPE=Debug \
    -DWEFT_SANITIZE=address,undefined
  cmake --build build-asan -j "$(nproc)" --target weft_transport_tests weft_multiproc_tests \
    weft-run weft-info
  echo "=== tests under ASan + UBSan"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  build-asan/bin/weft_transport_tests --gtest_brief=1
  build-asan/bin/weft_multiproc_tests --gtest_brief=1
fi
echo "=== all tests passed in $(( $(date +%s) - start )) s"
