"""dlpack.py: turning tensors into the DLTensor structs the C API takes.

Accepted, in this order:
  * None (a NULL pointer: the library reports a missing required tensor);
  * a tilejit.DLTensor (ctypes struct), passed as it is;
  * a PyTorch tensor, read directly (data_ptr, shape, stride, dtype, device):
    no capsule, no synchronisation, nothing allocated but two small arrays;
  * a tilejit.HostTensor (host memory, for use and tests without torch);
  * any object with __dlpack__ / __dlpack_device__ (NumPy, CuPy, JAX...): its
    capsule is unpacked with ctypes.pythonapi and the DLTensor inside the
    producer's DLManagedTensor is used in place. The capsule is not consumed
    (not renamed), so its own destructor returns the tensor to the producer;
    the binding keeps the capsule alive until the C call has returned.

Each conversion returns (DLTensor, keepalive); the caller holds keepalive for
the duration of the call.
"""
import ctypes as C
import sys

from . import _lib
from ._lib import DLDataType, DLDevice, DLTensor

__all__ = ["to_dltensor", "device_of", "is_torch_tensor", "make_dltensor", "nbytes_of", "torch_buffer"]

_TORCH_DTYPES = {  # str(torch dtype) -> (code, bits)
    "torch.float16": (_lib.kDLFloat, 16), "torch.bfloat16": (_lib.kDLBfloat, 16),
    "torch.float32": (_lib.kDLFloat, 32), "torch.float64": (_lib.kDLFloat, 64),
    "torch.int8": (_lib.kDLInt, 8), "torch.int16": (_lib.kDLInt, 16), "torch.int32": (_lib.kDLInt, 32),
    "torch.int64": (_lib.kDLInt, 64), "torch.uint8": (_lib.kDLUInt, 8), "torch.bool": (_lib.kDLBool, 8),
}
_TORCH_DEVICES = {"cpu": _lib.kDLCPU, "cuda": _lib.kDLCUDA}

_is_valid = C.PYFUNCTYPE(C.c_int, C.py_object, C.c_char_p)(("PyCapsule_IsValid", C.pythonapi))
_get_pointer = C.PYFUNCTYPE(C.c_void_p, C.py_object, C.c_char_p)(("PyCapsule_GetPointer", C.pythonapi))


def is_torch_tensor(obj):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _is_host_tensor(obj):
    from .host import HostTensor
    return isinstance(obj, HostTensor)


def device_of(obj):
    """(DLDeviceType, device id) of a tensor-like object; None for None."""
    if obj is None:
        return None
    if isinstance(obj, DLTensor):
        return (obj.device.device_type, obj.device.device_id)
    if is_torch_tensor(obj):
        return (_TORCH_DEVICES.get(obj.device.type, 0), obj.device.index or 0)
    if _is_host_tensor(obj):
        return (_lib.kDLCPU, 0)
    if hasattr(obj, "__dlpack_device__"):
        t, i = obj.__dlpack_device__()
        return (int(t), int(i))
    raise TypeError(f"tilejit: cannot pass a {type(obj).__name__} as a tensor (want a torch tensor, a "
                    "HostTensor, a DLTensor or an object with __dlpack__)")


def make_dltensor(data, shape, strides, code, bits, device_type=_lib.kDLCPU, device_id=0, byte_offset=0):
    """A DLTensor over raw memory; returns (DLTensor, keepalive)."""
    nd = len(shape)
    sh = (C.c_int64 * max(nd, 1))(*shape)
    st = (C.c_int64 * max(nd, 1))(*strides) if strides is not None else None
    d = DLTensor(data=data, device=DLDevice(device_type, device_id), ndim=nd, dtype=DLDataType(code, bits, 1),
                 shape=sh, strides=st, byte_offset=byte_offset)
    return d, (sh, st)


# DLTensors of torch tensors, keyed by everything they hold: (data pointer,
# shape, strides, dtype, device). A block call's hot spot is building these
# (two ctypes arrays and three structs per tensor); a steady-state loop
# passes the same tensors, or new ones at the same address, again and again.
# An entry depends on nothing but its key, so a hit is exact whatever tensor
# it came from, and it holds only ctypes objects, never the tensor (no
# device memory is kept alive). Entries are never mutated (the C API reads
# them), so threads may share them; the dict is emptied when it reaches
# _DL_CACHE_MAX entries.
_dl_cache = {}
_DL_CACHE_MAX = 1024


