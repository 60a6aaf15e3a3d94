#!/usr/bin/env python3
"""test_binding_torch.py: the Python binding on CUDA torch tensors against
torch references: forward and backward through autograd (tilejit.torch),
fp16 and bf16, non-contiguous inputs, the caller's stream, the DLPack path
and the errors. Exits 77 (skipped) without torch or without CUDA.

Tolerance: assert_close against a float32 torch computation on the same
(rounded) inputs, atol = rtol = 1e-2 for fp16 and 3e-2 for bf16, twice that
for gradients (the numbers bench/harness.py uses); attention 2e-2 / 4e-2.

    TILEJIT_LIBRARY=build-gpu/libtilejit.so python3 tests/python/test_binding_torch.py
"""
import math
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("skipped: no torch")
    sys.exit(77)
if not torch.cuda.is_available():
    print("skipped: torch sees no CUDA device")
    sys.exit(77)

import tilejit  # noqa: E402
import tilejit.torch as tjt  # noqa: E402

DTYPES = [torch.float16, torch.bfloat16]
TOL = {torch.float16: 1e-2, torch.bfloat16: 3e-2, torch.float32: 1e-4}
ATOL = {torch.float16: 2e-2, torch.bfloat16: 4e-2}


def close(got, ref, dtype, scale=1.0, msg=""):
    t = TOL[dtype] * scale
    torch.testing.assert_close(got.float(), ref.float(), atol=t, rtol=t, msg=lambda m: f"{msg}: {m}")


def grads_ref(fn, inputs, dy):
    """fn on float32 copies of inputs; returns (out, [grads])."""
    leaves = [t.detach().float().requires_grad_(True) if t is not None else None for t in inputs]
    out = fn(*leaves)
    out.backward(dy.float())
    return out.detach(), [t.grad if t is not None else None for t in leaves]


def leaves_of(*ts):
    return [t.detach().clone().requires_grad_(True) if t is not None else None for t in ts]


class DLPackOnly:
    def __init__(self, t):
        self.t, self.shape = t, t.shape

    def __dlpack__(self, stream=None):
        return self.t.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


class TestSoftmax(unittest.TestCase):
    def test_autograd_variants(self):
        torch.manual_seed(0)
        for dt in DTYPES:
            for shape in ((4, 37, 1000), (2, 64, 128), (3, 5, 4096)):
                x = torch.randn(*shape, device="cuda", dtype=dt) * 3
                dy = torch.randn_like(x)
                M, K = shape[-2:]
                causal_mask = torch.ones(M, K, dtype=torch.bool, device="cuda").triu(1)
                for variant in ("plain", "log", "causal"):
                    def ref(t, v=variant):
                        if v == "causal":
                            t = t.masked_fill(causal_mask, float("-inf"))
                        return torch.log_softmax(t, -1) if v == "log" else torch.softmax(t, -1)
                    (xr,) = leaves_of(x)
                    y = tjt.softmax(xr, -1, log=variant == "log", causal=variant == "causal")
                    y.backward(dy)
                    want, (gx,) = grads_ref(ref, [x], dy)
                    what = f"softmax {variant} {dt} {shape}"
                    self.assertEqual(y.dtype, dt)
                    close(y, want, dt, msg=what)
                    close(xr.grad, gx, dt, 2, msg=what + " dx")

    def test_additive_mask_and_dim(self):
        x = torch.randn(2, 16, 256, device="cuda", dtype=torch.float16)
        mask = torch.zeros(16, 256, device="cuda", dtype=torch.float16)
        mask[:, ::3] = -1e4
        close(tjt.softmax(x, mask=mask), torch.softmax(x.float() + mask.float(), -1), torch.float16, msg="mask")
        close(tjt.softmax(x, dim=1), torch.softmax(x.float(), 1), torch.float16, msg="dim=1")

    def test_non_contiguous(self):
        base = torch.randn(4, 32, 1024 + 64, device="cuda", dtype=torch.bfloat16)
        x = base[..., :1000]                    # padded rows: read in place
        self.assertTrue(tjt.rowable(x))
        close(tilejit.softmax(x), torch.softmax(x.float(), -1), torch.bfloat16, msg="padded rows")
        xt = torch.randn(4, 512, 64, device="cuda", dtype=torch.bfloat16).transpose(1, 2)   # last stride != 1
        self.assertFalse(tjt.rowable(xt))
        (xr,) = leaves_of(xt)
        y = tjt.softmax(xr)
        dy = torch.randn_like(y)
        y.backward(dy)
        want, (gx,) = grads_ref(lambda t: torch.softmax(t, -1), [xt], dy)
        close(y, want, torch.bfloat16, msg="transposed")
        close(xr.grad, gx, torch.bfloat16, 2, msg="transposed dx")
        with self.assertRaises(tilejit.TilejitError) as cm:   # the functional API passes it as it is
            tilejit.softmax(xt)
        self.assertIn("stride", cm.exception.message)

    def test_stream_respected(self):
        src = torch.randn(64, 4096, device="cuda", dtype=torch.float16)
        x = torch.zeros_like(src)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            torch.cuda._sleep(100_000_000)      # ~50 ms of GPU time on s before x is written
            x.copy_(src)
            y = tilejit.softmax(x)              # must run on s, after the copy
            yt = tjt.softmax(x)
        s.synchronize()
        close(y, torch.softmax(src.float(), -1), torch.float16, msg="stream (functional)")
        close(yt, torch.softmax(src.float(), -1), torch.float16, msg="stream (autograd)")
        # an explicit stream argument
        x2 = torch.zeros_like(src)
        with torch.cuda.stream(s):
            torch.cuda._sleep(100_000_000)
            x2.copy_(src)
        out = torch.empty_like(src)
        tilejit.softmax(x2, out=out, stream=s)
        s.synchronize()
        close(out, torch.softmax(src.float(), -1), torch.float16, msg="stream=")

    def test_dlpack_path_and_out(self):
        x = torch.randn(8, 300, device="cuda", dtype=torch.float16)
        y = torch.empty_like(x)
        r = tilejit.softmax(DLPackOnly(x), out=DLPackOnly(y))
        self.assertIsInstance(r, DLPackOnly)
        torch.cuda.synchronize()
        close(y, torch.softmax(x.float(), -1), torch.float16, msg="dlpack")
        self.assertIs(tilejit.softmax(x, out=x), x)   # in place
        close(x, y, torch.float16, msg="in place")


