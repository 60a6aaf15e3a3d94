"""blocks.py: the block library (blocks.h) as Python functions.

Every function takes tensors (torch tensors, HostTensors, DLPack objects or
DLTensors), allocates the outputs it is not given (out=... and friends) with
the input's own library (torch.empty for torch tensors, HostTensor.empty for
HostTensors; other producers must pass them), finds the handle of the
tensors' device, and calls the C entry point on the stream:

  * stream=None: torch's current stream of that device when a torch CUDA
    tensor is involved, else 0 (the legacy default stream; CPU tensors run
    in the interpreter and take no stream);
  * an int (a CUstream) or any object with .cuda_stream (torch.cuda.Stream).

GPU calls are asynchronous, as torch ops are. Any status but TJ_OK raises
tilejit.TilejitError carrying the library's message.

One tj_blocks handle per device (one for all CPU tensors, one per CUDA
device), created on first use and kept for the life of the process; each
has a lock held across a call and the read of its error message, so
threads may share them.
"""
import ctypes as C
import os
import sys
import threading
import weakref

from . import _lib
from ._lib import DropoutOpts, SoftmaxOpts, TilejitError, cstr
from .core import Context, _stream_value
from .dlpack import device_of, is_torch_tensor, nbytes_of, to_dltensor

__all__ = ["Blocks", "get_blocks", "AttnLayout", "ACTIVATIONS", "softmax", "log_softmax", "softmax_backward",
           "layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward", "dropout_act",
           "dropout_act_backward", "dropout_counters", "next_dropout_seed", "attention", "attention_backward",
           "norm_bwd_workspace_size", "dropout_bwd_workspace_size", "attention_bwd_workspace_size",
           "block_names", "block_info", "block_call"]

ACTIVATIONS = ["none", "relu", "leaky_relu", "gelu", "gelu_tanh", "squared_relu", "smelu", "star_relu"]
# Defaults of act_a / act_b where the caller gives none: torch's leaky_relu
# slope, xFormers' SmeLU beta, MetaFormer's StarReLU scale and bias.
_ACT_DEFAULTS = {"leaky_relu": (0.01, 0.0), "smelu": (2.0, 0.0), "star_relu": (0.8944, -0.4472)}


class Blocks:
    """A tj_blocks handle with its context, for one device ("cpu", or
    "cuda"/"cuda:N"). Module functions use get_blocks(); build one yourself
    for separate autotuning or workspace state."""

    def __init__(self, device="cpu", lib=None):
        self.device_type, self.device_id = _parse_device(device)
        self.lib = lib or _lib.load_library()
        self.context = Context(self.device_id, self.lib)
        self.lock = threading.RLock()
        self.b = C.c_void_p()
        st = self.lib.tj_blocks_create(self.context.ctx, C.byref(self.b))
        if st != 0:
            raise TilejitError(st, self.context.last_error(), "tj_blocks_create")
        self._dense = {}                     # (nb, bs) -> AttnLayout, dense layouts for layout=None
        self._layouts = weakref.WeakSet()    # AttnLayouts with a native layout on this handle
        self._seed = int.from_bytes(os.urandom(8), "little")
        self._offset = 0

    def __repr__(self):
        return f"<tilejit.Blocks {self.device_type}:{self.device_id}>"

    def close(self):
        """Frees the handle (and this handle's native layouts) and its context."""
        # Lock order: AttnLayout.native() holds the layout's lock and then
        # takes self.lock (h.call), so the layouts are collected under
        # self.lock and dropped (layout locks) after releasing it; a layout
        # created meanwhile is caught by the next round.
        while True:
            with self.lock:
                lays = list(self._layouts)
                self._layouts.clear()
                if not lays:
                    if self.b:
                        self.lib.tj_blocks_free(self.b)
                        self.b = C.c_void_p()
                    self.context.close()
                    return
            for lay in lays:
                lay._drop(self)

    def last_error(self):
        return cstr(self.lib.tj_blocks_last_error(self.b)) or self.context.last_error()

    def call(self, name, *args):
        """lib.<name>(b, *args) under the lock; TilejitError on failure."""
        with self.lock:
            st = getattr(self.lib, name)(self.b, *args)
            if st != 0:
                raise TilejitError(st, self.last_error(), name)

    @property
    def num_kernels(self):
        return self.lib.tj_blocks_num_kernels(self.b)

    def set_autotune(self, on):
        self.call("tj_blocks_set_autotune", int(bool(on)))

    def tune_stats(self):
        s = _lib.TjTuneStats()
        self.call("tj_blocks_tune_stats", C.byref(s))
        return {f: getattr(s, f) for f, _ in s._fields_}

    def next_rng(self, numel):
        """(seed, offset) for a dropout call over numel elements: this
        handle's seed and a counter range no earlier call used."""
        with self.lock:
            off = self._offset
            self._offset = (self._offset + self.lib.tj_dropout_counters(int(numel))) % (1 << 64)
            return self._seed, off

    def dense_layout(self, S):
        """The all-ones AttnLayout for sequence length S, cached."""
        bs = 128
        while bs > 16 and S % bs:
            bs //= 2
        nb = S // bs if S >= bs and S % bs == 0 else 1
        with self.lock:
            lay = self._dense.get((nb, bs))
            if lay is None:
                lay = self._dense[(nb, bs)] = AttnLayout(None, 1, nb, bs)
            return lay


