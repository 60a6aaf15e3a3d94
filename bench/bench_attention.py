#!/usr/bin/env python3
"""bench_attention.py: tilejit blocksparse attention against torch SDPA and
FlexAttention, in one process on the same tensors.

Run on the GPU machine (python3 with torch and triton):
    python3 bench/bench_attention.py [--lib build-gpu/libtilejit.so] [--json out.json] [--quick] [--bwd]

Layouts (B=4, H=16, D=64, fp16; S=16384, or S=4096 with --quick):
  dense    all-ones layout               SDPA, Flex without a mask
  causal   all-ones layout + causal      SDPA is_causal, Flex causal mask_mod
  window   |i - j| <= 512, pooled to 128-blocks (tj_pattern_local_1d, window
           1025): tilejit computes the block-level function, and so does the
           Flex row "flex (same blocks)", whose mask_mod looks the layout up;
           "flex (element ±512)" is the element-level window of
           shared/ANCHORS.md, a slightly different (smaller) function.
TFLOP/s counts 4 * D flops per live score element in the forward pass (2.5x
that for the backward pass, as FlashAttention counts), each method with the
elements of the function it computes. Times are do_bench medians (L2 flushed
between runs). Before timing, each tilejit result is checked against the
peer that computes the same function (max |diff|).
"""
import argparse
import ctypes as C
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import triton

# FlexAttention's compiled backward donates its buffers unless told not to,
# and then refuses the retain_graph=True that timing it repeatedly needs.
try:
    import torch._functorch.config  # noqa: E402

    if hasattr(torch._functorch.config, "donated_buffer"):
        torch._functorch.config.donated_buffer = False
except ImportError:
    pass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tj  # noqa: E402  (the core ctypes binding)

ANCHORS_MS = {  # shared/ANCHORS.md, H200, B4 H16 D64 S16384 fp16
    ("dense", "sdpa"): 9.81, ("causal", "sdpa"): 5.06, ("causal", "flex"): 7.69,
    ("window", "flex (element ±512)"): 1.267,
}


from bench_blocks import dl  # noqa: E402,F401  (DLTensor views of torch tensors, from the tilejit package)