class TestNorms(unittest.TestCase):
    def test_layer_norm_autograd(self):
        torch.manual_seed(1)
        for dt in DTYPES:
            for shape in ((8, 256, 512), (3, 7, 1000), (2, 64, 4096)):
                K = shape[-1]
                x = torch.randn(*shape, device="cuda", dtype=dt)
                w = torch.rand(K, device="cuda", dtype=dt) + 0.5
                b = torch.randn(K, device="cuda", dtype=dt)
                dy = torch.randn_like(x)
                xr, wr, br = leaves_of(x, w, b)
                y = tjt.layer_norm(xr, (K,), wr, br, 1e-5)
                y.backward(dy)
                want, (gx, gw, gb) = grads_ref(lambda t, w_, b_: F.layer_norm(t, (K,), w_, b_, 1e-5), [x, w, b], dy)
                what = f"layer_norm {dt} {shape}"
                close(y, want, dt, msg=what)
                close(xr.grad, gx, dt, 2, msg=what + " dx")
                # dw, db sum over rows: compare relative to their size
                close(wr.grad / math.sqrt(x.numel() / K), gw / math.sqrt(x.numel() / K), dt, 2, msg=what + " dw")
                close(br.grad / math.sqrt(x.numel() / K), gb / math.sqrt(x.numel() / K), dt, 2, msg=what + " db")

    def test_layer_norm_fp32_weight_and_no_affine(self):
        x = torch.randn(16, 768, device="cuda", dtype=torch.float16)
        w = torch.ones(768, device="cuda", dtype=torch.float32, requires_grad=True)   # AMP-style fp32 params
        y = tjt.layer_norm(x, (768,), w, None)
        y.float().sum().backward()
        self.assertEqual(w.grad.dtype, torch.float32)
        close(y, F.layer_norm(x.float(), (768,)), torch.float16, msg="fp32 weight")
        close(tjt.layer_norm(x), F.layer_norm(x.float(), (768,)), torch.float16, msg="no affine")

    def test_rms_norm_autograd(self):
        for dt in DTYPES:
            x = torch.randn(4, 100, 2048, device="cuda", dtype=dt)
            w = torch.rand(2048, device="cuda", dtype=dt) + 0.5
            dy = torch.randn_like(x)
            xr, wr = leaves_of(x, w)
            y = tjt.rms_norm(xr, (2048,), wr, 1e-6)
            y.backward(dy)
            want, (gx, gw) = grads_ref(lambda t, w_: F.rms_norm(t, (2048,), w_, 1e-6), [x, w], dy)
            close(y, want, dt, msg=f"rms_norm {dt}")
            close(xr.grad, gx, dt, 2, msg=f"rms_norm dx {dt}")
            close(wr.grad / 20, gw / 20, dt, 2, msg=f"rms_norm dw {dt}")

    def test_workspace_api(self):
        x = torch.randn(64, 1024, device="cuda", dtype=torch.float16)
        w, b = torch.ones(1024, device="cuda", dtype=torch.float16), torch.zeros(1024, device="cuda",
                                                                               dtype=torch.float16)
        y, mean, rstd = tilejit.layer_norm(x, w, b)
        n = tilejit.norm_bwd_workspace_size(x)
        ws = torch.empty(max(n, 16), device="cuda", dtype=torch.uint8)
        dy = torch.randn_like(x)
        dx, dw, db = tilejit.layer_norm_backward(dy, x, w, mean, rstd, workspace=ws)
        dx2, dw2, db2 = tilejit.layer_norm_backward(dy, x, w, mean, rstd)
        torch.cuda.synchronize()
        self.assertTrue(torch.equal(dw, dw2) and torch.equal(db, db2))   # deterministic, either scratch
        self.assertTrue(torch.equal(dx, dx2))

    def test_workspace_checked(self):
        x = torch.randn(64, 1024, device="cuda", dtype=torch.float16)
        w = torch.ones(1024, device="cuda", dtype=torch.float16)
        y, rstd = tilejit.rms_norm(x, w)
        dy = torch.randn_like(x)
        n = max(tilejit.norm_bwd_workspace_size(x), 16)
        with self.assertRaises(ValueError):   # not contiguous
            tilejit.rms_norm_backward(dy, x, w, rstd,
                                      workspace=torch.empty(2 * n, device="cuda", dtype=torch.uint8)[::2])
        with self.assertRaises(ValueError):   # another device
            tilejit.rms_norm_backward(dy, x, w, rstd, workspace=torch.empty(n, dtype=torch.uint8))

    def test_backward_uses_a_per_call_workspace(self):
        # the autograd backward passes hand the library a workspace of their own
        calls = []
        real = tilejit.blocks._run

        def spy(c, name, args, workspace=None):
            calls.append((name, workspace))
            return real(c, name, args, workspace)
        tilejit.blocks._run = spy
        try:
            x = torch.randn(64, 1024, device="cuda", dtype=torch.float16, requires_grad=True)
            w = torch.ones(1024, device="cuda", dtype=torch.float16, requires_grad=True)
            b = torch.zeros(1024, device="cuda", dtype=torch.float16, requires_grad=True)
            tjt.layer_norm(x, (1024,), w, b).sum().backward()
            tjt.rms_norm(x, (1024,), w).sum().backward()
            tjt.dropout_act(x, b, p=0.1, activation="gelu").sum().backward()
            q = torch.randn(1, 2, 128, 64, device="cuda", dtype=torch.float16, requires_grad=True)
            tjt.attention(q, q, q).sum().backward()
        finally:
            tilejit.blocks._run = real
        bwd = {n: ws for n, ws in calls if n.endswith("_bwd")}
        self.assertEqual(set(bwd), {"tj_layernorm_bwd", "tj_rmsnorm_bwd", "tj_dropout_bwd", "tj_attention_bwd"})
        self.assertIsNotNone(bwd["tj_attention_bwd"])   # B * H * S floats: never 0 bytes
        for n, ws in bwd.items():   # None only where the size query said 0 bytes
            if ws is not None:
                self.assertTrue(ws.is_cuda and ws.dtype == torch.uint8 and ws.data_ptr() % 16 == 0, n)


