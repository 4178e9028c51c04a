#!/usr/bin/python3
"""Runs weft-perf and Debian's ucx_perftest in the same run and prints weft/ucx ratios.

For each UCX_TLS (posix; sysv,cma; tcp), each test pair (tag latency, tag bandwidth, put
bandwidth) and each message size (8 B, 64 KiB, 1 MiB, 16 MiB by default) it runs both tools
with the same iterations, warm-up and window, both ranks pinned to different cores with
taskset, alternating the tools (weft, ucx, ucx, weft, ...) over --reps repetitions, and
reports the medians and the ratio weft/ucx:
  latency   (weft send_lat vs ucx tag_lat, one-way us: the median iteration, weft
            t_typical vs ucx 50.0_percentile_lat, or with --lat-stat avg the mean, weft
            t_avg vs ucx overall_lat; both tools time whole iterations, loop included)
                                                                            target <= 1.10
  bandwidth (weft send_bw / put_bw BW_average vs ucx tag_bw / ucp_put_bw overall_bw, GB/s
            with GB = 1e9 B)                                                target >= 0.95
Rows that miss the target are marked MISS.

Memory (--ucx-alloc): weft-perf sends from / receives into page-aligned anonymous memory that
it registers with the transport. ucx_perftest lets UCX allocate its buffers
(ucp_mem_map(ALLOCATE)), by default from the shared-memory MDs (UCX_ALLOC_PRIO=md:sysv,
md:posix,...), which UCX can then reach one-sidedly (rkey_ptr): single-copy rendezvous and a
memcpy "put" into the peer's segment, or THP pages over tcp. That is a property of the buffer,
not of the transport layer, and user memory cannot get it. --ucx-alloc mmap (the default)
runs ucx_perftest with UCX_ALLOC_PRIO=mmap, i.e. on the same kind of memory as weft-perf;
--ucx-alloc ucx keeps UCX's own allocator for ucx_perftest and runs weft-perf with
--memory transport (its buffers from Context::allocateMemory, i.e. the same UCX allocator).

Send buffers (--send-buffer): ucx_perftest's tag tests never write their send buffer, and a
private anonymous page that was never written is backed by the kernel's shared zero page, so
every copy out of it (CMA, TCP) reads the same cache-hot 4 KiB: over sysv,cma a 1 MiB tag_bw
measured 15-16 GB/s from untouched pages and 9-13 GB/s from written ones, for either tool.
  written    (default) both tools send real pages: weft-perf zero-fills its buffers, and
             ucx_perftest runs with LD_PRELOAD=build/lib/libweft_perftest_write_buffers.so,
             which writes every buffer ucp_mem_map(ALLOCATE) returns (the script checks that
             it announced itself)
  untouched  both send the zero page: weft-perf --send-buffer untouched, plain ucx_perftest
             (the figures ../shared/anchors report)

Configurations (--config, comma-separated):
  default  weft-perf as shipped (UCX peer error handling on) vs plain ucx_perftest
  noeh     weft-perf with WEFT_UCX_ERROR_HANDLING=0 vs plain ucx_perftest (like for like)
  eh       weft-perf as shipped vs ucx_perftest -e (endpoint error handling) with
           UCX_MM_ERROR_HANDLING=y and UCX_KEEPALIVE_INTERVAL=1s, as weft sets them
  same     both tools detect dead peers the way weft does on that transport: over
           shared memory weft watches the peer process itself and leaves UCX's peer
           error mode off (= default), over tcp it needs UCX's peer mode (= eh). UCX
           picks other protocols in peer mode (tcp: one AM lane, no rma_bw lanes, so a
           1 MiB message moves over one connection instead of two; ucx_info -e -u te
           shows it), which costs ucx_perftest -e the same as weft-perf there.

Usage: bench/scripts/ucx_compare.py [--build build] [--reps 3] [--quick] [--json out.json]
Needs a build with weft-perf, weft-run and the preload shim (cmake --build build --target
weft-perf weft-run weft_perftest_write_buffers) and ucx_perftest (Debian package ucx-utils).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

SIZES = [8, 65536, 1048576, 16777216]
TLS_LIST = ["posix", "sysv,cma", "tcp"]

# (iterations, warm-up) per size for latency and bandwidth runs (scaled by --scale).
LAT_ITERS = {8: (100000, 10000), 65536: (5000, 500), 1048576: (500, 50), 16777216: (30, 5)}
BW_ITERS = {8: (500000, 50000), 65536: (20000, 2000), 1048576: (2000, 200),
            16777216: (100, 10)}

# test key -> (weft-perf test, ucx_perftest test, kind, iteration table)
TESTS = {
    "lat": ("send_lat", "tag_lat", "lat", LAT_ITERS),
    "bw": ("send_bw", "tag_bw", "bw", BW_ITERS),
    "put_bw": ("put_bw", "ucp_put_bw", "bw", BW_ITERS),
}

# Transports over which weft relies on its own process watch instead of UCX's peer error
# mode (transport/ucx/ucx_internal.h, UcxState::ucxPeerErrors).
SHM_TLS = {"posix", "sysv", "cma", "xpmem", "knem", "sm", "shm", "self"}

CONFIGS = {
    "default": ({}, {}, []),
    "noeh": ({"WEFT_UCX_ERROR_HANDLING": "0"}, {}, []),
    "eh": ({}, {"UCX_MM_ERROR_HANDLING": "y", "UCX_KEEPALIVE_INTERVAL": "1s"}, ["-e"]),
}


SHIM = "libweft_perftest_write_buffers.so"
SHIM_MARK = "weft-perftest-write-buffers: wrote"


class CompareError(Exception):
    pass


def parse_size(text):
    text = text.strip().upper().replace("IB", "").rstrip("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text[:-1] if scale > 1 else text) * scale


def iters_for(table, size, scale):
    base = table.get(size)
    if base is None:  # a size outside the table: keep ~the same bytes as the nearest one
        near = min(table, key=lambda s: abs(s - size))
        n, w = table[near]
        factor = near / max(size, 1)
        base = (max(int(n * factor), 20), max(int(w * factor), 2))
    return max(int(base[0] * scale), 10), max(int(base[1] * scale), 1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """True when something listens on TCP `port` (read from /proc: a probe connection
    would be taken by ucx_perftest as its client)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                        return True
        except OSError:
            continue
    return False