def _parse_device(device):
    if device is None:
        return ("cpu", 0)
    if isinstance(device, tuple) and len(device) == 2 and isinstance(device[0], int):
        t, i = device
        return ("cuda", int(i)) if t in (_lib.kDLCUDA, _lib.kDLCUDAManaged) else ("cpu", 0)
    if isinstance(device, tuple):
        return (str(device[0]), int(device[1]))
    s = str(device)   # "cpu", "cuda", "cuda:1", torch.device
    if s.startswith("cuda"):
        return ("cuda", int(s.split(":")[1]) if ":" in s else _torch_current_device())
    return ("cpu", 0)


def _torch_current_device():
    torch = sys.modules.get("torch")
    try:
        return torch.cuda.current_device() if torch is not None else 0
    except Exception:
        return 0


_handles = {}
_handles_lock = threading.Lock()


def get_blocks(device="cpu"):
    """The process-wide handle of a device ("cpu", "cuda", "cuda:1", a
    torch.device or a DLPack (type, id) pair), created on first use."""
    key = _parse_device(device)
    h = _handles.get(key)
    if h is None:
        with _handles_lock:
            h = _handles.get(key)
            if h is None:
                h = _handles[key] = Blocks(key)
    return h


# ---------------------------------------------------------------- call plumbing

def _dev_of(objs):
    for o in objs:
        d = device_of(o)
        if d is not None:
            return d
    return (_lib.kDLCPU, 0)


def _resolve_stream(stream, objs, dev):
    if stream is not None:
        return _stream_value(stream)
    if dev[0] not in (_lib.kDLCUDA, _lib.kDLCUDAManaged):
        return 0
    for o in objs:
        if is_torch_tensor(o) and o.is_cuda:
            torch = sys.modules["torch"]
            # The raw CUstream, as Triton reads it: torch.cuda.current_stream()
            # builds a Stream object per call (microseconds on the hot path).
            raw = getattr(torch._C, "_cuda_getCurrentRawStream", None) if hasattr(torch, "_C") else None
            if raw is not None:
                return int(raw(o.device.index if o.device.index is not None else torch.cuda.current_device()))
            return int(torch.cuda.current_stream(o.device).cuda_stream)
    return 0


class _Call:
    """Converts the tensors of one call: .p(obj) is the DLTensor pointer
    (None for None), .h the device's handle, .s the stream as c_void_p."""

    def __init__(self, objs, stream, handle=None):
        self.dev = dev = _dev_of(objs)
        self.h = handle or get_blocks(dev)
        s = _resolve_stream(stream, objs, dev)
        self.s = C.c_void_p(s)
        self.keep = []
        self.map = {}
        for o in objs:
            if o is None or id(o) in self.map:
                continue
            d, k = to_dltensor(o, s)
            self.keep.append((d, k, o))
            self.map[id(o)] = d

    def dl(self, o):
        return None if o is None else self.map[id(o)]

    def p(self, o):
        return None if o is None else C.byref(self.map[id(o)])