class TestDropout(unittest.TestCase):
    ACTS = {"none": lambda v: v, "relu": F.relu, "leaky_relu": lambda v: F.leaky_relu(v, 0.01), "gelu": F.gelu,
            "gelu_tanh": lambda v: F.gelu(v, approximate="tanh"), "squared_relu": lambda v: F.relu(v).square(),
            "star_relu": lambda v: 0.8944 * F.relu(v).square() - 0.4472}

    def test_every_activation_autograd(self):
        torch.manual_seed(2)
        p = 0.2
        scale = float(torch.tensor(1 / (1 - p), dtype=torch.float32))
        for dt in DTYPES:
            x = torch.randn(4, 64, 1000, device="cuda", dtype=dt)
            b = torch.randn(1000, device="cuda", dtype=dt) * 0.1
            dy = torch.randn_like(x)
            for act, f in self.ACTS.items():
                seed, offset = tilejit.next_dropout_seed(x)
                keep = tilejit.dropout_act(torch.ones_like(x), p=p, seed=seed, offset=offset) != 0
                frac = keep.float().mean().item()
                self.assertLess(abs(frac - (1 - p)), 0.01, f"kept fraction {frac}")
                xr, br = leaves_of(x, b)
                y = tjt.dropout_act(xr, br, p=p, activation=act, seed=seed, offset=offset)
                y.backward(dy)

                def ref(t, b_):
                    return torch.where(keep, f(t + b_) * scale, torch.zeros_like(t))
                want, (gx, gb) = grads_ref(ref, [x, b], dy)
                what = f"dropout {act} {dt}"
                close(y, want, dt, msg=what)
                close(xr.grad, gx, dt, 2, msg=what + " dx")
                close(br.grad / 16, gb / 16, dt, 2, msg=what + " dbias")

    def test_fresh_masks_and_eval(self):
        x = torch.randn(256, 512, device="cuda", dtype=torch.float16)
        a = tjt.dropout_act(x, p=0.5)
        b = tjt.dropout_act(x, p=0.5)
        self.assertFalse(torch.equal(a != 0, b != 0))      # the handle advances its offset
        close(tjt.dropout_act(x, p=0.5, activation="gelu", training=False), F.gelu(x.float()), torch.float16,
              msg="eval")