def cpu_busy(seconds=0.3):
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return 100.0 * (1.0 - (i1 - i0) / max(t1 - t0, 1))


def wait_quiet(limit, threshold):
    """Waits up to `limit` seconds for the machine to be mostly idle (other users' builds
    distort timings); returns the busy percentage seen last."""
    deadline = time.time() + limit
    busy = cpu_busy()
    while busy > threshold and time.time() < deadline:
        busy = cpu_busy()
    return busy


def run_weft(args, test, size, n, w, env):
    b = args.bin
    # Each rank pins itself with taskset, like the two ucx_perftest processes.
    pin = ('if [ "$WEFT_RANK" = 0 ]; then c=%d; else c=%d; fi; exec taskset -c "$c" "$0" "$@"'
           % tuple(args.cpus))
    cmd = [os.path.join(b, "weft-run"), "-n", "2", "--no-prefix", "--timeout", str(args.timeout),
           "--", "/bin/sh", "-c", pin,
           os.path.join(b, "weft-perf"), "-t", test, "-s", str(size), "-n", str(n), "-w", str(w),
           "-W", str(args.window), "--send-buffer", args.send_buffer, "--json"]
    if args.ucx_alloc == "ucx":
        cmd += ["--memory", "transport"]  # both tools on UCX-allocated buffers
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout + 30)
    if p.returncode != 0:
        raise CompareError("weft-perf %s %d B failed (rc %d): %s" %
                           (test, size, p.returncode, (p.stderr or p.stdout).strip()[-600:]))
    start = p.stdout.find("{")
    doc = json.loads(p.stdout[start:])
    r = doc["results"][0]
    return {"lat": r["t_avg"], "p50": r["t_typical"], "bw": r["bw_average_gbps"],
            "transports": doc["transports"], "config": doc["config"]}


