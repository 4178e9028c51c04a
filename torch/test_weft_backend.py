#!/usr/bin/python3
"""End-to-end test of the weft torch.distributed backend (run by ctest; see torch/README.md).

  test_weft_backend.py --smoke            import weft_torch, check the backend is registered
  test_weft_backend.py                    worlds of 2 and 3 ranks on one host: collectives
                                          checked exactly, DDP(nn.Linear) vs a reference,
                                          a dead peer fails the survivor's next collective
  test_weft_backend.py --worker MODE RANK SIZE STOREFILE   (internal: one rank)

weft_torch must be importable (PYTHONPATH=<build>/python). Every wait is bounded: the parent
kills its ranks after a deadline and fails. Exit code 77: torch is not importable (skip).
"""
import datetime
import os
import subprocess
import sys
import tempfile
import time
import warnings

try:
    import torch
    import torch.distributed as dist
except ImportError as e:  # pragma: no cover
    print(f"SKIP: cannot import torch under {sys.executable}: {e}")
    sys.exit(77)

import weft_torch

TIMEOUT = datetime.timedelta(seconds=20)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16,
          torch.int32, torch.int64, torch.uint8, torch.int8]
N = 1000  # elements per tensor: more than one chunk of small types


def rank_values(rank, dtype):
    """Small integers (exact in every dtype, no overflow of int8 products up to 3 ranks)."""
    return ((torch.arange(N) + rank) % 3 + 1 + rank).to(dtype)


def expect_equal(what, got, want):
    if not torch.equal(got, want):
        bad = (got != want).nonzero()[:5].flatten().tolist()
        raise AssertionError(f"{what}: mismatch at {bad}: got {got[bad].tolist()}, "
                             f"want {want[bad].tolist()}")


def check_allreduce(rank, size):
    ops = [(dist.ReduceOp.SUM, lambda s: s.sum(0)), (dist.ReduceOp.MAX, lambda s: s.max(0)[0]),
           (dist.ReduceOp.MIN, lambda s: s.min(0)[0]),
           (dist.ReduceOp.PRODUCT, lambda s: s.prod(0))]
    for dtype in DTYPES:
        stack = torch.stack([rank_values(r, torch.int64) for r in range(size)])
        for op, ref in ops:
            t = rank_values(rank, dtype)
            dist.all_reduce(t, op=op)
            expect_equal(f"allreduce {op} {dtype}", t, ref(stack).to(dtype))
    for dtype in (torch.float32, torch.float64):
        t = rank_values(rank, dtype)
        dist.all_reduce(t, op=dist.ReduceOp.AVG)
        want = sum(rank_values(r, torch.float64) for r in range(size)) / size
        assert torch.allclose(t.double(), want, rtol=1e-6), f"allreduce AVG {dtype}"
    for dtype in (torch.int32, torch.uint8):
        t = rank_values(rank, dtype)
        dist.all_reduce(t, op=dist.ReduceOp.BXOR)
        want = rank_values(0, dtype)
        for r in range(1, size):
            want = want ^ rank_values(r, dtype)
        expect_equal(f"allreduce BXOR {dtype}", t, want)