def _from_torch(t):
    dt, dev = t.dtype, t.device
    ptr, shape, strides = t.data_ptr(), t.shape, t.stride()
    key = (ptr, shape, strides, dt, dev)
    try:
        hit = _dl_cache.get(key)
    except TypeError:   # a stand-in tensor whose fields do not hash: not cached
        hit, key = None, None
    if hit is not None:
        return hit[0], (hit, t)
    code_bits = _TORCH_DTYPES.get(str(dt))
    if code_bits is None:
        raise TypeError(f"tilejit: torch dtype {t.dtype} has no DLPack equivalent here")
    devtype = _TORCH_DEVICES.get(dev.type, 0)
    d, keep = make_dltensor(ptr, tuple(shape), tuple(strides), *code_bits, devtype, dev.index or 0)
    entry = (d, keep)
    if key is not None:
        if len(_dl_cache) >= _DL_CACHE_MAX:
            _dl_cache.clear()
        _dl_cache[key] = entry
    return d, (entry, t)


def torch_buffer(t):
    """(data pointer, bytes its strides span) of a torch tensor, read straight
    from it: what to_dltensor and nbytes_of give, without building the
    DLTensor (a kernel argument needs only these two; this is the launch
    path's hot spot)."""
    if str(t.dtype) not in _TORCH_DTYPES:
        raise TypeError(f"tilejit: torch dtype {t.dtype} has no DLPack equivalent here")
    if t.numel() == 0:
        return t.data_ptr(), 0
    span = 1
    for size, stride in zip(t.shape, t.stride()):
        span += (size - 1) * stride
    return t.data_ptr(), span * t.element_size()


def _from_host(t):
    from .host import DTYPES
    code, bits, _ = DTYPES[t.dtype]
    d, keep = make_dltensor(C.addressof(t.buffer), t.shape, t.strides, code, bits,
                            byte_offset=t.offset * t.itemsize)
    return d, (keep, t)


def _from_capsule(obj, stream):
    cap = None
    if stream is not None:
        try:
            cap = obj.__dlpack__(stream=stream)
        except TypeError:   # a producer that predates the stream keyword
            cap = None
    if cap is None:
        cap = obj.__dlpack__()
    for name, cls in ((b"dltensor_versioned", _lib.DLManagedTensorVersioned), (b"dltensor", _lib.DLManagedTensor)):
        if _is_valid(cap, name):
            p = _get_pointer(cap, name)
            return cls.from_address(p).dl_tensor, (cap, obj)
    raise TypeError(f"tilejit: {type(obj).__name__}.__dlpack__() did not return a DLPack capsule "
                    "(or it was already consumed)")


def to_dltensor(obj, stream=None):
    """(DLTensor or None, keepalive) for obj. `stream` is the CUDA stream the
    call will run on (an int, 0 = legacy default); DLPack producers on CUDA
    are asked to make their work visible to it (DLPack's stream argument,
    where 1 means the legacy default stream)."""
    if obj is None:
        return None, None
    if isinstance(obj, DLTensor):
        return obj, None
    if is_torch_tensor(obj):
        return _from_torch(obj)
    if _is_host_tensor(obj):
        return _from_host(obj)
    if hasattr(obj, "__dlpack__"):
        dev = device_of(obj)
        s = None
        if dev[0] in (_lib.kDLCUDA, _lib.kDLCUDAManaged):
            s = int(stream or 0) or 1
        return _from_capsule(obj, s)
    raise TypeError(f"tilejit: cannot pass a {type(obj).__name__} as a tensor (want a torch tensor, a "
                    "HostTensor, a DLTensor or an object with __dlpack__)")


def nbytes_of(d):
    """Bytes spanned by a DLTensor from its data pointer (0 when empty)."""
    n, span = 1, 1
    for i in range(d.ndim):
        n *= d.shape[i]
        st = d.strides[i] if d.strides else None
        if st is None:
            st = 1
            for j in range(i + 1, d.ndim):
                st *= d.shape[j]
        span += (d.shape[i] - 1) * st if d.shape[i] > 0 else 0
    if n == 0:
        return 0
    return (span * d.dtype.bits * d.dtype.lanes + 7) // 8 + d.byte_offset
