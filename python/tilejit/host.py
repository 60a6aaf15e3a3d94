"""host.py: HostTensor, a small strided host array backed by ctypes memory.

It exists so the binding can be used and tested without torch or numpy: the
blocks run kDLCPU tensors through the tilejit interpreter. It holds f16,
bf16, f32, f64, i32, i64 or u8 elements, any shape and non-negative element
strides, and produces DLPack capsules (__dlpack__/__dlpack_device__) like any
other array library, so it also exercises the binding's DLPack path.
"""
import ctypes as C
import struct

from . import _lib

__all__ = ["HostTensor"]

# name -> (DLDataType code, bits, struct format of one element or None)
DTYPES = {
    "f16": (_lib.kDLFloat, 16, "e"), "bf16": (_lib.kDLBfloat, 16, None), "f32": (_lib.kDLFloat, 32, "f"),
    "f64": (_lib.kDLFloat, 64, "d"), "i32": (_lib.kDLInt, 32, "i"), "i64": (_lib.kDLInt, 64, "q"),
    "u8": (_lib.kDLUInt, 8, "B"),
}
ALIASES = {"float16": "f16", "half": "f16", "bfloat16": "bf16", "float32": "f32", "float": "f32",
           "float64": "f64", "double": "f64", "int32": "i32", "int64": "i64", "uint8": "u8"}


def _dtype_name(dtype):
    d = ALIASES.get(str(dtype), str(dtype))
    if d not in DTYPES:
        raise TypeError(f"HostTensor: unknown dtype {dtype!r} (one of {', '.join(DTYPES)})")
    return d


def _f32_bits(v):
    return struct.unpack("<I", struct.pack("<f", v))[0]


def _bf16_encode(v):
    """f32 -> bf16 bits, round to nearest even (NaN stays NaN)."""
    b = _f32_bits(v)
    if (b & 0x7F800000) == 0x7F800000 and (b & 0x7FFFFF):
        return (b >> 16) | 0x40
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF


def _bf16_decode(h):
    return struct.unpack("<f", struct.pack("<I", (h & 0xFFFF) << 16))[0]


def _compact_strides(shape):
    st, run = [], 1
    for n in reversed(shape):
        st.append(run)
        run *= max(int(n), 1)
    return list(reversed(st))


class HostTensor:
    """A strided view of a ctypes buffer: .shape, .strides (in elements),
    .dtype ("f16", "bf16", "f32", ...), .offset (elements into the buffer)."""

    def __init__(self, shape, dtype="f32", strides=None, offset=0, buffer=None):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = _dtype_name(dtype)
        self.strides = tuple(int(s) for s in strides) if strides is not None else tuple(_compact_strides(self.shape))
        if len(self.strides) != len(self.shape):
            raise ValueError("HostTensor: shape and strides differ in length")
        self.offset = int(offset)
        self.itemsize = DTYPES[self.dtype][1] // 8
        span = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.strides) if n > 0)
        need = (self.offset + span) * self.itemsize if all(self.shape) else 0
        if buffer is None:
            buffer = (C.c_uint8 * max(need, 16))()
        elif C.sizeof(buffer) < need:
            raise ValueError("HostTensor: the buffer is smaller than the view")
        self.buffer = buffer

    # ------------------------------------------------------------ construction

    @classmethod
    def empty(cls, shape, dtype="f32"):
        return cls(shape, dtype)

    @classmethod
    def zeros(cls, shape, dtype="f32"):
        return cls(shape, dtype)   # ctypes memory starts zeroed

    @classmethod
    def from_list(cls, values, shape=None, dtype="f32"):
        """A compact tensor holding `values` (a flat list in row-major order,
        rounded to dtype), of `shape` (default: [len(values)])."""
        values = list(values)
        t = cls(shape if shape is not None else (len(values),), dtype)
        if t.numel != len(values):
            raise ValueError(f"HostTensor.from_list: {len(values)} values for shape {t.shape}")
        t.copy_from(values)
        return t

    def view(self, shape, strides, offset=None):
        """Another view of the same buffer (element strides)."""
        return HostTensor(shape, self.dtype, strides, self.offset if offset is None else offset, self.buffer)

    def transpose(self, a, b):
        shape, strides = list(self.shape), list(self.strides)
        shape[a], shape[b] = shape[b], shape[a]
        strides[a], strides[b] = strides[b], strides[a]
        return self.view(shape, strides)

    # ------------------------------------------------------------ elements

    @property
    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return C.sizeof(self.buffer)

    def data_ptr(self):
        return C.addressof(self.buffer) + self.offset * self.itemsize

    def _offsets(self):
        """Element offsets (from the buffer start) in row-major logical order."""
        offs = [self.offset]
        for n, s in zip(self.shape, self.strides):
            offs = [o + i * s for o in offs for i in range(n)]
        return offs

    def _get(self, off):
        code, bits, fmt = DTYPES[self.dtype]
        at = off * self.itemsize
        raw = bytes(memoryview(self.buffer)[at:at + self.itemsize])
        if fmt is None:
            return _bf16_decode(struct.unpack("<H", raw)[0])
        return struct.unpack("<" + fmt, raw)[0]

    def _set(self, off, v):
        code, bits, fmt = DTYPES[self.dtype]
        raw = struct.pack("<H", _bf16_encode(float(v))) if fmt is None else struct.pack(
            "<" + fmt, float(v) if fmt in "efd" else int(v))
        at = off * self.itemsize
        memoryview(self.buffer).cast("B")[at:at + self.itemsize] = raw

    def tolist(self):
        """The elements as a flat Python list in row-major logical order."""
        return [self._get(o) for o in self._offsets()]

    def copy_from(self, values):
        values = list(values)
        offs = self._offsets()
        if len(values) != len(offs):
            raise ValueError(f"HostTensor.copy_from: {len(values)} values for {len(offs)} elements")
        for o, v in zip(offs, values):
            self._set(o, v)
        return self

    def __repr__(self):
        return f"HostTensor(shape={list(self.shape)}, dtype={self.dtype}, strides={list(self.strides)})"

    # ------------------------------------------------------------ DLPack producer

    def __dlpack_device__(self):
        return (_lib.kDLCPU, 0)

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        """A "dltensor" capsule (DLPack 0.x DLManagedTensor) viewing this
        tensor. The memory stays alive until the consumer calls the deleter or,
        if nobody consumed the capsule, until the capsule is destroyed."""
        if stream is not None and stream != -1:
            raise BufferError("HostTensor: a host tensor takes no stream")
        return _make_capsule(self)


