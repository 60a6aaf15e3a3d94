"""Minimal ctypes binding of libtilejit for the benchmarks (and a sketch of
what a PyTorch user does): compile a .tj kernel, launch it on torch tensors
on torch's current stream."""
import ctypes as C
import os

_here = os.path.dirname(os.path.abspath(__file__))


class TjArg(C.Structure):
    class _U(C.Union):
        class _Buf(C.Structure):
            _fields_ = [("ptr", C.c_void_p), ("nbytes", C.c_size_t)]
        _fields_ = [("buf", _Buf), ("i", C.c_int64), ("f", C.c_double)]
    _fields_ = [("kind", C.c_int), ("u", _U)]


class TjCompileOpts(C.Structure):
    _fields_ = [("source", C.c_char_p), ("source_len", C.c_size_t), ("path", C.c_char_p),
                ("kernel", C.c_char_p), ("defines", C.POINTER(C.c_char_p)), ("ndefines", C.c_int),
                ("num_warps", C.c_int), ("arch", C.c_char_p), ("flags", C.c_uint),
                ("assume", C.c_char_p)]


ARG_PTR, ARG_INT, ARG_FLOAT = 1, 2, 3


def load(path=None):
    path = path or os.environ.get("TILEJIT_LIB") or os.path.join(_here, "..", "build-gpu", "libtilejit.so")
    lib = C.CDLL(path)
    lib.tj_ctx_create.argtypes = [C.POINTER(C.c_void_p)]
    lib.tj_ctx_last_error.restype = C.c_char_p
    lib.tj_ctx_last_error.argtypes = [C.c_void_p]
    lib.tj_kernel_compile.argtypes = [C.c_void_p, C.POINTER(TjCompileOpts), C.POINTER(C.c_void_p)]
    lib.tj_kernel_launch.argtypes = [C.c_void_p, C.c_void_p, C.POINTER(C.c_uint), C.POINTER(TjArg),
                                     C.c_int, C.c_void_p]
    lib.tj_kernel_free.argtypes = [C.c_void_p]
    return lib


class Kernel:
    def __init__(self, lib, ctx, path, defines=(), num_warps=0, kernel=None):
        self.lib, self.ctx = lib, ctx
        defs = (C.c_char_p * max(1, len(defines)))(*[d.encode() for d in defines])
        o = TjCompileOpts(path=path.encode(), defines=defs, ndefines=len(defines), num_warps=num_warps,
                          kernel=kernel.encode() if kernel else None)
        k = C.c_void_p()
        st = lib.tj_kernel_compile(ctx, C.byref(o), C.byref(k))
        if st != 0:
            raise RuntimeError(lib.tj_ctx_last_error(ctx).decode())
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
            raise RuntimeError(self.lib.tj_ctx_last_error(self.ctx).decode())


def context(lib):
    ctx = C.c_void_p()
    if lib.tj_ctx_create(C.byref(ctx)) != 0:
        raise RuntimeError("tj_ctx_create failed")
    return ctx
