"""_lib.py: loading libtilejit.so, the ctypes mirrors of the C structs, and the
prototypes of every function the binding calls.

Every struct here mirrors one in include/tilejit/*.h or <dlpack/dlpack.h>
(v0.6 for DLTensor, v1.0 for DLManagedTensorVersioned), field for field;
they are defined once, here, and shared by the package, bench/tj.py and the
benchmark scripts. Prototypes are set on the CDLL object (argtypes/restype),
so a wrong argument count or kind fails in Python with a TypeError instead of
corrupting the stack.

Where the library comes from, first match wins: the `path` argument of
load_library(), $TILEJIT_LIBRARY, $TILEJIT_LIB (the benchmarks' older name),
build/ then build-gpu/ of the repository this package sits in, then
ctypes.util.find_library("tilejit"). A candidate that exists but fails to
load (build/ on a machine without the shared LLVM) is skipped.
"""
import ctypes as C
import ctypes.util
import os
import threading

__all__ = ["TilejitError", "load_library", "library_path", "STATUS_NAMES", "DLDevice", "DLDataType", "DLTensor",
           "DLManagedTensor", "DLManagedTensorVersioned", "TjArg", "TjCompileOpts", "SoftmaxOpts",
           "DropoutOpts", "TjDeviceInfo", "TjCacheSummary", "TjTuneStats", "TjKernelResources"]

STATUS_NAMES = ["TJ_OK", "TJ_ERR_INVALID_ARG", "TJ_ERR_COMPILE", "TJ_ERR_NOT_FOUND", "TJ_ERR_NO_MEMORY",
                "TJ_ERR_IO", "TJ_ERR_BOUNDS", "TJ_ERR_NO_DEVICE", "TJ_ERR_CUDA", "TJ_ERR_UNSUPPORTED",
                "TJ_ERR_CORRUPT", "TJ_ERR_INTERNAL"]


class TilejitError(RuntimeError):
    """A call into libtilejit returned a status other than TJ_OK.

    .status is the tj_status value (int), .status_name its name
    ("TJ_ERR_INVALID_ARG"), .message the library's message
    (tj_blocks_last_error / tj_ctx_last_error at the time of the failure),
    .function the C function that failed."""

    def __init__(self, status, message="", function=None):
        self.status = int(status)
        self.status_name = STATUS_NAMES[self.status] if 0 <= self.status < len(STATUS_NAMES) else str(status)
        self.message = message or ""
        self.function = function
        where = f"{function}: " if function else ""
        super().__init__(f"{where}{self.status_name}: {self.message}" if self.message
                         else f"{where}{self.status_name}")


# ---------------------------------------------------------------- DLPack (dlpack.h)

class DLDevice(C.Structure):
    _fields_ = [("device_type", C.c_int), ("device_id", C.c_int)]


class DLDataType(C.Structure):
    _fields_ = [("code", C.c_uint8), ("bits", C.c_uint8), ("lanes", C.c_uint16)]


class DLTensor(C.Structure):
    _fields_ = [("data", C.c_void_p), ("device", DLDevice), ("ndim", C.c_int), ("dtype", DLDataType),
                ("shape", C.POINTER(C.c_int64)), ("strides", C.POINTER(C.c_int64)),
                ("byte_offset", C.c_uint64)]


class DLManagedTensor(C.Structure):
    pass


DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", C.c_void_p),
                            ("deleter", C.CFUNCTYPE(None, C.POINTER(DLManagedTensor)))]


class DLPackVersion(C.Structure):
    _fields_ = [("major", C.c_uint32), ("minor", C.c_uint32)]


class DLManagedTensorVersioned(C.Structure):
    pass


DLManagedTensorVersioned._fields_ = [("version", DLPackVersion), ("manager_ctx", C.c_void_p),
                                     ("deleter", C.CFUNCTYPE(None, C.POINTER(DLManagedTensorVersioned))),
                                     ("flags", C.c_uint64), ("dl_tensor", DLTensor)]

# DLDeviceType values
kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged = 1, 2, 3, 13
# DLDataTypeCode values
kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLBool = 0, 1, 2, 4, 6


# ---------------------------------------------------------------- tilejit.h

class TjArg(C.Structure):
    class _U(C.Union):
        class _Buf(C.Structure):
            _fields_ = [("ptr", C.c_void_p), ("nbytes", C.c_size_t)]
        _fields_ = [("buf", _Buf), ("i", C.c_int64), ("f", C.c_double)]
    _fields_ = [("kind", C.c_int), ("u", _U)]


ARG_PTR, ARG_INT, ARG_FLOAT = 1, 2, 3


class TjCompileOpts(C.Structure):
    _fields_ = [("source", C.c_char_p), ("source_len", C.c_size_t), ("path", C.c_char_p),
                ("kernel", C.c_char_p), ("defines", C.POINTER(C.c_char_p)), ("ndefines", C.c_int),
                ("num_warps", C.c_int), ("arch", C.c_char_p), ("flags", C.c_uint),
                ("assume", C.c_char_p)]