# The capsule machinery: the managed tensor and everything it points at are
# kept in _live (keyed by its address) until its deleter runs.
_live = {}
_Deleter = C.CFUNCTYPE(None, C.POINTER(_lib.DLManagedTensor))
_CapsuleDestructor = C.CFUNCTYPE(None, C.c_void_p)
_capsule_new = C.PYFUNCTYPE(C.py_object, C.c_void_p, C.c_void_p, C.c_void_p)(("PyCapsule_New", C.pythonapi))
# PyCapsule_New keeps the name pointer, so the name must outlive every capsule.
_NAME = C.create_string_buffer(b"dltensor")
_capsule_is_valid = C.PYFUNCTYPE(C.c_int, C.c_void_p, C.c_char_p)(("PyCapsule_IsValid", C.pythonapi))
_capsule_get = C.PYFUNCTYPE(C.c_void_p, C.c_void_p, C.c_char_p)(("PyCapsule_GetPointer", C.pythonapi))


@_Deleter
def _deleter(m):
    _live.pop(C.addressof(m.contents), None)


@_CapsuleDestructor
def _capsule_destructor(cap):
    # A consumer renames the capsule to "used_dltensor" and then owns the
    # deleter call; an unconsumed capsule frees its tensor here.
    if _capsule_is_valid(cap, b"dltensor"):
        p = _capsule_get(cap, b"dltensor")
        if p:
            _lib.DLManagedTensor.from_address(p).deleter(C.cast(p, C.POINTER(_lib.DLManagedTensor)))


def _make_capsule(t):
    code, bits, _ = DTYPES[t.dtype]
    nd = t.ndim
    shape = (C.c_int64 * max(nd, 1))(*t.shape)
    strides = (C.c_int64 * max(nd, 1))(*t.strides)
    m = _lib.DLManagedTensor()
    m.dl_tensor = _lib.DLTensor(data=C.addressof(t.buffer), device=_lib.DLDevice(_lib.kDLCPU, 0), ndim=nd,
                                dtype=_lib.DLDataType(code, bits, 1), shape=shape, strides=strides,
                                byte_offset=t.offset * t.itemsize)
    m.manager_ctx = None
    m.deleter = _deleter
    _live[C.addressof(m)] = (m, shape, strides, t.buffer)
    return _capsule_new(C.addressof(m), C.addressof(_NAME), C.cast(_capsule_destructor, C.c_void_p))
