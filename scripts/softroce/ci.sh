#!/bin/bash
# ci.sh - the CI stage that runs the verbs backend's tests on a real verbs device (soft-RoCE
# rxe0 inside qemu VMs): scripts/softroce/run-tests.sh under one overall time limit.
#
#   scripts/softroce/ci.sh [BUILD_DIR]        (default: build; needs root; builds nothing)
#
# Steps: (1) setup: the packages and the kernel .deb the VMs need (softroce-vm -s; a few
# minutes and ~600 MB of downloads on first use, cached in $SOFTROCE_WORK afterwards);
# (2) one VM: the whole verbs conformance suite (three configurations, several ranks on rxe0)
# and the VerbsDevice / VerbsRanks tests; (3) two VMs (-n 2): transfers, tag ordering, RMA,
# truncation and the peer-failure cases, one rank per VM.
#
# A machine that cannot run the VMs (not root, no qemu, no network for the first download,
# the VM does not boot) FAILS this stage, loudly: a skipped RDMA test is not a passed one.
# Set WEFT_SKIP_SOFTROCE=1 to skip it on purpose. KVM is not needed (qemu's TCG emulation).
#
# Environment: WEFT_SOFTROCE_TIME_LIMIT (seconds, default 1200) caps the whole stage,
# setup included; the two-VM step gets VERBS_TWO_VM_LIMIT (default 300) of it.
# Exit status: 0 passed (or skipped on purpose), 124 time limit, 125 the VM could not run,
# 2 bad setup (not root, build without verbs), else the failing step's status.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${1:-$ROOT/build}
LIMIT=${WEFT_SOFTROCE_TIME_LIMIT:-1200}
TWO_VM=${VERBS_TWO_VM_LIMIT:-300}
SETUP_MAX=900
HINT="set WEFT_SKIP_SOFTROCE=1 to skip this stage on a machine that cannot run the VMs"
t0=$(date +%s)

say() { echo "=== softroce-ci: $*"; }
fail() { # STATUS MESSAGE...
	local rc=$1
	shift
	echo "### softroce-ci: FAILED: $* ($HINT)" >&2
	exit "$rc"
}
left() { echo $((LIMIT - ($(date +%s) - t0))); }

if [ "${WEFT_SKIP_SOFTROCE:-0}" = 1 ]; then
	say "SKIPPED (WEFT_SKIP_SOFTROCE=1): the verbs backend was NOT tested on a device"
	exit 0
fi
[[ $LIMIT =~ ^[0-9]+$ ]] && [ "$LIMIT" -ge 300 ] ||
	fail 2 "WEFT_SOFTROCE_TIME_LIMIT=$LIMIT: give at least 300 seconds"
[ "$(id -u)" = 0 ] || fail 2 "must run as root (apt-get, qemu with the host root shared read-only)"
accel=tcg
[ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ] && accel=kvm
say "build $BUILD, time limit ${LIMIT} s, qemu accelerator $accel, $(nproc) CPUs"

say "setup (packages, guest kernel, initramfs)"
setup_limit=$(($(left) < SETUP_MAX ? $(left) : SETUP_MAX))
timeout -k 10 "$setup_limit" "$HERE/softroce-vm" -s
rc=$?
[ $rc = 124 ] && fail 124 "setup took over ${setup_limit} s"
[ $rc = 0 ] || fail 125 "softroce-vm -s failed (status $rc): no VM can start here"
command -v qemu-system-x86_64 >/dev/null || fail 125 "qemu-system-x86_64 is missing after setup"
t1=$(date +%s)
say "setup done in $((t1 - t0)) s"

remaining=$(left)
one_vm=$((remaining - TWO_VM - 30))
[ "$one_vm" -ge 120 ] || fail 124 "only ${remaining} s left of ${LIMIT} s after setup"
VERBS_ONE_VM_LIMIT=$one_vm VERBS_TWO_VM_LIMIT=$TWO_VM \
	timeout -k 20 "$remaining" "$HERE/run-tests.sh" "$BUILD"
rc=$?
t2=$(date +%s)
case $rc in
0) say "passed: verbs tests on soft-RoCE in $((t2 - t1)) s (stage $((t2 - t0)) s)" ;;
124 | 137) fail 124 "time limit: the verbs tests ran past their limits (stage $((t2 - t0)) s)" ;;
125) fail 125 "a soft-RoCE VM failed to boot or to bring up rxe0 (console tail above)" ;;
2) fail 2 "run-tests.sh refused to start (message above)" ;;
*) fail "$rc" "verbs tests failed on soft-RoCE (status $rc; the gtest output above names them)" ;;
esac
