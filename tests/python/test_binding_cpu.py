#!/usr/bin/env python3
"""test_binding_cpu.py: the Python binding (python/tilejit) on host tensors.

No torch, no numpy, no GPU: kDLCPU tensors run through the tilejit
interpreter, so this runs in CI. Tensors are tilejit.HostTensor (ctypes
memory) and, for the DLPack path, objects that expose only
__dlpack__/__dlpack_device__. Every block is compared with a plain-Python
double-precision reference; tolerances: f32 2e-5 (relative to max(1, |ref|)),
f16 and bf16 results are compared after rounding, 2e-3 / 1.6e-2.

    TILEJIT_LIBRARY=build/libtilejit.so python3 tests/python/test_binding_cpu.py
"""
import math
import os
import random
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import tilejit as tj  # noqa: E402
from tilejit import HostTensor, TilejitError  # noqa: E402

TOL = {"f32": 2e-5, "f16": 2e-3, "bf16": 1.6e-2}


def rnd(n, seed, lo=-2.0, hi=2.0):
    r = random.Random(seed)
    return [r.uniform(lo, hi) for _ in range(n)]


def host(vals, shape, dtype="f32"):
    return HostTensor.from_list(vals, shape, dtype)


def rounded(vals, dtype):
    """vals as they are after a round trip through dtype."""
    return HostTensor.from_list(vals, (len(vals),), dtype).tolist()


def rows(vals, K):
    return [vals[i:i + K] for i in range(0, len(vals), K)]


class DLPackOnly:
    """Exposes a tensor through the DLPack protocol only."""

    def __init__(self, t):
        self.t = t
        self.shape = t.shape
        self.calls = 0

    def __dlpack__(self, stream=None):
        self.calls += 1
        return self.t.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


class Case(unittest.TestCase):
    def close(self, got, want, dtype="f32", what=""):
        self.assertEqual(len(got), len(want), what)
        tol = TOL[dtype]
        for i, (g, w) in enumerate(zip(got, want)):
            if math.isinf(w) and g == w:
                continue
            self.assertLessEqual(abs(g - w), tol * max(1.0, abs(w)), f"{what} element {i}: {g} vs {w}")


# ---------------------------------------------------------------- references