class TestAttention(unittest.TestCase):
    def test_dense_causal_autograd(self):
        torch.manual_seed(3)
        for dt in DTYPES:
            for causal in (False, True):
                q, k, v = (torch.randn(2, 4, 256, 64, device="cuda", dtype=dt) for _ in range(3))
                g = torch.randn_like(q)
                qr, kr, vr = leaves_of(q, k, v)
                o = tjt.attention(qr, kr, vr, causal=causal)
                o.backward(g)
                want, grads = grads_ref(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal),
                                        [q, k, v], g)
                what = f"attention causal={causal} {dt}"
                torch.testing.assert_close(o.float(), want, atol=ATOL[dt], rtol=0, msg=what)
                for name, got, ref in zip("qkv", (qr.grad, kr.grad, vr.grad), grads):
                    torch.testing.assert_close(got.float(), ref, atol=2 * ATOL[dt], rtol=0, msg=f"{what} d{name}")

    def test_blocksparse_layout(self):
        S, bs, D = 512, 64, 64
        pat = tilejit.patterns.local_1d(S, 129, bs, mask=True)    # |i - j| <= 64, pooled to 64-blocks
        lay = pat.attn_layout()
        nb = S // bs
        blocks = torch.tensor(list(pat.layout), dtype=torch.bool).view(nb, nb)
        elem = blocks.repeat_interleave(bs, 0).repeat_interleave(bs, 1).cuda()   # the block-level function
        q, k, v = (torch.randn(1, 2, S, D, device="cuda", dtype=torch.float16) for _ in range(3))
        g = torch.randn_like(q)
        qr, kr, vr = leaves_of(q, k, v)
        o, lse = tjt.attention(qr, kr, vr, lay, return_lse=True)
        o.backward(g)
        self.assertEqual(lse.shape, (1, 2, S))
        want, grads = grads_ref(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=elem), [q, k, v], g)
        torch.testing.assert_close(o.float(), want, atol=2e-2, rtol=0)
        for got, ref in zip((qr.grad, kr.grad, vr.grad), grads):
            torch.testing.assert_close(got.float(), ref, atol=4e-2, rtol=0)
        # the functional API with a Pattern, and a strided (transposed-heads) input
        qt = q.transpose(1, 2).contiguous().transpose(1, 2)
        o2, _ = tilejit.attention(qt, k, v, pat)
        torch.testing.assert_close(o2.float(), want, atol=2e-2, rtol=0)


class TestErrors(unittest.TestCase):
    def test_messages(self):
        x = torch.randn(4, 8, device="cuda")
        with self.assertRaises(tilejit.TilejitError) as cm:
            tilejit.softmax(torch.ones(4, 8, device="cuda", dtype=torch.int32), out=x)
        self.assertEqual(cm.exception.status_name, "TJ_ERR_INVALID_ARG")
        self.assertIn("softmax supports", cm.exception.message)
        with self.assertRaises(tilejit.TilejitError) as cm:
            tilejit.softmax(x, out=torch.empty(4, 8))              # a CPU output for a CUDA input
        self.assertIn("kDLCPU", cm.exception.message)
        with self.assertRaises(tilejit.TilejitError) as cm:
            tilejit.softmax(x, out=torch.empty(8, 4, device="cuda"))
        self.assertIn("shape", cm.exception.message)


if __name__ == "__main__":
    unittest.main(verbosity=2)