def _torch():
    return sys.modules["torch"]


def _alloc(like, shape=None, dtype=None):
    """A new compact tensor of like's kind and device; dtype None = like's,
    "f32" = float32."""
    shape = tuple(like.shape) if shape is None else tuple(shape)
    if is_torch_tensor(like):
        torch = _torch()
        dt = like.dtype if dtype is None else {"f32": torch.float32}[dtype]
        return torch.empty(shape, dtype=dt, device=like.device)
    from .host import HostTensor
    if isinstance(like, HostTensor):
        return HostTensor.empty(shape, like.dtype if dtype is None else dtype)
    raise TypeError(f"tilejit: cannot allocate an output like a {type(like).__name__}; pass it (out=...)")


def _workspace_ptr(ws, c=None):
    """(address, bytes) of a workspace; a torch tensor must be contiguous
    and on the call's device (c: the _Call, None = not checked)."""
    from .core import Ptr
    if isinstance(ws, Ptr):
        return ws.address, ws.nbytes
    if is_torch_tensor(ws):
        if not ws.is_contiguous():
            raise ValueError("tilejit: the workspace tensor must be contiguous")
        if c is not None and device_of(ws) != c.dev:
            raise ValueError(f"tilejit: the workspace tensor is on {ws.device}, the call on device "
                             f"{_dev_name(c.dev)}")
        return ws.data_ptr(), ws.numel() * ws.element_size()
    d, _ = to_dltensor(ws)
    return (d.data or 0) + d.byte_offset, nbytes_of(d) - d.byte_offset


def _dev_name(dev):
    return f"cuda:{dev[1]}" if dev[0] in (_lib.kDLCUDA, _lib.kDLCUDAManaged) else "cpu"


def _run(c, name, args, workspace=None):
    """c.h.call(name, b, *args, stream), with `workspace` installed for this
    call only (tj_norm_bwd_workspace: handle state, hence under the lock)."""
    h = c.h
    if workspace is None:
        h.call(name, *args, c.s)
        return
    ptr, nbytes = _workspace_ptr(workspace, c)
    with h.lock:
        h.call("tj_norm_bwd_workspace", C.c_void_p(ptr), C.c_size_t(nbytes))
        try:
            h.call(name, *args, c.s)
        finally:
            h.lib.tj_norm_bwd_workspace(h.b, None, 0)


# ---------------------------------------------------------------- softmax

def softmax(x, *, log=False, causal=False, mask=None, out=None, stream=None):
    """y = softmax(x) (log-softmax with log=True) over the last dimension.
    causal masks element (i, j) of the last two dims where j > i; mask is an
    additive [seq, K] or [K] mask. out may be x (in place)."""
    if out is None and x is not None:
        out = _alloc(x)
    c = _Call([x, out, mask], stream)
    o = SoftmaxOpts(int(bool(log)), int(bool(causal)), C.pointer(c.dl(mask))) if mask is not None else \
        _softmax_opts(log, causal)
    _run(c, "tj_softmax_fwd", (c.p(x), c.p(out), C.byref(o)))
    return out


_SOFTMAX_OPTS = {}   # (log, causal) -> SoftmaxOpts without a mask; read-only, shared


def _softmax_opts(log, causal):
    key = (bool(log), bool(causal))
    o = _SOFTMAX_OPTS.get(key)
    if o is None:
        o = _SOFTMAX_OPTS[key] = SoftmaxOpts(int(key[0]), int(key[1]), None)
    return o


def log_softmax(x, **kw):
    return softmax(x, log=True, **kw)


