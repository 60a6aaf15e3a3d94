/* gpu_blocks.h: the fixture the GPU suites of the blocks share: a context,
 * a blocks handle and a non-default stream per test, and host tensors with
 * device copies (DevT). Include after the reference header of the suite
 * (blocks_ref.h or one that includes it). Public API only. */
#ifndef TJ_GPU_BLOCKS_H
#define TJ_GPU_BLOCKS_H

#include <check.h>

#include "../cpu/blocks_ref.h"

static tj_ctx *ctx;
static tj_blocks *blk;
static void *stream;

#define OK(call)                                                                     \
  do {                                                                               \
    tj_status st_ = (call);                                                          \
    ck_assert_msg(st_ == TJ_OK, "%s -> %s: %s", #call, tj_status_str(st_), tj_ctx_last_error(ctx)); \
  } while (0)

static void setup(void) {
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  ck_assert_int_eq(tj_blocks_create(ctx, &blk), TJ_OK);
  OK(tj_stream_create(ctx, &stream));
}

static void teardown(void) {
  tj_blocks_free(blk);
  tj_stream_destroy(ctx, stream);
  tj_ctx_free(ctx);
}

// A host tensor and its device copy (same shape and strides).
typedef struct DevT {
  HostT h;
  void *d;
  DLTensor t;
} DevT;

static inline void dev_init(DevT *a, tj_dtype dt, int nd, const int64_t *shape, const int64_t *strides) {
  host_init(&a->h, dt, nd, shape, strides);
  OK(tj_device_malloc(ctx, a->h.nbytes, &a->d));
  a->t = a->h.t;
  a->t.data = a->d;
  a->t.device.device_type = kDLCUDA;
  a->t.device.device_id = tj_ctx_device(ctx);
}

static inline void dev_up(DevT *a) { OK(tj_memcpy_htod(ctx, a->d, a->h.buf, a->h.nbytes)); }

static inline void dev_down(DevT *a) {
  OK(tj_stream_synchronize(ctx, stream));
  OK(tj_memcpy_dtoh(ctx, a->h.buf, a->d, a->h.nbytes));
}

static inline void dev_free(DevT *a) {
  tj_device_free(ctx, a->d);
  host_free(&a->h);
}

#endif
