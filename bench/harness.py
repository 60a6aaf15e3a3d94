#!/usr/bin/env python3
"""harness.py: tilejit's blocks side by side with torch eager, torch.compile,
Triton tutorial-style kernels and FlexAttention/SDPA, in one process, on the
same tensors; writes one JSON per part for bench/report.py.

Run on the GPU machine from the repository root (python3 with torch, triton):
    python3 bench/harness.py --smoke --json-dir $OUT            # < 60 s first check
    python3 bench/harness.py --only softmax --json-dir $OUT     # one part per command
    python3 bench/harness.py --only latency --json-dir $OUT
Parts: softmax, layernorm, dropout, attention, latency (--only a,b,...).
--dtypes fp16 / bf16 halves a part; --S 4096 / 16384 splits attention.

Method. The shapes are xFormers' (shared/ANCHORS.md). Every case first runs
each implementation once, untimed (tilejit tunes its tile config on the
first call of a shape; Triton and torch.compile compile), and compares its
output (and, for fwd+bwd, its gradients) with a float32 torch reference on
the same inputs: the error is max |got - ref| / (1 + |ref|), and the
tolerance is stated in the JSON (1e-2 fp16, 3e-2 bf16; twice that for
gradients). Dropout peers draw their own masks: they are compared on the
elements their output keeps. Attention is compared with the peer computing
the same function in the same dtype (max |got - ref|, 2e-2 / 4e-2): tilejit
with the first peer of a variant, every other peer with the peer computing
its function or, where none does (FlexAttention's element window), with a
float32 reference of it. A disagreement is recorded (check rows with ok =
false) and the case is still timed. Times are
triton.testing.do_bench medians (CUDA events, L2 flushed before every
repetition). The device-to-device copy bandwidth y.copy_(x) of a 256 MiB
fp16 tensor (512 MiB moved, the size of the largest tensor benchmarked) is
measured in the same run;
every GB/s figure is also given as a fraction of it. GB/s counts the
tensor passes a fused implementation cannot avoid, the same for every
implementation of a row (2 for a forward pass, 4 for fwd+bwd; dropout
fwd+bwd 5 when the activation needs x again); attention counts 4 * D
flops per live score (x3.5 for fwd+bwd).
tilejit is called through prebuilt DLTensors (what a C caller pays); the
Python binding's per-call overhead is measured in the latency part.
Every case runs in try/except: a failure is recorded in the JSON
("errors") and the run continues.
"""
import argparse
import ctypes as C
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "python"))

PARTS = ["softmax", "layernorm", "dropout", "attention", "latency"]
SOFTMAX_SHAPES = [(8, 384, 128), (8, 784, 512), (4, 1024, 768), (4, 2048, 1024), (2, 2048, 2048),
                  (2, 2048, 4096), (2, 4096, 4096), (1, 2048, 12288)]
LN_SHAPES = [(8, 256, 512), (8, 512, 1024), (4, 1024, 1024), (2, 2048, 2048), (2, 4096, 4096), (1, 2048, 12288)]
DROPOUT_SHAPES = LN_SHAPES + [(1, 32768, 4096)]
# The row shapes of shared/ANCHORS.md (M = 4096 rows) that the xFormers shapes above do not already
# cover row for row (softmax 4096 x 4096 is 2x2048x4096; layernorm 4096 x 1024 is 4x1024x1024).
SOFTMAX_ANCHOR_SHAPES = [(1, 4096, 256), (1, 4096, 1024), (1, 4096, 16384)]
LN_ANCHOR_SHAPES = [(1, 4096, 4096), (1, 4096, 8192)]
# The impl name of y.copy_(x) on the same tensor: a memory-bound kernel's ceiling at that size (the
# launch and the tail weigh as much on it), reported beside the 256 MiB copy and never a peer.
SAME_COPY = "copy (same size)"
DROPOUT_ACTS = ["gelu", "none", "squared_relu"]
DROPOUT_P = 0.1
ATTN_B, ATTN_H, ATTN_D, ATTN_W, ATTN_BS = 4, 16, 64, 512, 128
ATTN_S = [4096, 16384]
TOL = {"float16": 1e-2, "bfloat16": 3e-2, "float32": 1e-4}
ATTN_TOL = {"float16": 2e-2, "bfloat16": 4e-2}


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- recording

class Part:
    """Rows, checks and errors of one part, written as one JSON file."""

    def __init__(self, name, env, copy_gbps, args):
        self.name, self.env, self.copy_gbps, self.args = name, env, copy_gbps, args
        self.rows, self.checks, self.errors = [], [], []
        self.extra = {}    # more top-level JSON fields (the latency table)
        self.t0 = time.time()

    def row(self, block, variant, mode, dtype, shape, impl, ms, metric, amount):
        """amount: bytes for GB/s, flops for TFLOP/s."""
        value = amount / (ms * 1e-3) / (1e9 if metric == "GB/s" else 1e12)
        r = {"block": block, "variant": variant, "mode": mode, "dtype": dtype, "shape": list(shape),
             "impl": impl, "ms": ms, "metric": metric, "value": value}
        if metric == "GB/s":
            r["of_copy"] = value / self.copy_gbps
        self.rows.append(r)
        return r

    def check(self, block, variant, mode, dtype, shape, impl, err, tol, what=""):
        ok = bool(math.isfinite(err) and err <= tol)
        self.checks.append({"block": block, "variant": variant, "mode": mode, "dtype": dtype, "shape": list(shape),
                            "impl": impl, "what": what, "max_err": err, "tol": tol, "ok": ok})
        if not ok:
            log(f"  DISAGREE {block}/{variant}/{mode} {dtype} {shape} {impl} {what}: err {err:.3g} > tol {tol:g}")
        return ok

    def error(self, where, exc):
        tb = traceback.format_exc(limit=6)
        self.errors.append({"where": where, "error": f"{type(exc).__name__}: {exc}", "traceback": tb})
        log(f"  ERROR {where}: {type(exc).__name__}: {exc}")

    def case(self, where):
        part = self

        class _Ctx:
            def __enter__(self):
                return self

            def __exit__(self, et, ev, tb):
                if et is None:
                    return False
                if et is KeyboardInterrupt:
                    return False
                part.error(where, ev)
                try:
                    import torch
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                except Exception:
                    pass
                return True
        return _Ctx()

    def dump(self, json_dir):
        import tj
        out = {"part": self.name, "env": self.env, "copy_gbps": self.copy_gbps, "copy_mib": tj.COPY_MIB,
               "tolerance": {
            "rule": "max |got - ref| / (1 + |ref|) against a float32 torch reference on the same inputs; "
                    "gradients 2x; dropout peers on the elements their own mask keeps; attention: max |got - ref| "
                    "against the peer computing the same function (or a float32 reference of it)",
            "fwd": TOL, "attention": ATTN_TOL}, "smoke": bool(self.args.smoke),
            "seconds": time.time() - self.t0, "rows": self.rows, "checks": self.checks, "errors": self.errors}
        out.update(self.extra)
        if json_dir:
            os.makedirs(json_dir, exist_ok=True)
            path = os.path.join(json_dir, f"{self.name}{'-smoke' if self.args.smoke else ''}"
                                f"{'-' + self.args.tag if self.args.tag else ''}.json")
            with open(path, "w") as f:
                json.dump(out, f, indent=1)
            log(f"wrote {path}")
        return out