def softmax_backward(y, dy, *, log=False, causal=False, out=None, stream=None):
    """dx from the forward output y and its gradient dy. out may be dy."""
    if out is None and dy is not None:
        out = _alloc(dy)
    c = _Call([y, dy, out], stream)
    _run(c, "tj_softmax_bwd", (c.p(y), c.p(dy), c.p(out), C.byref(_softmax_opts(log, causal))))
    return out


# ---------------------------------------------------------------- norms

def _rows_shape(x):
    return tuple(x.shape[:-1]) if x is not None else ()


def layer_norm(x, weight=None, bias=None, eps=1e-5, *, out=None, mean=None, rstd=None, stream=None):
    """(y, mean, rstd): y = (x - mean) * rstd * weight + bias over the last
    dimension; mean and rstd are f32 of shape x.shape[:-1]."""
    if x is not None:
        out = _alloc(x) if out is None else out
        mean = _alloc(x, _rows_shape(x), "f32") if mean is None else mean
        rstd = _alloc(x, _rows_shape(x), "f32") if rstd is None else rstd
    c = _Call([x, weight, bias, out, mean, rstd], stream)
    _run(c, "tj_layernorm_fwd", (c.p(x), c.p(weight), c.p(bias), C.c_double(eps), c.p(out), c.p(mean),
                                 c.p(rstd)))
    return out, mean, rstd


def layer_norm_backward(dy, x, weight, mean, rstd, *, need_dw=None, need_db=None, dx=None, dw=None, db=None,
                        workspace=None, stream=None):
    """(dx, dw, db) from the forward's x, weight, mean, rstd and dy. dw and db
    ([K], x's dtype) are computed when need_dw / need_db (default: weight
    given) or when passed; otherwise they are None. workspace: scratch for
    the deterministic dw/db reduction (norm_bwd_workspace_size bytes), else
    the handle's own."""
    need_dw = (weight is not None) if need_dw is None else need_dw
    need_db = (weight is not None) if need_db is None else need_db
    if x is not None:
        K = (x.shape[-1],)
        dx = _alloc(x) if dx is None else dx
        dw = _alloc(x, K) if dw is None and need_dw else dw
        db = _alloc(x, K) if db is None and need_db else db
    c = _Call([dy, x, weight, mean, rstd, dx, dw, db], stream)
    _run(c, "tj_layernorm_bwd", (c.p(dy), c.p(x), c.p(weight), c.p(mean), c.p(rstd), c.p(dx), c.p(dw),
                                 c.p(db)), workspace)
    return dx, dw, db


def rms_norm(x, weight=None, eps=1e-6, *, out=None, rstd=None, stream=None):
    """(y, rstd): y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps)."""
    if x is not None:
        out = _alloc(x) if out is None else out
        rstd = _alloc(x, _rows_shape(x), "f32") if rstd is None else rstd
    c = _Call([x, weight, out, rstd], stream)
    _run(c, "tj_rmsnorm_fwd", (c.p(x), c.p(weight), C.c_double(eps), c.p(out), c.p(rstd)))
    return out, rstd


def rms_norm_backward(dy, x, weight, rstd, *, need_dw=None, dx=None, dw=None, workspace=None, stream=None):
    """(dx, dw); dw computed when need_dw (default: weight given) or passed."""
    need_dw = (weight is not None) if need_dw is None else need_dw
    if x is not None:
        dx = _alloc(x) if dx is None else dx
        dw = _alloc(x, (x.shape[-1],)) if dw is None and need_dw else dw
    c = _Call([dy, x, weight, rstd, dx, dw], stream)
    _run(c, "tj_rmsnorm_bwd", (c.p(dy), c.p(x), c.p(weight), c.p(rstd), c.p(dx), c.p(dw)), workspace)
    return dx, dw


def _size_query(name, x):
    c = _Call([x], None)
    n = C.c_size_t()
    c.h.call(name, c.p(x), C.byref(n))
    return n.value


def norm_bwd_workspace_size(x):
    """Bytes of scratch layer_norm_backward / rms_norm_backward need for x."""
    return _size_query("tj_norm_bwd_workspace_size", x)


# ---------------------------------------------------------------- dropout

