"""patterns.py: xFormers' attention patterns (tj_pattern_*, blocks.h),
computed on the host by the library.

Each function returns a Pattern: .layout (bytes, [heads, nb, nb], 1 where
any element of the bs x bs block attends) and, with mask=True, .mask
(bytes, [heads, S, S]); .attn_layout() makes the AttnLayout the attention
functions take. Bad parameters raise TilejitError with the library's
message; sizes that do not fit the C parameters, or a mask whose length
is not heads * S * S, raise ValueError.

    lay = tilejit.patterns.local_1d(S=4096, window=1025, bs=128).attn_layout()
    o, lse = tilejit.attention(q, k, v, lay)
"""
import ctypes as C
import threading

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
        self._lock = threading.Lock()

    def attn_layout(self):
        """The AttnLayout of .layout (built once, also when threads ask at once)."""
        with self._lock:
            if self._attn is None:
                self._attn = AttnLayout(self.layout, self.heads, self.nb, self.bs)
            return self._attn

    @property
    def density(self):
        """Fraction of active blocks."""
        return sum(1 for v in self.layout if v) / len(self.layout) if self.layout else 0.0

    def __repr__(self):
        return f"Pattern(S={self.S}, heads={self.heads}, bs={self.bs}, density={self.density:.3f})"


_I64 = (-(1 << 63), (1 << 63) - 1)
_I32 = (-(1 << 31), (1 << 31) - 1)


def _int(v, name, rng=_I64):
    """v as an int that the C parameter holds unchanged (ctypes would wrap
    it silently, and the library would then fill more than the buffers
    sized here); ValueError otherwise."""
    try:
        i = int(v)
    except (TypeError, ValueError):
        raise ValueError(f"tilejit.patterns: {name} must be an integer, got {v!r}") from None
    if i != v or not rng[0] <= i <= rng[1]:
        raise ValueError(f"tilejit.patterns: {name} = {v!r} is not a {64 if rng is _I64 else 32}-bit integer")
    return i


def _i64(v, name):
    return C.c_int64(_int(v, name))


def _i32(v, name):
    return _int(v, name, _I32)


