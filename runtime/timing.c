/* timing.c: what benchmarking needs from the driver: event pairs and an L2
 * flush buffer.
 *
 * requires: a ready device (rt_device_ready); produces: RtTimer objects for
 * autotune/. A kernel timed right after another one (or after the copy that
 * staged its inputs) finds its data in L2 and looks faster than it will be
 * in a real pipeline; a memset of a buffer at least twice the L2 size
 * (GPU.md: the H200 has 60 MB, so we take max(2 x L2, 256 MiB)) before every
 * timed run replaces the L2 contents with lines nobody reads. The memset is
 * enqueued before the start event, so it is not part of the measured time.
 * Timing uses events on the caller's stream (GPU time, not host time), so
 * launch overhead on the host does not count.
 */
#include "rt.h"

#include <stdlib.h>
#include <string.h>

struct RtTimer {
  int n;
  CUevent *ev;            // 2 * n: start, end of each pair
  CUdeviceptr flush;
  size_t flush_bytes;
};

#define FLUSH_MIN_BYTES ((size_t)256 << 20)

static tj_status need_events(tj_ctx *ctx) {
  const RtDriver *d = rt_driver();
  if (d->status != TJ_OK) return api_error(ctx, d->status, "%s", d->msg);
  if (!d->cuEventCreate || !d->cuEventRecord || !d->cuEventSynchronize || !d->cuEventElapsedTime ||
      !d->cuEventDestroy_v2 || !d->cuMemsetD8Async || !d->cuMemcpyDtoDAsync_v2)
    return api_error(ctx, TJ_ERR_UNSUPPORTED,
                     "the CUDA driver lacks the event or async memory API that benchmarking needs");
  return TJ_OK;
}

// Requires ctx's context current.
static void destroy_locked(RtTimer *t) {
  const RtDriver *d = rt_driver();
  for (int i = 0; t->ev && i < 2 * t->n; i++)
    if (t->ev[i]) d->cuEventDestroy_v2(t->ev[i]);
  if (t->flush) d->cuMemFree_v2(t->flush);
  tj_free(t->ev);
  tj_free(t);
}

tj_status rt_timer_create(tj_ctx *ctx, int n, RtTimer **out) {
  *out = NULL;
  if (n <= 0 || n > 100000) return api_error(ctx, TJ_ERR_INVALID_ARG, "timer needs 1..100000 event pairs, got %d", n);
  tj_status st = need_events(ctx);
  if (st != TJ_OK) return st;
  if ((st = rt_device_ready(ctx)) != TJ_OK) return st;
  const RtDriver *d = rt_driver();
  RtTimer *t = tj_calloc(1, sizeof *t);
  if (!t || !(t->ev = tj_calloc((size_t)(2 * n), sizeof *t->ev))) {
    tj_free(t);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  t->n = n;
  CUcontext saved;
  bool pushed;
  if ((st = rt_ctx_enter(ctx, &saved, &pushed)) != TJ_OK) {
    tj_free(t->ev);
    tj_free(t);
    return st;
  }
  int l2 = 0;
  d->cuDeviceGetAttribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, ctx->rt->dev);
  t->flush_bytes = 2 * (size_t)(l2 > 0 ? l2 : 0);
  if (t->flush_bytes < FLUSH_MIN_BYTES) t->flush_bytes = FLUSH_MIN_BYTES;
  CUresult r = d->cuMemAlloc_v2(&t->flush, t->flush_bytes);
  if (r != CUDA_SUCCESS) {
    t->flush = 0;
    st = rt_cu_fail(ctx, "cuMemAlloc (L2 flush buffer)", r);
    goto fail;
  }
  for (int i = 0; i < 2 * n; i++) {
    if ((r = d->cuEventCreate(&t->ev[i], CU_EVENT_DEFAULT)) != CUDA_SUCCESS) {
      t->ev[i] = NULL;
      st = rt_cu_fail(ctx, "cuEventCreate", r);
      goto fail;
    }
  }
  rt_ctx_leave(ctx, pushed);
  *out = t;
  return TJ_OK;
fail:
  destroy_locked(t);
  rt_ctx_leave(ctx, pushed);
  return st;
}