def check_other_collectives(rank, size):
    for dtype in DTYPES:
        root = size - 1
        t = rank_values(rank, dtype) if rank == root else torch.zeros(N, dtype=dtype)
        dist.broadcast(t, src=root)
        expect_equal(f"broadcast {dtype}", t, rank_values(root, dtype))

        outs = [torch.zeros(N, dtype=dtype) for _ in range(size)]
        dist.all_gather(outs, rank_values(rank, dtype))
        for r in range(size):
            expect_equal(f"allgather {dtype} block {r}", outs[r], rank_values(r, dtype))

        # allgather_coalesced: tensors of different shapes, outputs[r][j] = rank r's input j.
        ins = [rank_values(rank, dtype)[:6].reshape(2, 3), rank_values(rank, dtype)[:1] + 1]
        outs = [[torch.zeros(2, 3, dtype=dtype), torch.zeros(1, dtype=dtype)]
                for _ in range(size)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch says it will deprecate the call
            dist.all_gather_coalesced(outs, ins)
        for r in range(size):
            want = rank_values(r, dtype)
            expect_equal(f"all_gather_coalesced {dtype} rank {r} tensor 0", outs[r][0],
                         want[:6].reshape(2, 3))
            expect_equal(f"all_gather_coalesced {dtype} rank {r} tensor 1", outs[r][1],
                         want[:1] + 1)

        inputs = [rank_values(rank, dtype) + j for j in range(size)]
        out = torch.zeros(N, dtype=dtype)
        dist.reduce_scatter(out, inputs)
        want = sum(rank_values(r, torch.int64) + rank for r in range(size)).to(dtype)
        expect_equal(f"reduce_scatter {dtype}", out, want)

        t = rank_values(rank, dtype)
        dist.reduce(t, dst=0)
        if rank == 0:
            expect_equal(f"reduce {dtype}", t, sum(rank_values(r, torch.int64)
                                                   for r in range(size)).to(dtype))
    # A 2-d tensor and a scalar keep their shapes.
    m = torch.full((3, 4), float(rank))
    dist.all_reduce(m)
    expect_equal("allreduce 2-d", m, torch.full((3, 4), float(sum(range(size)))))
    dist.barrier()
    if rank in (0, 1):
        t = torch.arange(10, dtype=torch.int64) if rank == 0 else torch.zeros(10, dtype=torch.int64)
        if rank == 0:
            dist.send(t, dst=1, tag=5)
        else:
            dist.recv(t, src=0, tag=5)
        expect_equal("send/recv", t, torch.arange(10, dtype=torch.int64))
    dist.barrier()


def check_p2p(rank, size):
    """isend / irecv overlap: every rank sends to its right neighbour before receiving from
    its left one (4 MiB: rendezvous, which a blocking send would deadlock on), by hand and
    through batch_isend_irecv; a dropped isend Work still delivers."""
    right, left = (rank + 1) % size, (rank - 1) % size
    n = 1 << 20
    out = torch.full((n,), float(rank))
    got = torch.zeros(n)
    s = dist.isend(out, dst=right, tag=7)
    r = dist.irecv(got, src=left, tag=7)
    r.wait()
    s.wait()
    assert s.is_completed() and r.is_completed()
    expect_equal("isend/irecv ring", got, torch.full((n,), float(left)))
    got2 = torch.zeros(n, dtype=torch.float64)
    ops = [dist.P2POp(dist.isend, torch.arange(n, dtype=torch.float64) + rank, right, tag=8),
           dist.P2POp(dist.irecv, got2, left, tag=8)]
    for w in dist.batch_isend_irecv(ops):
        w.wait()
    expect_equal("batch_isend_irecv", got2, torch.arange(n, dtype=torch.float64) + left)
    # A Work dropped while pending: the message is still delivered, its tensor kept alive.
    dist.isend(torch.full((n,), 3.0 + rank), dst=right, tag=9)
    got3 = torch.zeros(n)
    w = dist.irecv(got3, src=left, tag=9)
    while not w.is_completed():  # polling drives progress
        pass
    w.wait()
    expect_equal("dropped isend", got3, torch.full((n,), 3.0 + left))
    # A wait with a short timeout raises but leaves the receive pending: waiting again after
    # the sender sent completes it.
    if rank in (0, 1):
        t = torch.zeros(4)
        if rank == 1:
            dist.recv(torch.zeros(1), src=0, tag=11)
            dist.send(torch.arange(4, dtype=torch.float32), dst=0, tag=10)
        else:
            w = dist.irecv(t, src=1, tag=10)
            try:
                w.wait(timeout=datetime.timedelta(milliseconds=200))
                raise AssertionError("wait before the send did not time out")
            except RuntimeError as e:
                assert "did not complete within the wait" in str(e), str(e)
            dist.send(torch.zeros(1), dst=1, tag=11)  # now rank 1 may send
            w.wait()
            expect_equal("irecv waited again", t, torch.arange(4, dtype=torch.float32))
    dist.barrier()


def a2a_block(src, dst, rows, dtype):
    """What rank src sends rank dst in the alltoall tests: rows x 3, values name both ends."""
    return (torch.arange(rows * 3).view(rows, 3) % 7 + 10 * src + dst).to(dtype)


def a2a_rows(src, dst):
    """Uneven split sizes, zero for some pairs (0 -> 0, 0 -> 2 ...)."""
    return (src + 2 * dst) % 4


def check_rooted_and_alltoall(rank, size):
    root = 1  # a non-zero root
    for dtype in DTYPES:
        # gather: the root gets each rank's tensor in rank order (shapes kept).
        outs = None
        if rank == root:
            outs = [torch.zeros(10, N // 10, dtype=dtype) for _ in range(size)]
        dist.gather(rank_values(rank, dtype).view(10, -1), outs, dst=root)
        if rank == root:
            for r in range(size):
                expect_equal(f"gather {dtype} block {r}", outs[r],
                             rank_values(r, dtype).view(10, -1))

        # scatter: rank r gets the root's block r.
        blocks = [rank_values(root, dtype) + r for r in range(size)] if rank == root else None
        out = torch.zeros(N, dtype=dtype)
        dist.scatter(out, blocks, src=root)
        expect_equal(f"scatter {dtype}", out, rank_values(root, dtype) + rank)

        # all_to_all_single, equal splits: block j of my input goes to rank j.
        k = 4
        inp = torch.cat([a2a_block(rank, j, k, dtype) for j in range(size)])
        out = torch.zeros(size * k, 3, dtype=dtype)
        dist.all_to_all_single(out, inp)
        want = torch.cat([a2a_block(i, rank, k, dtype) for i in range(size)])
        expect_equal(f"all_to_all_single equal {dtype}", out, want)

        # all_to_all_single, uneven splits (rows of dim 0, some zero).
        in_splits = [a2a_rows(rank, j) for j in range(size)]
        out_splits = [a2a_rows(i, rank) for i in range(size)]
        inp = torch.cat([a2a_block(rank, j, a2a_rows(rank, j), dtype) for j in range(size)])
        out = torch.zeros(sum(out_splits), 3, dtype=dtype)
        dist.all_to_all_single(out, inp, output_split_sizes=out_splits,
                               input_split_sizes=in_splits)
        want = torch.cat([a2a_block(i, rank, a2a_rows(i, rank), dtype) for i in range(size)])
        expect_equal(f"all_to_all_single uneven {dtype}", out, want)

        # all_to_all with lists of uneven tensors.
        ins = [a2a_block(rank, j, a2a_rows(rank, j), dtype) for j in range(size)]
        outs = [torch.zeros(a2a_rows(i, rank), 3, dtype=dtype) for i in range(size)]
        dist.all_to_all(outs, ins)
        for i in range(size):
            expect_equal(f"all_to_all {dtype} from {i}", outs[i],
                         a2a_block(i, rank, a2a_rows(i, rank), dtype))
    # In place (output is input): the input is copied first.
    t = torch.cat([a2a_block(rank, j, 2, torch.float32) for j in range(size)])
    dist.all_to_all_single(t, t)
    expect_equal("all_to_all_single in place", t,
                 torch.cat([a2a_block(i, rank, 2, torch.float32) for i in range(size)]))


def expect_error(what, fn, *words):
    try:
        fn()
    except RuntimeError as e:
        msg = str(e)
        assert all(w in msg for w in words), f"{what}: {words} not in: {msg}"
    else:
        raise AssertionError(f"{what} did not raise")


def check_errors():
    """Argument errors raise on every rank before any message, naming op, dtype and device."""
    cases = [(torch.zeros(4, 4).t(), "contiguous"), (torch.zeros(4, dtype=torch.bool), "Bool"),
             (torch.zeros(4, dtype=torch.int16), "Short")]
    for tensor, word in cases:
        try:
            dist.all_reduce(tensor)
        except RuntimeError as e:
            msg = str(e)
            assert "weft allreduce" in msg and word in msg and "cpu" in msg, msg
        else:
            raise AssertionError(f"allreduce of {tensor.dtype} did not raise")
    size = dist.get_world_size()
    x = torch.zeros(2 * size, 3)
    expect_error("split sizes not summing to dim 0",
                 lambda: dist.all_to_all_single(x, x, input_split_sizes=[1] * size),
                 "weft alltoall_base", "input_split_sizes", f"sum to {size}",
                 f"dim 0 is {2 * size}")
    expect_error("split sizes with a wrong length",
                 lambda: dist.all_to_all_single(x, x, output_split_sizes=[2 * size]),
                 "weft alltoall_base", "output_split_sizes has 1 entries", f"({size})")
    expect_error("all_to_all with too few tensors",
                 lambda: dist.all_to_all([torch.zeros(1)], [torch.zeros(1)]),
                 "weft alltoall", f"expects {size} input")
    with warnings.catch_warnings():  # torch: "all_gather_coalesced will be deprecated"
        warnings.simplefilter("ignore", UserWarning)
        expect_error("all_gather_coalesced with one output list",
                     lambda: dist.all_gather_coalesced([[torch.zeros(1)] * size],
                                                       [torch.zeros(1)]),
                     "weft allgather_coalesced", f"expects {size} output lists", "got 1")
    expect_error("recv from any source", lambda: dist.recv(torch.zeros(1)),
                 "weft", "does not support recvAnysource")


def train(model, inputs, targets, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    grads = []
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        opt.step()
    return grads


def check_ddp(rank, size):
    """DDP over weft equals single-process training on the whole batch."""
    torch.manual_seed(0)
    reference = torch.nn.Linear(8, 3).double()
    model = torch.nn.Linear(8, 3).double()
    model.load_state_dict(reference.state_dict())
    if rank != 0:  # DDP must broadcast rank 0's parameters at construction
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    gen = torch.Generator().manual_seed(1)
    batch = 4
    x = torch.randn(size * batch, 8, generator=gen, dtype=torch.float64)
    y = torch.randn(size * batch, 3, generator=gen, dtype=torch.float64)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    got = train(ddp, x[rank * batch:(rank + 1) * batch], y[rank * batch:(rank + 1) * batch])
    want = train(reference, x, y)
    for step, (g, w) in enumerate(zip(got, want)):
        for a, b in zip(g, w):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), f"DDP grad step {step}"
            # Identical across ranks, bit for bit.
            outs = [torch.zeros_like(a) for _ in range(size)]
            dist.all_gather(outs, a)
            for o in outs:
                expect_equal(f"DDP grad step {step} across ranks", o, a)
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), "DDP parameters"


def worker(mode, rank, size, store_file):
    dist.init_process_group("weft", init_method=f"file://{store_file}", rank=rank,
                            world_size=size, timeout=TIMEOUT)
    assert dist.get_backend() == "weft", dist.get_backend()
    if mode == "dead-peer":
        if os.environ.get("WEFT_TEST_P2P") == "1":  # connect the pair first
            t = torch.zeros(1)
            (dist.send(t, dst=0) if rank == 1 else dist.recv(t, src=1))
        dist.barrier()
        if rank == 1:
            os._exit(0)  # dies without a word
        start = time.monotonic()
        if os.environ.get("WEFT_TEST_P2P") == "1":
            w = dist.irecv(torch.zeros(N), src=1)  # posts; the failure comes at wait()
            try:
                w.wait()
            except RuntimeError as e:
                print(f"rank 0: irecv failed after {time.monotonic() - start:.1f} s as expected: "
                      f"{str(e).splitlines()[0][:300]}")
                assert not w.is_success(), "a failed irecv reports success"
                os._exit(0)
            raise AssertionError("irecv from a dead peer did not fail")
        try:
            dist.all_reduce(torch.ones(N))
        except RuntimeError as e:
            print(f"rank 0: allreduce failed after {time.monotonic() - start:.1f} s as expected: "
                  f"{str(e).splitlines()[0][:300]}")
            os._exit(0)  # the group is broken: skip the orderly teardown
        raise AssertionError("allreduce with a dead peer did not fail")
    check_errors()
    check_allreduce(rank, size)
    check_other_collectives(rank, size)
    check_rooted_and_alltoall(rank, size)
    check_p2p(rank, size)
    check_ddp(rank, size)
    dist.destroy_process_group()
    print(f"rank {rank}/{size}: ok")


def run_world(mode, size, deadline_s, env=None):
    """Starts `size` ranks; fails (killing them all) when one fails or the deadline passes."""
    with tempfile.TemporaryDirectory(prefix="weft-torch-") as tmp:
        store = os.path.join(tmp, "store")
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", mode, str(r), str(size),
                                   store], env=dict(os.environ, **(env or {})))
                 for r in range(size)]
        deadline = time.monotonic() + deadline_s
        failed = None
        while failed is None and any(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                failed = f"deadline of {deadline_s} s passed"
            for r, p in enumerate(procs):
                if p.poll() not in (None, 0):
                    failed = f"rank {r} exited with {p.returncode}"
            time.sleep(0.05)
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if failed is None and any(p.returncode != 0 for p in procs):
            failed = f"exit codes {[p.returncode for p in procs]}"
        if failed:
            raise SystemExit(f"FAIL: world of {size} ({mode}): {failed}")
        print(f"world of {size} ({mode}): ok")


def smoke():
    assert weft_torch.BACKEND_NAME == "weft"
    assert "WEFT" in dist.Backend._plugins, dist.Backend._plugins
    assert dist.is_available()
    print(f"weft_torch imported from {weft_torch.__file__} (torch {torch.__version__}): ok")


def main():
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif sys.argv[1:2] == ["--smoke"]:
        smoke()
    else:
        smoke()
        run_world("collectives", 2, 60)
        run_world("collectives", 3, 60)
        # Both paths: shared memory (the default on one node) and the network schedules.
        run_world("dead-peer", 2, 45)
        run_world("dead-peer", 2, 45, {"WEFT_ALGO_ALLREDUCE": "ring"})
        run_world("dead-peer", 2, 45, {"WEFT_TEST_P2P": "1"})


if __name__ == "__main__":
    main()