def ref_softmax(x, K, log=False, causal=False, seq=None, mask=None):
    out = []
    for r, row in enumerate(rows(x, K)):
        i = r % seq if seq else r
        v = list(row)
        if mask is not None:
            m = mask[(i % (len(mask) // K)) * K:(i % (len(mask) // K)) * K + K]
            v = [a + b for a, b in zip(v, m)]
        if causal:
            v = [a if j <= i else -math.inf for j, a in enumerate(v)]
        mx = max(v)
        e = [math.exp(a - mx) for a in v]
        s = sum(e)
        out += [a - mx - math.log(s) for a in v] if log else [a / s for a in e]
    return out


def ref_softmax_bwd(y, dy, K, log=False):
    out = []
    for yr, gr in zip(rows(y, K), rows(dy, K)):
        if log:
            s = sum(gr)
            out += [g - math.exp(a) * s for a, g in zip(yr, gr)]
        else:
            s = sum(a * g for a, g in zip(yr, gr))
            out += [a * (g - s) for a, g in zip(yr, gr)]
    return out


def ref_layernorm(x, K, w, b, eps, rms=False):
    y, means, rstds = [], [], []
    for row in rows(x, K):
        mean = 0.0 if rms else sum(row) / K
        var = sum((a - mean) ** 2 for a in row) / K
        rstd = 1.0 / math.sqrt(var + eps)
        y += [(a - mean) * rstd * (w[j] if w else 1.0) + (b[j] if b else 0.0) for j, a in enumerate(row)]
        means.append(mean)
        rstds.append(rstd)
    return y, means, rstds


def ref_layernorm_bwd(dy, x, K, w, eps, rms=False):
    _, means, rstds = ref_layernorm(x, K, w, None, eps, rms)
    dx, dw, db = [], [0.0] * K, [0.0] * K
    for r, (xr, gr) in enumerate(zip(rows(x, K), rows(dy, K))):
        xh = [(a - means[r]) * rstds[r] for a in xr]
        dxh = [g * (w[j] if w else 1.0) for j, g in enumerate(gr)]
        c1 = sum(a * b for a, b in zip(dxh, xh)) / K
        c2 = 0.0 if rms else sum(dxh) / K
        dx += [rstds[r] * (d - c2 - h * c1) for d, h in zip(dxh, xh)]
        for j in range(K):
            dw[j] += gr[j] * xh[j]
            db[j] += gr[j]
    return dx, dw, db


def philox(ctr, key):
    x = list(ctr)
    k0, k1 = key
    M = 0xFFFFFFFF
    for _ in range(10):
        a, b = x[0] * 0xD2511F53, x[2] * 0xCD9E8D57
        x = [((b >> 32) ^ x[1] ^ k0) & M, b & M, ((a >> 32) ^ x[3] ^ k1) & M, a & M]
        k0, k1 = (k0 + 0x9E3779B9) & M, (k1 + 0xBB67AE85) & M
    return x


def ref_keep(seed, offset, i, p):
    c = (offset + i // 4) % (1 << 64)
    w = philox([c & 0xFFFFFFFF, c >> 32, 0, 0], [seed & 0xFFFFFFFF, seed >> 32])
    return (w[i % 4] >> 8) * (1.0 / 16777216.0) >= p


def ref_act(name, v, a, b):
    relu = max(v, 0.0)
    k = math.sqrt(2.0 / math.pi)
    return {"none": v, "relu": relu, "leaky_relu": v if v > 0 else a * v,
            "gelu": 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
            "gelu_tanh": 0.5 * v * (1.0 + math.tanh(k * (v + 0.044715 * v ** 3))),
            "squared_relu": relu * relu,
            "smelu": 0.0 if v <= -a else v if v >= a else (v + a) ** 2 / (4 * a),
            "star_relu": a * relu * relu + b}[name]


def ref_act_grad(name, v, a, b):
    k = math.sqrt(2.0 / math.pi)
    t = math.tanh(k * (v + 0.044715 * v ** 3))
    return {"none": 1.0, "relu": 1.0 if v > 0 else 0.0, "leaky_relu": 1.0 if v > 0 else a,
            "gelu": 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) + v * math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi),
            "gelu_tanh": 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v),
            "squared_relu": 2.0 * max(v, 0.0),
            "smelu": 0.0 if v <= -a else 1.0 if v >= a else (v + a) / (2 * a),
            "star_relu": 2.0 * a * max(v, 0.0)}[name]


def ref_attention(q, k, v, B, H, S, D, live, scale):
    """o, lse, and the probabilities P per (b, h), in double."""
    o, lse, probs = [], [], []
    for bh in range(B * H):
        base = bh * S * D
        P = []
        for i in range(S):
            s = [sum(q[base + i * D + d] * k[base + j * D + d] for d in range(D)) * scale if live(bh % H, i, j)
                 else -math.inf for j in range(S)]
            mx = max(s)
            if mx == -math.inf:
                P.append([0.0] * S)
                lse.append(-math.inf)
                o += [0.0] * D
                continue
            e = [math.exp(a - mx) for a in s]
            z = sum(e)
            p = [a / z for a in e]
            P.append(p)
            lse.append(mx + math.log(z))
            o += [sum(p[j] * v[base + j * D + d] for j in range(S)) for d in range(D)]
        probs.append(P)
    return o, lse, probs


def ref_attention_bwd(q, k, v, o, dout, probs, B, H, S, D, scale):
    dq, dk, dv = [0.0] * len(q), [0.0] * len(k), [0.0] * len(v)
    for bh in range(B * H):
        base, P = bh * S * D, probs[bh]
        for i in range(S):
            delta = sum(o[base + i * D + d] * dout[base + i * D + d] for d in range(D))
            for j in range(S):
                if P[i][j] == 0.0:
                    continue
                dp = sum(dout[base + i * D + d] * v[base + j * D + d] for d in range(D))
                ds = P[i][j] * (dp - delta)
                for d in range(D):
                    dq[base + i * D + d] += scale * ds * k[base + j * D + d]
                    dk[base + j * D + d] += scale * ds * q[base + i * D + d]
                    dv[base + j * D + d] += P[i][j] * dout[base + i * D + d]
    return dq, dk, dv


# ---------------------------------------------------------------- tests

class TestLoading(Case):
    def test_version_and_registry(self):
        self.assertRegex(tj.version(), r"^\d+\.\d+\.\d+")
        self.assertTrue(os.path.exists(tj.library_path()))
        names = tj.block_names()
        for n in ("softmax", "softmax_bwd", "layernorm", "layernorm_bwd", "dropout", "attention"):
            self.assertIn(n, names)
        info = tj.block_info("softmax")
        self.assertEqual([t["name"] for t in info["tensors"]][:2], ["x", "y"])

    def test_one_handle_per_device(self):
        self.assertIs(tj.get_blocks("cpu"), tj.get_blocks("cpu"))


class TestSoftmax(Case):
    def test_fwd_dtypes_variants(self):
        B, M, K = 2, 5, 13
        x = rnd(B * M * K, 1, -4, 4)
        for dtype in ("f32", "f16", "bf16"):
            xr = rounded(x, dtype)
            for log in (False, True):
                for causal in (False, True):
                    X = host(x, (B, M, K), dtype)
                    y = tj.softmax(X, log=log, causal=causal)
                    self.assertIsInstance(y, HostTensor)
                    self.assertEqual((y.shape, y.dtype), ((B, M, K), dtype))
                    want = rounded(ref_softmax(xr, K, log, causal, seq=M), dtype)
                    self.close(y.tolist(), want, dtype, f"softmax {dtype} log={log} causal={causal}")

    def test_mask_and_inplace(self):
        M, K = 4, 8
        x = rnd(M * K, 2)
        mask = [0.0 if (j % 3) else -1e4 for j in range(K)]
        X = host(x, (M, K))
        y = tj.softmax(X, mask=host(mask, (K,)))
        self.close(y.tolist(), ref_softmax(x, K, mask=mask), what="masked softmax")
        out = tj.softmax(X, out=X)
        self.assertIs(out, X)
        self.close(X.tolist(), ref_softmax(x, K), what="in place")

    def test_bwd(self):
        M, K = 6, 9
        x, dy = rnd(M * K, 3), rnd(M * K, 4)
        for log in (False, True):
            y = tj.softmax(host(x, (M, K)), log=log)
            dx = tj.softmax_backward(y, host(dy, (M, K)), log=log)
            self.close(dx.tolist(), ref_softmax_bwd(y.tolist(), dy, K, log), what=f"softmax bwd log={log}")

    def test_strided_rows(self):
        # a [M, K] view of rows padded to K + 3: the blocks read it in place
        M, K, P = 5, 7, 10
        base = host(rnd(M * P, 5), (M, P))
        X = base.view((M, K), (P, 1))
        y = tj.softmax(X)
        self.close(y.tolist(), ref_softmax(X.tolist(), K), what="strided")

    def test_dlpack_protocol(self):
        M, K = 3, 6
        x = rnd(M * K, 6)
        X, Y = DLPackOnly(host(x, (M, K))), DLPackOnly(HostTensor.empty((M, K)))
        out = tj.softmax(X, out=Y)
        self.assertIs(out, Y)
        self.assertEqual((X.calls, Y.calls), (1, 1))
        self.close(Y.t.tolist(), ref_softmax(x, K), what="dlpack")
        with self.assertRaises(TypeError):   # nothing to allocate an output like
            tj.softmax(X)


class TestNorms(Case):
    def test_layernorm_fwd_bwd(self):
        B, M, K = 2, 3, 24
        x, w, b, dy = rnd(B * M * K, 7), rnd(K, 8, 0.5, 1.5), rnd(K, 9), rnd(B * M * K, 10)
        for dtype in ("f32", "bf16"):
            xr, wr, br, dyr = (rounded(v, dtype) for v in (x, w, b, dy))
            X, W, Bb = host(x, (B, M, K), dtype), host(w, (K,), dtype), host(b, (K,), dtype)
            y, mean, rstd = tj.layer_norm(X, W, Bb, 1e-5)
            self.assertEqual((mean.shape, mean.dtype), ((B, M), "f32"))
            want, wm, wr_ = ref_layernorm(xr, K, wr, br, 1e-5)
            self.close(y.tolist(), rounded(want, dtype), dtype, f"layernorm {dtype}")
            self.close(mean.tolist(), wm, "f32", "mean")
            self.close(rstd.tolist(), wr_, "f32" if dtype == "f32" else "f16", "rstd")
            dx, dw, db = tj.layer_norm_backward(host(dy, (B, M, K), dtype), X, W, mean, rstd)
            rdx, rdw, rdb = ref_layernorm_bwd(dyr, xr, K, wr, 1e-5)
            tol = "f32" if dtype == "f32" else "bf16"
            self.close(dx.tolist(), rdx, tol, f"layernorm dx {dtype}")
            self.close(dw.tolist(), rdw, tol, f"layernorm dw {dtype}")
            self.close(db.tolist(), rdb, tol, f"layernorm db {dtype}")

    def test_layernorm_no_affine_and_skip_grads(self):
        M, K = 4, 16
        x, dy = rnd(M * K, 11), rnd(M * K, 12)
        X = host(x, (M, K))
        y, mean, rstd = tj.layer_norm(X)
        self.close(y.tolist(), ref_layernorm(x, K, None, None, 1e-5)[0], what="layernorm no affine")
        dx, dw, db = tj.layer_norm_backward(host(dy, (M, K)), X, None, mean, rstd)
        self.assertIsNone(dw)
        self.assertIsNone(db)
        self.close(dx.tolist(), ref_layernorm_bwd(dy, x, K, None, 1e-5)[0], what="layernorm dx no affine")

    def test_rmsnorm_fwd_bwd_workspace(self):
        M, K = 5, 32
        x, w, dy = rnd(M * K, 13), rnd(K, 14, 0.5, 1.5), rnd(M * K, 15)
        X, W = host(x, (M, K)), host(w, (K,))
        y, rstd = tj.rms_norm(X, W, 1e-6)
        want, _, wr = ref_layernorm(x, K, w, None, 1e-6, rms=True)
        self.close(y.tolist(), want, what="rmsnorm")
        self.close(rstd.tolist(), wr, what="rmsnorm rstd")
        n = tj.norm_bwd_workspace_size(X)
        self.assertIsInstance(n, int)
        ws = HostTensor.empty((max(n, 16),), "u8")
        dx, dw = tj.rms_norm_backward(host(dy, (M, K)), X, W, rstd, workspace=ws)
        rdx, rdw, _ = ref_layernorm_bwd(dy, x, K, w, 1e-6, rms=True)
        self.close(dx.tolist(), rdx, what="rmsnorm dx")
        self.close(dw.tolist(), rdw, what="rmsnorm dw")


class TestDropout(Case):
    def test_every_activation_no_dropout(self):
        M, K = 3, 20
        x, b, dy = rnd(M * K, 16, -3, 3), rnd(K, 17, -0.5, 0.5), rnd(M * K, 18)
        X, Bb = host(x, (M, K)), host(b, (K,))
        for act in tj.ACTIVATIONS:
            a, c = {"leaky_relu": (0.01, 0.0), "smelu": (2.0, 0.0), "star_relu": (0.8944, -0.4472)}.get(act, (0, 0))
            y = tj.dropout_act(X, Bb, p=0.0, activation=act)
            v = [xi + b[i % K] for i, xi in enumerate(x)]
            self.close(y.tolist(), [ref_act(act, t, a, c) for t in v], what=f"act {act}")
            dx, db = tj.dropout_act_backward(host(dy, (M, K)), X, Bb, p=0.0, activation=act)
            want = [g * ref_act_grad(act, t, a, c) for g, t in zip(dy, v)]
            self.close(dx.tolist(), want, what=f"act {act} dx")
            self.close(db.tolist(), [sum(want[r * K + j] for r in range(M)) for j in range(K)], what=f"{act} db")

    def test_mask_follows_philox(self):
        M, K, p = 4, 33, 0.3
        x, b, dy = rnd(M * K, 19), rnd(K, 20), rnd(M * K, 21)
        X, Bb, DY = host(x, (M, K)), host(b, (K,)), host(dy, (M, K))
        seed, offset = 0x1234_5678_9ABC, 77
        kw = dict(p=p, activation="leaky_relu", act_a=0.1, seed=seed, offset=offset)
        y = tj.dropout_act(X, Bb, **kw)
        scale = float(HostTensor.from_list([1 / (1 - p)]).tolist()[0])   # f32(1 / (1 - p))
        keep = [ref_keep(seed, offset, i, p) for i in range(M * K)]
        self.assertTrue(0 < sum(keep) < M * K)
        v = [xi + b[i % K] for i, xi in enumerate(x)]
        self.close(y.tolist(), [ref_act("leaky_relu", t, 0.1, 0) * scale if k else 0.0 for t, k in zip(v, keep)],
                   what="dropout fwd")
        dx, db = tj.dropout_act_backward(DY, X, Bb, **kw)
        want = [g * scale * ref_act_grad("leaky_relu", t, 0.1, 0) if k else 0.0 for g, t, k in zip(dy, v, keep)]
        self.close(dx.tolist(), want, what="dropout bwd")
        self.close(db.tolist(), [sum(want[r * K + j] for r in range(M)) for j in range(K)], what="dropout dbias")
        self.assertEqual(tj.dropout_counters(M * K), (M * K + 3) // 4)

    def test_backward_needs_seed(self):
        X = host(rnd(8, 22), (2, 4))
        with self.assertRaises(ValueError):
            tj.dropout_act_backward(X, X, p=0.5)


class TestAttention(Case):
    def test_blocksparse_causal_fwd_bwd(self):
        B, H, S, D, bs = 1, 2, 32, 32, 16
        n = B * H * S * D
        q, k, v, g = (rnd(n, 30 + i, -1, 1) for i in range(4))
        nb = S // bs
        bits = [1, 0, 1, 1,   # head 0: block (0, 1) off
                1, 1, 0, 1]   # head 1: block (1, 0) off
        lay = tj.AttnLayout(bits, heads=H, nb=nb, bs=bs)
        self.assertEqual(lay.nnz, 6)
        scale = 1 / math.sqrt(D)

        def live(h, i, j):
            return bits[h * nb * nb + (i // bs) * nb + j // bs] and j <= i

        Q, K_, V = (host(t, (B, H, S, D)) for t in (q, k, v))
        o, lse = tj.attention(Q, K_, V, lay, causal=True)
        self.assertEqual(lse.shape, (B, H, S))
        ro, rlse, probs = ref_attention(q, k, v, B, H, S, D, live, scale)
        self.close(o.tolist(), ro, what="attention o")
        self.close(lse.tolist(), rlse, what="attention lse")
        dq, dk, dv = tj.attention_backward(Q, K_, V, o, lse, host(g, (B, H, S, D)), lay, causal=True)
        rdq, rdk, rdv = ref_attention_bwd(q, k, v, ro, g, probs, B, H, S, D, scale)
        for name, got, want in (("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
            self.close(got.tolist(), want, "f16", f"attention {name}")   # f32 math, summation order differs

    def test_dense_default_layout_and_pattern(self):
        B, H, S, D = 1, 1, 32, 32
        n = B * H * S * D
        q, k, v = (rnd(n, 40 + i, -1, 1) for i in range(3))
        Q, K_, V = (host(t, (B, H, S, D)) for t in (q, k, v))
        o, _ = tj.attention(Q, K_, V)
        self.close(o.tolist(), ref_attention(q, k, v, B, H, S, D, lambda h, i, j: True, D ** -0.5)[0],
                   what="dense")
        pat = tj.patterns.local_1d(S, 9, 16)    # |i - j| <= 4, pooled to 16-blocks
        self.assertEqual(pat.layout, bytes([1, 1, 1, 1]))
        pat = tj.patterns.causal_1d(S, 16, mask=True)
        self.assertEqual(pat.layout, bytes([1, 0, 1, 1]))
        self.assertEqual(pat.mask[:3], bytes([1, 0, 0]))
        o2, _ = tj.attention(Q, K_, V, pat, scale=0.5, causal=True)   # the layout is block-level
        self.close(o2.tolist(), ref_attention(q, k, v, B, H, S, D, lambda h, i, j: j <= i, 0.5)[0],
                   what="causal pattern")

    def test_patterns(self):
        S, bs = 64, 16
        for name, pat in (("local", tj.patterns.local_1d(S, 17, bs, mask=True)),
                          ("global", tj.patterns.global_tokens(S, [0, 40], bs, mask=True)),
                          ("longformer", tj.patterns.longformer(S, 17, [0], bs, mask=True)),
                          ("random", tj.patterns.random(S, 0.1, seed=3, heads=2, bs=bs, mask=True)),
                          ("bigbird", tj.patterns.bigbird(S, 9, [0], 0.05, heads=2, bs=bs, mask=True)),
                          ("axial", tj.patterns.axial_2d(8, 8, -1, bs, mask=True)),
                          ("local2d", tj.patterns.local_2d(8, 8, 2.0, 2.0, bs, mask=True)),
                          ("swin", tj.patterns.swin(8, 8, 4, 2, bs, mask=True)),
                          ("dilated", tj.patterns.dilated_2d(8, 8, 2, bs, mask=True))):
            self.assertEqual(len(pat.mask), pat.heads * S * S, name)
            self.assertEqual(pat.layout, tj.patterns.to_layout(pat.mask, S, bs, pat.heads), name)
        m = tj.patterns.local_1d(S, 17, bs, mask=True).mask
        self.assertEqual(list(m), [1 if abs(i - j) <= 8 else 0 for i in range(S) for j in range(S)])


class TestErrors(Case):
    def assert_error(self, fn, status, *fragments):
        with self.assertRaises(TilejitError) as cm:
            fn()
        e = cm.exception
        self.assertEqual(e.status_name, status, str(e))
        for f in fragments:
            self.assertIn(f, e.message)
        self.assertIn(e.message, str(e))
        return e

    def test_wrong_dtype(self):
        X = host([1, 2, 3, 4], (2, 2), "i32")
        e = self.assert_error(lambda: tj.softmax(X, out=HostTensor.empty((2, 2))), "TJ_ERR_INVALID_ARG",
                              "dtype i32", "softmax supports")
        self.assertEqual(e.status, 1)
        self.assertEqual(e.function, "tj_softmax_fwd")

    def test_mismatched_shapes(self):
        self.assert_error(lambda: tj.softmax(host(rnd(6, 1), (2, 3)), out=HostTensor.empty((3, 2))),
                          "TJ_ERR_INVALID_ARG", "shape")
        X = host(rnd(12, 2), (3, 4))
        self.assert_error(lambda: tj.layer_norm(X, host([1.0] * 5, (5,))), "TJ_ERR_INVALID_ARG", "[K] = [4]")
        q = host(rnd(2 * 32 * 32, 3), (1, 2, 32, 32))
        self.assert_error(lambda: tj.attention(q, q, q, tj.AttnLayout(None, 1, 3, 16)), "TJ_ERR_INVALID_ARG")

    def test_null(self):
        self.assert_error(lambda: tj.softmax(None, out=HostTensor.empty((2, 2))), "TJ_ERR_INVALID_ARG",
                          "x is NULL")
        d, keep = tj.dlpack.make_dltensor(None, (2, 2), None, 2, 32)
        self.assert_error(lambda: tj.softmax(d, out=HostTensor.empty((2, 2))), "TJ_ERR_INVALID_ARG", "NULL data")

    def test_bad_pattern_and_activation(self):
        self.assert_error(lambda: tj.patterns.local_1d(100, 5, 64), "TJ_ERR_INVALID_ARG")
        with self.assertRaises(ValueError):
            tj.dropout_act(host([1.0], (1,)), activation="swish")

    def test_message_does_not_leak_between_calls(self):
        X = host(rnd(4, 1), (2, 2))
        try:
            tj.softmax(host([1, 2, 3, 4], (2, 2), "i32"), out=X)
        except TilejitError:
            pass
        tj.softmax(X)   # succeeds: no exception from a stale message


class TestKernelAPI(Case):
    SRC = """kernel axpy(y: *f32, x: *f32, a: f32, n: i32, const BLOCK: i32 = 16) {
    let i = program_id(0) * BLOCK + arange(0, BLOCK);
    let m = i < n;
    store(y + i, a * load(x + i, m, 0.0) + load(y + i, m, 0.0), m);
}
"""

    def test_compile_and_interpret(self):
        ctx = tj.Context()
        k = ctx.compile(source=self.SRC, flags=2)   # TJ_COMPILE_FRONTEND: no LLVM needed to interpret
        self.assertEqual(k.name, "axpy")
        x, y = host(rnd(20, 50), (20,)), host(rnd(20, 51), (20,))
        want = [2.5 * a + b for a, b in zip(x.tolist(), y.tolist())]
        k.interpret((2,), y, x, 2.5, 20)
        self.close(y.tolist(), want, what="axpy")

    def test_fp_fusion_flag(self):
        # a * x + y is one fma by default; COMPILE_NO_FP_FUSION keeps the
        # multiply and the add apart (the PTX needs LLVM but no GPU).
        ctx = tj.Context()
        fused = ctx.compile(source=self.SRC, arch="sm_80", flags=tj.COMPILE_NO_CACHE).ptx
        apart = ctx.compile(source=self.SRC, arch="sm_80",
                            flags=tj.COMPILE_NO_CACHE | tj.COMPILE_NO_FP_FUSION).ptx
        self.assertIn("fma.rn.f32", fused)
        self.assertNotIn("mul.rn.f32", fused)
        self.assertNotIn("fma.rn.f32", apart)
        self.assertIn("mul.rn.f32", apart)

    def test_compile_error_and_bounds(self):
        ctx = tj.Context()
        with self.assertRaises(TilejitError) as cm:
            ctx.compile(source="kernel k(x: *f32) { let a = nope; }", path="bad.tj")
        self.assertEqual(cm.exception.status_name, "TJ_ERR_COMPILE")
        self.assertIn("bad.tj:1:", cm.exception.message)
        k = ctx.compile(source=self.SRC, flags=2)
        x, y = host(rnd(20, 50), (20,)), host(rnd(20, 51), (20,))
        with self.assertRaises(TilejitError) as cm:
            k.interpret((2,), y, x, 1.0, 32)   # n past the buffers
        self.assertEqual(cm.exception.status_name, "TJ_ERR_BOUNDS")


# ---------------------------------------------------------------- review regressions

BENCH = os.path.join(HERE, "..", "..", "bench")


class _Stop(Exception):
    pass


class FakeTorchModule:
    """Installs a stand-in "torch" module (only where torch is not
    installed) whose Tensor class the binding takes for torch tensors."""

    def __enter__(self):
        import importlib.util
        import types
        if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
            raise unittest.SkipTest("torch is installed: test_binding_torch.py covers this")
        self.mod = types.ModuleType("torch")

        class Tensor:
            def __init__(self, address, nbytes, contiguous=True, device="cpu"):
                self.address, self.nbytes, self.contiguous = address, nbytes, contiguous
                self.device = types.SimpleNamespace(type=device, index=0 if device == "cuda" else None)

            def is_contiguous(self):
                return self.contiguous

            def data_ptr(self):
                return self.address

            def numel(self):
                return self.nbytes

            def element_size(self):
                return 1
        self.mod.Tensor = Tensor
        sys.modules["torch"] = self.mod
        return self.mod

    def __exit__(self, *exc):
        del sys.modules["torch"]
        return False


class TestTorchDLTensorCache(unittest.TestCase):
    """Block calls reuse the DLTensor of a torch tensor with the same data
    pointer, shape, strides, dtype and device (dlpack._from_torch): exact
    hits only, and the cache never keeps a tensor alive."""

    def test_hits_are_exact_and_hold_no_tensor(self):
        import collections
        import gc
        import weakref
        from tilejit import dlpack
        Dev = collections.namedtuple("Dev", "type index")
        with FakeTorchModule() as mod:
            class T(mod.Tensor):
                def __init__(self, address, shape, strides, dtype="torch.float16"):
                    super().__init__(address, 0, device="cuda")
                    self.device = Dev("cuda", 0)
                    self.shape, self._strides, self.dtype = shape, strides, dtype

                def stride(self):
                    return self._strides
            dlpack._dl_cache.clear()
            a = T(4096, (2, 3), (3, 1))
            d1, _ = dlpack.to_dltensor(a)
            d2, _ = dlpack.to_dltensor(T(4096, (2, 3), (3, 1)))
            self.assertIs(d1, d2)
            for other in (T(8192, (2, 3), (3, 1)), T(4096, (3, 2), (2, 1)), T(4096, (2, 3), (4, 1)),
                          T(4096, (2, 3), (3, 1), "torch.float32")):
                d, _ = dlpack.to_dltensor(other)
                self.assertIsNot(d, d1)
                self.assertEqual((d.data, list(d.shape[:2]), list(d.strides[:2]), d.dtype.bits),
                                 (other.data_ptr(), list(other.shape), list(other.stride()),
                                  32 if other.dtype == "torch.float32" else 16))
            self.assertEqual((d1.data, d1.ndim, d1.shape[0], d1.shape[1], d1.strides[0], d1.device.device_type),
                             (4096, 2, 2, 3, 3, 2))
            r = weakref.ref(a)
            del a
            gc.collect()
            self.assertIsNone(r())
            dlpack._dl_cache.clear()


class TestTorchLaunchArgs(unittest.TestCase):
    """Kernel launches read a torch tensor's pointer and strided span
    directly (dlpack.torch_buffer), without building a DLTensor: the same
    values as to_dltensor + nbytes_of, for contiguous, strided, broadcast
    (stride 0), empty and bool tensors; an unsupported dtype is refused."""

    def test_torch_buffer_matches_the_dltensor(self):
        from tilejit.core import Kernel
        from tilejit.dlpack import nbytes_of, to_dltensor, torch_buffer
        with FakeTorchModule() as mod:
            class Dtype:
                def __init__(self, name):
                    self.name = name

                def __str__(self):
                    return self.name

            class Strided(mod.Tensor):   # the stand-in's pointer and device, plus shape, strides, dtype
                def __init__(self, ptr, shape, stride, dtype="torch.float16", es=2):
                    super().__init__(ptr, 0, device="cuda")
                    self.shape, self._stride, self.dtype, self.es = tuple(shape), tuple(stride), Dtype(dtype), es

                def stride(self):
                    return self._stride

                def element_size(self):
                    return self.es

                def numel(self):
                    n = 1
                    for s in self.shape:
                        n *= s
                    return n
            cases = [Strided(4096, (4, 5), (5, 1)), Strided(8192, (4, 5), (16, 1)), Strided(256, (0, 5), (5, 1)),
                     Strided(64, (3, 7), (0, 1), "torch.float32", 4), Strided(32, (2, 1, 3), (3, 3, 1), "torch.bool", 1)]
            for t in cases:
                d, _ = to_dltensor(t)
                want = ((d.data or 0) + d.byte_offset, max(0, nbytes_of(d) - d.byte_offset))
                self.assertEqual(torch_buffer(t), want, t.shape)
                a, n, keep = Kernel._args(None, (t, 3))
                self.assertEqual((n, a[0].u.buf.ptr or 0, a[0].u.buf.nbytes), (2, want[0], want[1]))
                self.assertEqual(keep, [])   # nothing built to keep alive
            with self.assertRaises(TypeError):
                torch_buffer(Strided(0, (2,), (1,), "torch.complex64", 8))


class TestReviewRegressions(Case):
    def attn_inputs(self, B=1, H=1, S=32, D=32, seed=60):
        n = B * H * S * D
        q, k, v, g = (rnd(n, seed + i, -1, 1) for i in range(4))
        return [host(t, (B, H, S, D)) for t in (q, k, v, g)]

    def test_temporary_attn_layout_lives_through_the_call(self):
        # fix 1: a layout built for the call (a Pattern-like object whose
        # attn_layout() returns a new AttnLayout) must not be freed before
        # the C call that uses its native layout
        S, bs = 32, 16
        created, freed = [], []

        class Tracked(tj.AttnLayout):
            def __init__(self, *a):
                super().__init__(*a)
                self.serial = len(created)
                created.append(self.serial)

            def free(self):
                freed.append(self.serial)
                super().free()

        class TempPattern:
            def attn_layout(self):
                return Tracked(None, 1, S // bs, bs)

        alive_at_call = []
        real = tj.Blocks.call

        def spy(h, name, *args):
            if name in ("tj_attention_fwd", "tj_attention_bwd"):
                alive_at_call.append((name, created[-1] not in freed))
            return real(h, name, *args)
        Q, K_, V, G = self.attn_inputs()
        tj.Blocks.call = spy
        try:
            o, lse = tj.attention(Q, K_, V, TempPattern(), causal=True)
            dq, dk, dv = tj.attention_backward(Q, K_, V, o, lse, G, TempPattern(), causal=True)
        finally:
            tj.Blocks.call = real
        self.assertEqual(alive_at_call, [("tj_attention_fwd", True), ("tj_attention_bwd", True)])
        o2, _ = tj.attention(Q, K_, V, None, causal=True)
        self.assertEqual(o.tolist(), o2.tolist())

    def test_pattern_attn_layout_built_once_across_threads(self):
        import threading
        import time
        pat = tj.patterns.local_1d(64, 17, 16)
        real = tj.patterns.AttnLayout

        def slow(*a):   # widens the window between the check and the assignment
            time.sleep(0.02)
            return real(*a)
        tj.patterns.AttnLayout = slow
        try:
            start, got = threading.Barrier(6), []

            def worker():
                start.wait()
                got.append(pat.attn_layout())
            ts = [threading.Thread(target=worker) for _ in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        finally:
            tj.patterns.AttnLayout = real
        self.assertEqual(len(got), 6)
        self.assertEqual(len({id(x) for x in got}), 1)

    def test_to_layout_checks_the_mask_length(self):
        # fix 2: the library reads heads * S * S bytes of the mask
        S, bs = 32, 16
        m = tj.patterns.local_1d(S, 9, bs, mask=True).mask
        self.assertEqual(tj.patterns.to_layout(m, S, bs), tj.patterns.local_1d(S, 9, bs).layout)
        for bad in (m[:-1], m[:S], b"", m + b"\x01", [1] * (S * S - 1)):
            with self.assertRaises(ValueError):
                tj.patterns.to_layout(bad, S, bs)
        with self.assertRaises(ValueError):
            tj.patterns.to_layout(m, S, bs, heads=2)            # one head's mask for two heads
        # sizes the C parameters would wrap (and the buffers be sized from the unwrapped value)
        with self.assertRaises(ValueError):
            tj.patterns.to_layout(m, S, bs, heads=(1 << 32) + 1)
        with self.assertRaises(ValueError):
            tj.patterns.causal_1d(S, (1 << 64) + 16)
        with self.assertRaises(ValueError):
            tj.patterns.random(S, 0.5, heads=-(1 << 32) + 2, bs=bs)
        with self.assertRaises(ValueError):
            tj.patterns.global_tokens(S, [(1 << 64) + 1], bs)
        with self.assertRaises(ValueError):
            tj.patterns.local_1d(S + 0.5, 9, bs)
        # bad but representable parameters are still the library's to report
        with self.assertRaises(TilejitError):
            tj.patterns.to_layout(m, S, 5)
        with self.assertRaises(TilejitError):
            tj.patterns.random(S, 0.5, heads=0, bs=bs)
        with self.assertRaises(TilejitError):
            tj.patterns.axial_2d(-4, -8, bs=bs)

    def test_torch_workspace_checked(self):
        # fix 4: a torch workspace must be contiguous and on the call's device
        import ctypes as C
        M, K = 4, 16
        x, w, dy = rnd(M * K, 70), rnd(K, 71, 0.5, 1.5), rnd(M * K, 72)
        X, W, DY = host(x, (M, K)), host(w, (K,)), host(dy, (M, K))
        y, rstd = tj.rms_norm(X, W)
        want, _ = tj.rms_norm_backward(DY, X, W, rstd)
        buf = C.create_string_buffer(4096 + 16)
        addr = (C.addressof(buf) + 15) & ~15
        with FakeTorchModule() as torch:
            with self.assertRaises(ValueError) as cm:
                tj.rms_norm_backward(DY, X, W, rstd, workspace=torch.Tensor(addr, 4096, contiguous=False))
            self.assertIn("contiguous", str(cm.exception))
            with self.assertRaises(ValueError) as cm:
                tj.rms_norm_backward(DY, X, W, rstd, workspace=torch.Tensor(addr, 4096, device="cuda"))
            self.assertIn("device", str(cm.exception))
            dx, _ = tj.rms_norm_backward(DY, X, W, rstd, workspace=torch.Tensor(addr, 4096))
        self.assertEqual(dx.tolist(), want.tolist())

    def test_block_call_leaves_the_scalars_dict_alone(self):
        # fix 5
        x = rnd(12, 73)
        X, Y = host(x, (3, 4)), HostTensor.empty((3, 4))
        scalars = {"log": 1}
        tj.block_call("softmax", [X, Y, None], scalars)
        self.assertEqual(scalars, {"log": 1})
        self.close(Y.tolist(), ref_softmax(x, 4, log=True), what="block_call log-softmax")
        bad = {"log": 1, "nope": 2}
        with self.assertRaises(ValueError):
            tj.block_call("softmax", [X, Y, None], bad)
        self.assertEqual(bad, {"log": 1, "nope": 2})

    def test_close_drops_layouts_without_the_handle_lock(self):
        # fix 6: AttnLayout.native() takes the layout's lock, then the
        # handle's; close() must not hold the handle's while it takes a
        # layout's (lock-order inversion)
        import threading
        h = tj.Blocks("cpu")
        lay = tj.AttnLayout(None, 1, 2, 16)
        lay.native(h)
        real_drop, probes = lay._drop, []

        def drop(handle):
            def probe():
                ok = h.lock.acquire(blocking=False)
                probes.append(ok)
                if ok:
                    h.lock.release()
            t = threading.Thread(target=probe)
            t.start()
            t.join()
            real_drop(handle)
        lay._drop = drop
        try:
            h.close()
        finally:
            del lay._drop   # (the closure would keep lay in a cycle, dropped at exit)
        self.assertEqual(probes, [True])
        self.assertNotIn(id(h), lay._native)
        self.assertFalse(h.b)

    def test_launch_passes_its_stream_to_dlpack(self):
        # fix 7: DLPack producers are asked for the launch's stream
        class CudaProducer:
            shape = (4,)

            def __init__(self):
                self.streams = []

            def __dlpack_device__(self):
                return (2, 0)   # kDLCUDA

            def __dlpack__(self, stream=None):
                self.streams.append(stream)
                raise _Stop()
        k = tj.Context().compile(source=TestKernelAPI.SRC, flags=2)
        for call, want in ((lambda p: k.launch((1,), p, p, 1.0, 4, stream=1234), 1234),
                           (lambda p: k.prepare((1,), p, p, 1.0, 4, stream=77), 77),
                           (lambda p: k.launch((1,), p, p, 1.0, 4), 1)):   # legacy default stream: 1
            p = CudaProducer()
            with self.assertRaises(_Stop):
                call(p)
            self.assertEqual(p.streams, [want])


class TestBenchScripts(unittest.TestCase):
    """bench/harness.py and bench/report.py pieces that run without torch."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, BENCH)
        import harness
        import report
        cls.harness, cls.report = harness, report

    def test_jit_paths_assume_follows_the_launcher(self):
        # bench/jit_paths.py compiles the variant a launch would pick: aligned
        # pointers and multiples of 16 as =16, ones as =1, the rest unknown.
        import ctypes as C
        import types
        stubs = [m for m in ("torch", "triton") if m not in sys.modules]
        for m in stubs:
            sys.modules[m] = types.ModuleType(m)
        try:
            import jit_paths
        finally:
            for m in stubs:
                del sys.modules[m]
        params = [("y", C.c_uint64, 1 << 20), ("x", C.c_uint64, (1 << 20) + 8), ("M", C.c_int32, 32768),
                  ("rpp", C.c_int32, 4), ("ncb", C.c_int32, 1), ("offset", C.c_int64, 0), ("scale", C.c_float, 16.0)]
        self.assertEqual(jit_paths.assume_of(params), "y=16,M=16,ncb=1,offset=16")
        ctx = tj.Context()
        k = ctx.compile(path=os.path.join(HERE, "..", "..", "blocks", "dropout.tj"), kernel="dropout_fwd",
                        defines=["T=f16", "BLOCK=4096", "ROWS=1", "VEC=8", "BGS=9", "ACT=0", "HAS_BIAS=true",
                                 "DROP=true", "K4=true", "FLAT=true"], num_warps=4, arch="sm_90",
                        flags=tj.COMPILE_NO_CACHE, assume="y=16,x=16,bias=16,M=16,K=16,sx_r=16,sy_r=16")
        self.assertEqual(k.ptx.count("ld.global.v4"), 8)
        # The older PTX forms it also times: conversions unpaired, sm_90.
        ptx = k.ptx
        paired = ptx.count("cvt.rn.f16x2.f32")
        self.assertGreater(paired, 0)
        old = jit_paths.unpaired(ptx)
        self.assertNotIn("cvt.rn.f16x2.f32", old)
        self.assertEqual(old.count("cvt.rn.f16.f32"), ptx.count("cvt.rn.f16.f32") + 2 * paired)
        self.assertIn(".target sm_90\n", jit_paths.as_sm90(ptx.replace(".target sm_90\n", ".target sm_90a\n")))

    def test_eager_causal_softmax_mask_built_once(self):
        # fix 9: the causal mask is built outside the timed function
        import types
        counts = {"ones": 0}

        class T:
            def __init__(self, shape):
                self.shape, self.device, self.masks = shape, "cuda", []

            def triu(self, k):
                return self

            def masked_fill(self, m, v):
                self.masks.append(m)
                return self

        def ones(*shape, dtype=None, device=None):
            counts["ones"] += 1
            return T(shape)
        fake = types.SimpleNamespace(bool="bool", ones=ones, softmax=lambda t, d: t, log_softmax=lambda t, d: t)
        x = T((2, 8, 8))
        f = self.harness.eager_softmax(fake, x, "causal")
        self.assertEqual(counts["ones"], 1)
        for _ in range(3):
            f()
        self.assertEqual(counts["ones"], 1)
        self.assertEqual(len(x.masks), 3)
        self.assertTrue(all(m is x.masks[0] for m in x.masks))
        m = self.harness.causal_mask(fake, x)
        g = self.harness.eager_softmax(fake, x, "causal", m)
        g()
        self.assertEqual(counts["ones"], 2)
        self.assertIs(x.masks[-1], m)

    def test_softmax_part_times_no_mask_construction(self):
        # fix 9, in part_softmax itself: no function it times (a lambda or
        # nested def outside torch.compile's argument) builds the mask
        import ast
        with open(os.path.join(BENCH, "harness.py")) as f:
            tree = ast.parse(f.read())
        part = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "part_softmax")
        exempt = set()
        for n in ast.walk(part):
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "compile_fn":
                exempt |= {id(s) for s in ast.walk(n)}
            if isinstance(n, ast.FunctionDef) and n.name == "torch_ref":   # compile's graph
                exempt |= {id(s) for s in ast.walk(n)}
        banned = {"torch_ref", "causal_mask", "ones", "triu", "eager_softmax"}
        for n in ast.walk(part):
            if n is part or id(n) in exempt or not isinstance(n, (ast.Lambda, ast.FunctionDef)):
                continue
            for c in ast.walk(n):
                if isinstance(c, ast.Call):
                    name = getattr(c.func, "id", None) or getattr(c.func, "attr", None)
                    self.assertNotIn(name, banned, f"line {c.lineno}: {name} in a timed function")

    def parts(self, tj_failed):
        rows, checks = [], []
        for sh, tv, pv in (((2, 64), 200.0, 100.0), ((4, 64), 50.0, 100.0)):
            for impl, v in (("tilejit", tv), ("torch", pv)):
                rows.append({"block": "softmax", "variant": "plain", "mode": "fwd", "dtype": "float16",
                             "shape": list(sh), "impl": impl, "ms": 1.0, "metric": "GB/s", "value": v})
            checks.append({"block": "softmax", "variant": "plain", "mode": "fwd", "dtype": "float16",
                           "shape": list(sh), "impl": "tilejit", "what": "", "max_err": 0.5 if tj_failed and
                           sh == (2, 64) else 0.0, "tol": 0.01, "ok": not (tj_failed and sh == (2, 64))})
        return {"softmax": [{"part": "softmax", "smoke": False, "copy_gbps": 1000.0, "env": {}, "rows": rows,
                             "checks": checks, "errors": []}]}

    def test_report_skips_tilejit_failures_in_wins_and_means(self):
        # fix 10 (and 12: the copy tensor's size)
        ok, _ = self.report.render(self.parts(False), "benchmarks", {})
        self.assertIn("ahead of the best peer at 1 and behind at 1.", ok)
        self.assertIn("ahead of every peer at 1/2 shapes; geometric mean 1.00x", ok)
        self.assertNotIn("left out of the win counts", ok)
        bad, _ = self.report.render(self.parts(True), "benchmarks", {})
        self.assertIn("Over all 1 (block, shape) points with a peer: tilejit is ahead of the best peer at 0 and "
                      "behind at 1.", bad)
        self.assertIn("ahead of every peer at 0/1 shapes; geometric mean 0.50x", bad)
        self.assertIn("| 2x64 | 200† | 100 |", bad)          # still shown, marked
        self.assertIn("tilejit's own result failed its check at 1 (block, shape) point: softmax plain fwd "
                      "float16 2x64. These are left out of the win counts and geometric means", bad)
        self.assertIn("(y.copy_(x), 64 MiB fp16)", bad)
        self.assertNotIn("256 MiB", bad)


if __name__ == "__main__":
    unittest.main(verbosity=2)
