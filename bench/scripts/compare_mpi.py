#!/usr/bin/env python3
"""compare_mpi.py - weft-bench side by side with Open MPI 4.1, MPICH 4.0 and Gloo, one run.

usage: bench/scripts/compare_mpi.py [--reps N] [--build-dir DIR] [--anchors DIR] [--out DIR]
       bench/scripts/compare_mpi.py --table RAW.csv [RAW2.csv ...]   (re-print from stored data)

Runs the peer harness ../shared/anchors/run-all.sh (relative to the repository root; it builds
the MPI and Gloo benchmarks into /tmp and measures them, each launch in a private network
namespace with its noise control) with SECTIONS="mpi coll gloo extra" and this script as its
EXTRA_BENCH hook, so weft-bench runs in the same repetitions as the peers. Then prints, for the
issue's target rows, the median over repetitions (launches) of weft-bench and of the best peer,
and their ratio (> 1: weft is faster). Every figure is a median over --reps launches.

The hook (--emit-records, run by run-all.sh) launches weft-bench three times:
  2 ranks: allreduce 8 B .. 64 MiB and barrier;  4 ranks: the same;
  2 ranks: broadcast, allgather, reduce_scatter, alltoall at 1 KiB and 16 MiB,
and turns its CSV into run-all.sh's record lines (MPI,weft,<n>,<op>,<bytes>,...).

Environment passed to weft-bench: WEFT_BENCH_ENV="UCX_TLS=posix ..." adds variables (default
UCX_TLS=posix, as the tests).
"""
import argparse
import collections
import csv
import io
import os
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Allreduce / barrier sizes: the issue's target rows (--all-sizes: the harness' full sweep).
SIZES = "8,1048576,16777216,67108864"
ALL_SIZES = "8,1024,65536,1048576,16777216,67108864"
COLL_SIZES = "1024,16777216"
# weft-bench op name -> the harness' op name
OP_NAMES = {"broadcast": "bcast", "reduce_scatter": "reduce_scatter_block"}
# (op, ranks, bytes, target ratio, what the issue asks)
TARGETS = [
    ("allreduce", 2, 8, 1.0, "8 B latency <= Open MPI"),
    ("allreduce", 2, 1048576, 1.5, "busbw >= 1.5x best peer"),
    ("allreduce", 2, 67108864, 2.5, "busbw >= 2.5x best peer"),
    ("allreduce", 4, 8, 1.0, "8 B <= Open MPI"),
    ("allreduce", 4, 16777216, 2.0, "busbw >= 2x best peer"),
    ("bcast", 2, 1024, 1.0, ">= 1.0x"),
    ("bcast", 2, 16777216, 1.0, ">= 1.0x"),
    ("allgather", 2, 1024, 1.0, ">= 1.0x"),
    ("allgather", 2, 16777216, 1.0, ">= 1.0x"),
    ("reduce_scatter_block", 2, 1024, 1.5, ">= 1.5x"),
    ("reduce_scatter_block", 2, 16777216, 1.5, ">= 1.5x"),
    ("alltoall", 2, 1024, 1.0, ">= 1.0x"),
    ("alltoall", 2, 16777216, 1.0, ">= 1.0x"),
]


def fail(msg):
    sys.stderr.write(f"compare_mpi.py: {msg}\n")
    sys.exit(2)


def weft_launches(bindir):
    bench = os.path.join(bindir, "weft-bench")
    run = os.path.join(bindir, "weft-run")
    for exe in (bench, run):
        if not os.access(exe, os.X_OK):
            fail(f"{exe} not found: build it first (cmake --build build --target weft-bench weft-run)")
    ncpu = os.cpu_count() or 1
    sizes_ar = os.environ.get("WEFT_COMPARE_SIZES", SIZES)
    for n, ops, sizes in ((2, "allreduce,barrier", sizes_ar), (4, "allreduce,barrier", sizes_ar),
                          (2, "broadcast,allgather,reduce_scatter,alltoall", COLL_SIZES)):
        cmd = [run, "-n", str(n), "--no-prefix", "--timeout", "900", "--", bench, ops,
               "-s", sizes, "--csv"]
        if n <= ncpu:
            cmd.append("--bind")
        yield n, cmd