def run_ucx(args, test, size, n, w, env, flags):
    port = free_port()
    common = ["-t", test, "-s", str(size), "-n", str(n), "-w", str(w), "-p", str(port)]
    if test != "tag_lat":
        common += ["-O", str(args.window)]
    common += flags
    server = subprocess.Popen(["taskset", "-c", str(args.cpus[1]), "ucx_perftest"] + common,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.time() + 20
        while not listening(port):
            if server.poll() is not None or time.time() > deadline:
                raise CompareError("ucx_perftest server did not start: %s" %
                                   server.stderr.read().strip()[-400:])
            time.sleep(0.01)
        p = subprocess.run(["taskset", "-c", str(args.cpus[0]), "ucx_perftest", "127.0.0.1"] +
                           common + ["-f", "-v"], env=env, capture_output=True, text=True,
                           timeout=args.timeout)
    finally:
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    lines = [ln.replace(" ", "") for ln in p.stdout.splitlines() if ln.strip()[:1].isdigit()]
    if p.returncode != 0 or not lines:
        raise CompareError("ucx_perftest %s %d B failed (rc %d): %s" %
                           (test, size, p.returncode, (p.stderr or p.stdout).strip()[-600:]))
    if "LD_PRELOAD" in env and SHIM_MARK not in p.stderr:
        raise CompareError("ucx_perftest ran without writing its buffers: %s was preloaded but "
                           "did not announce itself (stderr: %s)" %
                           (env["LD_PRELOAD"], p.stderr.strip()[-300:]))
    # iterations, p50_lat, avg_lat, overall_lat, avg_bw, overall_bw, avg_mr, overall_mr
    f = lines[-1].split(",")
    return {"lat": float(f[3]), "p50": float(f[1]), "bw": float(f[5]) * 1048576 / 1e9}


def resolve_config(config, tls):
    """'same' is 'eh' on transports where weft keeps UCX's peer error mode, else 'default'."""
    if config != "same":
        return config
    return "eh" if any(t not in SHM_TLS for t in tls.split(",")) else "default"


def measure(args, config, tls, key, size, rep, records):
    weft_test, ucx_test, kind, table = TESTS[key]
    n, w = iters_for(table, size, args.scale)
    weft_env_extra, ucx_env_extra, ucx_flags = CONFIGS[resolve_config(config, tls)]
    base = dict(os.environ)
    base["UCX_TLS"] = tls
    for k in ("UCX_MM_ERROR_HANDLING", "UCX_KEEPALIVE_INTERVAL", "WEFT_UCX_ERROR_HANDLING"):
        base.pop(k, None)
    weft_env = dict(base, **weft_env_extra)
    ucx_env = dict(base, **ucx_env_extra)
    if args.ucx_alloc == "mmap":
        ucx_env["UCX_ALLOC_PRIO"] = "mmap"
    if args.send_buffer == "written":
        ucx_env["LD_PRELOAD"] = args.shim
    order = ["weft", "ucx"] if rep % 2 == 0 else ["ucx", "weft"]
    busy = wait_quiet(args.quiet_wait, args.quiet_pct) if args.quiet_wait > 0 else None
    for tool in order:
        if tool == "weft":
            r = run_weft(args, weft_test, size, n, w, weft_env)
        else:
            r = run_ucx(args, ucx_test, size, n, w, ucx_env, ucx_flags)
        rec = dict(r, tool=tool, config=config, tls=tls, test=key, kind=kind, size=size,
                   send_buffer=args.send_buffer,
                   iters=n, warmup=w, rep=rep, busy_before=busy)
        records.append(rec)
        if args.verbose:
            print("  %-7s %-8s %-6s %-4s %9d  %s" % (config, tls, key, tool, size,
                  ("%.3f us" % r["lat"]) if kind == "lat" else ("%.3f GB/s" % r["bw"])),
                  file=sys.stderr, flush=True)


def median(records, **match):
    vals = [r for r in records if all(r[k] == v for k, v in match.items())]
    return vals


def summarize(records, args):
    rows = []
    for config in args.config:
        for tls in args.tls:
            for key in args.tests:
                kind = TESTS[key][2]
                for size in args.sizes:
                    w = median(records, config=config, tls=tls, test=key, size=size, tool="weft")
                    u = median(records, config=config, tls=tls, test=key, size=size, tool="ucx")
                    if not w or not u:
                        continue
                    if kind == "lat":
                        metric = "p50" if args.lat_stat == "p50" else "lat"
                        other = "lat" if metric == "p50" else "p50"
                    else:
                        metric, other = "bw", None
                    wv = statistics.median(r[metric] for r in w)
                    uv = statistics.median(r[metric] for r in u)
                    ratio = wv / uv if uv > 0 else float("inf")
                    ok = ratio <= args.lat_target if kind == "lat" else ratio >= args.bw_target
                    other_ratio = None
                    if other is not None:
                        other_ratio = statistics.median(r[other] for r in w) / max(
                            statistics.median(r[other] for r in u), 1e-9)
                    rows.append(dict(config=config, tls=tls, test=key, kind=kind, size=size,
                                     weft=wv, ucx=uv, ratio=ratio, ok=ok, other_ratio=other_ratio,
                                     reps=min(len(w), len(u))))
    return rows


def fmt(v):
    """Four significant digits at least (8 B bandwidths are a few MB/s)."""
    return "%.3f" % v if v >= 1 else "%.4g" % v


def print_table(rows, args):
    print("weft-perf vs ucx_perftest: medians of %d repetitions, ratio = weft/ucx; "
          "ucx_perftest buffers: %s" % (args.reps, "UCX_ALLOC_PRIO=mmap (like weft-perf)"
                                        if args.ucx_alloc == "mmap" else "UCX's allocator (weft-perf too: --memory transport)"))
    print("send buffers: %s" % ("written by both tools (real pages; ucx_perftest through %s)"
                                % SHIM if args.send_buffer == "written" else
                                "never written by either tool (the kernel's zero page)"))
    stat = "median iteration" if args.lat_stat == "p50" else "mean"
    print("latency: one-way us (%s), target ratio <= %.2f; bandwidth: GB/s (1e9 B), target "
          "ratio >= %.2f" % (stat, args.lat_target, args.bw_target))
    hdr = "%-8s %-9s %-7s %9s %13s %13s %7s %9s  %s" % (
        "config", "UCX_TLS", "test", "bytes", "weft", "ucx", "ratio",
        "avg-ratio" if args.lat_stat == "p50" else "p50-ratio", "")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        unit = "us" if r["kind"] == "lat" else "GB/s"
        other = "%.3f" % r["other_ratio"] if r["other_ratio"] is not None else ""
        print("%-8s %-9s %-7s %9d %10s %-2s %10s %-2s %7.3f %9s  %s" % (
            r["config"], r["tls"], r["test"], r["size"], fmt(r["weft"]), unit, fmt(r["ucx"]), unit,
            r["ratio"], other, "" if r["ok"] else "MISS"))
    misses = sum(1 for r in rows if not r["ok"])
    print("%d of %d rows miss the target" % (misses, len(rows)))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--build", default="build", help="build directory (default: build)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per figure (default 3)")
    ap.add_argument("--tls", default=",".join(t.replace(",", "+") for t in TLS_LIST),
                    help="UCX_TLS values, comma-separated, '+' inside one (default "
                         "posix,sysv+cma,tcp)")
    ap.add_argument("--sizes", default="8,64K,1M,16M", help="message sizes (default 8,64K,1M,16M)")
    ap.add_argument("--tests", default="lat,bw,put_bw", help="lat,bw,put_bw (default all)")
    ap.add_argument("--config", default="default",
                    help="default,noeh,eh,same (default: default)")
    ap.add_argument("--ucx-alloc", choices=("mmap", "ucx"), default="mmap",
                    help="buffers: mmap (ucx_perftest on mmap'd memory like weft-perf's, "
                         "default) or ucx (both tools on UCX's shared-memory allocator: "
                         "weft-perf --memory transport)")
    ap.add_argument("--send-buffer", choices=("written", "untouched"), default="written",
                    help="written (default): both tools send real pages; untouched: both send "
                         "never-written pages (the zero page), as plain ucx_perftest does")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply iteration counts")
    ap.add_argument("--quick", action="store_true", help="--scale 0.2 --reps 2")
    ap.add_argument("--window", type=int, default=32, help="bandwidth window (-W / -O, 32)")
    ap.add_argument("--cpus", default="0,1", help="cores of rank 0 and rank 1 (default 0,1)")
    ap.add_argument("--quiet-wait", type=float, default=20.0,
                    help="seconds to wait for an idle machine before each pair (default 20, "
                         "0: never wait)")
    ap.add_argument("--quiet-pct", type=float, default=15.0,
                    help="machine-wide busy %% regarded as idle (default 15)")
    ap.add_argument("--lat-stat", choices=("p50", "avg"), default="p50",
                    help="latency statistic compared: the median iteration (default; robust on "
                         "a shared machine) or the mean")
    ap.add_argument("--lat-target", type=float, default=1.10)
    ap.add_argument("--bw-target", type=float, default=0.95)
    ap.add_argument("--timeout", type=int, default=120, help="seconds per tool run")
    ap.add_argument("--json", help="write every run and the summary to this file")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = ap.parse_args()
    if args.quick:
        args.scale, args.reps = min(args.scale, 0.2), min(args.reps, 2)
    try:
        args.sizes = [parse_size(s) for s in args.sizes.split(",")]
        args.cpus = [int(c) for c in args.cpus.split(",")]
    except ValueError as e:
        ap.error("bad --sizes or --cpus: %s" % e)
    if len(args.cpus) != 2:
        ap.error("--cpus takes two cores")
    args.tls = [t.replace("+", ",") for t in args.tls.split(",")]
    args.tests = args.tests.split(",")
    args.config = args.config.split(",")
    for t in args.tests:
        if t not in TESTS:
            ap.error("unknown test %r (tests: %s)" % (t, ", ".join(TESTS)))
    for c in args.config:
        if c not in CONFIGS and c != "same":
            ap.error("unknown config %r (configs: %s, same)" % (c, ", ".join(CONFIGS)))
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    args.bin = os.path.join(args.build, "bin")
    for tool in ("weft-run", "weft-perf"):
        if not os.access(os.path.join(args.bin, tool), os.X_OK):
            ap.error("%s/%s not found: build it first (cmake --build %s --target weft-perf "
                     "weft-run)" % (args.bin, tool, args.build))
    args.shim = os.path.abspath(os.path.join(args.build, "lib", SHIM))
    if args.send_buffer == "written" and not os.access(args.shim, os.R_OK):
        ap.error("%s not found: build it (cmake --build %s --target weft_perftest_write_buffers) "
                 "or pass --send-buffer untouched" % (args.shim, args.build))
    for tool in ("ucx_perftest", "taskset"):
        if shutil.which(tool) is None:
            ap.error("%s not found (Debian packages ucx-utils, util-linux)" % tool)
    return args


def main():
    args = parse_args()
    records = []
    t0 = time.time()
    try:
        for rep in range(args.reps):
            for config in args.config:
                for tls in args.tls:
                    for key in args.tests:
                        for size in args.sizes:
                            measure(args, config, tls, key, size, rep, records)
    except (CompareError, subprocess.TimeoutExpired) as e:
        print("ucx_compare: %s" % e, file=sys.stderr)
        return 1
    rows = summarize(records, args)
    print_table(rows, args)
    print("(%d runs in %.0f s)" % (len(records), time.time() - t0))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": records, "summary": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