COMPILE_NO_CACHE, COMPILE_FRONTEND, COMPILE_DEBUG, COMPILE_NO_FP_FUSION = 1, 2, 4, 8


class TjDeviceInfo(C.Structure):
    _fields_ = [("name", C.c_char * 256), ("cc_major", C.c_int), ("cc_minor", C.c_int), ("sm_count", C.c_int),
                ("total_mem", C.c_size_t), ("max_shared_per_block", C.c_int), ("arch", C.c_char * 16)]


class TjCacheSummary(C.Structure):
    _fields_ = [("enabled", C.c_int), ("entries", C.c_int), ("bytes", C.c_uint64), ("max_bytes", C.c_uint64),
                ("mem_hits", C.c_uint64), ("disk_hits", C.c_uint64), ("misses", C.c_uint64),
                ("writes", C.c_uint64), ("corrupt", C.c_uint64), ("evictions", C.c_uint64),
                ("warnings", C.c_uint64)]


class TjKernelResources(C.Structure):
    _fields_ = [("arch", C.c_char * 16), ("num_regs", C.c_int), ("spill_stores", C.c_int),
                ("spill_loads", C.c_int), ("local_bytes", C.c_int), ("static_shared_bytes", C.c_int),
                ("dynamic_shared_bytes", C.c_int), ("max_threads_per_block", C.c_int),
                ("block_threads", C.c_int), ("binary_version", C.c_int)]


# ---------------------------------------------------------------- autotune.h, blocks.h

class TjTuneStats(C.Structure):
    _fields_ = [(n, C.c_uint64) for n in ("launches", "mem_hits", "disk_hits", "tunings", "configs_timed",
                                          "configs_failed", "timing_launches", "disk_writes", "corrupt")]


class SoftmaxOpts(C.Structure):
    _fields_ = [("log", C.c_int), ("causal", C.c_int), ("mask", C.POINTER(DLTensor))]


class DropoutOpts(C.Structure):
    _fields_ = [("p", C.c_double), ("training", C.c_int), ("seed", C.c_uint64), ("offset", C.c_uint64),
                ("act", C.c_int), ("act_a", C.c_double), ("act_b", C.c_double)]


# ---------------------------------------------------------------- prototypes