def _act(activation, act_a, act_b):
    if isinstance(activation, int):
        code = activation
        name = ACTIVATIONS[code] if 0 <= code < len(ACTIVATIONS) else "?"
    else:
        name = str(activation or "none").lower()
        if name not in ACTIVATIONS:
            raise ValueError(f"tilejit: unknown activation {activation!r} (one of {', '.join(ACTIVATIONS)})")
        code = ACTIVATIONS.index(name)
    da, db = _ACT_DEFAULTS.get(name, (0.0, 0.0))
    return code, float(da if act_a is None else act_a), float(db if act_b is None else act_b)


def dropout_counters(numel):
    """Philox counters a dropout call over numel elements uses (advance the offset by it)."""
    return _lib.load_library().tj_dropout_counters(int(numel))


def next_dropout_seed(x):
    """(seed, offset) for a fresh mask over x, from the handle of x's device."""
    n = 1
    for d in x.shape:
        n *= d
    return get_blocks(device_of(x)).next_rng(n)


def _dropout_opts(p, training, activation, act_a, act_b, seed, offset, x):
    code, a, b = _act(activation, act_a, act_b)
    if training and p > 0 and seed is None:
        if offset is not None:
            raise ValueError("tilejit.dropout_act: offset given without seed")
        seed, offset = next_dropout_seed(x)
    return DropoutOpts(float(p), int(bool(training)), int(seed or 0) % (1 << 64), int(offset or 0) % (1 << 64),
                       code, a, b)


def dropout_act(x, bias=None, *, p=0.0, training=True, activation="none", act_a=None, act_b=None, seed=None,
                offset=None, out=None, stream=None):
    """y = dropout(act(x + bias), p). The mask is a function of (seed,
    offset, element index) (blocks.h); seed=None draws (seed, offset) from
    the device handle's generator (use next_dropout_seed() to know them, as
    the backward pass needs the same). act_a / act_b: leaky_relu slope,
    smelu beta, star_relu scale and bias (defaults 0.01, 2.0, 0.8944/-0.4472).
    out may be x."""
    o = _dropout_opts(p, training, activation, act_a, act_b, seed, offset, x)
    if out is None and x is not None:
        out = _alloc(x)
    c = _Call([x, bias, out], stream)
    _run(c, "tj_dropout_fwd", (c.p(x), c.p(bias), c.p(out), C.byref(o)))
    return out


def dropout_act_backward(dy, x, bias=None, *, p=0.0, training=True, activation="none", act_a=None, act_b=None,
                         seed=None, offset=None, need_dbias=None, dx=None, dbias=None, workspace=None,
                         stream=None):
    """(dx, dbias) with the forward call's x, bias, p, activation, seed and
    offset. dbias ([K], deterministic) when need_dbias (default: bias given)
    or passed. x may be None when activation is "none"."""
    if training and p > 0 and seed is None:
        raise ValueError("tilejit.dropout_act_backward: pass the forward call's seed and offset")
    o = _dropout_opts(p, training, activation, act_a, act_b, seed, offset, dy)
    need_dbias = (bias is not None) if need_dbias is None else need_dbias
    if dy is not None:
        dx = _alloc(dy) if dx is None else dx
        dbias = _alloc(dy, (dy.shape[-1],)) if dbias is None and need_dbias else dbias
    c = _Call([dy, x, bias, dx, dbias], stream)
    _run(c, "tj_dropout_bwd", (c.p(dy), c.p(x), c.p(bias), c.p(dx), c.p(dbias), C.byref(o)), workspace)
    return dx, dbias


def dropout_bwd_workspace_size(x):
    """Bytes of scratch a dropout backward pass with dbias over x needs."""
    return _size_query("tj_dropout_bwd_workspace_size", x)


# ---------------------------------------------------------------- attention

