#!/bin/bash
# two-node-rank.sh - runs this VM's rank of 2-rank tests whose ranks live in two VMs.
#
#   softroce-vm -n 2 -- scripts/softroce/two-node-rank.sh TEST_BINARY TEST [TEST...]
#
# Runs inside each VM of `softroce-vm -n 2` (SOFTROCE_RANK 0 or 1, SOFTROCE_PEERS = both
# IPs). For each TEST (a full gtest name of a test that calls runRanks(2, ...)), every VM
# starts its rank the way the multi-rank harness starts rank processes
# (tests/support/rank_harness.h): WEFT_HARNESS_CHILD=1 with WEFT_RANK, WEFT_WORLD_SIZE=2,
# WEFT_STORE_ADDR and a step-board file (WEFT_HARNESS_STEP_FD). Rank 0's VM hosts a fresh
# TCP store per test (VerbsTwoNode.DISABLED_HostStore on port 29500 + test number), so the
# tests share no keys. A rank named in the test's "expected to die" list (the rank that
# kills itself in a peer-failure test) may end with SIGKILL; any other non-zero status
# fails the run.
#
# Exit status: 0 when every test passed on this VM's rank, else 1.
set -u
BIN=$1
shift
RANK=${SOFTROCE_RANK:?run me inside softroce-vm -n 2}
read -r -a PEERS <<<"${SOFTROCE_PEERS:?}"
HOST0=${PEERS[0]}
BASE_PORT=29500
STEPS=/tmp/weft-steps.$RANK
# Each VM has one emulated vCPU on a shared host: a VM can stall for longer than the default
# ACK timeout (WEFT_IB_TIMEOUT 14 = 67 ms), and every spurious timeout makes the peer resend
# (rxe counts them in completer_retry_err). 16 = 268 ms still reports a dead peer in ~2 s.
export WEFT_IB_TIMEOUT=${WEFT_IB_TIMEOUT:-16}
LOGDIR=${TMPDIR:-/tmp}
rc=0
n=0

# The rank of TEST that kills itself on purpose (empty: none).
dying_rank() {
	case $1 in
	*KilledPeerFailsPendingRequestsNamingIt*) echo 1 ;;
	*PeerDyingMidRendezvous*) echo 0 ;;
	*) echo "" ;;
	esac
}

for test in "$@"; do
	port=$((BASE_PORT + n))
	n=$((n + 1))
	store_pid=
	if [ "$RANK" = 0 ]; then
		VERBS_TWO_NODE_STORE_PORT=$port "$BIN" --gtest_also_run_disabled_tests \
			--gtest_filter=VerbsTwoNode.DISABLED_HostStore >"$LOGDIR/store.$port.log" 2>&1 &
		store_pid=$!
	fi
	truncate -s 0 "$STEPS" && truncate -s 4096 "$STEPS"
	start=$(date +%s.%N)
	WEFT_HARNESS_CHILD=1 WEFT_RANK=$RANK WEFT_WORLD_SIZE=2 WEFT_LOCAL_RANK=0 WEFT_LOCAL_SIZE=1 \
		WEFT_STORE_ADDR=$HOST0:$port WEFT_JOB_ID=two-node-$n WEFT_HARNESS_STEP_FD=7 \
		WEFT_TEST_STRICT=1 "$BIN" --gtest_filter="$test" --gtest_brief=1 7<>"$STEPS" 2>&1 |
		tee "$LOGDIR/rank.log" | grep -v 'Running main() from'
	status=${PIPESTATUS[0]}
	if grep -q ' 0 tests from 0 test suites ran' "$LOGDIR/rank.log"; then
		status=2  # a rank process ends in _exit() and never prints this: no such test
		echo "two-node: rank $RANK: no test matches $test"
	fi
	secs=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
	[ -n "$store_pid" ] && kill "$store_pid" 2>/dev/null && wait "$store_pid" 2>/dev/null
	if [ "$status" = 0 ]; then
		echo "two-node: rank $RANK: PASS $test (${secs} s)"
	elif [ "$(dying_rank "$test")" = "$RANK" ] && [ "$status" = 137 ]; then
		echo "two-node: rank $RANK: PASS $test (this rank killed itself on purpose, ${secs} s)"
	else
		echo "two-node: rank $RANK: FAIL $test (exit status $status after ${secs} s; last step:" \
			"$(tr -c '[:print:]' ' ' <"$STEPS" | tr -s ' ' | cut -c1-200))"
		rc=1
	fi
done
# Diagnostics: rxe's non-zero error/retry counters and eth0's drops (why a retry ran out).
if [ "$rc" != 0 ] || [ "${VERBS_SHOW_COUNTERS:-0}" = 1 ]; then
	c=/sys/class/infiniband/${SOFTROCE_DEV:-rxe0}/ports/1/hw_counters
	echo "two-node: rank $RANK: rxe counters:" $(grep -H -v '^0$' "$c"/* 2>/dev/null |
		sed "s|$c/||" | tr '\n' ' ')
	echo "two-node: rank $RANK: $(ip -s link show eth0 | tr -s ' \n' ' ')"
fi
exit $rc