def _prototypes(lib):
    P, V, I, D = C.POINTER, C.c_void_p, C.c_int, C.c_double
    i64, u64, sz, s = C.c_int64, C.c_uint64, C.c_size_t, C.c_char_p
    T = P(DLTensor)
    u8p = V   # uint8_t * (host arrays; passed as buffers or None)
    i64p = P(C.c_int64)
    protos = {
        # tilejit.h
        "tj_version": (s, []), "tj_status_str": (s, [I]), "tj_dtype_name": (s, [I]), "tj_llvm_version": (s, []),
        "tj_ctx_create": (I, [P(V)]), "tj_ctx_create_device": (I, [I, P(V)]), "tj_ctx_free": (None, [V]),
        "tj_ctx_last_error": (s, [V]), "tj_ctx_device": (I, [V]), "tj_ctx_set_validate": (I, [V, I]),
        "tj_kernel_compile": (I, [V, P(TjCompileOpts), P(V)]), "tj_kernel_free": (None, [V]),
        "tj_kernel_name": (s, [V]), "tj_kernel_tir": (s, [V]), "tj_kernel_llvm": (s, [V]),
        "tj_kernel_ptx": (s, [V]), "tj_kernel_num_warps": (I, [V]), "tj_kernel_num_params": (I, [V]),
        "tj_kernel_interpret": (I, [V, V, P(C.c_uint), P(TjArg), I]),
        "tj_kernel_launch": (I, [V, V, P(C.c_uint), P(TjArg), I, V]),
        "tj_kernel_info": (I, [V, V, P(TjKernelResources)]),
        "tj_driver_version": (I, [V, P(I)]), "tj_device_count": (I, [V, P(I)]),
        "tj_device_query": (I, [V, I, P(TjDeviceInfo)]),
        "tj_device_malloc": (I, [V, sz, P(V)]), "tj_device_free": (I, [V, V]),
        "tj_memcpy_htod": (I, [V, V, V, sz]), "tj_memcpy_dtoh": (I, [V, V, V, sz]),
        "tj_memcpy_dtod": (I, [V, V, V, sz]), "tj_memset_d8": (I, [V, V, C.c_ubyte, sz]),
        "tj_stream_create": (I, [V, P(V)]), "tj_stream_destroy": (I, [V, V]),
        "tj_stream_synchronize": (I, [V, V]),
        "tj_cache_dir": (I, [V, P(s)]), "tj_ctx_set_cache_dir": (I, [V, s]),
        "tj_cache_clear": (I, [V, P(I)]), "tj_cache_stats": (I, [V, P(TjCacheSummary)]),
        # blocks.h
        "tj_blocks_create": (I, [V, P(V)]), "tj_blocks_free": (None, [V]), "tj_blocks_ctx": (V, [V]),
        "tj_blocks_last_error": (s, [V]), "tj_blocks_num_kernels": (I, [V]),
        "tj_blocks_set_autotune": (I, [V, I]), "tj_blocks_tune_stats": (I, [V, P(TjTuneStats)]),
        "tj_softmax_fwd": (I, [V, T, T, P(SoftmaxOpts), V]),
        "tj_softmax_bwd": (I, [V, T, T, T, P(SoftmaxOpts), V]),
        "tj_layernorm_fwd": (I, [V, T, T, T, D, T, T, T, V]),
        "tj_layernorm_bwd": (I, [V, T, T, T, T, T, T, T, T, V]),
        "tj_rmsnorm_fwd": (I, [V, T, T, D, T, T, V]),
        "tj_rmsnorm_bwd": (I, [V, T, T, T, T, T, T, V]),
        "tj_norm_bwd_workspace_size": (I, [V, T, P(sz)]), "tj_norm_bwd_workspace": (I, [V, V, sz]),
        "tj_activation_name": (s, [I]), "tj_dropout_counters": (u64, [i64]),
        "tj_dropout_fwd": (I, [V, T, T, T, P(DropoutOpts), V]),
        "tj_dropout_bwd": (I, [V, T, T, T, T, T, P(DropoutOpts), V]),
        "tj_dropout_bwd_workspace_size": (I, [V, T, P(sz)]),
        "tj_block_count": (I, []), "tj_block_at": (V, [I]), "tj_block_find": (V, [s]),
        "tj_block_call": (I, [V, V, P(T), I, P(D), I, V]),
        "tj_attn_layout_create": (I, [V, u8p, I, I, I, P(V)]), "tj_attn_layout_free": (None, [V]),
        "tj_attn_layout_nnz": (i64, [V]),
        "tj_attention_fwd": (I, [V, T, T, T, V, D, I, T, T, V]),
        "tj_attention_bwd": (I, [V, T, T, T, T, T, T, V, D, I, T, T, T, V]),
        "tj_attention_bwd_workspace_size": (I, [V, T, P(sz)]),
        "tj_pattern_local_1d": (I, [V, i64, i64, i64, u8p, u8p]),
        "tj_pattern_causal_1d": (I, [V, i64, i64, u8p, u8p]),
        "tj_pattern_random": (I, [V, i64, I, D, u64, i64, u8p, u8p]),
        "tj_pattern_global": (I, [V, i64, i64p, I, i64, u8p, u8p]),
        "tj_pattern_bigbird": (I, [V, i64, I, i64, i64p, I, D, u64, i64, u8p, u8p]),
        "tj_pattern_longformer": (I, [V, i64, i64, i64p, I, i64, u8p, u8p]),
        "tj_pattern_axial_2d": (I, [V, i64, i64, I, i64, u8p, u8p]),
        "tj_pattern_local_2d": (I, [V, i64, i64, D, D, i64, u8p, u8p]),
        "tj_pattern_swin": (I, [V, i64, i64, i64, i64, i64, u8p, u8p]),
        "tj_pattern_dilated_2d": (I, [V, i64, i64, i64, i64, u8p, u8p]),
        "tj_pattern_to_layout": (I, [V, u8p, I, i64, i64, u8p]),
    }
    for name, (res, args) in protos.items():
        f = getattr(lib, name, None)
        if f is None:   # an older library: the binding still loads, the call fails when used
            continue
        f.restype = res
        f.argtypes = args
    return lib


# ---------------------------------------------------------------- loading

_REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
_lock = threading.Lock()
_loaded = {}        # realpath -> CDLL
_default = None     # the CDLL the package's handles use
_default_path = None


def _candidates(path):
    if path:
        yield path
        return
    for env in ("TILEJIT_LIBRARY", "TILEJIT_LIB"):
        if os.environ.get(env):
            yield os.environ[env]
            return
    for d in ("build", "build-gpu"):
        yield os.path.join(_REPO, d, "libtilejit.so")
    found = ctypes.util.find_library("tilejit")
    if found:
        yield found


def load_library(path=None):
    """The CDLL of libtilejit with prototypes set. Without `path`, the
    library the package already uses, else the first of the search order
    (module docstring) that loads. The first library loaded becomes the one
    the package's handles use. Raises OSError when none loads."""
    global _default, _default_path
    with _lock:
        if path is None and _default is not None:
            return _default
        errors = []
        for cand in _candidates(path):
            real = os.path.realpath(cand) if os.path.sep in cand else cand
            if real in _loaded:
                lib = _loaded[real]
            else:
                if os.path.sep in cand and not os.path.exists(cand):
                    errors.append(f"{cand}: no such file")
                    continue
                try:
                    lib = _prototypes(C.CDLL(cand))
                except OSError as e:
                    errors.append(f"{cand}: {e}")
                    continue
                _loaded[real] = lib
            if _default is None:
                _default, _default_path = lib, real
            return lib
        raise OSError("tilejit: cannot load libtilejit.so (set TILEJIT_LIBRARY to its path); tried:\n  " +
                      "\n  ".join(errors or ["nothing: no candidate found"]))


def library_path():
    """Path of the library the package uses (loading it if needed)."""
    load_library()
    return _default_path


def cstr(b):
    return b.decode("utf-8", "replace") if b else ""
