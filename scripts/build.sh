#!/usr/bin/env bash
# Configures and builds Weft into build/ (or $WEFT_BUILD_DIR). Extra arguments go to cmake's
# configure step, e.g. scripts/build.sh -DWEFT_WITH_UCX=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${WEFT_BUILD_DIR:-build}
JOBS=${WEFT_JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DWEFT_WERROR=ON "$@"
cmake --build "$BUILD_DIR" -j "$JOBS"
