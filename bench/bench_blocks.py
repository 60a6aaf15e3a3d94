#!/usr/bin/env python3
"""bench_blocks.py: the tilejit blocks (softmax, layernorm) against torch eager,
torch.compile and Triton tutorial-style kernels, on the xFormers shapes.

Run on the GPU machine (python3 with torch and triton):
    python3 bench/bench_blocks.py [--lib build-gpu/libtilejit.so] [--json out.json] [--quick]

GB/s is counted as xFormers did: one read and one write of the tensor for a
forward pass (2 x numel x bytes), four tensor passes for fwd+bwd. Every
figure is also given as a fraction of the device-to-device copy bandwidth
(y.copy_(x)) measured in the same run, which is what to compare across
machines. Times are do_bench medians (it flushes L2 between runs).

The blocks tune their GPU tile configs on the first call of each shape
bucket (stored on disk, so a second run of this script does not tune at
all): every tilejit function is called once, synchronised, before it is
timed, so tuning time is never measured. --no-tune uses the heuristic
configs (TILEJIT_AUTOTUNE=0) for comparison.
"""
import argparse
import ctypes as C
import json
import os
import sys

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tj  # noqa: E402  (the core ctypes binding)

SOFTMAX_SHAPES = [(8, 384, 128), (8, 784, 512), (4, 1024, 768), (4, 2048, 1024), (2, 2048, 2048),
                  (2, 2048, 4096), (2, 4096, 4096), (1, 2048, 12288)]
LN_SHAPES = [(8, 256, 512), (8, 512, 1024), (4, 1024, 1024), (2, 2048, 2048), (2, 4096, 4096),
             (1, 2048, 12288)]
# shared/ANCHORS.md (H200, fp16, GB/s), measured with a 4268 GB/s copy.
ANCHOR_COPY = 4268.0
ANCHORS = {
    ("softmax", "fwd", (2, 4096, 4096)): {"torch": 1218, "compile": 1659},
    ("softmax", "fwd+bwd", (2, 4096, 4096)): {"torch": 1048},
    ("layernorm", "fwd", (2, 4096, 4096)): {"torch": 2304, "compile": 1504},
    ("layernorm", "fwd+bwd", (2, 4096, 4096)): {"torch": 1150},
}


# ---------------------------------------------------------------- ctypes: DLPack and blocks

from tilejit._lib import DLTensor, SoftmaxOpts  # noqa: E402,F401  (the structs, defined once)
from tilejit.dlpack import to_dltensor  # noqa: E402


def dl(t):
    """A DLTensor viewing torch tensor t (kept alive with its shape/stride arrays)."""
    d, keep = to_dltensor(t)
    d._keep = keep
    return d


def load_blocks(path):
    return tj.load(path)   # prototypes come from the tilejit package


class Blocks(tj.BlocksHandle):
    def softmax_fwd(self, x, y, log=False, causal=False):
        o = SoftmaxOpts(int(log), int(causal), None)
        self.check(self.lib.tj_softmax_fwd(self.b, C.byref(x), C.byref(y), C.byref(o), self.stream()))

    def softmax_bwd(self, y, dy, dx, log=False, causal=False):
        o = SoftmaxOpts(int(log), int(causal), None)
        self.check(self.lib.tj_softmax_bwd(self.b, C.byref(y), C.byref(dy), C.byref(dx), C.byref(o),
                                           self.stream()))

    def layernorm_fwd(self, x, w, b, eps, y, mean, rstd):
        r = self.ref
        self.check(self.lib.tj_layernorm_fwd(self.b, r(x), r(w), r(b), eps, r(y), r(mean), r(rstd),
                                             self.stream()))

    def layernorm_bwd(self, dy, x, w, mean, rstd, dx, dw, db):
        r = self.ref
        self.check(self.lib.tj_layernorm_bwd(self.b, r(dy), r(x), r(w), r(mean), r(rstd), r(dx), r(dw),
                                             r(db), self.stream()))


# ---------------------------------------------------------------- Triton peers (tutorial style)

