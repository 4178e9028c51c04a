#!/usr/bin/env bash
# README's test command: installs dependencies (apt-get), builds with warnings as errors,
# runs the whole test suite, then the suite again under AddressSanitizer + UBSan.
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
  echo "=== build (ASan + UBSan)"
  WEFT_BUILD_DIR=build-asan scripts/build.sh -DCMAKE_BUILD_TYPE=Debug \
    -DWEFT_SANITIZE=address,undefined
  echo "=== tests under ASan + UBSan"
  (cd build-asan &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest -j 2 --output-on-failure --timeout 900)
fi
echo "=== all tests passed in $(( $(date +%s) - start )) s"
