/* cuda.h (runtime-internal): the slice of the CUDA driver API tilejit uses,
 * declared by hand, and the driver-loading layer.
 *
 * tilejit must load and run (compile, interpret, CLI, CPU tests) on machines
 * without CUDA, so it never links libcuda: the driver is dlopen'd
 * ("libcuda.so.1", or $TILEJIT_LIBCUDA) on first use, under pthread_once.
 * The process-wide RtDriver table is written once inside that pthread_once
 * and only read afterwards; it is the one piece of global state in runtime/.
 *
 * The numeric values below are the driver ABI (cuda.h of CUDA 12/13); the
 * versioned entry points (_v2) are the ones cuda.h maps the plain names to.
 * This header is the only place in tilejit that declares driver API.
 */
#ifndef TJ_RT_CUDA_H
#define TJ_RT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef unsigned long long CUdeviceptr;

enum {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_OUT_OF_MEMORY = 2,
  CUDA_ERROR_NOT_INITIALIZED = 3,
  CUDA_ERROR_NO_DEVICE = 100,
  CUDA_ERROR_INVALID_DEVICE = 101,
};

// CUdevice_attribute
enum {
  CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1,
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8,
  CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
  CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
  CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING = 41,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
  CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
};

// CUfunction_attribute
enum {
  CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0,
  CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1,
  CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES = 2,
  CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3,
  CU_FUNC_ATTRIBUTE_NUM_REGS = 4,
  CU_FUNC_ATTRIBUTE_PTX_VERSION = 5,
  CU_FUNC_ATTRIBUTE_BINARY_VERSION = 6,
  CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
};

// CUjit_option
enum {
  CU_JIT_INFO_LOG_BUFFER = 3,
  CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
  CU_JIT_ERROR_LOG_BUFFER = 5,
  CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
  CU_JIT_LOG_VERBOSE = 12,
};

// CUpointer_attribute (the members of that enum in the driver's cuda.h,
// same names and values) / CUmemorytype. RANGE_START_ADDR and RANGE_SIZE
// give the allocation holding a pointer (rt_pointer_range).
enum {
  CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 2,
  CU_POINTER_ATTRIBUTE_RANGE_START_ADDR = 11,
  CU_POINTER_ATTRIBUTE_RANGE_SIZE = 12,
};
enum { CU_MEMORYTYPE_HOST = 1, CU_MEMORYTYPE_DEVICE = 2, CU_MEMORYTYPE_ARRAY = 3,
       CU_MEMORYTYPE_UNIFIED = 4 };

enum { CU_STREAM_NON_BLOCKING = 1 };
enum { CU_EVENT_DEFAULT = 0 };