void rt_timer_free(tj_ctx *ctx, RtTimer *t) {
  if (!t) return;
  CUcontext saved;
  bool pushed;
  if (rt_ctx_enter(ctx, &saved, &pushed) != TJ_OK) {
    // Without our context the handles cannot be released; leaking them is
    // safer than destroying them in whatever context is current.
    tj_free(t->ev);
    tj_free(t);
    return;
  }
  destroy_locked(t);
  rt_ctx_leave(ctx, pushed);
}

size_t rt_timer_flush_bytes(const RtTimer *t) { return t ? t->flush_bytes : 0; }

tj_status rt_timer_flush_l2(tj_ctx *ctx, RtTimer *t, void *stream) {
  CUcontext saved;
  bool pushed;
  tj_status st = rt_ctx_enter(ctx, &saved, &pushed);
  if (st != TJ_OK) return st;
  CUresult r = rt_driver()->cuMemsetD8Async(t->flush, 0, t->flush_bytes, (CUstream)stream);
  rt_ctx_leave(ctx, pushed);
  return r == CUDA_SUCCESS ? TJ_OK : rt_cu_fail(ctx, "cuMemsetD8Async (L2 flush)", r);
}

tj_status rt_timer_record(tj_ctx *ctx, RtTimer *t, int i, bool end, void *stream) {
  if (i < 0 || i >= t->n) return api_error(ctx, TJ_ERR_INTERNAL, "internal error: timer pair %d of %d", i, t->n);
  CUcontext saved;
  bool pushed;
  tj_status st = rt_ctx_enter(ctx, &saved, &pushed);
  if (st != TJ_OK) return st;
  CUresult r = rt_driver()->cuEventRecord(t->ev[2 * i + (end ? 1 : 0)], (CUstream)stream);
  rt_ctx_leave(ctx, pushed);
  return r == CUDA_SUCCESS ? TJ_OK : rt_cu_fail(ctx, "cuEventRecord", r);
}

tj_status rt_timer_elapsed(tj_ctx *ctx, RtTimer *t, int i, float *ms) {
  *ms = -1;
  if (i < 0 || i >= t->n) return api_error(ctx, TJ_ERR_INTERNAL, "internal error: timer pair %d of %d", i, t->n);
  const RtDriver *d = rt_driver();
  CUcontext saved;
  bool pushed;
  tj_status st = rt_ctx_enter(ctx, &saved, &pushed);
  if (st != TJ_OK) return st;
  CUresult r = d->cuEventSynchronize(t->ev[2 * i + 1]);
  if (r == CUDA_SUCCESS) r = d->cuEventElapsedTime(ms, t->ev[2 * i], t->ev[2 * i + 1]);
  rt_ctx_leave(ctx, pushed);
  return r == CUDA_SUCCESS ? TJ_OK : rt_cu_fail(ctx, "timing (cuEventSynchronize/cuEventElapsedTime)", r);
}

tj_status rt_copy_dtod_async(tj_ctx *ctx, void *dst, const void *src, size_t n, void *stream) {
  tj_status st = need_events(ctx);
  if (st != TJ_OK) return st;
  CUcontext saved;
  bool pushed;
  if ((st = rt_ctx_enter(ctx, &saved, &pushed)) != TJ_OK) return st;
  CUresult r = rt_driver()->cuMemcpyDtoDAsync_v2((CUdeviceptr)(uintptr_t)dst, (CUdeviceptr)(uintptr_t)src, n,
                                                  (CUstream)stream);
  rt_ctx_leave(ctx, pushed);
  return r == CUDA_SUCCESS ? TJ_OK : rt_cu_fail(ctx, "cuMemcpyDtoDAsync", r);
}
