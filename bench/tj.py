"""Minimal ctypes binding of libtilejit for the benchmarks: compile a .tj
kernel, launch it on torch tensors on torch's current stream.

The structs and prototypes live once in the Python package (python/tilejit,
see docs/python.md); this module keeps the small interface the benchmark
scripts were written against: load(), context(), Kernel.
"""
import ctypes as C
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_here, "..", "python"))

from tilejit import _lib  # noqa: E402
from tilejit._lib import ARG_FLOAT, ARG_INT, ARG_PTR, TjArg, TjCompileOpts  # noqa: E402,F401


def load(path=None):
    """The library (prototypes set): `path`, else $TILEJIT_LIBRARY / $TILEJIT_LIB, else build-gpu/."""
    path = (path or os.environ.get("TILEJIT_LIBRARY") or os.environ.get("TILEJIT_LIB")
            or os.path.join(_here, "..", "build-gpu", "libtilejit.so"))
    return _lib.load_library(path)


class Kernel:
    def __init__(self, lib, ctx, path, defines=(), num_warps=0, kernel=None):
        self.lib, self.ctx = lib, ctx
        defs = (C.c_char_p * max(1, len(defines)))(*[d.encode() for d in defines])
        o = TjCompileOpts(path=path.encode(), defines=defs, ndefines=len(defines), num_warps=num_warps,
                          kernel=kernel.encode() if kernel else None)
        k = C.c_void_p()
        st = lib.tj_kernel_compile(ctx, C.byref(o), C.byref(k))
        if st != 0:
            raise _lib.TilejitError(st, _lib.cstr(lib.tj_ctx_last_error(ctx)), "tj_kernel_compile")
        self.k = k

    def __call__(self, grid, *args, stream=None):
        n = len(args)
        a = (TjArg * max(1, n))()
        for i, v in enumerate(args):
            if hasattr(v, "data_ptr"):
                a[i].kind = ARG_PTR
                a[i].u.buf.ptr = v.data_ptr()
                a[i].u.buf.nbytes = v.numel() * v.element_size()
            elif isinstance(v, float):
                a[i].kind, a[i].u.f = ARG_FLOAT, v
            else:
                a[i].kind, a[i].u.i = ARG_INT, int(v)
        g = (C.c_uint * 3)(*(list(grid) + [1, 1, 1])[:3])
        st = self.lib.tj_kernel_launch(self.ctx, self.k, g, a, n, C.c_void_p(stream))
        if st != 0:
            raise _lib.TilejitError(st, _lib.cstr(self.lib.tj_ctx_last_error(self.ctx)), "tj_kernel_launch")


def context(lib):
    ctx = C.c_void_p()
    if lib.tj_ctx_create(C.byref(ctx)) != 0:
        raise RuntimeError("tj_ctx_create failed")
    return ctx


class BlocksHandle:
    """A tj_blocks handle on its own context, for the block benchmarks: a
    non-OK status raises with the handle's message."""

    def __init__(self, lib):
        self.lib = lib
        self.ctx = context(lib)
        self.b = C.c_void_p()
        if lib.tj_blocks_create(self.ctx, C.byref(self.b)) != 0:
            raise RuntimeError("tj_blocks_create failed")

    def check(self, st):
        if st != 0:
            raise RuntimeError(self.lib.tj_blocks_last_error(self.b).decode())

    @staticmethod
    def stream():
        import torch
        return C.c_void_p(torch.cuda.current_stream().cuda_stream)

    @staticmethod
    def ref(d):
        return C.byref(d) if d is not None else None


# The copy that every "% of copy" figure divides by: y.copy_(x) of a 256 MiB
# fp16 tensor (512 MiB moved), the size of the largest benchmarked tensor
# (32768 x 4096 fp16). A 64 MiB copy reads ~12% lower on the H200 (3650
# against 4150 GB/s: launch and tail costs weigh more), which would flatter
# every ratio.
COPY_MIB = 256


def copy_bandwidth(bench):
    """GB/s of y.copy_(x), x a COPY_MIB fp16 tensor, timed with bench(fn) -> ms."""
    import torch
    x = torch.randn(COPY_MIB << 19, device="cuda", dtype=torch.float16)
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x))
    n = 2 * x.numel() * x.element_size()
    del x, y
    return n / (ms * 1e-3) / 1e9