@triton.jit
def _tri_softmax(y_ptr, x_ptr, stride, n, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    m = cols < n
    v = tl.load(x_ptr + row * stride + cols, mask=m, other=-float("inf")).to(tl.float32)
    e = tl.exp(v - tl.max(v, 0))
    tl.store(y_ptr + row * stride + cols, (e / tl.sum(e, 0)).to(y_ptr.dtype.element_ty), mask=m)


def tri_softmax(x, y):
    n = x.shape[-1]
    block = triton.next_power_of_2(n)
    warps = 4 if block < 2048 else 8 if block < 8192 else 16
    _tri_softmax[(x.numel() // n,)](y, x, n, n, BLOCK=block, num_warps=warps)


@triton.jit
def _tri_layernorm(y_ptr, x_ptr, w_ptr, b_ptr, n, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    m = cols < n
    v = tl.load(x_ptr + row * n + cols, mask=m, other=0.).to(tl.float32)
    mean = tl.sum(v, 0) / n
    d = tl.where(m, v - mean, 0.)
    rstd = 1 / tl.sqrt(tl.sum(d * d, 0) / n + eps)
    w = tl.load(w_ptr + cols, mask=m).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=m).to(tl.float32)
    tl.store(y_ptr + row * n + cols, (d * rstd * w + b).to(y_ptr.dtype.element_ty), mask=m)


def tri_layernorm(x, w, b, y):
    n = x.shape[-1]
    block = triton.next_power_of_2(n)
    warps = min(max(block // 256, 1), 8)
    _tri_layernorm[(x.numel() // n,)](y, x, w, b, n, 1e-5, BLOCK=block, num_warps=warps)


# ---------------------------------------------------------------- timing

def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def warm(fn):
    """One untimed call: compiles, and tunes a new shape bucket, before do_bench sees fn."""
    fn()
    torch.cuda.synchronize()


def gbps(nbytes, ms):
    return nbytes / (ms * 1e-3) / 1e9


def run(args):
    lib = load_blocks(args.lib)
    blk = Blocks(lib)
    torch.manual_seed(0)
    dev = "cuda"
    dtypes = [torch.float16, torch.bfloat16]
    rows = []

    copy_bw = tj.copy_bandwidth(bench)   # this run's copy (bench/tj.py: 256 MiB)
    print(f"copy bandwidth: {copy_bw:.0f} GB/s")

    sm_fn = torch.compile(lambda t: torch.softmax(t, -1))
    ln_fn = torch.compile(lambda t, w, b: F.layer_norm(t, t.shape[-1:], w, b, 1e-5))
    sm_shapes = SOFTMAX_SHAPES[-2:] if args.quick else SOFTMAX_SHAPES
    ln_shapes = LN_SHAPES[-2:] if args.quick else LN_SHAPES

    def add(block, mode, shape, dtype, name, ms, passes, numel, esize):
        bw = gbps(passes * numel * esize, ms)
        rows.append({"block": block, "mode": mode, "shape": list(shape), "dtype": str(dtype).split(".")[-1],
                     "impl": name, "ms": ms, "gbps": bw, "of_copy": bw / copy_bw})

    for dtype in dtypes:
        es = torch.finfo(dtype).bits // 8
        for shape in sm_shapes:
            x = torch.randn(*shape, device=dev, dtype=dtype)
            y = torch.empty_like(x)
            dy = torch.randn_like(x)
            dx = torch.empty_like(x)
            X, Y, DY, DX = dl(x), dl(y), dl(dy), dl(dx)
            n = x.numel()
            # correctness guard: a benchmark of wrong results is worthless
            warm(lambda: blk.softmax_fwd(X, Y))
            torch.testing.assert_close(y.float(), torch.softmax(x.float(), -1), atol=2e-3, rtol=2e-2)
            add("softmax", "fwd", shape, dtype, "tilejit", bench(lambda: blk.softmax_fwd(X, Y)), 2, n, es)
            add("softmax", "fwd", shape, dtype, "torch", bench(lambda: torch.softmax(x, -1)), 2, n, es)
            add("softmax", "fwd", shape, dtype, "compile", bench(lambda: sm_fn(x)), 2, n, es)
            add("softmax", "fwd", shape, dtype, "triton", bench(lambda: tri_softmax(x, y)), 2, n, es)

            def tj_fb():
                blk.softmax_fwd(X, Y)
                blk.softmax_bwd(Y, DY, DX)
            xr = x.clone().requires_grad_(True)

            def torch_fb():
                torch.softmax(xr, -1).backward(dy)
            warm(tj_fb)
            add("softmax", "fwd+bwd", shape, dtype, "tilejit", bench(tj_fb), 4, n, es)
            add("softmax", "fwd+bwd", shape, dtype, "torch",
                triton.testing.do_bench(torch_fb, grad_to_none=[xr], return_mode="median"), 4, n, es)
            del x, y, dy, dx, xr

        for shape in ln_shapes:
            x = torch.randn(*shape, device=dev, dtype=dtype)
            K = shape[-1]
            w = torch.rand(K, device=dev, dtype=dtype) + 0.5
            b = torch.randn(K, device=dev, dtype=dtype)
            y = torch.empty_like(x)
            M = x.numel() // K
            mean = torch.empty(M, device=dev, dtype=torch.float32)
            rstd = torch.empty(M, device=dev, dtype=torch.float32)
            dy = torch.randn_like(x)
            dx = torch.empty_like(x)
            dw = torch.empty_like(w)
            db = torch.empty_like(b)
            T = {k: dl(v) for k, v in dict(x=x, w=w, b=b, y=y, mean=mean, rstd=rstd, dy=dy, dx=dx, dw=dw,
                                            db=db).items()}
            n = x.numel()

            def tj_f():
                blk.layernorm_fwd(T["x"], T["w"], T["b"], 1e-5, T["y"], T["mean"], T["rstd"])
            warm(tj_f)
            torch.testing.assert_close(y.float(), F.layer_norm(x.float(), (K,), w.float(), b.float(), 1e-5),
                                       atol=3e-2, rtol=2e-2)
            add("layernorm", "fwd", shape, dtype, "tilejit", bench(tj_f), 2, n, es)
            add("layernorm", "fwd", shape, dtype, "torch", bench(lambda: F.layer_norm(x, (K,), w, b, 1e-5)), 2, n, es)
            add("layernorm", "fwd", shape, dtype, "compile", bench(lambda: ln_fn(x, w, b)), 2, n, es)
            add("layernorm", "fwd", shape, dtype, "triton", bench(lambda: tri_layernorm(x, w, b, y)), 2, n, es)

            def tj_fb():
                tj_f()
                blk.layernorm_bwd(T["dy"], T["x"], T["w"], T["mean"], T["rstd"], T["dx"], T["dw"], T["db"])
            xr, wr, br = (t.clone().requires_grad_(True) for t in (x, w, b))

            def torch_fb():
                F.layer_norm(xr, (K,), wr, br, 1e-5).backward(dy)
            warm(tj_fb)
            add("layernorm", "fwd+bwd", shape, dtype, "tilejit", bench(tj_fb), 4, n, es)
            add("layernorm", "fwd+bwd", shape, dtype, "torch",
                triton.testing.do_bench(torch_fb, grad_to_none=[xr, wr, br], return_mode="median"), 4, n, es)
            del x, y, dy, dx, xr, wr, br

    return copy_bw, rows


def report(copy_bw, rows, path):
    impls = ["tilejit", "torch", "compile", "triton"]
    keyed = {}
    for r in rows:
        keyed.setdefault((r["block"], r["mode"], tuple(r["shape"]), r["dtype"]), {})[r["impl"]] = r
    print(f"\n{'block':10} {'mode':8} {'shape':18} {'dtype':9} " +
          " ".join(f"{i + ' GB/s':>13}" for i in impls) + f" {'tj/copy':>8} {'tj/best':>8}")
    goals = []
    for (blk, mode, shape, dt), g in keyed.items():
        cells = [f"{g[i]['gbps']:13.0f}" if i in g else f"{'-':>13}" for i in impls]
        tjv = g["tilejit"]["gbps"]
        best_peer = max((g[i]["gbps"] for i in impls[1:] if i in g), default=0.0)
        print(f"{blk:10} {mode:8} {'x'.join(map(str, shape)):18} {dt:9} " + " ".join(cells) +
              f" {g['tilejit']['of_copy']:8.2f} {tjv / best_peer if best_peer else 0:8.2f}")
        ok = tjv >= best_peer
        goals.append({"goal": f"{blk} {mode} {shape} {dt}: tilejit >= every peer measured", "ok": ok,
                      "tilejit": tjv, "best_peer": best_peer})
        anchor = ANCHORS.get((blk, mode, shape))
        if anchor and dt == "float16":
            scale = copy_bw / ANCHOR_COPY
            for peer, v in anchor.items():
                goals.append({"goal": f"{blk} {mode} {shape} fp16 >= ANCHORS {peer} ({v} GB/s, scaled {v * scale:.0f})",
                              "ok": tjv >= v * scale, "tilejit": tjv})
        if blk == "softmax" and mode == "fwd" and shape == (2, 4096, 4096):
            goals.append({"goal": f"softmax fwd 2x4096x4096 {dt} >= 90% of copy", "ok": tjv >= 0.9 * copy_bw,
                          "of_copy": tjv / copy_bw})
    print()
    for g in goals:
        print(("PASS " if g["ok"] else "MISS ") + g["goal"])
    with open(path, "w") as f:
        json.dump({"copy_gbps": copy_bw, "device": torch.cuda.get_device_name(), "rows": rows, "goals": goals}, f,
                  indent=1)
    print(f"\nwrote {path}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", default=os.environ.get("TILEJIT_LIB") or os.path.join(here, "..", "build-gpu", "libtilejit.so"))
    ap.add_argument("--json", default=os.path.join(here, "..", "build-gpu", "bench_blocks.json"))
    ap.add_argument("--quick", action="store_true", help="only the two largest shapes of each block")
    ap.add_argument("--no-tune", action="store_true", help="heuristic tile configs (TILEJIT_AUTOTUNE=0)")
    args = ap.parse_args()
    if args.no_tune:
        os.environ["TILEJIT_AUTOTUNE"] = "0"   # read when the blocks handle is created
    copy_bw, rows = run(args)
    report(copy_bw, rows, args.json)


if __name__ == "__main__":
    main()
