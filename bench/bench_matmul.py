"""bench_matmul: examples/matmul.tj on tensor cores against torch.matmul, in
the same run on the same tensors, at M = N = K = 4096 (and any --shape).

TFLOP/s = 2 * M * N * K / time. Timing: triton.testing.do_bench (CUDA
events, L2 flushed between runs, median). Each config is checked against
torch (f32 reference of the same f16/bf16 inputs) before it is timed; a
config that fails to compile or to match is reported and skipped.

Note: the example stores C in f32 (torch.matmul writes f16/bf16), 32 MB more
to write at 4096^2, a few percent of the kernel's time.

  usage: python3 bench/bench_matmul.py [--json out.json] [--shape M N K ...]
"""
import argparse
import json
import os
import sys

import torch
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tj  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps); num_stages is the default (3).
CONFIGS = [
    (128, 128, 32, 8),
    (128, 128, 64, 8),
    (128, 128, 32, 4),
    (128, 64, 32, 4),
    (64, 128, 32, 4),
    (128, 64, 64, 4),
    (64, 64, 32, 4),
    (64, 64, 64, 4),
]


def tflops(t_ms, M, N, K):
    return 2.0 * M * N * K / (t_ms * 1e-3) / 1e12


def bench(fn):
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--shape", type=int, nargs=3, action="append", metavar=("M", "N", "K"))
    args = ap.parse_args()
    shapes = [tuple(s) for s in args.shape] if args.shape else [(4096, 4096, 4096)]
    lib = tj.load()
    ctx = tj.context(lib)
    torch.manual_seed(0)
    stream = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731
    path = os.path.join(ROOT, "examples/matmul.tj")
    results = []
    for (M, N, K) in shapes:
        for dt in (torch.float16, torch.bfloat16):
            T = {torch.float16: "f16", torch.bfloat16: "bf16"}[dt]
            a = torch.randn(M, K, dtype=dt, device="cuda")
            b = torch.randn(K, N, dtype=dt, device="cuda")
            c = torch.empty(M, N, dtype=torch.float32, device="cuda")
            ref = a.float() @ b.float()
            scale = ref.abs().max().item()
            t_torch = bench(lambda: torch.matmul(a, b))
            for (bm, bn, bk, nw) in CONFIGS:
                row = dict(M=M, N=N, K=K, dtype=T, block_m=bm, block_n=bn, block_k=bk, num_warps=nw,
                           torch_tflops=tflops(t_torch, M, N, K))
                try:
                    k = tj.Kernel(lib, ctx, path, [f"T={T}", f"BLOCK_M={bm}", f"BLOCK_N={bn}", f"BLOCK_K={bk}"],
                                  num_warps=nw)
                except RuntimeError as e:
                    row.update(error=str(e).splitlines()[0])
                    results.append(row)
                    continue
                grid = ((M + bm - 1) // bm, (N + bn - 1) // bn)
                run = lambda: k(grid, c, a, b, M, N, K, K, N, N, stream=stream())  # noqa: E731
                c.fill_(float("nan"))
                run()
                torch.cuda.synchronize()
                err = (c - ref).abs().max().item() / scale
                row.update(max_rel_err=err)
                if not err <= 1e-3:  # also catches NaN: an element never written
                    row.update(error=f"mismatch vs torch: max err {err:.3g} of max |C|")
                    results.append(row)
                    continue
                t = bench(run)
                row.update(tilejit_tflops=tflops(t, M, N, K), ms=t)
                results.append(row)

    print(f"{'M':>5} {'N':>5} {'K':>5} {'dtype':5} {'BM':>4} {'BN':>4} {'BK':>3} {'nw':>2} "
          f"{'tilejit TF/s':>12} {'torch TF/s':>10} {'ratio':>6} {'max err':>9}")
    for r in results:
        head = (f"{r['M']:5} {r['N']:5} {r['K']:5} {r['dtype']:5} {r['block_m']:4} {r['block_n']:4} "
                f"{r['block_k']:3} {r['num_warps']:2} ")
        if "error" in r:
            print(head + f"ERROR: {r['error']}")
            continue
        print(head + f"{r['tilejit_tflops']:12.1f} {r['torch_tflops']:10.1f} "
              f"{r['tilejit_tflops'] / r['torch_tflops']:6.2f} {r['max_rel_err']:9.2e}")
    for (M, N, K) in shapes:
        for T in ("f16", "bf16"):
            ok = [r for r in results if "error" not in r and (r["M"], r["N"], r["K"], r["dtype"]) == (M, N, K, T)]
            if ok:
                best = max(ok, key=lambda r: r["tilejit_tflops"])
                print(f"best {T} {M}x{N}x{K}: {best['tilejit_tflops']:.1f} TFLOP/s "
                      f"({best['block_m']}x{best['block_n']}x{best['block_k']} nw{best['num_warps']}) vs torch "
                      f"{best['torch_tflops']:.1f} = {best['tilejit_tflops'] / best['torch_tflops']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=results), f, indent=1)
    if any("error" in r and "mismatch" in r["error"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
