#!/usr/bin/env bash
# Runs the GPU checks on a machine with an NVIDIA GPU and driver (no build tools needed):
#   scripts/gpu/device-check.sh BUILD_DIR OUT_DIR
# BUILD_DIR holds bin/weft_gpu_tests, bin/weft-gpu-reduce-bench and bin/weft-info (a bundle
# from scripts/gpu/build-device-check.sh, or a CMake build directory). Every step is capped
# with `timeout`, a failing step never stops the next one, and OUT_DIR gets one log per step,
# gpu_tests.xml (GoogleTest) and summary.txt. Whole run: under 4 minutes.
set -u
if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
build=$1
out=$2
mkdir -p "$out"
bin=$build/bin
[ -x "$bin/weft_gpu_tests" ] || bin=$build
summary=$out/summary.txt
: >"$summary"
failed=0
t0=$(date +%s)

# step NAME SECONDS COMMAND...: runs with a time cap, logs to OUT/NAME.log, echoes the log.
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "===== $name (cap ${limit}s): $*"
  timeout -k 5 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  cat "$out/$name.log"
  local verdict=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    verdict="TIMED OUT"
  elif [ $rc -ne 0 ]; then
    verdict="FAILED"
  fi
  [ "$verdict" = ok ] || failed=$((failed + 1))
  printf '%-12s %-9s rc=%-3s %4ss  %s\n' "$name" "$verdict" "$rc" "$((SECONDS - start))" "$*" \
    >>"$summary"
}

step host 20 bash -c 'uname -a; nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,pci.bus_id --format=csv; cat /proc/driver/nvidia/version 2>/dev/null; ls -d /sys/module/nvidia* /sys/module/nv_peer_mem 2>/dev/null; ls /dev/infiniband 2>/dev/null || echo "no /dev/infiniband"'
step ldd 15 bash -c "for b in '$bin'/weft_gpu_tests '$bin'/weft-gpu-reduce-bench '$bin'/weft-info; do echo \"== \$b\"; ldd \"\$b\"; done"
step weft-info 30 bash -c "'$bin/weft-info' && '$bin/weft-info' --gpu"
# WEFT_TEST_STRICT=1: a missing GPU fails the tests instead of skipping them.
step gpu-tests 130 env WEFT_TEST_STRICT=1 "$bin/weft_gpu_tests" --gtest_color=no \
  --gtest_output="xml:$out/gpu_tests.xml"
step bench 45 "$bin/weft-gpu-reduce-bench" --bytes 268435456 --iters 20

{
  echo "----- gtest summary"
  grep -E '^\[ *(PASSED|FAILED|SKIPPED) *\]|tests? from .* ran|^\[ (reduce|probe|dmabuf|ipc) ' \
    "$out/gpu-tests.log" 2>/dev/null || echo "(no gtest output)"
  echo "----- $failed step(s) failed, $(($(date +%s) - t0)) s in all"
} >>"$summary"
echo "===== summary"
cat "$summary"
exit $((failed > 0))
