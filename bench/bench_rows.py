"""bench_rows: the DSL row kernels (examples/softmax.tj, examples/layernorm.tj)
on the GPU against the device-to-device copy bandwidth and torch, all
measured in the same run on the same tensors.

GB/s counts one read and one write of the tensor (2 * numel * bytes), as
xFormers did. Timing: triton.testing.do_bench (CUDA events, L2 flushed
between runs, median). Each kernel is compared with copying the same tensor
(y.copy_(x), the same bytes moved under the same L2 flushes) and, for
reference, with the peak copy rate of a 1 GiB buffer. Prints a table and
writes JSON (--json PATH).

  usage: python3 bench/bench_rows.py [--json out.json]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tj  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def gbps(t_ms, numel, elem):
    return 2 * numel * elem / (t_ms * 1e-3) / 1e9


def bench(fn):
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    lib = tj.load()
    ctx = tj.context(lib)
    results = []
    torch.manual_seed(0)
    stream = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731

    # The copy ceiling, measured now on a large tensor.
    big = torch.empty(1024 * 1024 * 1024 // 2, dtype=torch.float16, device="cuda")
    big2 = torch.empty_like(big)
    t = bench(lambda: big2.copy_(big))
    copy_bw = gbps(t, big.numel(), 2)
    del big, big2
    print(f"device-to-device copy: {copy_bw:.0f} GB/s")

    for (M, N, dt) in [(4096, 256, torch.float16), (4096, 1024, torch.float16), (4096, 4096, torch.float16),
                       (8192, 4096, torch.float16), (4096, 16384, torch.float16), (4096, 4096, torch.bfloat16)]:
        x = torch.randn(M, N, dtype=dt, device="cuda")
        y = torch.empty_like(x)
        T = {torch.float16: "f16", torch.bfloat16: "bf16"}[dt]
        block = max(16, 1 << (N - 1).bit_length())
        best = None
        for nw in (1, 2, 4, 8, 16):
            if block // (32 * nw) < 1:
                continue
            k = tj.Kernel(lib, ctx, os.path.join(ROOT, "examples/softmax.tj"), [f"T={T}", f"BLOCK={block}"],
                          num_warps=nw)
            k((M,), y, x, N, N, stream=stream())
            torch.cuda.synchronize()
            err = (y.float() - torch.softmax(x.float(), -1)).abs().max().item()
            tt = bench(lambda: k((M,), y, x, N, N, stream=stream()))
            if best is None or tt < best[0]:
                best = (tt, nw, err)
        tt, nw, err = best
        tref = bench(lambda: torch.softmax(x, -1))
        tcopy = bench(lambda: y.copy_(x))
        r = dict(kernel="softmax", M=M, N=N, dtype=T, num_warps=nw, tilejit_gbps=gbps(tt, x.numel(), 2),
                 torch_gbps=gbps(tref, x.numel(), 2), copy_gbps=gbps(tcopy, x.numel(), 2), max_err=err)
        results.append(r)

    for (M, N, dt) in [(4096, 1024, torch.float16), (4096, 4096, torch.float16), (4096, 8192, torch.float16),
                       (4096, 8192, torch.bfloat16)]:
        x = torch.randn(M, N, dtype=dt, device="cuda")
        w = torch.randn(N, dtype=dt, device="cuda")
        b = torch.randn(N, dtype=dt, device="cuda")
        y = torch.empty_like(x)
        mean = torch.empty(M, dtype=torch.float32, device="cuda")
        rstd = torch.empty_like(mean)
        T = {torch.float16: "f16", torch.bfloat16: "bf16"}[dt]
        block = 1 << (N - 1).bit_length()
        best = None
        for nw in (1, 2, 4, 8, 16):
            if block // (32 * nw) < 1:
                continue
            k = tj.Kernel(lib, ctx, os.path.join(ROOT, "examples/layernorm.tj"), [f"T={T}", f"BLOCK={block}"],
                          num_warps=nw)
            run = lambda: k((M,), y, x, w, b, mean, rstd, N, N, 1e-5, stream=stream())  # noqa: E731
            run()
            torch.cuda.synchronize()
            err = (y.float() - F.layer_norm(x.float(), (N,), w.float(), b.float(), 1e-5)).abs().max().item()
            tt = bench(run)
            if best is None or tt < best[0]:
                best = (tt, nw, err)
        tt, nw, err = best
        tref = bench(lambda: F.layer_norm(x, (N,), w, b, 1e-5))
        tcopy = bench(lambda: y.copy_(x))
        results.append(dict(kernel="layernorm", M=M, N=N, dtype=T, num_warps=nw,
                            tilejit_gbps=gbps(tt, x.numel(), 2), torch_gbps=gbps(tref, x.numel(), 2),
                            copy_gbps=gbps(tcopy, x.numel(), 2), max_err=err))

    print(f"{'kernel':10} {'M':>5} {'N':>6} {'dtype':5} {'nw':>3} {'tilejit GB/s':>12} {'copy GB/s':>9} "
          f"{'of copy':>8} {'of peak':>8} {'torch GB/s':>10} {'vs torch':>8} {'max err':>9}")
    for r in results:
        print(f"{r['kernel']:10} {r['M']:5} {r['N']:6} {r['dtype']:5} {r['num_warps']:3} {r['tilejit_gbps']:12.0f} "
              f"{r['copy_gbps']:9.0f} {r['tilejit_gbps'] / r['copy_gbps']:8.1%} {r['tilejit_gbps'] / copy_bw:8.1%} "
              f"{r['torch_gbps']:10.0f} {r['tilejit_gbps'] / r['torch_gbps']:7.2f}x {r['max_err']:9.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(peak_copy_gbps=copy_bw, results=results), f, indent=1)


if __name__ == "__main__":
    main()
