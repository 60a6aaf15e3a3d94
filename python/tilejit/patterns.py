"""patterns.py: xFormers' attention patterns (tj_pattern_*, blocks.h),
computed on the host by the library.

Each function returns a Pattern: .layout (bytes, [heads, nb, nb], 1 where
any element of the bs x bs block attends) and, with mask=True, .mask
(bytes, [heads, S, S]); .attn_layout() makes the AttnLayout the attention
functions take. Bad parameters raise TilejitError with the library's
message.

    lay = tilejit.patterns.local_1d(S=4096, window=1025, bs=128).attn_layout()
    o, lse = tilejit.attention(q, k, v, lay)
"""
import ctypes as C

from .blocks import AttnLayout, get_blocks

__all__ = ["Pattern", "local_1d", "causal_1d", "random", "global_tokens", "bigbird", "longformer", "axial_2d",
           "local_2d", "swin", "dilated_2d", "to_layout"]


class Pattern:
    def __init__(self, S, heads, bs, mask, layout):
        self.S, self.heads, self.bs = S, heads, bs
        self.nb = S // bs if bs else 0
        self.mask = bytes(mask) if mask is not None else None
        self.layout = bytes(layout) if layout is not None else None
        self._attn = None

    def attn_layout(self):
        """The AttnLayout of .layout (built once)."""
        if self._attn is None:
            self._attn = AttnLayout(self.layout, self.heads, self.nb, self.bs)
        return self._attn

    @property
    def density(self):
        """Fraction of active blocks."""
        return sum(1 for v in self.layout if v) / len(self.layout) if self.layout else 0.0

    def __repr__(self):
        return f"Pattern(S={self.S}, heads={self.heads}, bs={self.bs}, density={self.density:.3f})"


def _bufs(S, heads, bs, mask):
    # The layout buffer is always passed so that the library validates bs
    # (sized generously when bs does not divide S: the call then fails).
    nb = -(-S // bs) if bs > 0 else 1
    m = C.create_string_buffer(max(heads * S * S, 1)) if mask else None
    lay = C.create_string_buffer(max(heads * nb * nb, 1))
    return m, lay, nb


def _run(fn, S, heads, bs, mask, *args):
    m, lay, nb = _bufs(S, heads, bs, mask)
    get_blocks("cpu").call(fn, *args, m, lay)
    return Pattern(S, heads, bs, m.raw[:heads * S * S] if m is not None else None, lay.raw[:heads * nb * nb])


def _tokens(tokens):
    t = list(tokens or [])
    return (C.c_int64 * max(1, len(t)))(*t), len(t)


def local_1d(S, window, bs, mask=False):
    """|i - j| <= window // 2."""
    return _run("tj_pattern_local_1d", S, 1, bs, mask, C.c_int64(S), C.c_int64(window), C.c_int64(bs))


def causal_1d(S, bs, mask=False):
    """j <= i."""
    return _run("tj_pattern_causal_1d", S, 1, bs, mask, C.c_int64(S), C.c_int64(bs))


def random(S, density, seed=0, heads=1, bs=64, mask=False):
    """Element-wise random (per head). For a random *block* layout call it
    with S = nb and bs = 1 and use .mask as the layout."""
    return _run("tj_pattern_random", S, heads, bs, mask, C.c_int64(S), int(heads), C.c_double(density),
                C.c_uint64(seed), C.c_int64(bs))


def global_tokens(S, tokens, bs, mask=False):
    """Rows and columns of the listed tokens."""
    t, n = _tokens(tokens)
    return _run("tj_pattern_global", S, 1, bs, mask, C.c_int64(S), t, n, C.c_int64(bs))


def bigbird(S, window, tokens, density, seed=0, heads=1, bs=64, mask=False):
    """random || local_1d || global."""
    t, n = _tokens(tokens)
    return _run("tj_pattern_bigbird", S, heads, bs, mask, C.c_int64(S), int(heads), C.c_int64(window), t, n,
                C.c_double(density), C.c_uint64(seed), C.c_int64(bs))


def longformer(S, window, tokens, bs, mask=False):
    """local_1d || global."""
    t, n = _tokens(tokens)
    return _run("tj_pattern_longformer", S, 1, bs, mask, C.c_int64(S), C.c_int64(window), t, n, C.c_int64(bs))


def axial_2d(H, W, dim=-1, bs=64, mask=False):
    return _run("tj_pattern_axial_2d", H * W, 1, bs, mask, C.c_int64(H), C.c_int64(W), int(dim), C.c_int64(bs))


def local_2d(H, W, distance, p=2.0, bs=64, mask=False):
    return _run("tj_pattern_local_2d", H * W, 1, bs, mask, C.c_int64(H), C.c_int64(W), C.c_double(distance),
                C.c_double(p), C.c_int64(bs))


def swin(H, W, window, shift=0, bs=64, mask=False):
    return _run("tj_pattern_swin", H * W, 1, bs, mask, C.c_int64(H), C.c_int64(W), C.c_int64(window),
                C.c_int64(shift), C.c_int64(bs))


def dilated_2d(H, W, k, bs=64, mask=False):
    return _run("tj_pattern_dilated_2d", H * W, 1, bs, mask, C.c_int64(H), C.c_int64(W), C.c_int64(k),
                C.c_int64(bs))


def to_layout(mask, S, bs, heads=1):
    """The pooled layout (bytes, [heads, S/bs, S/bs]) of an element mask
    [heads, S, S] (bytes or a 0/1 sequence)."""
    mb = bytes(1 if v else 0 for v in mask) if not isinstance(mask, (bytes, bytearray)) else bytes(mask)
    nb = S // bs if bs and S % bs == 0 else 1
    lay = C.create_string_buffer(max(heads * nb * nb, 1))
    get_blocks("cpu").call("tj_pattern_to_layout", C.create_string_buffer(mb, len(mb)), int(heads),
                           C.c_int64(S), C.c_int64(bs), lay)
    return lay.raw[:heads * nb * nb]