# ---------------------------------------------------------------- shared helpers

def bench(fn, grad_to_none=None):
    import triton
    return triton.testing.do_bench(fn, warmup=ARGS.warmup, rep=ARGS.rep, grad_to_none=grad_to_none,
                                   return_mode="median")


def sync():
    import torch
    torch.cuda.synchronize()


def rel_err(got, ref):
    import torch
    g, r = got.detach().float(), ref.detach().float()
    d = torch.where(g == r, torch.zeros_like(g), (g - r).abs() / (1 + r.abs()))
    d = torch.nan_to_num(d, nan=float("inf"))
    return d.max().item() if d.numel() else 0.0


def dtype_name(dt):
    return str(dt).split(".")[-1]


def causal_mask(torch, x):
    """The [M, K] bool mask of a causal softmax over x's last two dims (True
    above the diagonal: masked), on x's device."""
    M, K = x.shape[-2:]
    return torch.ones(M, K, dtype=torch.bool, device=x.device).triu(1)


def eager_softmax(torch, x, variant, mask=None):
    """A zero-argument function computing torch eager's softmax of x for
    variant ("plain", "log", "causal"). The causal mask (mask, else
    causal_mask(x)) is built here, once, not in the returned function that
    is timed."""
    if variant == "causal":
        m = causal_mask(torch, x) if mask is None else mask
        return lambda: torch.softmax(x.masked_fill(m, float("-inf")), -1)
    if variant == "log":
        return lambda: torch.log_softmax(x, -1)
    return lambda: torch.softmax(x, -1)


def compile_fn(fn, **kw):
    import torch
    return torch.compile(fn, dynamic=False, **kw)


class TJ:
    """tilejit through prebuilt DLTensors: run(name, *args) returns a
    zero-argument function calling lib.<name>(b, *args, stream)."""

    def __init__(self):
        import torch
        import tilejit
        self.tilejit = tilejit
        self.h = tilejit.get_blocks(torch.device("cuda", torch.cuda.current_device()))
        self.lib = self.h.lib

    def p(self, t):
        if t is None:
            return None
        d, keep = self.tilejit.to_dltensor(t)
        d._keep = keep
        return C.byref(d)

    def fn(self, name, *args):
        import torch
        f, b, h = getattr(self.lib, name), self.h.b, self.h
        s = C.c_void_p(torch.cuda.current_stream().cuda_stream)

        def run():
            st = f(b, *args, s)
            if st != 0:
                raise self.tilejit.TilejitError(st, h.last_error(), name)
        return run


def environment():
    import torch
    import triton
    import tilejit
    env = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "host": platform.node(), "python": platform.python_version(),
           "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
           "gpu": torch.cuda.get_device_name(), "tilejit": tilejit.version(), "library": tilejit.library_path()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
        env["driver"] = out[0].split(",")[0].strip() if out else "?"
    except Exception as e:   # no nvidia-smi: ask the driver through tilejit
        try:
            env["driver"] = f"CUDA driver API {tilejit.get_blocks('cuda').context.driver_version()}"
        except Exception:
            env["driver"] = f"? ({e})"
    return env


def copy_bandwidth():
    """GB/s of y.copy_(x) of a tj.COPY_MIB fp16 tensor: read + write."""
    import tj
    return tj.copy_bandwidth(bench)


def raise_recompile_limit():
    import torch._dynamo as dyn
    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(dyn.config, name):
            setattr(dyn.config, name, max(getattr(dyn.config, name), 512))


# ---------------------------------------------------------------- softmax