def _layout_bytes(bits):
    if bits is None:
        return None
    if isinstance(bits, (bytes, bytearray)):
        return bytes(bits)
    if isinstance(bits, memoryview):
        return bits.tobytes()
    if is_torch_tensor(bits):
        t = bits.detach().to("cpu").contiguous()
        if t.element_size() != 1:
            t = (t != 0).to(_torch().uint8)
        return C.string_at(t.data_ptr(), t.numel())
    from .host import HostTensor
    if isinstance(bits, HostTensor):
        return bytes(1 if v else 0 for v in bits.tolist())
    return bytes(1 if v else 0 for v in bits)


class AttnLayout:
    """A block layout for attention: bits [heads, nb, nb] (0/1; bytes, a
    list, a CPU tensor...; None = all ones), block size bs. The native
    tj_attn_layout (and its lookup tables) is built per device handle on
    first use and reused; one AttnLayout serves every device."""

    def __init__(self, bits=None, heads=1, nb=None, bs=64):
        self.bits = _layout_bytes(bits)
        self.heads, self.bs = int(heads), int(bs)
        if nb is None:
            if self.bits is None:
                raise ValueError("AttnLayout: a dense layout needs nb")
            nb = int(round((len(self.bits) / self.heads) ** 0.5))
        self.nb = int(nb)
        if self.bits is not None and len(self.bits) != self.heads * self.nb * self.nb:
            raise ValueError(f"AttnLayout: {len(self.bits)} bits for [{self.heads}, {self.nb}, {self.nb}]")
        self._native = {}
        self._lock = threading.Lock()

    @property
    def nnz(self):
        """Active blocks, summed over heads."""
        if self.bits is None:
            return self.heads * self.nb * self.nb
        return sum(1 for v in self.bits if v)

    @property
    def seq_len(self):
        return self.nb * self.bs

    def native(self, h):
        """The tj_attn_layout of this layout on handle h."""
        with self._lock:
            p = self._native.get(id(h))
            if p is None:
                p = C.c_void_p()
                buf = C.create_string_buffer(self.bits, len(self.bits)) if self.bits is not None else None
                with h.lock:   # lock order: this layout's lock, then the handle's
                    h.call("tj_attn_layout_create", buf, self.heads, self.nb, self.bs, C.byref(p))
                    h._layouts.add(self)
                self._native[id(h)] = p
                self._handles = getattr(self, "_handles", {})
                self._handles[id(h)] = h
            return p

    def _drop(self, h):
        with self._lock:
            p = self._native.pop(id(h), None)
            if p:
                h.lib.tj_attn_layout_free(p)

    def free(self):
        for h in list(getattr(self, "_handles", {}).values()):
            self._drop(h)

    def __del__(self):
        try:
            self.free()
        except Exception:
            pass

    def __repr__(self):
        return f"AttnLayout(heads={self.heads}, nb={self.nb}, bs={self.bs}, nnz={self.nnz})"


def _layout_for(c, layout, q):
    """The native layout pointer for call c. The AttnLayout that owns it
    goes into c.keep, so that it (and the native layout its __del__ would
    free) lives until the call has returned, even when it is a temporary
    (a Pattern's attn_layout() built for this call)."""
    if layout is None:
        layout = c.h.dense_layout(int(q.shape[2]) if q is not None and len(q.shape) == 4 else 0)
    elif hasattr(layout, "attn_layout"):   # a patterns.Pattern
        layout = layout.attn_layout()
    c.keep.append(layout)
    return layout.native(c.h)


def attention(q, k, v, layout=None, *, scale=None, causal=False, out=None, lse=None, stream=None):
    """(o, lse): o = softmax(scale q k^T + M) v over the live blocks of
    layout (None: dense), causal optional. q, k, v: [B, H, S, D]; lse: [B, H,
    S] f32. scale None = 1 / sqrt(D)."""
    if q is not None:
        out = _alloc(q) if out is None else out
        lse = _alloc(q, tuple(q.shape[:3]), "f32") if lse is None else lse
    c = _Call([q, k, v, out, lse], stream)
    lay = _layout_for(c, layout, q)
    _run(c, "tj_attention_fwd", (c.p(q), c.p(k), c.p(v), lay, C.c_double(scale or 0.0), int(bool(causal)),
                                 c.p(out), c.p(lse)))
    return out, lse


