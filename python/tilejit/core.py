"""core.py: the kernel API (tilejit.h) from Python: contexts, compiling .tj
kernels, launching them on the GPU or running them in the interpreter.

    ctx = tilejit.Context()                      # device 0
    k = ctx.compile(path="examples/softmax.tj", defines=["T=f16", "BLOCK=1024"])
    k.launch((rows,), y, x, n, n, stream=torch.cuda.current_stream().cuda_stream)

Tensor arguments (torch tensors, HostTensors, DLPack objects, DLTensors) pass
their data pointer and size; Python ints become integer arguments, floats
float ones; tilejit.Ptr(address, nbytes) passes a raw pointer.
"""
import ctypes as C
import threading

from . import _lib
from ._lib import TilejitError, cstr
from .dlpack import is_torch_tensor, nbytes_of, to_dltensor, torch_buffer

__all__ = ["Context", "Kernel", "Ptr", "version", "llvm_version"]


def version():
    return cstr(_lib.load_library().tj_version())


def llvm_version():
    return cstr(_lib.load_library().tj_llvm_version())


class Ptr:
    """A raw pointer argument (device or host address) with its size (0 = unknown)."""

    def __init__(self, address, nbytes=0):
        self.address, self.nbytes = int(address or 0), int(nbytes)


class Context:
    """A tj_ctx: one device's compiler, cache and launcher. Safe to share
    between threads (calls that fail and read the message hold a lock)."""

    def __init__(self, device=0, lib=None, handle=None):
        self.lib = lib or _lib.load_library()
        self.lock = threading.RLock()
        self.owned = handle is None
        if handle is not None:
            self.ctx = C.c_void_p(handle)
        else:
            self.ctx = C.c_void_p()
            st = self.lib.tj_ctx_create_device(int(device), C.byref(self.ctx))
            if st != 0:
                raise TilejitError(st, "tj_ctx_create_device failed", "tj_ctx_create_device")
        self.device = int(device)

    def close(self):
        if self.owned and self.ctx:
            self.lib.tj_ctx_free(self.ctx)
        self.ctx = C.c_void_p()

    def last_error(self):
        return cstr(self.lib.tj_ctx_last_error(self.ctx))

    def check(self, st, fn):
        if st != 0:
            raise TilejitError(st, self.last_error(), fn)

    def call(self, name, *args):
        """Calls lib.<name>(ctx, *args) and raises TilejitError on failure."""
        with self.lock:
            self.check(getattr(self.lib, name)(self.ctx, *args), name)

    # ------------------------------------------------------------ compile

    def compile(self, source=None, path=None, kernel=None, defines=(), num_warps=0, arch=None, flags=0,
                assume=None):
        """tj_kernel_compile: a Kernel from .tj text (`source`) or a file (`path`)."""
        defs = [d.encode() for d in defines]
        arr = (C.c_char_p * max(1, len(defs)))(*defs)
        src = source.encode() if isinstance(source, str) else source
        o = _lib.TjCompileOpts(source=src, source_len=len(src) if src else 0,
                               path=(path or ("<source>" if src else None) or "").encode() or None,
                               kernel=kernel.encode() if kernel else None, defines=arr, ndefines=len(defs),
                               num_warps=int(num_warps), arch=arch.encode() if arch else None, flags=int(flags),
                               assume=assume.encode() if assume else None)
        k = C.c_void_p()
        with self.lock:
            self.check(self.lib.tj_kernel_compile(self.ctx, C.byref(o), C.byref(k)), "tj_kernel_compile")
        return Kernel(self, k)

    # ------------------------------------------------------------ runtime

    def set_cache_dir(self, path):
        self.call("tj_ctx_set_cache_dir", str(path).encode())

    def cache_dir(self):
        out = C.c_char_p()
        self.call("tj_cache_dir", C.byref(out))
        return cstr(out.value)

    def cache_stats(self):
        s = _lib.TjCacheSummary()
        self.call("tj_cache_stats", C.byref(s))
        return {f: getattr(s, f) for f, _ in s._fields_}

    def set_validate(self, on):
        self.call("tj_ctx_set_validate", int(bool(on)))

    def driver_version(self):
        v = C.c_int()
        self.call("tj_driver_version", C.byref(v))
        return v.value

    def device_count(self):
        v = C.c_int()
        self.call("tj_device_count", C.byref(v))
        return v.value

    def device_info(self, device=None):
        i = _lib.TjDeviceInfo()
        self.call("tj_device_query", int(self.device if device is None else device), C.byref(i))
        return {"name": cstr(i.name), "cc": (i.cc_major, i.cc_minor), "sm_count": i.sm_count,
                "total_mem": i.total_mem, "max_shared_per_block": i.max_shared_per_block, "arch": cstr(i.arch)}

    def malloc(self, nbytes):
        p = C.c_void_p()
        self.call("tj_device_malloc", C.c_size_t(nbytes), C.byref(p))
        return Ptr(p.value, nbytes)

    def free(self, p):
        self.call("tj_device_free", C.c_void_p(p.address if isinstance(p, Ptr) else p))

    def memset(self, p, value, nbytes):
        self.call("tj_memset_d8", C.c_void_p(p.address if isinstance(p, Ptr) else p), value, nbytes)

    def synchronize(self, stream=None):
        self.call("tj_stream_synchronize", C.c_void_p(_stream_value(stream)))


