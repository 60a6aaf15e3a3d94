/* memory.c: device memory and stream helpers of the public API, for C users
 * without the CUDA toolkit. requires: cuda.c (driver, primary context).
 * Each call makes the context's primary context current for its duration
 * (rt_ctx_enter) and reports driver failures with the call's name.
 */
#include "rt.h"

#include <stdint.h>

// Runs `call` (an expression yielding CUresult) inside the context.
#define WITH_CTX(ctx, name, call) WITH_CTX_THEN(ctx, name, call, false)

// The same, then, with `sync`, waits for the legacy default stream (why:
// above tj_device_malloc); a failure there is reported as the wait's.
#define WITH_CTX_THEN(ctx, name, call, sync)                      \
  do {                                                            \
    tj_status st_ = rt_device_ready(ctx);                         \
    if (st_ != TJ_OK) return st_;                                 \
    CUcontext saved_;                                             \
    bool pushed_;                                                 \
    if ((st_ = rt_ctx_enter(ctx, &saved_, &pushed_)) != TJ_OK)    \
      return st_;                                                 \
    const char *what_ = (name);                                   \
    CUresult r_ = (call);                                         \
    if (r_ == CUDA_SUCCESS && (sync)) {                           \
      r_ = rt_driver()->cuStreamSynchronize(NULL);                \
      what_ = "cuStreamSynchronize (legacy stream, after " name ")";\
    }                                                             \
    rt_ctx_leave(ctx, pushed_);                                   \
    if (r_ != CUDA_SUCCESS) return rt_cu_fail(ctx, what_, r_);    \
    return TJ_OK;                                                 \
  } while (0)

static CUdeviceptr dptr(const void *p) { return (CUdeviceptr)(uintptr_t)p; }

// The copies and the memset run on the legacy default stream, where the
// driver may return before the device holds the result (a copy from
// pageable memory returns once the last chunk is staged; memsets and
// device-to-device copies are asynchronous). A stream created with
// tj_stream_create is non-blocking, so a kernel launched on it next would
// not wait for them: they end with a wait on the legacy stream (which also
// waits for earlier work on blocking streams), keeping the documented
// promise that these calls are synchronous.
enum { SYNC = 1 };

tj_status tj_device_malloc(tj_ctx *ctx, size_t nbytes, void **out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_device_malloc: out is NULL");
  *out = NULL;
  if (nbytes == 0) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_device_malloc: size is 0");
  tj_status st = rt_device_ready(ctx);
  if (st != TJ_OK) return st;
  CUcontext saved;
  bool pushed;
  if ((st = rt_ctx_enter(ctx, &saved, &pushed)) != TJ_OK) return st;
  CUdeviceptr p = 0;
  CUresult r = rt_driver()->cuMemAlloc_v2(&p, nbytes);
  rt_ctx_leave(ctx, pushed);
  if (r != CUDA_SUCCESS) {
    char buf[200];
    return api_error(ctx, r == CUDA_ERROR_OUT_OF_MEMORY ? TJ_ERR_NO_MEMORY : TJ_ERR_CUDA,
                     "cuMemAlloc of %zu bytes failed: %s", nbytes,
                     rt_cu_error(rt_driver(), r, buf, sizeof buf));
  }
  *out = (void *)(uintptr_t)p;
  return TJ_OK;
}

tj_status tj_device_free(tj_ctx *ctx, void *p) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!p) return TJ_OK;
  WITH_CTX(ctx, "cuMemFree", rt_driver()->cuMemFree_v2(dptr(p)));
}

static tj_status copy_args(tj_ctx *ctx, const char *fn, void *dst, const void *src, size_t n) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (n && (!dst || !src))
    return api_error(ctx, TJ_ERR_INVALID_ARG, "%s: %s is NULL", fn, dst ? "src" : "dst");
  return TJ_OK;
}

tj_status tj_memcpy_htod(tj_ctx *ctx, void *dst, const void *src, size_t n) {
  tj_status st = copy_args(ctx, "tj_memcpy_htod", dst, src, n);
  if (st != TJ_OK || n == 0) return st;
  WITH_CTX_THEN(ctx, "cuMemcpyHtoD", rt_driver()->cuMemcpyHtoD_v2(dptr(dst), src, n), SYNC);
}

tj_status tj_memcpy_dtoh(tj_ctx *ctx, void *dst, const void *src, size_t n) {
  tj_status st = copy_args(ctx, "tj_memcpy_dtoh", dst, src, n);
  if (st != TJ_OK || n == 0) return st;
  WITH_CTX(ctx, "cuMemcpyDtoH", rt_driver()->cuMemcpyDtoH_v2(dst, dptr(src), n));
}

tj_status tj_memcpy_dtod(tj_ctx *ctx, void *dst, const void *src, size_t n) {
  tj_status st = copy_args(ctx, "tj_memcpy_dtod", dst, src, n);
  if (st != TJ_OK || n == 0) return st;
  WITH_CTX_THEN(ctx, "cuMemcpyDtoD", rt_driver()->cuMemcpyDtoD_v2(dptr(dst), dptr(src), n), SYNC);
}

tj_status tj_memset_d8(tj_ctx *ctx, void *dst, unsigned char value, size_t n) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (n && !dst) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_memset_d8: dst is NULL");
  if (n == 0) return TJ_OK;
  WITH_CTX_THEN(ctx, "cuMemsetD8", rt_driver()->cuMemsetD8_v2(dptr(dst), value, n), SYNC);
}

tj_status tj_stream_create(tj_ctx *ctx, void **out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_stream_create: out is NULL");
  *out = NULL;
  CUstream s = NULL;
  tj_status st = rt_device_ready(ctx);
  if (st != TJ_OK) return st;
  CUcontext saved;
  bool pushed;
  if ((st = rt_ctx_enter(ctx, &saved, &pushed)) != TJ_OK) return st;
  CUresult r = rt_driver()->cuStreamCreate(&s, CU_STREAM_NON_BLOCKING);
  rt_ctx_leave(ctx, pushed);
  if (r != CUDA_SUCCESS) return rt_cu_fail(ctx, "cuStreamCreate", r);
  *out = s;
  return TJ_OK;
}

tj_status tj_stream_destroy(tj_ctx *ctx, void *stream) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!stream) return TJ_OK;
  WITH_CTX(ctx, "cuStreamDestroy", rt_driver()->cuStreamDestroy_v2((CUstream)stream));
}

tj_status tj_stream_synchronize(tj_ctx *ctx, void *stream) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!stream) WITH_CTX(ctx, "cuCtxSynchronize", rt_driver()->cuCtxSynchronize());
  WITH_CTX(ctx, "cuStreamSynchronize", rt_driver()->cuStreamSynchronize((CUstream)stream));
}
