#!/bin/bash
# perf-compare.sh - weft-perf (verbs backend) against perftest (and UCX rc_verbs through
# ucx_perftest, when installed) on the same soft-RoCE device, in the same VM, same run.
#
#   scripts/softroce/perf-compare.sh [BUILD_DIR] [REPEATS]     (host: boots one VM; root)
#
# Pairs (weft-perf test vs reference, same sizes 8 B, 4 KiB, 64 KiB, 1 MiB):
#   send_lat vs ib_send_lat     put_lat vs ib_write_lat     (t_typical, target ratio <= 1.2)
#   put_bw vs ib_write_bw       get_bw vs ib_read_bw        send_bw vs ib_send_bw
#                                                          (BW average, target ratio >= 0.9)
#   ucx_perftest -x rc_verbs put_lat / put_bw               (UCT on the same device)
#   send_lat / send_bw with WEFT_IB_RNDV=write at rendezvous sizes (64 KiB, 1 MiB): the
#   RDMA WRITE rendezvous against the same perftest numbers (rows *_wr)
# Each pair runs REPEATS times (default 3), back to back; the table shows the median of each
# tool and the median of the per-repetition ratios.
# Like for like: the bandwidth tests keep as many operations in flight as perftest does
# (its default TX depth, 128: weft-perf -W 128; weft-perf's own default is 32, which on
# rxe reads 8 B at ~0.87x of perftest against ~0.92x with 128).
# The VM is emulated (TCG) and shares the host's CPUs: the absolute numbers mean little,
# the ratios are what to read. Never use this as a pass/fail test.
# Output: the table on stdout, and perf-compare.md / perf-compare.raw in the current dir.
# PERF_SIZES (e.g. "8 4096") and PERF_KINDS (e.g. "bw_get lat_put") narrow a run to some
# sizes and rows (kinds: lat_send lat_put bw_put bw_get bw_send; the *_wr rows and UCX follow
# lat_send / bw_send / bw_put).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ -z "${SOFTROCE_DEV:-}" ]; then  # on the host: run myself inside a VM
	BUILD=$(cd "${1:-$ROOT/build}" && pwd) || exit 2
	exec "$HERE/softroce-vm" -m 2048 -c 2 -t "${PERF_VM_TIMEOUT:-1500}" -- \
		env PERF_SIZES="${PERF_SIZES:-}" PERF_KINDS="${PERF_KINDS:-}" \
		"$HERE/perf-compare.sh" "$BUILD" "${2:-3}"
fi
BUILD=$1
REPEATS=${2:-3}
B=$BUILD/bin
DEV=$SOFTROCE_DEV
GID=$SOFTROCE_GID_INDEX
IP=$SOFTROCE_IP
SIZES=${PERF_SIZES:-"8 4096 65536 1048576"}
want() { [ -z "${PERF_KINDS:-}" ] || [[ " $PERF_KINDS " == *" $1 "* ]]; }
RAW=$PWD/perf-compare.raw
: >"$RAW"

iters() { # messages per size: under a second or two each under emulation, but long enough
	# that one scheduling hiccup does not decide a run (1000 8-byte messages took ~0.1 s and
	# their rates moved 0.6x-1.5x between back-to-back runs)
	case $1 in 8) echo 5000 ;; 4096) echo 2000 ;; 65536) echo 200 ;; *) echo 20 ;; esac
}

# perftest pair: server in the background, client retried until the server listens.
perftest() { # TOOL SIZE -> prints the client's data line
	local tool=$1 size=$2 n try
	n=$(iters "$size")
	timeout 120 "$tool" -d "$DEV" -x "$GID" -F --report_gbits -s "$size" -n "$n" >/tmp/pt-srv.log 2>&1 &
	local srv=$!
	for try in $(seq 1 100); do
		if timeout 120 "$tool" -d "$DEV" -x "$GID" -F --report_gbits -s "$size" -n "$n" "$IP" \
			>/tmp/pt-cli.log 2>&1; then
			break
		fi
		sleep 0.2
	done
	wait "$srv"
	awk -v s="$size" '$1 == s && NF >= 5 {print; exit}' /tmp/pt-cli.log
}

# weft-perf TEST SIZE [VAR=VALUE...] -> rank 0's data line (without the "[0] " prefix).
# In put_bw / get_bw rank 1 only waits, but weft-perf's waits spin; soft-RoCE does its
# packet work on the same two vCPUs, so rank 1 runs at nice 19 there (perftest's passive
# side sleeps in a socket read meanwhile). Both sides work in the other tests.
weftperf() {
	local test=$1 size=$2 nice= window=
	shift 2
	case $test in put_bw | get_bw) nice="nice -n 19" ;; esac
	case $test in *_bw) window="-W 128" ;; esac  # perftest's TX depth
	env "$@" timeout 300 "$B/weft-run" -n 2 -- bash -c \
		'if [ "$WEFT_RANK" = 1 ]; then exec '"$nice"' "$@"; else exec "$@"; fi' rank \
		"$B/weft-perf" --backend verbs -t "$test" -s "$size" -n "$(iters "$size")" $window 2>/dev/null |
		sed -n 's/^\[0\] *//p' | awk -v s="$size" '$1 == s {print; exit}'
}
# Gb/s from a weft-perf line: BW (GB/s, column 6) when it has enough digits, else from the
# message rate (Mpps, column 7: small messages).
gbits() { awk -v s="$1" '{if ($6 >= 0.01) printf "%.6f", $6 * 8; else printf "%.6f", $7 * s * 8 / 1000}'; }