def part_softmax(P):
    import torch
    import bench_blocks as bb
    tj = TJ()
    from tilejit import SoftmaxOpts
    shapes = [(8, 384, 128)] if ARGS.smoke else SOFTMAX_SHAPES + SOFTMAX_ANCHOR_SHAPES
    variants = ["plain"] if ARGS.smoke else ARGS.variants
    compiled = {}

    def torch_ref(x, variant):
        # for torch.compile only: the mask is built in the graph, where
        # Inductor fuses it into the softmax kernel (eager: eager_softmax)
        if variant == "causal":
            M, K = x.shape[-2:]
            m = torch.ones(M, K, dtype=torch.bool, device=x.device).triu(1)
            return torch.softmax(x.masked_fill(m, float("-inf")), -1)
        return torch.log_softmax(x, -1) if variant == "log" else torch.softmax(x, -1)

    for dt in DTYPES:
        dn = dtype_name(dt)
        es = torch.finfo(dt).bits // 8
        for shape in shapes:
            n = math.prod(shape)
            x = torch.randn(*shape, device="cuda", dtype=dt)
            y, dy, dx = torch.empty_like(x), torch.randn_like(x), torch.empty_like(x)
            X, Y, DY, DX = tj.p(x), tj.p(y), tj.p(dy), tj.p(dx)
            mask = causal_mask(torch, x) if "causal" in variants else None   # built once, not timed
            t_copy = None
            with P.case(f"softmax {dn} {shape} same-size copy"):
                t_copy = bench(lambda: y.copy_(x))
            for variant in variants:
                where = f"softmax/{variant} {dn} {shape}"
                log(f"[softmax] {where}")
                opts = SoftmaxOpts(int(variant == "log"), int(variant == "causal"), None)
                f_tj = tj.fn("tj_softmax_fwd", X, Y, C.byref(opts))
                b_tj = tj.fn("tj_softmax_bwd", Y, DY, DX, C.byref(opts))
                ref = eager_softmax(torch, x.float(), variant, mask)()
                key = (variant, dn, shape)
                impls = {"tilejit": (f_tj, lambda: y), "torch": (eager_softmax(torch, x, variant, mask), None)}
                if variant in ARGS.compile_variants:
                    with P.case(where + " compile"):
                        compiled[key] = compile_fn(lambda t, v=variant: torch_ref(t, v))
                        impls["torch.compile"] = (lambda: compiled[key](x), None)
                if variant == "plain":
                    impls["triton"] = (lambda: bb.tri_softmax(x, y), lambda: y)
                if t_copy:
                    P.row("softmax", variant, "fwd", dn, shape, SAME_COPY, t_copy, "GB/s", 2 * n * es)
                for name, (fn, out) in impls.items():
                    with P.case(f"{where} fwd {name}"):
                        r = fn()
                        sync()
                        P.check("softmax", variant, "fwd", dn, shape, name, rel_err(out() if out else r, ref),
                                TOL[dn])
                        P.row("softmax", variant, "fwd", dn, shape, name, bench(fn), "GB/s", 2 * n * es)
                if variant == "log":
                    continue   # fwd+bwd: plain and causal
                # fwd+bwd
                xr = x.detach().clone().requires_grad_(True)
                xf = x.float().requires_grad_(True)
                eager_softmax(torch, xf, variant, mask)().backward(dy.float())
                gref = xf.grad
                eager_xr = eager_softmax(torch, xr, variant, mask)

                def tj_fb():
                    f_tj()
                    b_tj()

                def eager_fb():
                    eager_xr().backward(dy)
                fb = {"tilejit": (tj_fb, lambda: dx), "torch": (eager_fb, lambda: xr.grad)}
                if key in compiled:
                    cf = compiled[key]
                    fb["torch.compile"] = (lambda: cf(xr).backward(dy), lambda: xr.grad)
                for name, (fn, grad) in fb.items():
                    with P.case(f"{where} fwd+bwd {name}"):
                        xr.grad = None
                        fn()
                        sync()
                        P.check("softmax", variant, "fwd+bwd", dn, shape, name, rel_err(grad(), gref), 2 * TOL[dn],
                                "dx")
                        P.row("softmax", variant, "fwd+bwd", dn, shape, name, bench(fn, [xr]), "GB/s", 4 * n * es)
            del x, y, dy, dx, mask
            torch.cuda.empty_cache()


# ---------------------------------------------------------------- layernorm / rmsnorm

def part_layernorm(P):
    import torch
    import torch.nn.functional as F
    import bench_blocks as bb
    tj = TJ()
    shapes = [(8, 256, 512)] if ARGS.smoke else LN_SHAPES + LN_ANCHOR_SHAPES
    blocks = ["layernorm"] if ARGS.smoke else ["layernorm", "rmsnorm"]
    eps = 1e-5
    for dt in DTYPES:
        dn = dtype_name(dt)
        es = torch.finfo(dt).bits // 8
        for shape in shapes:
            K = shape[-1]
            n = math.prod(shape)
            M = n // K
            x = torch.randn(*shape, device="cuda", dtype=dt)
            w = torch.rand(K, device="cuda", dtype=dt) + 0.5
            b = torch.randn(K, device="cuda", dtype=dt)
            y, dy, dx = torch.empty_like(x), torch.randn_like(x), torch.empty_like(x)
            dw, db = torch.empty_like(w), torch.empty_like(b)
            mean, rstd = (torch.empty(M, device="cuda", dtype=torch.float32) for _ in range(2))
            T = {k: tj.p(v) for k, v in dict(x=x, w=w, b=b, y=y, dy=dy, dx=dx, dw=dw, db=db, mean=mean,
                                              rstd=rstd).items()}
            t_copy = None
            with P.case(f"layernorm {dn} {shape} same-size copy"):
                t_copy = bench(lambda: y.copy_(x))
            for blk in blocks:
                where = f"{blk} {dn} {shape}"
                log(f"[layernorm] {where}")
                if blk == "layernorm":
                    def torch_f(t, w_, b_):
                        return F.layer_norm(t, (K,), w_, b_, eps)
                    f_tj = tj.fn("tj_layernorm_fwd", T["x"], T["w"], T["b"], C.c_double(eps), T["y"], T["mean"],
                                 T["rstd"])
                    b_tj = tj.fn("tj_layernorm_bwd", T["dy"], T["x"], T["w"], T["mean"], T["rstd"], T["dx"],
                                 T["dw"], T["db"])
                    params = (w, b)
                else:
                    def torch_f(t, w_, b_=None):
                        return F.rms_norm(t, (K,), w_, eps)
                    f_tj = tj.fn("tj_rmsnorm_fwd", T["x"], T["w"], C.c_double(eps), T["y"], T["rstd"])
                    b_tj = tj.fn("tj_rmsnorm_bwd", T["dy"], T["x"], T["w"], T["rstd"], T["dx"], T["dw"])
                    params = (w,)
                ref = torch_f(x.float(), *[p.float() for p in params])
                cf = None
                with P.case(where + " compile"):
                    cf = compile_fn(torch_f)
                impls = {"tilejit": (f_tj, lambda: y), "torch": (lambda: torch_f(x, *params), None)}
                if cf is not None:
                    impls["torch.compile"] = (lambda: cf(x, *params), None)
                if blk == "layernorm":
                    impls["triton"] = (lambda: bb.tri_layernorm(x, w, b, y), lambda: y)
                if t_copy:
                    P.row(blk, "affine", "fwd", dn, shape, SAME_COPY, t_copy, "GB/s", 2 * n * es)
                for name, (fn, out) in impls.items():
                    with P.case(f"{where} fwd {name}"):
                        r = fn()
                        sync()
                        P.check(blk, "affine", "fwd", dn, shape, name, rel_err(out() if out else r, ref), TOL[dn])
                        P.row(blk, "affine", "fwd", dn, shape, name, bench(fn), "GB/s", 2 * n * es)
                # fwd+bwd
                leaves = [t.detach().clone().requires_grad_(True) for t in (x,) + params]
                fl = [t.float().requires_grad_(True) for t in (x,) + params]
                torch_f(*fl).backward(dy.float())
                grefs = [t.grad for t in fl]

                def tj_fb():
                    f_tj()
                    b_tj()
                fb = {"tilejit": (tj_fb, lambda: [dx, dw, db][:len(leaves)]),
                      "torch": (lambda: torch_f(*leaves).backward(dy), lambda: [t.grad for t in leaves])}
                if cf is not None:
                    fb["torch.compile"] = (lambda: cf(*leaves).backward(dy), lambda: [t.grad for t in leaves])
                for name, (fn, grads) in fb.items():
                    with P.case(f"{where} fwd+bwd {name}"):
                        for t in leaves:
                            t.grad = None
                        fn()
                        sync()
                        for what, g, gr in zip(("dx", "dw", "db"), grads(), grefs):
                            P.check(blk, "affine", "fwd+bwd", dn, shape, name, rel_err(g, gr), 2 * TOL[dn], what)
                        P.row(blk, "affine", "fwd+bwd", dn, shape, name, bench(fn, leaves), "GB/s", 4 * n * es)
            del x, y, dy, dx
            torch.cuda.empty_cache()