def attention_backward(q, k, v, o, lse, dout, layout=None, *, scale=None, causal=False, dq=None, dk=None,
                       dv=None, workspace=None, stream=None):
    """(dq, dk, dv) from the forward's q, k, v, o, lse and dout, with the
    forward's layout, scale and causal flag."""
    if q is not None:
        dq = _alloc(q) if dq is None else dq
        dk = _alloc(k) if dk is None else dk
        dv = _alloc(v) if dv is None else dv
    c = _Call([q, k, v, o, lse, dout, dq, dk, dv], stream)
    lay = _layout_for(c, layout, q)
    _run(c, "tj_attention_bwd", (c.p(q), c.p(k), c.p(v), c.p(o), c.p(lse), c.p(dout), lay,
                                 C.c_double(scale or 0.0), int(bool(causal)), c.p(dq), c.p(dk), c.p(dv)),
         workspace)
    return dq, dk, dv


def attention_bwd_workspace_size(q):
    """Bytes of scratch attention_backward needs for q's shape."""
    return _size_query("tj_attention_bwd_workspace_size", q)


# ---------------------------------------------------------------- registry

class _BlockTensor(C.Structure):
    _fields_ = [("name", C.c_char_p), ("role", C.c_int), ("optional", C.c_int), ("doc", C.c_char_p)]


class _BlockScalar(C.Structure):
    _fields_ = [("name", C.c_char_p), ("default_value", C.c_double), ("doc", C.c_char_p)]


class _BlockDesc(C.Structure):
    _fields_ = [("name", C.c_char_p), ("description", C.c_char_p), ("ntensors", C.c_int),
                ("tensors", C.POINTER(_BlockTensor)), ("nscalars", C.c_int), ("scalars", C.POINTER(_BlockScalar))]


def block_names():
    lib = _lib.load_library()
    return [cstr(C.cast(lib.tj_block_at(i), C.POINTER(_BlockDesc)).contents.name)
            for i in range(lib.tj_block_count())]


def _desc(name):
    p = _lib.load_library().tj_block_find(name.encode())
    if not p:
        raise TilejitError(3, f"no block named {name!r}", "tj_block_find")
    return p, C.cast(p, C.POINTER(_BlockDesc)).contents


def block_info(name):
    """{"name", "description", "tensors": [{name, role ("in"/"out"), optional, doc}], "scalars": [...]}"""
    _, d = _desc(name)
    return {"name": cstr(d.name), "description": cstr(d.description),
            "tensors": [{"name": cstr(t.name), "role": "out" if t.role == 2 else "in", "optional": bool(t.optional),
                         "doc": cstr(t.doc)} for t in d.tensors[:d.ntensors]],
            "scalars": [{"name": cstr(s.name), "default": s.default_value, "doc": cstr(s.doc)}
                        for s in d.scalars[:d.nscalars]]}


def block_call(name, tensors, scalars=None, stream=None):
    """tj_block_call: runs block `name` on tensors (in the descriptor's
    order, None for absent optional ones) and scalars (a list in the
    descriptor's order, or a dict by name; missing ones take defaults).
    Outputs must be passed (nothing is allocated)."""
    p, d = _desc(name)
    if isinstance(scalars, dict):
        rest = dict(scalars)   # the caller's dict is left as it is
        vals = []
        for s in d.scalars[:d.nscalars]:
            vals.append(float(rest.pop(cstr(s.name), s.default_value)))
        if rest:
            raise ValueError(f"block {name}: unknown scalars {sorted(rest)}")
        scalars = vals
    c = _Call(list(tensors), stream)
    arr = (C.POINTER(_lib.DLTensor) * max(1, len(tensors)))(
        *[C.pointer(c.dl(t)) if t is not None else None for t in tensors])
    sc = (C.c_double * max(1, len(scalars or [])))(*(scalars or []))
    c.h.call("tj_block_call", C.c_void_p(p), arr, len(tensors), sc, len(scalars or []), c.s)