def _bufs(S, heads, bs, mask):
    # The layout buffer is always passed so that the library validates bs
    # (sized generously when bs does not divide S: the call then fails).
    # S or heads < 1: the library rejects the call before writing.
    ok = S >= 1 and heads >= 1
    nb = -(-S // bs) if bs > 0 else 1
    m = C.create_string_buffer(max(heads * S * S, 1) if ok else 1) if mask else None
    lay = C.create_string_buffer(max(heads * nb * nb, 1) if ok else 1)
    return m, lay, nb


def _run(fn, S, heads, bs, mask, *args):
    # the buffers are sized from the same (checked) values the C call gets
    S, heads, bs = _int(S, "S"), _i32(heads, "heads"), _int(bs, "bs")
    m, lay, nb = _bufs(S, heads, bs, mask)
    get_blocks("cpu").call(fn, *args, m, lay)
    return Pattern(S, heads, bs, m.raw[:heads * S * S] if m is not None else None, lay.raw[:heads * nb * nb])


def _tokens(tokens):
    t = [_int(v, "token") for v in (tokens or [])]
    return (C.c_int64 * max(1, len(t)))(*t), _i32(len(t), "the number of tokens")


def local_1d(S, window, bs, mask=False):
    """|i - j| <= window // 2."""
    return _run("tj_pattern_local_1d", S, 1, bs, mask, _i64(S, "S"), _i64(window, "window"), _i64(bs, "bs"))


def causal_1d(S, bs, mask=False):
    """j <= i."""
    return _run("tj_pattern_causal_1d", S, 1, bs, mask, _i64(S, "S"), _i64(bs, "bs"))


def random(S, density, seed=0, heads=1, bs=64, mask=False):
    """Element-wise random (per head). For a random *block* layout call it
    with S = nb and bs = 1 and use .mask as the layout."""
    return _run("tj_pattern_random", S, heads, bs, mask, _i64(S, "S"), _i32(heads, "heads"), C.c_double(density),
                C.c_uint64(seed), _i64(bs, "bs"))


def global_tokens(S, tokens, bs, mask=False):
    """Rows and columns of the listed tokens."""
    t, n = _tokens(tokens)
    return _run("tj_pattern_global", S, 1, bs, mask, _i64(S, "S"), t, n, _i64(bs, "bs"))


def bigbird(S, window, tokens, density, seed=0, heads=1, bs=64, mask=False):
    """random || local_1d || global."""
    t, n = _tokens(tokens)
    return _run("tj_pattern_bigbird", S, heads, bs, mask, _i64(S, "S"), _i32(heads, "heads"), _i64(window, "window"),
                t, n, C.c_double(density), C.c_uint64(seed), _i64(bs, "bs"))


def longformer(S, window, tokens, bs, mask=False):
    """local_1d || global."""
    t, n = _tokens(tokens)
    return _run("tj_pattern_longformer", S, 1, bs, mask, _i64(S, "S"), _i64(window, "window"), t, n,
                _i64(bs, "bs"))


def _grid(H, W):
    """S = H * W as the library computes it; 0 where it rejects the grid
    (H or W < 1, H * W > 2^31 - 1) before writing anything."""
    H, W = _int(H, "H"), _int(W, "W")
    return H * W if H >= 1 and W >= 1 and H * W <= _I32[1] else 0


def axial_2d(H, W, dim=-1, bs=64, mask=False):
    return _run("tj_pattern_axial_2d", _grid(H, W), 1, bs, mask, _i64(H, "H"), _i64(W, "W"), _i32(dim, "dim"),
                _i64(bs, "bs"))


def local_2d(H, W, distance, p=2.0, bs=64, mask=False):
    return _run("tj_pattern_local_2d", _grid(H, W), 1, bs, mask, _i64(H, "H"), _i64(W, "W"), C.c_double(distance),
                C.c_double(p), _i64(bs, "bs"))


def swin(H, W, window, shift=0, bs=64, mask=False):
    return _run("tj_pattern_swin", _grid(H, W), 1, bs, mask, _i64(H, "H"), _i64(W, "W"), _i64(window, "window"),
                _i64(shift, "shift"), _i64(bs, "bs"))


def dilated_2d(H, W, k, bs=64, mask=False):
    return _run("tj_pattern_dilated_2d", _grid(H, W), 1, bs, mask, _i64(H, "H"), _i64(W, "W"), _i64(k, "k"),
                _i64(bs, "bs"))


def to_layout(mask, S, bs, heads=1):
    """The pooled layout (bytes, [heads, S/bs, S/bs]) of an element mask
    [heads, S, S] (bytes or a 0/1 sequence). ValueError when the mask does
    not hold heads * S * S elements (the library reads that many)."""
    S, heads, bs = _int(S, "S"), _i32(heads, "heads"), _int(bs, "bs")
    mb = bytes(1 if v else 0 for v in mask) if not isinstance(mask, (bytes, bytearray)) else bytes(mask)
    if heads >= 1 and S >= 1 and len(mb) != heads * S * S:   # other bad sizes: the library's message
        raise ValueError(f"tilejit.patterns.to_layout: the mask has {len(mb)} elements, [heads, S, S] = "
                         f"[{heads}, {S}, {S}] needs {heads * S * S}")
    nb = S // bs if bs > 0 and S % bs == 0 else 1
    lay = C.create_string_buffer(max(heads * nb * nb, 1))
    get_blocks("cpu").call("tj_pattern_to_layout", C.create_string_buffer(mb, max(len(mb), 1)), heads,
                           C.c_int64(S), C.c_int64(bs), lay)
    return lay.raw[:heads * nb * nb]
