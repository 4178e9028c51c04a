#!/usr/bin/env bash
# README's main job: installs dependencies, builds, and runs the 4-rank demo on this
# machine under weft-run (identity of every rank, then a token ring through the store).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
WEFT_BUILD_DIR=build scripts/build.sh >/dev/null
echo "=== weft-run -n 4 -- weft-info --whoami"
build/bin/weft-run -n 4 -- build/bin/weft-info --whoami
echo "=== weft-run -n 4 -- weft-demo"
build/bin/weft-run -n 4 -- build/bin/weft-demo --rounds 200