# ---------------------------------------------------------------- dropout

def part_dropout(P):
    import torch
    import bench_dropout as bd
    import tilejit
    tj = TJ()
    from tilejit import DropoutOpts
    shapes = [(8, 256, 512)] if ARGS.smoke else DROPOUT_SHAPES
    acts = ["gelu"] if ARGS.smoke else [a for a in DROPOUT_ACTS if a in ARGS.acts]
    p = DROPOUT_P
    assert bd.P == p
    scale = float(torch.tensor(1 / (1 - p), dtype=torch.float32))
    # dropout-style functions: default torch.compile (automatic dynamic
    # shapes after the first recompile): elementwise kernels do not suffer
    # from symbolic sizes, and one compile serves all shapes.
    compiled = {a: torch.compile(bd.torch_fn(a)) for a in acts}
    offset = 0
    for dt in DTYPES:
        dn = dtype_name(dt)
        es = torch.finfo(dt).bits // 8
        for shape in shapes:
            K = shape[-1]
            n = math.prod(shape)
            x = torch.randn(*shape, device="cuda", dtype=dt)
            bvec = torch.randn(K, device="cuda", dtype=dt) * 0.1
            ones = torch.ones_like(x)
            y, dy, dx, yk = torch.empty_like(x), torch.randn_like(x), torch.empty_like(x), torch.empty_like(x)
            db = torch.empty_like(bvec)
            X, B, Y, DY, DX, DB, ONES, YK = (tj.p(t) for t in (x, bvec, y, dy, dx, db, ones, yk))
            for act in acts:
                for has_b in (True, False):
                    variant = f"{act}{'+bias' if has_b else ''}"
                    where = f"dropout/{variant} {dn} {shape}"
                    log(f"[dropout] {where}")
                    with P.case(where):
                        b = bvec if has_b else None
                        Bd, DBd = (B, DB) if has_b else (None, None)
                        offset += tilejit.dropout_counters(n)
                        o = DropoutOpts(p, 1, 0x5EED, offset, tilejit.ACTIVATIONS.index(act), 0.0, 0.0)
                        o_none = DropoutOpts(p, 1, 0x5EED, offset, 0, 0.0, 0.0)
                        f_tj = tj.fn("tj_dropout_fwd", X, Bd, Y, C.byref(o))
                        b_tj = tj.fn("tj_dropout_bwd", DY, X, Bd, DX, DBd, C.byref(o))
                        # the exact mask: dropout of ones with the same seed and offset
                        tj.fn("tj_dropout_fwd", ONES, None, YK, C.byref(o_none))()
                        sync()
                        keep = yk != 0
                        v = (x.float() + b.float()) if has_b else x.float()
                        vr = v.detach().clone().requires_grad_(True)
                        a = bd.torch_act(act, vr)
                        a.backward(torch.ones_like(a))
                        act_ref, act_grad = a.detach(), vr.grad
                        ref = torch.where(keep, act_ref * scale, torch.zeros_like(act_ref))
                        fn, cf = bd.torch_fn(act), compiled[act]
                        impls = {"tilejit": (f_tj, lambda: y), "torch": (lambda: fn(x, b), None),
                                 "torch.compile": (lambda: cf(x, b), None),
                                 "triton": (lambda: bd.tri_fwd(x, b, y, act), lambda: y)}
                        for name, (f, out) in impls.items():
                            with P.case(f"{where} fwd {name}"):
                                r = f()
                                sync()
                                got = out() if out else r
                                if name == "tilejit":   # the mask is known: compare every element
                                    err = rel_err(got, ref)
                                else:                  # a peer's own mask: kept elements, and the kept fraction
                                    k = got != 0
                                    err = rel_err(got[k], (act_ref * scale)[k])
                                    if act == "none":
                                        frac = k.float().mean().item()
                                        P.check("dropout", variant, "fwd", dn, shape, name, abs(frac - (1 - p)), 0.01,
                                                "kept fraction")
                                P.check("dropout", variant, "fwd", dn, shape, name, err, TOL[dn])
                                P.row("dropout", variant, "fwd", dn, shape, name, bench(f), "GB/s", 2 * n * es)
                        passes = 4 if act == "none" else 5
                        xr = x.detach().clone().requires_grad_(True)
                        br = bvec.detach().clone().requires_grad_(True) if has_b else None
                        leaves = [xr] + ([br] if has_b else [])

                        def tj_fb():
                            f_tj()
                            b_tj()

                        def tj_once():
                            tj_fb()
                            return y, dx, (db if has_b else None)

                        def eager_once(f_):
                            def once():
                                yy = f_(xr, br)
                                yy.backward(dy)
                                return yy.detach(), xr.grad, (br.grad if has_b else None)
                            return once

                        def tri_once():
                            dbt = bd.tri_fwd_bwd(x, b, y, dy, dx, act)
                            return y, dx, dbt
                        # name: (timed function, one checked run returning (y, dx, dbias))
                        fb = {"tilejit": (tj_fb, tj_once),
                              "torch": (lambda: fn(xr, br).backward(dy), eager_once(fn)),
                              "torch.compile": (lambda: cf(xr, br).backward(dy), eager_once(cf)),
                              "triton": (lambda: bd.tri_fwd_bwd(x, b, y, dy, dx, act), tri_once)}
                        for name, (f, once) in fb.items():
                            with P.case(f"{where} fwd+bwd {name}"):
                                for t in leaves:
                                    t.grad = None
                                yo, dxo, dbo = once()
                                sync()
                                if name == "tilejit":   # the mask is known: compare every element
                                    gref = torch.where(keep, dy.float() * scale * act_grad, torch.zeros_like(act_grad))
                                    P.check("dropout", variant, "fwd+bwd", dn, shape, name, rel_err(dxo, gref),
                                            2 * TOL[dn], "dx")
                                    if has_b:
                                        P.check("dropout", variant, "fwd+bwd", dn, shape, name,
                                                rel_err(dbo, gref.view(-1, K).sum(0)), 2 * TOL[dn], "dbias")
                                else:                  # a peer's own mask, read from its forward output
                                    err_dx, err_db = dropout_peer_grad_err(torch, yo, dxo, dbo, act_ref, act_grad, dy,
                                                                           scale, K)
                                    P.check("dropout", variant, "fwd+bwd", dn, shape, name, err_dx, 2 * TOL[dn],
                                            "dx (kept elements)")
                                    if has_b:
                                        P.check("dropout", variant, "fwd+bwd", dn, shape, name, err_db, 2 * TOL[dn],
                                                "dbias (the peer's mask)")
                                del yo, dxo, dbo
                                for t in leaves:
                                    t.grad = None
                                P.row("dropout", variant, "fwd+bwd", dn, shape, name, bench(f, leaves), "GB/s",
                                      passes * n * es)
                        del xr, br, leaves
            del x, bvec, ones, y, dy, dx, yk, db
            torch.cuda.empty_cache()