ucxperf() { # TEST SIZE -> "typical_us bw_MBps" from the Final line
	local test=$1 size=$2 n try dt=short
	n=$(iters "$size")
	[ "$size" -gt 64 ] && dt=zcopy  # UCT short puts stop at the inline size
	UCX_IB_GID_INDEX=$GID timeout 120 ucx_perftest -d "$DEV:1" -x rc_verbs -t "$test" -D "$dt" \
		-s "$size" -n "$n" >/tmp/ux-srv.log 2>&1 &
	local srv=$!
	for try in $(seq 1 100); do
		if UCX_IB_GID_INDEX=$GID timeout 120 ucx_perftest -d "$DEV:1" -x rc_verbs -t "$test" \
			-D "$dt" -s "$size" -n "$n" "$IP" >/tmp/ux-cli.log 2>&1; then
			break
		fi
		sleep 0.2
	done
	wait "$srv"
	awk '/Final:/ {print $3, $6; exit}' /tmp/ux-cli.log
}

record() { echo "$rep $*" >>"$RAW"; }  # RAW lines: REPETITION KIND SIZE TOOL VALUE
value_now() { awk -v r="$rep" -v k="$1" -v s="$2" -v t="$3" '$1 == r && $2 == k && $3 == s && $4 == t && NF == 5 {v = $5} END {print v}' "$RAW"; }

# One repetition of every pair; RAW lines: KIND SIZE TOOL VALUE
for rep in $(seq 1 "$REPEATS"); do
	for size in $SIZES; do
		if want lat_send; then
			record lat_send "$size" weft "$(weftperf send_lat "$size" | awk '{print $4}')"
			record lat_send "$size" perftest "$(perftest ib_send_lat "$size" | awk '{print $5}')"
		fi
		if want lat_put; then
			record lat_put "$size" weft "$(weftperf put_lat "$size" | awk '{print $4}')"
			record lat_put "$size" perftest "$(perftest ib_write_lat "$size" | awk '{print $5}')"
		fi
		# bandwidths in Gb/s (weft-perf prints GB/s = 1e9 bytes)
		if want bw_put; then
			record bw_put "$size" weft "$(weftperf put_bw "$size" | gbits "$size")"
			record bw_put "$size" perftest "$(perftest ib_write_bw "$size" | awk '{print $4}')"
		fi
		if want bw_get; then
			record bw_get "$size" weft "$(weftperf get_bw "$size" | gbits "$size")"
			record bw_get "$size" perftest "$(perftest ib_read_bw "$size" | awk '{print $4}')"
		fi
		if want bw_send; then
			record bw_send "$size" weft "$(weftperf send_bw "$size" | gbits "$size")"
			record bw_send "$size" perftest "$(perftest ib_send_bw "$size" | awk '{print $4}')"
		fi
		if [ "$size" -gt 8192 ] && want bw_send && want lat_send; then  # the RDMA WRITE rendezvous
			record lat_send_wr "$size" weft "$(weftperf send_lat "$size" WEFT_IB_RNDV=write | awk '{print $4}')"
			record lat_send_wr "$size" perftest "$(value_now lat_send "$size" perftest)"
			record bw_send_wr "$size" weft "$(weftperf send_bw "$size" WEFT_IB_RNDV=write | gbits "$size")"
			record bw_send_wr "$size" perftest "$(value_now bw_send "$size" perftest)"
		fi
		if command -v ucx_perftest >/dev/null && want bw_put && want lat_put; then
			read -r lat _ <<<"$(ucxperf put_lat "$size")"
			record lat_put "$size" ucx "${lat:-}"
			read -r _ bw <<<"$(ucxperf put_bw "$size")"
			record bw_put "$size" ucx "$(awk -v b="${bw:-}" 'BEGIN{if (b != "") printf "%.4f", b * 1048576 * 8 / 1e9}')"
		fi
		echo "perf-compare: repetition $rep, $size bytes done" >&2
	done
done

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
value() { awk -v k="$1" -v s="$2" -v t="$3" '$2 == k && $3 == s && $4 == t && NF == 5 {print $5}' "$RAW" | median; }
# Median over repetitions of weft / TOOL measured back to back (host load drifts between
# repetitions; the pairs share it).
ratio() {
	awk -v k="$1" -v s="$2" -v t="$3" '$2 == k && $3 == s && NF == 5 && $5 > 0 {v[$1 " " $4] = $5; r[$1] = 1}
		END {for (x in r) if ((x " weft") in v && (x " " t) in v) printf "%.4f\n", v[x " weft"] / v[x " " t]}' "$RAW" |
		median | awk '{if ($1 == "-") print "-"; else printf "%.2f", $1}'
}

{
	echo "| test | bytes | weft (verbs) | perftest | weft/perftest | target | UCX rc_verbs | weft/ucx |"
	echo "|---|---:|---:|---:|---:|---|---:|---:|"
	for kind in lat_send lat_send_wr lat_put bw_put bw_get bw_send bw_send_wr; do
		for size in $SIZES; do
			grep -q "^[0-9]* $kind $size " "$RAW" || continue
			w=$(value "$kind" "$size" weft)
			p=$(value "$kind" "$size" perftest)
			u=$(value "$kind" "$size" ucx)
			case $kind in lat_*) target="<= 1.2 (us, t_typical)" ;; *) target=">= 0.9 (Gb/s)" ;; esac
			r=$(ratio "$kind" "$size" perftest)
			ru=$(ratio "$kind" "$size" ucx)
			echo "| $kind | $size | $w | $p | $r | $target | $u | $ru |"
		done
	done
} | tee "$PWD/perf-compare.md"