// The driver entry points tilejit calls, resolved by rt_driver().
typedef struct RtDriver {
  tj_status status;        // TJ_OK when loaded and cuInit succeeded
  char msg[512];           // why not, otherwise
  void *lib;
  int version;             // cuDriverGetVersion: 12040 = 12.4
#define RT_DRIVER_FNS(X)                                                                      \
  X(cuInit, CUresult, (unsigned))                                                             \
  X(cuDriverGetVersion, CUresult, (int *))                                                    \
  X(cuGetErrorName, CUresult, (CUresult, const char **))                                      \
  X(cuGetErrorString, CUresult, (CUresult, const char **))                                    \
  X(cuDeviceGetCount, CUresult, (int *))                                                      \
  X(cuDeviceGet, CUresult, (CUdevice *, int))                                                 \
  X(cuDeviceGetName, CUresult, (char *, int, CUdevice))                                       \
  X(cuDeviceGetAttribute, CUresult, (int *, int, CUdevice))                                   \
  X(cuDeviceTotalMem_v2, CUresult, (size_t *, CUdevice))                                      \
  X(cuDevicePrimaryCtxRetain, CUresult, (CUcontext *, CUdevice))                              \
  X(cuDevicePrimaryCtxRelease_v2, CUresult, (CUdevice))                                       \
  X(cuCtxGetCurrent, CUresult, (CUcontext *))                                                 \
  X(cuCtxSetCurrent, CUresult, (CUcontext))                                                   \
  X(cuCtxPushCurrent_v2, CUresult, (CUcontext))                                               \
  X(cuCtxPopCurrent_v2, CUresult, (CUcontext *))                                              \
  X(cuModuleLoadDataEx, CUresult, (CUmodule *, const void *, unsigned, int *, void **))        \
  X(cuModuleUnload, CUresult, (CUmodule))                                                     \
  X(cuModuleGetFunction, CUresult, (CUfunction *, CUmodule, const char *))                    \
  X(cuFuncGetAttribute, CUresult, (int *, int, CUfunction))                                   \
  X(cuFuncSetAttribute, CUresult, (CUfunction, int, int))                                     \
  X(cuLaunchKernel, CUresult,                                                                 \
    (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,        \
     CUstream, void **, void **))                                                             \
  X(cuPointerGetAttributes, CUresult, (unsigned, int *, void **, CUdeviceptr))               \
  X(cuMemAlloc_v2, CUresult, (CUdeviceptr *, size_t))                                         \
  X(cuMemFree_v2, CUresult, (CUdeviceptr))                                                    \
  X(cuMemGetInfo_v2, CUresult, (size_t *, size_t *))                                          \
  X(cuMemcpyHtoD_v2, CUresult, (CUdeviceptr, const void *, size_t))                           \
  X(cuMemcpyDtoH_v2, CUresult, (void *, CUdeviceptr, size_t))                                 \
  X(cuMemcpyDtoD_v2, CUresult, (CUdeviceptr, CUdeviceptr, size_t))                            \
  X(cuMemsetD8_v2, CUresult, (CUdeviceptr, unsigned char, size_t))                            \
  X(cuStreamCreate, CUresult, (CUstream *, unsigned))                                         \
  X(cuStreamDestroy_v2, CUresult, (CUstream))                                                 \
  X(cuStreamSynchronize, CUresult, (CUstream))                                                \
  X(cuCtxSynchronize, CUresult, (void))
// Optional entry points (benchmarking, runtime/timing.c): NULL when the
// driver lacks them, which disables only the autotuner's timing, never the
// driver as a whole.
#define RT_DRIVER_OPT_FNS(X)                                                                  \
  X(cuEventCreate, CUresult, (CUevent *, unsigned))                                           \
  X(cuEventRecord, CUresult, (CUevent, CUstream))                                             \
  X(cuEventSynchronize, CUresult, (CUevent))                                                  \
  X(cuEventElapsedTime, CUresult, (float *, CUevent, CUevent))                                \
  X(cuEventDestroy_v2, CUresult, (CUevent))                                                   \
  X(cuMemsetD8Async, CUresult, (CUdeviceptr, unsigned char, size_t, CUstream))                \
  X(cuMemcpyDtoDAsync_v2, CUresult, (CUdeviceptr, CUdeviceptr, size_t, CUstream))
#define RT_DRIVER_FIELD(name, ret, args) ret (*name) args;
  RT_DRIVER_FNS(RT_DRIVER_FIELD)
  RT_DRIVER_OPT_FNS(RT_DRIVER_FIELD)
#undef RT_DRIVER_FIELD
} RtDriver;

// Loads the driver and runs cuInit once per process. Never NULL; check
// ->status (TJ_ERR_NO_DEVICE with ->msg when there is no usable driver).
const RtDriver *rt_driver(void);

// "CUDA_ERROR_INVALID_VALUE (invalid argument)" for r, into buf.
const char *rt_cu_error(const RtDriver *drv, CUresult r, char *buf, size_t n);

// Reports a failed driver call on ctx: TJ_ERR_CUDA with the call's name and
// the driver's error name (TJ_ERR_NO_DEVICE for "no device" errors).
tj_status rt_cu_fail(tj_ctx *ctx, const char *what, CUresult r);
// The memory type of p (CU_MEMORYTYPE_*; 0 when p is not CUDA memory at
// all, e.g. a plain host pointer) in the current context. rt_pointer_range
// (rt.h) asks the same in a tj_ctx's context, with the allocation's range.
CUresult rt_pointer_memtype(CUdeviceptr p, unsigned *mt);

#endif
