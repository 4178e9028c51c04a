#!/usr/bin/env bash
# README's main job: installs dependencies, builds, and runs multi-rank demos and benchmarks
# on this machine under weft-run:
#   1. identity of every rank (weft-info --whoami) and a token ring through the store;
#   2. weft-perf: point-to-point latency and bandwidth over UCX shared memory;
#   3. weft-bench: collectives, nccl-tests style, 4 ranks, results checked;
#   4. the parameter-server click-through demo: 2 servers + 2 workers train logistic
#      regression and must match a single-process trainer's AUC within 0.01; a job
#      checkpoint after each epoch, and the first one restored and tested again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
WEFT_BUILD_DIR=build scripts/build.sh >/dev/null
B=build/bin
echo "=== weft-run -n 4 -- weft-info --whoami"
$B/weft-run -n 4 -- $B/weft-info --whoami
echo "=== weft-run -n 4 -- weft-demo"
$B/weft-run -n 4 -- $B/weft-demo --rounds 200
echo "=== weft-run -n 2 -- weft-perf (UCX_TLS=posix)"
UCX_TLS=posix $B/weft-run -n 2 -- $B/weft-perf -t send_lat,send_bw -s 8,64K,1M,16M
echo "=== weft-run -n 4 -- weft-bench allreduce,broadcast,allgather,reduce_scatter,alltoall --check"
$B/weft-run -n 4 -- $B/weft-bench allreduce,broadcast,allgather,reduce_scatter,alltoall \
  -b 8 -e 16M -f 16 --check
echo "=== weft-run -n 4 -- weft-ps-ctr --servers 2 --checkpoint DIR"
CKPT=$(mktemp -d /tmp/weft-ctr-ckpt.XXXXXX)
trap 'rm -rf "$CKPT"' EXIT
$B/weft-run -n 4 --timeout 300 -- $B/weft-ps-ctr --servers 2 --checkpoint "$CKPT"