def _stream_value(stream):
    if stream is None:
        return 0
    if hasattr(stream, "cuda_stream"):
        return int(stream.cuda_stream)
    return int(stream)


class Kernel:
    """A compiled kernel (tj_kernel). Call launch() / interpret(), or
    prepare() the arguments once and call the result repeatedly."""

    def __init__(self, ctx, handle):
        self.ctx, self.k = ctx, handle

    def __del__(self):
        try:
            if self.k:
                self.ctx.lib.tj_kernel_free(self.k)
                self.k = C.c_void_p()
        except Exception:   # interpreter shutdown
            pass

    @property
    def name(self):
        return cstr(self.ctx.lib.tj_kernel_name(self.k))

    @property
    def ptx(self):
        return cstr(self.ctx.lib.tj_kernel_ptx(self.k))

    @property
    def tir(self):
        return cstr(self.ctx.lib.tj_kernel_tir(self.k))

    @property
    def num_warps(self):
        return self.ctx.lib.tj_kernel_num_warps(self.k)

    def _args(self, args, stream=0):
        """The TjArg array of args; `stream` (an int, 0 = legacy default) is
        the launch's, passed to DLPack producers so that their pending work
        is made visible to it."""
        n = len(args)
        a = (_lib.TjArg * max(1, n))()
        keep = []
        for i, v in enumerate(args):
            if isinstance(v, Ptr):
                a[i].kind, a[i].u.buf.ptr, a[i].u.buf.nbytes = _lib.ARG_PTR, v.address, v.nbytes
            elif isinstance(v, bool) or isinstance(v, int):
                a[i].kind, a[i].u.i = _lib.ARG_INT, int(v)
            elif isinstance(v, float):
                a[i].kind, a[i].u.f = _lib.ARG_FLOAT, v
            elif is_torch_tensor(v):   # the caller's args keep v alive through the call
                a[i].kind = _lib.ARG_PTR
                a[i].u.buf.ptr, a[i].u.buf.nbytes = torch_buffer(v)
            else:
                d, k = to_dltensor(v, stream)
                keep.append(k)
                a[i].kind = _lib.ARG_PTR
                a[i].u.buf.ptr = (d.data or 0) + d.byte_offset
                a[i].u.buf.nbytes = max(0, nbytes_of(d) - d.byte_offset)
        return a, n, keep

    @staticmethod
    def _grid(grid):
        g = list(grid) + [1, 1, 1]
        return (C.c_uint * 3)(*g[:3])

    def launch(self, grid, *args, stream=None):
        """tj_kernel_launch on `stream` (int CUstream, a torch stream, or None = legacy default)."""
        s = _stream_value(stream)
        a, n, keep = self._args(args, s)
        with self.ctx.lock:
            self.ctx.check(self.ctx.lib.tj_kernel_launch(self.ctx.ctx, self.k, self._grid(grid), a, n,
                                                         C.c_void_p(s)), "tj_kernel_launch")

    __call__ = launch

    def interpret(self, grid, *args):
        """tj_kernel_interpret: run on the CPU over host memory, bounds-checked."""
        a, n, keep = self._args(args)
        with self.ctx.lock:
            self.ctx.check(self.ctx.lib.tj_kernel_interpret(self.ctx.ctx, self.k, self._grid(grid), a, n),
                           "tj_kernel_interpret")

    def prepare(self, grid, *args, stream=None):
        """A zero-argument function that launches with these arguments: the
        ctypes arrays are built once, so a call costs one ctypes call (for
        launch-overhead measurements and hot loops). Returns the status
        instead of raising (check it, or use launch())."""
        sv = _stream_value(stream)
        a, n, keep = self._args(args, sv)
        g = self._grid(grid)
        f, ctx, k, s = self.ctx.lib.tj_kernel_launch, self.ctx.ctx, self.k, C.c_void_p(sv)

        def run():
            return f(ctx, k, g, a, n, s)
        run.keep = (a, g, keep)
        return run