class Attn(tj.BlocksHandle):
    def __init__(self, path):
        super().__init__(tj.load(path))   # prototypes come from the tilejit package

    def layout(self, bits, heads, nb, bs):
        out = C.c_void_p()
        self.check(self.lib.tj_attn_layout_create(self.b, bits, heads, nb, bs, C.byref(out)))
        return out

    def window_layout(self, S, window, bs):
        nb = S // bs
        buf = C.create_string_buffer(nb * nb)
        self.check(self.lib.tj_pattern_local_1d(self.b, S, window, bs, None, buf))
        return buf, nb

    def fwd(self, q, k, v, lay, causal, o, lse):
        self.check(self.lib.tj_attention_fwd(self.b, C.byref(q), C.byref(k), C.byref(v), lay, 0.0, causal,
                                             C.byref(o), C.byref(lse), self.stream()))

    def bwd(self, q, k, v, o, lse, g, lay, causal, dq, dk, dv):
        self.check(self.lib.tj_attention_bwd(self.b, C.byref(q), C.byref(k), C.byref(v), C.byref(o), C.byref(lse),
                                             C.byref(g), lay, 0.0, causal, C.byref(dq), C.byref(dk), C.byref(dv),
                                             self.stream()))


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def flex_masks(S, W, BS, window_bits):
    """FlexAttention block masks of the benchmark's layouts, S x S: causal,
    the element window |i - j| <= W, and the pooled window layout
    (window_bits: its [S/BS, S/BS] bytes) looked up per element."""
    from torch.nn.attention.flex_attention import create_block_mask
    nb = S // BS
    lay_t = torch.frombuffer(bytearray(window_bits), dtype=torch.uint8).view(nb, nb).cuda()

    def causal_mod(b, h, qi, ki):
        return qi >= ki

    def win_elem_mod(b, h, qi, ki):
        return (qi - ki).abs() <= W

    def win_block_mod(b, h, qi, ki):
        return lay_t[qi // BS, ki // BS] > 0
    return {name: create_block_mask(fn, None, None, S, S, device="cuda")
            for name, fn in (("causal", causal_mod), ("welem", win_elem_mod), ("wblock", win_block_mod))}


def live_elements(S, W, BS, window_nnz):
    """Live score elements of each function (for TFLOP/s)."""
    return {"dense": S * S, "causal": S * (S + 1) // 2, "window_block": window_nnz * BS * BS,
            "window_elem": sum(min(S, i + W + 1) - max(0, i - W) for i in range(S))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="S=4096")
    ap.add_argument("--bwd", action="store_true", help="also time the backward pass")
    ap.add_argument("--S", type=int, default=None)
    args = ap.parse_args()
    from torch.nn.attention.flex_attention import flex_attention
    flex = torch.compile(flex_attention, dynamic=False)

    B, H, D = 4, 16, 64
    S = args.S or (4096 if args.quick else 16384)
    W = 512            # window half width
    BS = 128           # layout block size of the window layout
    dt = torch.float16
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=dt) for _ in range(3))
    g = torch.randn_like(q)
    o = torch.empty_like(q)
    lse = torch.empty(B, H, S, device="cuda", dtype=torch.float32)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(q), torch.empty_like(q)
    A = Attn(args.lib)
    Q, K, Vt, O, L, G = dl(q), dl(k), dl(v), dl(o), dl(lse), dl(g)
    DQ, DK, DV = dl(dq), dl(dk), dl(dv)

    dense = A.layout(None, 1, S // BS, BS)
    wbits, nb = A.window_layout(S, 2 * W + 1, BS)
    window = A.layout(wbits, 1, nb, BS)
    nnz = A.lib.tj_attn_layout_nnz(window)
    bm = flex_masks(S, W, BS, wbits.raw)
    live = live_elements(S, W, BS, nnz)

    rows = []

    def record(layout, method, ms, elems, pass_="fwd"):
        flops = 4.0 * B * H * D * elems * (2.5 if pass_ == "bwd" else 1.0)
        r = {"layout": layout, "method": method, "pass": pass_, "S": S, "ms": ms, "tflops": flops / ms / 1e9}
        a = ANCHORS_MS.get((layout, method))
        if a and S == 16384 and pass_ == "fwd":
            r["anchor_ms"] = a
        rows.append(r)

    sdpa = F.scaled_dot_product_attention
    cases = [  # name, layout, causal, (peer, its name, its live elements) x 2, tilejit's live elements
        ("dense", dense, 0, [(lambda a, b, c: sdpa(a, b, c), "sdpa", live["dense"]),
                             (lambda a, b, c: flex(a, b, c), "flex", live["dense"])], live["dense"]),
        ("causal", dense, 1, [(lambda a, b, c: sdpa(a, b, c, is_causal=True), "sdpa", live["causal"]),
                              (lambda a, b, c: flex(a, b, c, block_mask=bm["causal"]), "flex", live["causal"])],
         live["causal"]),
        ("window", window, 0, [(lambda a, b, c: flex(a, b, c, block_mask=bm["wblock"]), "flex (same blocks)",
                                live["window_block"]),
                               (lambda a, b, c: flex(a, b, c, block_mask=bm["welem"]), "flex (element ±512)",
                                live["window_elem"])], live["window_block"]),
    ]
    for name, lay, causal, peers, elems in cases:
        run = lambda: A.fwd(Q, K, Vt, lay, causal, O, L)  # noqa: E731
        run()
        torch.cuda.synchronize()
        ref = peers[0][0](q, k, v)
        err = (o.float() - ref.float()).abs().max().item()
        print(f"# {name}: max |tilejit - {peers[0][1]}| = {err:.3e}", flush=True)
        if not math.isfinite(err) or err > 2e-2:
            print(f"# WARNING: {name} differs from {peers[0][1]}", flush=True)
        record(name, "tilejit", bench(run), elems)
        for fn, nm, el in peers:
            record(name, nm, bench(lambda: fn(q, k, v)), el)
        if args.bwd:
            runb = lambda: A.bwd(Q, K, Vt, O, L, G, lay, causal, DQ, DK, DV)  # noqa: E731
            runb()
            torch.cuda.synchronize()
            leaves = [t.detach().requires_grad_() for t in (q, k, v)]
            out = peers[0][0](*leaves)
            out.backward(g)
            err = max((a.float() - b.grad.float()).abs().max().item() for a, b in zip((dq, dk, dv), leaves))
            print(f"# {name} bwd: max |tilejit - {peers[0][1]}| over dq, dk, dv = {err:.3e}", flush=True)
            record(name, "tilejit", bench(runb), elems, "bwd")
            for fn, nm, el in peers:
                leaves = [t.detach().requires_grad_() for t in (q, k, v)]
                out = fn(*leaves)
                record(name, nm, bench(lambda: out.backward(g, retain_graph=True)), el, "bwd")

    A.lib.tj_attn_layout_free(dense)
    A.lib.tj_attn_layout_free(window)

    print(f"\nattention B={B} H={H} D={D} S={S} fp16 (window layout: {nnz}/{nb * nb} blocks of {BS}, "
          f"{100.0 * nnz / (nb * nb):.1f}%)")
    print(f"{'layout':8} {'pass':4} {'method':22} {'ms':>9} {'TFLOP/s':>8} {'vs tilejit':>10} {'anchor ms':>9}")
    for r in rows:
        base = next(x for x in rows if x["layout"] == r["layout"] and x["pass"] == r["pass"]
                    and x["method"] == "tilejit")
        rel = r["ms"] / base["ms"]
        print(f"{r['layout']:8} {r['pass']:4} {r['method']:22} {r['ms']:9.3f} {r['tflops']:8.1f} {rel:10.2f} "
              f"{r.get('anchor_ms', ''):>9}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"B": B, "H": H, "D": D, "S": S, "dtype": "fp16", "window_blocks": nnz,
                       "blocks": nb * nb, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