def to_records(n, text):
    """weft-bench --csv output -> run-all.sh MPI record lines."""
    # Only the CSV: libraries may print warnings on the ranks' stdout (UCX does).
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("label,ranks,")), len(lines))
    ncol = lines[start].count(",") if start < len(lines) else 0
    rows = [l for l in lines[start:] if l.count(",") == ncol and not l.startswith("#")]
    for r in csv.DictReader(io.StringIO("\n".join(rows))):
        op = OP_NAMES.get(r["op"], r["op"])
        valid = 1 if r["wrong"] in ("0", "N/A") else 0
        yield ",".join(["MPI", "weft", str(n), op, r["bytes"], r["iters"], r["time_us"],
                        r["min_us"], r["max_us"], r["algbw_GBps"], r["busbw_GBps"], str(valid)])


def emit_records(args):
    """The EXTRA_BENCH hook: run weft-bench, print run-all.sh record lines."""
    env = dict(os.environ)
    for kv in shlex.split(os.environ.get("WEFT_BENCH_ENV", "UCX_TLS=posix")):
        k, _, v = kv.partition("=")
        env[k] = v
    status = 0
    for n, cmd in weft_launches(args.bindir):
        for attempt in range(2):  # one retry when a launch fails or prints no rows
            # stdin from /dev/null: a launcher started with fd 0 closed loses the ranks' output
            p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               text=True)
            records = list(to_records(n, p.stdout))
            if p.returncode == 0 and records:
                break
            sys.stderr.write(f"weft-bench: exit {p.returncode}, {len(records)} rows "
                             f"(attempt {attempt + 1}): {' '.join(cmd)}\n")
        if p.returncode != 0 or not records:
            status = 1
        for rec in records:
            print(rec)
        sys.stdout.flush()
        save_rss(n, cmd, p.stdout)
    return status


def save_rss(n, cmd, text):
    """Keeps weft-bench's '# peak RSS per rank' line next to the harness' output."""
    out_dir = os.environ.get("OUT_DIR")
    line = next((l for l in text.splitlines() if l.startswith("# peak RSS")), None)
    if out_dir and line:
        with open(os.path.join(out_dir, "weft_rss.txt"), "a") as fh:
            fh.write(f"{n} ranks, {cmd[cmd.index('--') + 2]}: {line[2:]}\n")


def print_rss(out_dir):
    """The largest peak RSS per rank of each weft-bench launch over the repetitions."""
    path = os.path.join(out_dir, "weft_rss.txt")
    if not os.path.exists(path):
        return
    worst = collections.OrderedDict()
    with open(path) as fh:
        for line in fh:
            what, _, ranks = line.partition(": peak RSS per rank (MiB): ")
            mib = [float(x) for x in ranks.split()[1::2]]
            if mib:
                worst[what] = max(worst.get(what, 0.0), max(mib))
    for what, mib in worst.items():
        print(f"# weft-bench peak RSS per rank, largest over the launches: {mib:.1f} MiB ({what})")


def load(paths):
    """(label, n, op, bytes) -> list of (time_us, busbw) over repetitions."""
    rows = collections.defaultdict(list)
    for path in paths:
        with open(path) as fh:
            for line in fh:
                f = line.strip().split(",")
                if len(f) < 16 or f[4] not in ("MPI", "GLOO"):
                    continue
                r = f[4:]
                try:
                    t, bus = float(r[6]), float(r[10])
                except ValueError:
                    continue
                if t != t or int(r[11]) == 0:  # nan, or results the harness found wrong
                    continue
                rows[(r[1], int(r[2]), r[3], int(r[4]))].append((t, bus))
    return rows


