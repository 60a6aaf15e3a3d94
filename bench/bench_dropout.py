#!/usr/bin/env python3
"""bench_dropout.py: tilejit's fused dropout(act(x + bias)) against torch eager,
torch.compile and a Triton kernel that draws tl.rand per element.

Run on the GPU machine (python3 with torch and triton):
    python3 bench/bench_dropout.py [--lib build-gpu/libtilejit.so] [--json out.json] [--quick]

Shapes: xFormers' layernorm/dropout shapes and 32768 x 4096; fp16 and bf16;
activations gelu, none, squared_relu; with and without bias; p = 0.1.
GB/s counts the tensor traffic a fused kernel cannot avoid, the same for
every implementation of a row: forward 2 x numel x bytes (read x, write y);
fwd+bwd adds the backward pass's dy read, dx write and, unless act is none,
the x read (so 4 or 5 tensor passes). Every figure is also given as a
fraction of the device-to-device copy bandwidth (y.copy_(x)) measured in the
same run, which is what to compare across machines. Times are do_bench
medians (it flushes L2 between runs).
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
import tj  # noqa: E402
from bench_blocks import DLTensor, dl  # noqa: E402  (the DLPack ctypes structs)

SHAPES = [(8, 256, 512), (8, 512, 1024), (4, 1024, 1024), (2, 2048, 2048), (2, 4096, 4096), (1, 2048, 12288),
          (1, 32768, 4096)]
ACTS = {"none": 0, "gelu": 3, "squared_relu": 5}
P = 0.1
# shared/ANCHORS.md: dropout(gelu(x + bias)), p = 0.1, 32768 x 4096 fp16, GB/s with a 4268 GB/s copy.
ANCHOR_COPY = 4268.0
ANCHORS = {"torch": 762, "triton": 909, "compile": 968}
GOAL_GBPS, GOAL_OF_COPY = 2900.0, 0.68


from tilejit._lib import DropoutOpts  # noqa: E402


def load(path):
    return tj.load(path)   # prototypes come from the tilejit package


class Dropout(tj.BlocksHandle):
    def fwd(self, x, b, y, o):
        s = C.c_void_p(torch.cuda.current_stream().cuda_stream)
        self.check(self.lib.tj_dropout_fwd(self.b, C.byref(x), self.ref(b), C.byref(y), C.byref(o), s))

    def bwd(self, dy, x, b, dx, db, o):
        r = self.ref
        s = C.c_void_p(torch.cuda.current_stream().cuda_stream)
        self.check(self.lib.tj_dropout_bwd(self.b, r(dy), r(x), r(b), r(dx), r(db), C.byref(o), s))


# ---------------------------------------------------------------- peers

def torch_act(name, v):
    if name == "gelu":
        return F.gelu(v)
    if name == "squared_relu":
        return F.relu(v).square()
    return v


def torch_fn(name):
    def f(x, b):
        v = x + b if b is not None else x
        return F.dropout(torch_act(name, v), P, training=True)
    return f


@triton.jit
def _act(v, ACT: tl.constexpr):
    if ACT == 3:
        v = 0.5 * v * (1.0 + tl.math.erf(v * 0.7071067811865476))
    elif ACT == 5:
        v = tl.where(v > 0, v, 0.0)
        v = v * v
    return v


@triton.jit
def _act_grad(v, ACT: tl.constexpr):
    d = tl.full(v.shape, 1.0, tl.float32)
    if ACT == 3:
        d = 0.5 * (1.0 + tl.math.erf(v * 0.7071067811865476)) + v * 0.3989422804014327 * tl.exp(-0.5 * v * v)
    elif ACT == 5:
        d = 2.0 * tl.where(v > 0, v, 0.0)
    return d


@triton.jit
def _tri_fwd(y_ptr, x_ptr, b_ptr, n, K, p, seed, ACT: tl.constexpr, HAS_B: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    v = tl.load(x_ptr + offs, mask=m, other=0.).to(tl.float32)
    if HAS_B:
        v += tl.load(b_ptr + offs % K, mask=m, other=0.).to(tl.float32)
    a = _act(v, ACT)
    keep = tl.rand(seed, offs) >= p
    tl.store(y_ptr + offs, tl.where(keep, a / (1 - p), 0.0).to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _tri_bwd(dx_ptr, dy_ptr, x_ptr, b_ptr, n, K, p, seed, ACT: tl.constexpr, HAS_B: tl.constexpr,
             BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(dy_ptr + offs, mask=m, other=0.).to(tl.float32)
    if ACT != 0:
        v = tl.load(x_ptr + offs, mask=m, other=0.).to(tl.float32)
        if HAS_B:
            v += tl.load(b_ptr + offs % K, mask=m, other=0.).to(tl.float32)
        g = g * _act_grad(v, ACT)
    keep = tl.rand(seed, offs) >= p
    tl.store(dx_ptr + offs, tl.where(keep, g / (1 - p), 0.0).to(dx_ptr.dtype.element_ty), mask=m)


def tri_fwd(x, b, y, act):
    n, K = x.numel(), x.shape[-1]
    _tri_fwd[(triton.cdiv(n, 1024),)](y, x, b if b is not None else x, n, K, P, 1234, ACT=ACTS[act],
                                      HAS_B=b is not None, BLOCK=1024, num_warps=4)


def tri_fwd_bwd(x, b, y, dy, dx, act):
    tri_fwd(x, b, y, act)
    n, K = x.numel(), x.shape[-1]
    _tri_bwd[(triton.cdiv(n, 1024),)](dx, dy, x, b if b is not None else x, n, K, P, 1234, ACT=ACTS[act],
                                      HAS_B=b is not None, BLOCK=1024, num_warps=4)
    if b is not None:
        return dx.view(-1, K).sum(0, dtype=torch.float32)


# ---------------------------------------------------------------- timing

def bench(fn, grad_to_none=None):
    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none, return_mode="median")


def gbps(nbytes, ms):
    return nbytes / (ms * 1e-3) / 1e9


def run(args):
    blk = Dropout(load(args.lib))
    torch.manual_seed(0)
    dev = "cuda"
    rows = []
    copy_bw = tj.copy_bandwidth(bench)
    print(f"copy bandwidth: {copy_bw:.0f} GB/s")
    shapes = SHAPES[-2:] if args.quick else SHAPES
    compiled = {a: torch.compile(torch_fn(a)) for a in ACTS}

    def add(mode, shape, dtype, act, bias, name, ms, passes, numel, esize):
        bw = gbps(passes * numel * esize, ms)
        rows.append({"mode": mode, "shape": list(shape), "dtype": str(dtype).split(".")[-1], "act": act,
                     "bias": bias, "impl": name, "ms": ms, "gbps": bw, "of_copy": bw / copy_bw})

    offset = 0
    for dtype in (torch.float16, torch.bfloat16):
        es = torch.finfo(dtype).bits // 8
        for shape in shapes:
            K = shape[-1]
            x = torch.randn(*shape, device=dev, dtype=dtype)
            bvec = torch.randn(K, device=dev, dtype=dtype) * 0.1
            y = torch.empty_like(x)
            dy = torch.randn_like(x)
            dx = torch.empty_like(x)
            db = torch.empty_like(bvec)
            n = x.numel()
            X, B, Y, DY, DX, DB = (dl(t) for t in (x, bvec, y, dy, dx, db))
            for act in ACTS:
                for has_b in (True, False):
                    b = bvec if has_b else None
                    Bd = B if has_b else None
                    offset += blk.lib.tj_dropout_counters(n)
                    o = DropoutOpts(P, 1, 0x5EED, offset, ACTS[act], 0.0, 0.0)
                    # correctness guard: the kept elements hold act(x + b) / (1 - p), ~90% of them kept
                    blk.fwd(X, Bd, Y, o)
                    v = (x.float() + b.float()) if has_b else x.float()
                    want = torch_act(act, v) * float(torch.tensor(1 / (1 - P), dtype=torch.float32))
                    kept = y != 0
                    frac = kept.float().mean().item()
                    assert abs(frac - (1 - P)) < 0.01 or act == "squared_relu", f"kept fraction {frac}"
                    torch.testing.assert_close(y.float()[kept], want[kept], atol=2e-2, rtol=2e-2)
                    fb_passes = 4 if act == "none" else 5

                    add("fwd", shape, dtype, act, has_b, "tilejit", bench(lambda: blk.fwd(X, Bd, Y, o)), 2, n, es)
                    fn = torch_fn(act)
                    add("fwd", shape, dtype, act, has_b, "torch", bench(lambda: fn(x, b)), 2, n, es)
                    cf = compiled[act]
                    add("fwd", shape, dtype, act, has_b, "compile", bench(lambda: cf(x, b)), 2, n, es)
                    add("fwd", shape, dtype, act, has_b, "triton", bench(lambda: tri_fwd(x, b, y, act)), 2, n, es)

                    def tj_fb():
                        blk.fwd(X, Bd, Y, o)
                        blk.bwd(DY, X, Bd, DX, DB if has_b else None, o)
                    add("fwd+bwd", shape, dtype, act, has_b, "tilejit", bench(tj_fb), fb_passes, n, es)
                    xr = x.clone().requires_grad_(True)
                    br = bvec.clone().requires_grad_(True) if has_b else None
                    grads = [xr] + ([br] if has_b else [])

                    def torch_fb():
                        fn(xr, br).backward(dy)
                    add("fwd+bwd", shape, dtype, act, has_b, "torch", bench(torch_fb, grads), fb_passes, n, es)

                    def compile_fb():
                        cf(xr, br).backward(dy)
                    add("fwd+bwd", shape, dtype, act, has_b, "compile", bench(compile_fb, grads), fb_passes, n, es)
                    add("fwd+bwd", shape, dtype, act, has_b, "triton",
                        bench(lambda: tri_fwd_bwd(x, b, y, dy, dx, act)), fb_passes, n, es)
                    del xr, br, grads
            del x, bvec, y, dy, dx, db
            torch.cuda.empty_cache()
    return copy_bw, rows


def report(copy_bw, rows, path):
    impls = ["tilejit", "torch", "compile", "triton"]
    keyed = {}
    for r in rows:
        keyed.setdefault((r["mode"], tuple(r["shape"]), r["dtype"], r["act"], r["bias"]), {})[r["impl"]] = r
    print(f"\n{'mode':8} {'shape':16} {'dtype':9} {'act':13} {'bias':5} " +
          " ".join(f"{i + ' GB/s':>13}" for i in impls) + f" {'tj/copy':>8} {'tj/best':>8}")
    goals = []
    for (mode, shape, dt, act, bias), g in keyed.items():
        cells = [f"{g[i]['gbps']:13.0f}" if i in g else f"{'-':>13}" for i in impls]
        tjv = g["tilejit"]["gbps"]
        best = max((g[i]["gbps"] for i in impls[1:] if i in g), default=0.0)
        print(f"{mode:8} {'x'.join(map(str, shape)):16} {dt:9} {act:13} {str(bias):5} " + " ".join(cells) +
              f" {g['tilejit']['of_copy']:8.2f} {tjv / best if best else 0:8.2f}")
        goals.append({"goal": f"dropout {mode} {shape} {dt} {act} bias={bias}: tilejit >= every peer", "ok": tjv >= best,
                      "tilejit": tjv, "best_peer": best})
        if mode == "fwd" and shape == (1, 32768, 4096) and dt == "float16":
            goals.append({"goal": f"fp16 fwd 32768x4096 {act} bias={bias} >= {GOAL_GBPS:.0f} GB/s-equivalent "
                          f"(scaled to this copy: {GOAL_GBPS * copy_bw / ANCHOR_COPY:.0f}) and >= "
                          f"{GOAL_OF_COPY:.0%} of copy", "ok": tjv >= GOAL_OF_COPY * copy_bw,
                          "tilejit": tjv, "of_copy": tjv / copy_bw})
            if act == "gelu" and bias:
                for peer, v in ANCHORS.items():
                    goals.append({"goal": f"gelu+bias fwd 32768x4096 fp16 >= 3x ANCHORS {peer} ({v} GB/s, scaled "
                                  f"{3 * v * copy_bw / ANCHOR_COPY:.0f})", "ok": tjv >= 3 * v * copy_bw / ANCHOR_COPY,
                                  "tilejit": tjv})
    print()
    for g in goals:
        print(("PASS " if g["ok"] else "MISS ") + g["goal"])
    with open(path, "w") as f:
        json.dump({"copy_gbps": copy_bw, "device": torch.cuda.get_device_name(), "p": P, "rows": rows,
                   "goals": goals}, f, indent=1)
    print(f"\nwrote {path}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", default=os.environ.get("TILEJIT_LIB") or os.path.join(here, "..", "build-gpu", "libtilejit.so"))
    ap.add_argument("--json", default=os.path.join(here, "..", "build-gpu", "bench_dropout.json"))
    ap.add_argument("--quick", action="store_true", help="only the two largest shapes")
    args = ap.parse_args()
    copy_bw, rows = run(args)
    report(copy_bw, rows, args.json)


if __name__ == "__main__":
    main()