def dropout_peer_grad_err(torch, y, dx, db, act_ref, act_grad, dy, scale, K):
    """(dx error, dbias error or None) of a dropout peer's fwd+bwd, whose
    mask is its own: kept where its forward output y is nonzero. dx is
    compared on the elements whose keep/drop is certain (kept, or dropped
    with |act * scale| >= 1e-3; a kept element whose output rounded to 0
    could pass for dropped) against dy * scale * act'; dbias against the
    row sum of that gradient with the peer's mask (its own dx on the
    uncertain elements)."""
    kept = y != 0
    sure = kept | ((act_ref * scale).abs() >= 1e-3)
    g = torch.where(kept, dy.float() * scale * act_grad, torch.zeros_like(act_grad))
    err_dx = rel_err(dx[sure], g[sure])
    err_db = None
    if db is not None:
        err_db = rel_err(db, torch.where(sure, g, dx.float()).view(-1, K).sum(0))
    return err_dx, err_db


# ---------------------------------------------------------------- attention

ATTN_FP32 = "float32 reference"


def attention_ref_fp32(torch, q, k, v, allowed, g=None):
    """float32 softmax(q k^T / sqrt(D), where allowed(i, j)) v of [B, H, S,
    D] tensors, a chunk of query rows at a time (no S x S matrix per
    head); with g also [dq, dk, dv] of sum(o * g). allowed(qi, ki) takes a
    column of query and a row of key indices and returns a bool matrix.
    Returns (o, grads or None)."""
    B, H, S, D = q.shape
    scale = 1.0 / math.sqrt(D)
    qf = q.detach().float()
    kf, vf = (t.detach().float().requires_grad_(g is not None) for t in (k, v))
    chunk = max(1, min(S, (1 << 28) // (B * H * S)))   # <= 1 GiB of f32 scores per chunk
    o = torch.empty(B, H, S, D, device=q.device, dtype=torch.float32)
    dq = torch.empty_like(o) if g is not None else None
    kj = torch.arange(S, device=q.device)[None, :]
    for i0 in range(0, S, chunk):
        i1 = min(S, i0 + chunk)
        qc = qf[:, :, i0:i1].clone().requires_grad_(g is not None)
        qi = torch.arange(i0, i1, device=q.device)[:, None]
        with torch.set_grad_enabled(g is not None):
            sc = (qc @ kf.transpose(-1, -2)) * scale
            oc = torch.softmax(sc.masked_fill(~allowed(qi, kj), float("-inf")), -1) @ vf
        o[:, :, i0:i1] = oc.detach()
        if g is not None:
            oc.backward(g[:, :, i0:i1].float())
            dq[:, :, i0:i1] = qc.grad
        del sc, oc, qc
    return o, ([dq, kf.grad, vf.grad] if g is not None else None)


def attn_peer_ref(P, where, torch, ref, have, q, k, v, g):
    """(the reference values a later attention peer is checked against, its
    name): have[ref] (outputs or gradients of the peer named ref), or, for
    (ATTN_FP32, allowed), attention_ref_fp32; None when it could not be had."""
    if isinstance(ref, tuple):
        with P.case(f"{where} {ref[0]}"):
            o, grads = attention_ref_fp32(torch, q, k, v, ref[1], g)
            return ([o] if g is None else grads), ref[0]
        return None, ref[0]
    return have.get(ref), ref


def attn_peer_check(P, variant, mode, dn, shape, name, got, want, tol, what):
    """A check row for a peer: max |got - want| over the tensors, inf (a
    failed check) when the reference is missing."""
    if want is None:
        err, what = float("inf"), what + " (no reference: it failed to run)"
    else:
        err = max((a.float() - b.float()).abs().max().item() for a, b in zip(got, want))
    P.check("attention", variant, mode, dn, shape, name, err, tol, what)


def part_attention(P):
    import torch
    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import flex_attention
    import bench_attention as ba
    import tilejit
    tj = TJ()
    flex = torch.compile(flex_attention, dynamic=False)
    sdpa = F.scaled_dot_product_attention
    B, H, D, W, BS = ATTN_B, ATTN_H, ATTN_D, ATTN_W, ATTN_BS
    s_list = [1024] if ARGS.smoke else (ARGS.S or ATTN_S)
    modes = ["fwd"] if ARGS.smoke else ["fwd", "fwd+bwd"]
    for S in s_list:
        window_pat = tilejit.patterns.local_1d(S, 2 * W + 1, BS)
        dense_lay = tilejit.AttnLayout(None, 1, S // BS, BS)
        window_lay = window_pat.attn_layout()
        bm = ba.flex_masks(S, W, BS, window_pat.layout)
        live = ba.live_elements(S, W, BS, window_lay.nnz)
        # variant, layout, causal, tilejit's live elements, [(peer, fn, live, what the peer is checked
        # against)]: peers[0] computes tilejit's function and is the reference tilejit is checked
        # against (None); a later peer is checked against the peer it names, or against ATTN_FP32 (a
        # float32 reference of its own function, attention_ref_fp32 with the peer's element mask).
        cases = [
            ("dense", dense_lay, 0, live["dense"],
             [("sdpa", lambda a, b, c: sdpa(a, b, c), live["dense"], None),
              ("flex", lambda a, b, c: flex(a, b, c), live["dense"], "sdpa")]),
            ("causal", dense_lay, 1, live["causal"],
             [("sdpa", lambda a, b, c: sdpa(a, b, c, is_causal=True), live["causal"], None),
              ("flex", lambda a, b, c: flex(a, b, c, block_mask=bm["causal"]), live["causal"], "sdpa")]),
            ("window", window_lay, 0, live["window_block"],
             [("flex (same blocks)", lambda a, b, c: flex(a, b, c, block_mask=bm["wblock"]), live["window_block"],
               None),
              ("flex (element ±512)", lambda a, b, c: flex(a, b, c, block_mask=bm["welem"]), live["window_elem"],
               (ATTN_FP32, lambda qi, ki: (qi - ki).abs() <= W))]),
        ]
        for dt in DTYPES:
            dn = dtype_name(dt)
            shape = (B, H, S, D)
            torch.manual_seed(0)
            q, k, v = (torch.randn(*shape, device="cuda", dtype=dt) for _ in range(3))
            g = torch.randn_like(q)
            o, lse = torch.empty_like(q), torch.empty(B, H, S, device="cuda", dtype=torch.float32)
            dq, dk, dv = torch.empty_like(q), torch.empty_like(q), torch.empty_like(q)
            Q, K_, V, O, L, G, DQ, DK, DV = (tj.p(t) for t in (q, k, v, o, lse, g, dq, dk, dv))
            for variant, lay, causal, tj_live, peers in cases:
                if ARGS.smoke:   # no FlexAttention compiles in the smoke run
                    if variant == "window":
                        continue
                    peers = peers[:1]
                where = f"attention/{variant} {dn} S={S}"
                log(f"[attention] {where}")
                with P.case(where):
                    nat = lay.native(tj.h)
                    f_tj = tj.fn("tj_attention_fwd", Q, K_, V, nat, C.c_double(0.0), causal, O, L)
                    b_tj = tj.fn("tj_attention_bwd", Q, K_, V, O, L, G, nat, C.c_double(0.0), causal, DQ, DK, DV)
                    # every implementation runs once and is checked before anything is timed
                    runs, outs = {}, {}
                    for name, fn, el, _ in [("tilejit", None, tj_live, None)] + peers:
                        with P.case(f"{where} fwd {name}"):
                            run = f_tj if name == "tilejit" else (lambda fn=fn: fn(q, k, v))
                            r = run()
                            sync()
                            outs[name] = (o if name == "tilejit" else r).float().clone()
                            runs[name] = (run, el)
                    if "tilejit" in outs and peers[0][0] in outs:
                        P.check("attention", variant, "fwd", dn, shape, "tilejit",
                                (outs["tilejit"] - outs[peers[0][0]]).abs().max().item(), ATTN_TOL[dn],
                                f"o vs {peers[0][0]}")
                    for name, _, _, ref in peers[1:]:   # every other peer, against its reference
                        if name in outs:
                            want, rname = attn_peer_ref(P, where + " fwd", torch, ref,
                                                        {n: [t] for n, t in outs.items()}, q, k, v, None)
                            attn_peer_check(P, variant, "fwd", dn, shape, name, [outs[name]], want, ATTN_TOL[dn],
                                            f"o vs {rname}")
                    del outs
                    for name, (run, el) in runs.items():
                        with P.case(f"{where} fwd {name} timing"):
                            P.row("attention", variant, "fwd", dn, shape, name, bench(run), "TFLOP/s",
                                  4.0 * B * H * D * el)
                    if "fwd+bwd" not in modes:
                        continue
                    runs, grads = {}, {}
                    for name, fn, el, _ in [("tilejit", None, tj_live, None)] + peers:
                        with P.case(f"{where} fwd+bwd {name}"):
                            leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
                            if name == "tilejit":
                                def run():
                                    f_tj()
                                    b_tj()
                            else:
                                def run(fn=fn, leaves=leaves):
                                    fn(*leaves).backward(g)
                            run()
                            sync()
                            grads[name] = [t.float().clone() for t in ((dq, dk, dv) if name == "tilejit" else
                                                                       [x.grad for x in leaves])]
                            runs[name] = (run, leaves, el)
                    if "tilejit" in grads and peers[0][0] in grads:
                        err = max((a - b).abs().max().item() for a, b in zip(grads["tilejit"], grads[peers[0][0]]))
                        P.check("attention", variant, "fwd+bwd", dn, shape, "tilejit", err, 2 * ATTN_TOL[dn],
                                f"dq,dk,dv vs {peers[0][0]}")
                    for name, _, _, ref in peers[1:]:
                        if name in grads:
                            want, rname = attn_peer_ref(P, where + " fwd+bwd", torch, ref, grads, q, k, v, g)
                            attn_peer_check(P, variant, "fwd+bwd", dn, shape, name, grads[name], want,
                                            2 * ATTN_TOL[dn], f"dq,dk,dv vs {rname}")
                    del grads
                    for name, (run, leaves, el) in runs.items():
                        with P.case(f"{where} fwd+bwd {name} timing"):
                            P.row("attention", variant, "fwd+bwd", dn, shape, name, bench(run, leaves), "TFLOP/s",
                                  3.5 * 4.0 * B * H * D * el)
                    del runs
            del q, k, v, g, o, lse, dq, dk, dv
            torch.cuda.empty_cache()
        dense_lay.free()
        window_lay.free()


# ---------------------------------------------------------------- latency

TJ_TINY = """kernel tiny(y: *f32, x: *f32, n: i32, const BLOCK: i32 = 128) {
    let i = program_id(0) * BLOCK + arange(0, BLOCK);
    let m = i < n;
    store(y + i, load(x + i, m, 0.0) * %s + 1.0, m);
}
"""
TRITON_TINY = '''
import triton
import triton.language as tl


@triton.jit
def tiny(y_ptr, x_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(y_ptr + i, tl.load(x_ptr + i, mask=m, other=0.0) * %s + 1.0, mask=m)
'''


def latency_child(args):
    """One measurement process: --latency-child tilejit|triton with a cache
    dir; prints one JSON line. Timings exclude driver start-up and the
    compiler's own first-use costs: both compile and launch a different
    tiny kernel first (tilejit without its cache; Triton with another
    constant, a kernel no cache has seen either). Back-to-back launches are
    timed through each one's normal Python launch (Kernel.launch(), a
    Triton kernel's [grid](...)), and tilejit's also through prepare()
    (arguments prebuilt once)."""
    res = {"impl": args.latency_child}
    nonce = args.nonce
    n_launch = 200 if args.smoke else 10000
    if args.latency_child == "tilejit":
        import tilejit
        ctx = tilejit.Context(0)
        ctx.set_cache_dir(args.cache_dir)
        x, y = ctx.malloc(4096), ctx.malloc(4096)
        warm = ctx.compile(source=TJ_TINY % "2.0", path="warm.tj", flags=1)   # no cache: driver warm-up only
        warm.launch((1,), y, x, 64)
        ctx.synchronize()
        t0 = time.perf_counter()
        k = ctx.compile(source=TJ_TINY % nonce, path="tiny.tj")
        t1 = time.perf_counter()
        k.launch((1,), y, x, 64)
        ctx.synchronize()
        t2 = time.perf_counter()
        res.update(compile_ms=(t1 - t0) * 1e3, first_launch_ms=(t2 - t1) * 1e3, first_call_ms=(t2 - t0) * 1e3,
                   cache=ctx.cache_stats())
        # in-memory hit: compile again on the same context, and launch
        reps = 100
        t0 = time.perf_counter()
        for _ in range(reps):
            k2 = ctx.compile(source=TJ_TINY % nonce, path="tiny.tj")
            k2.launch((1,), y, x, 64)
            ctx.synchronize()
        res["mem_hit_call_us"] = (time.perf_counter() - t0) / reps * 1e6
        run = k.prepare((1,), y, x, 64)
        # launch_*: Kernel.launch(), the normal path (as Triton's [grid](...));
        # prepared_launch_*: prepare()'s prebuilt arguments, one ctypes call
        for key, fn in (("", lambda: k.launch((1,), y, x, 64)), ("prepared_", run)):
            for _ in range(100):
                fn()
            ctx.synchronize()
            t0 = time.perf_counter()
            for _ in range(n_launch):
                fn()
            t1 = time.perf_counter()
            ctx.synchronize()
            t2 = time.perf_counter()
            res.update({f"{key}launch_submit_us": (t1 - t0) / n_launch * 1e6,
                        f"{key}launch_stream_us": (t2 - t0) / n_launch * 1e6})
        res["launches"] = n_launch
    else:
        os.environ["TRITON_CACHE_DIR"] = args.cache_dir
        import torch
        import importlib.util
        x = torch.zeros(1024, device="cuda")
        y = torch.empty_like(x)
        (x + 1).sum().item()   # driver and torch warm-up

        def load(tag, const):
            path = os.path.join(args.cache_dir, f"tiny_{tag}.py")
            with open(path, "w") as f:
                f.write(TRITON_TINY % const)
            spec = importlib.util.spec_from_file_location(f"tiny_{tag}", path)
            m = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(m)
            return m
        # compiler warm-up with a different kernel (as tilejit's no-cache
        # compile of another constant): the timed first call below pays
        # the new kernel's compile, not Triton's own first-use costs
        warm_const = "2.0" if nonce != "2.0" else "3.0"
        warm = load("warm_" + warm_const.replace(".", "_"), warm_const)
        warm.tiny[(1,)](y, x, 64, BLOCK=128)
        torch.cuda.synchronize()
        mod = load(nonce.replace(".", "_"), nonce)
        t0 = time.perf_counter()
        mod.tiny[(1,)](y, x, 64, BLOCK=128)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        res["first_call_ms"] = (t1 - t0) * 1e3
        reps = 100
        t0 = time.perf_counter()
        for _ in range(reps):
            mod.tiny[(1,)](y, x, 64, BLOCK=128)
            torch.cuda.synchronize()
        res["mem_hit_call_us"] = (time.perf_counter() - t0) / reps * 1e6
        for name, fn in (("triton", lambda: mod.tiny[(1,)](y, x, 64, BLOCK=128)), ("torch op", lambda: y.add_(1.0))):
            for _ in range(100):
                fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(n_launch):
                fn()
            t1 = time.perf_counter()
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            key = "" if name == "triton" else "torch_op_"
            res.update({f"{key}launch_submit_us": (t1 - t0) / n_launch * 1e6,
                        f"{key}launch_stream_us": (t2 - t0) / n_launch * 1e6})
        res["launches"] = n_launch
    print("LATENCY-JSON " + json.dumps(res), flush=True)
    return 0


def part_latency(P):
    import torch
    import tilejit
    nonce = f"{1.0 + (time.time_ns() % 997) / 1e4:.6f}"   # a kernel no cache has seen
    env = dict(os.environ)
    env["TILEJIT_LIBRARY"] = tilejit.library_path()
    env.pop("TILEJIT_CACHE", None)
    results = {}
    with tempfile.TemporaryDirectory(prefix="tj-latency-") as tmp:
        for impl in ("tilejit", "triton"):
            d = os.path.join(tmp, impl)
            os.makedirs(d)
            for phase in ("cold", "disk hit"):
                where = f"latency {impl} {phase}"
                log(f"[latency] {where}")
                with P.case(where):
                    cmd = [sys.executable, os.path.abspath(__file__), "--latency-child", impl, "--cache-dir", d,
                           "--nonce", nonce] + (["--smoke"] if ARGS.smoke else [])
                    t0 = time.perf_counter()
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
                    wall = time.perf_counter() - t0
                    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LATENCY-JSON ")]
                    if out.returncode != 0 or not line:
                        raise RuntimeError(f"child exited {out.returncode}: {out.stderr[-2000:]}")
                    r = json.loads(line[-1][len("LATENCY-JSON "):])
                    r["process_wall_s"] = wall
                    results[(impl, phase)] = r
    lat = []

    def add(what, impl, value, unit, note=""):
        lat.append({"what": what, "impl": impl, "value": value, "unit": unit, "note": note})
    for impl in ("tilejit", "triton"):
        cold, hit = results.get((impl, "cold")), results.get((impl, "disk hit"))
        if cold:
            add("cold compile (new kernel, empty cache): first call", impl, cold["first_call_ms"], "ms",
                "compile + first launch + sync" if impl == "tilejit" else "JIT + launch + sync")
            if impl == "tilejit":
                add("cold compile: DSL to PTX (tj_kernel_compile)", impl, cold["compile_ms"], "ms")
                add("cold compile: first launch (PTX JIT, load)", impl, cold["first_launch_ms"], "ms")
            add("in-memory hit: call again (compile/lookup + launch + sync)", impl, cold["mem_hit_call_us"], "us")
            name = "tilejit (Kernel.launch())" if impl == "tilejit" else impl
            add("launch cost, back-to-back launches (submit, per launch)", name, cold["launch_submit_us"], "us",
                f"{cold['launches']} launches")
            add("launch cost, back-to-back launches (incl. final sync, per launch)", name, cold["launch_stream_us"],
                "us")
            if "prepared_launch_submit_us" in cold:
                name = "tilejit (prepare(): prebuilt arguments)"
                add("launch cost, back-to-back launches (submit, per launch)", name,
                    cold["prepared_launch_submit_us"], "us", f"{cold['launches']} launches")
                add("launch cost, back-to-back launches (incl. final sync, per launch)", name,
                    cold["prepared_launch_stream_us"], "us")
            if "torch_op_launch_submit_us" in cold:
                add("launch cost, back-to-back launches (submit, per launch)", "torch op",
                    cold["torch_op_launch_submit_us"], "us", "y.add_(1.0)")
        if hit:
            add("disk-cache hit (second process, same cache dir): first call", impl, hit["first_call_ms"], "ms")
    # the Python binding's own overhead per block call, against prebuilt DLTensors
    with P.case("latency binding overhead"):
        x = torch.randn(8, 384, 128, device="cuda", dtype=torch.float16)
        y = torch.empty_like(x)
        tj = TJ()
        from tilejit import SoftmaxOpts
        opts = SoftmaxOpts(0, 0, None)
        pre = tj.fn("tj_softmax_fwd", tj.p(x), tj.p(y), C.byref(opts))
        for name, fn in (("tilejit (prebuilt DLTensors)", pre),
                         ("tilejit.softmax(x, out=y) (Python binding)", lambda: tilejit.softmax(x, out=y)),
                         ("torch.softmax", lambda: torch.softmax(x, -1))):
            for _ in range(100):
                fn()
            sync()
            nrep = 200 if ARGS.smoke else 5000
            t0 = time.perf_counter()
            for _ in range(nrep):
                fn()
            t1 = time.perf_counter()
            sync()
            add("block call, softmax 8x384x128 fp16 (submit, per call)", name, (t1 - t0) / nrep * 1e6, "us")
    # raw cuLaunchKernel from C, if the benchmark binary is there
    exe = os.path.join(os.path.dirname(tilejit.library_path()), "bench_gpu_launch")
    if os.path.exists(exe) and not ARGS.smoke:
        with P.case("latency bench_gpu_launch"):
            out = subprocess.run([exe], capture_output=True, text=True, timeout=300)
            for ln in out.stdout.splitlines():
                parts = ln.rsplit(None, 3)
                if len(parts) == 4 and (ln.startswith("raw") or ln.startswith("tj_kernel_launch")):
                    try:
                        add("launch cost from C, empty kernel (submit, per launch)", parts[0].strip(),
                            float(parts[1]), "us", "bench/bench_gpu_launch.c")
                    except ValueError:
                        pass
            P.extra["raw_c_launch"] = out.stdout
    P.extra["latency"] = lat
    for r in lat:
        log(f"  {r['what']:70} {r['impl']:44} {r['value']:10.2f} {r['unit']}")


# ---------------------------------------------------------------- main

ARGS = None
DTYPES = []


def main():
    global ARGS, DTYPES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ",".join(PARTS))
    ap.add_argument("--json-dir", default=os.environ.get("OUT") or os.path.join(REPO, "build-gpu", "bench-json"))
    ap.add_argument("--smoke", action="store_true", help="one small shape per block, fp16 (< 60 s)")
    ap.add_argument("--dtypes", default="fp16,bf16")
    ap.add_argument("--S", type=lambda s: [int(v) for v in s.split(",")], default=None,
                    help="attention sequence lengths (default 4096,16384)")
    ap.add_argument("--variants", default="plain,causal,log", help="softmax variants to measure")
    ap.add_argument("--acts", default=",".join(DROPOUT_ACTS), help="dropout activations to measure")
    ap.add_argument("--compile-variants", default="plain,causal",
                    help="softmax variants that get a torch.compile peer (each shape compiles anew)")
    ap.add_argument("--lib", default=None, help="libtilejit.so (default: $TILEJIT_LIBRARY, build-gpu/)")
    ap.add_argument("--tag", default="", help="suffix of the JSON file names (to split a part)")
    ap.add_argument("--warmup", type=int, default=25)
    ap.add_argument("--rep", type=int, default=100)
    ap.add_argument("--latency-child", choices=["tilejit", "triton"], help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    ap.add_argument("--nonce", default="1.5", help=argparse.SUPPRESS)
    ARGS = args = ap.parse_args()
    lib = args.lib or os.environ.get("TILEJIT_LIBRARY") or os.path.join(REPO, "build-gpu", "libtilejit.so")
    os.environ["TILEJIT_LIBRARY"] = lib
    import tilejit
    tilejit.load_library(lib)
    if args.latency_child:
        return latency_child(args)
    import torch
    names = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    DTYPES = [torch.float16] if args.smoke else [names[d] for d in args.dtypes.split(",")]
    if args.smoke:
        args.warmup, args.rep = 5, 20
    args.compile_variants = args.compile_variants.split(",")
    args.variants = args.variants.split(",")
    args.acts = args.acts.split(",")
    raise_recompile_limit()
    t0 = time.time()
    env = environment()
    copy = copy_bandwidth()
    log(f"{env['gpu']}, driver {env['driver']}, torch {env['torch']}, triton {env['triton']}, tilejit "
        f"{env['tilejit']}: copy bandwidth {copy:.0f} GB/s")
    torch.manual_seed(0)
    status = 0
    for part in args.only.split(","):
        if part not in PARTS:
            log(f"unknown part {part!r}; parts: {', '.join(PARTS)}")
            status = 2
            continue
        P = Part(part, env, copy, args)
        log(f"== {part}")
        with P.case(part):
            globals()["part_" + part](P)
        P.dump(args.json_dir)
        bad = [c for c in P.checks if not c["ok"]]
        log(f"== {part}: {len(P.rows)} timings, {len(P.checks) - len(bad)}/{len(P.checks)} checks agree, "
            f"{len(P.errors)} errors, {time.time() - P.t0:.0f} s")
    log(f"total {time.time() - t0:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