def fmt_size(b):
    for unit, f in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= f and b % f == 0:
            return f"{b // f} {unit}"
    return f"{b} B"


def table(paths):
    rows = load(paths)
    med = {k: (statistics.median(t for t, _ in v), statistics.median(b for _, b in v), len(v))
           for k, v in rows.items()}
    hdr = ("op", "n", "size", "weft us", "weft GB/s", "best peer", "peer us", "peer GB/s",
           "ratio", "target", "met")
    out = [hdr]
    for op, n, size, target, _ in TARGETS:
        w = med.get(("weft", n, op, size))
        peers = [(v[0], lbl) for (lbl, pn, pop, psz), v in med.items()
                 if pn == n and pop == op and psz == size and lbl != "weft"]
        best = min(peers) if peers else None
        pm = med[(best[1], n, op, size)] if best else None
        ratio = pm[0] / w[0] if (w and pm and w[0] > 0) else None
        out.append((op, str(n), fmt_size(size),
                     f"{w[0]:.2f}" if w else "-", f"{w[1]:.3f}" if w else "-",
                     best[1] if best else "-", f"{pm[0]:.2f}" if pm else "-",
                     f"{pm[1]:.3f}" if pm else "-", f"{ratio:.2f}x" if ratio else "-",
                     f"{target:.1f}x", ("yes" if ratio >= target else "NO") if ratio else "-"))
    widths = [max(len(r[i]) for r in out) for i in range(len(hdr))]
    reps = sorted({v[2] for v in med.values()})
    print(f"# ratio = best peer time / weft time (= weft busbw / peer busbw); medians over "
          f"{'/'.join(map(str, reps))} launches")
    for r in out:
        print("  ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="launches per figure (default 3)")
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--anchors", default=os.path.join(REPO, "..", "shared", "anchors"))
    ap.add_argument("--out", default=None, help="output directory of the harness")
    ap.add_argument("--target", default="0.1", help="seconds per timed batch of the peers")
    ap.add_argument("--table", nargs="+", metavar="RAW", help="only print the table")
    ap.add_argument("--all-sizes", action="store_true",
                    help=f"allreduce / barrier at {ALL_SIZES} (default: the target rows' {SIZES})")
    ap.add_argument("--emit-records", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bindir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.emit_records:
        return emit_records(args)
    if args.table:
        table(args.table)
        return 0
    if args.all_sizes:
        os.environ["WEFT_COMPARE_SIZES"] = ALL_SIZES
    harness = os.path.join(os.path.abspath(args.anchors), "run-all.sh")
    if not os.access(harness, os.X_OK):
        fail(f"peer harness {harness} not found (expected ../shared/anchors next to the "
             "repository; pass --anchors DIR)")
    bindir = os.path.join(os.path.abspath(args.build_dir), "bin")
    list(weft_launches(bindir))  # fails early when weft-bench is not built
    out = os.path.abspath(args.out or f"/tmp/weft-compare-{os.getpid()}")
    env = dict(os.environ, SECTIONS="mpi coll gloo extra", REPS=str(args.reps), OUT_DIR=out,
               SIZES=os.environ.get("WEFT_COMPARE_SIZES", SIZES),
               TARGET=args.target, QUIET_MAXWAIT=os.environ.get("QUIET_MAXWAIT", "10"),
               QUIET_BUDGET=os.environ.get("QUIET_BUDGET", "300"),
               EXTRA_BENCH=" ".join(shlex.quote(x) for x in
                                    [sys.executable, os.path.abspath(__file__), "--emit-records",
                                     "--bindir", bindir]))
    print(f"# running {harness} (REPS={args.reps}) -> {out}", flush=True)
    rc = subprocess.run([harness], env=env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL).returncode
    raw = os.path.join(out, "raw.csv")
    if not os.path.exists(raw):
        fail(f"the harness wrote no {raw} (exit {rc}); see {out}/stderr.log")
    table([raw])
    print_rss(out)
    print(f"# raw records: {raw}; the harness' full table: {out}/table.txt")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
