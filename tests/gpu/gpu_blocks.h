/* gpu_blocks.h: the fixture the GPU suites of the blocks share: a context,
 * a blocks handle and a non-default stream per test, and host tensors with
 * device copies (DevT). Include after the reference header of the suite
 * (blocks_ref.h or one that includes it). Public API only. */
#ifndef TJ_GPU_BLOCKS_H
#define TJ_GPU_BLOCKS_H

#include <check.h>

#include "../cpu/blocks_fixture.h"
#include "../cpu/blocks_ref.h"

static void *stream;

static void setup(void) {
  fixture_open();
  OK(tj_stream_create(ctx, &stream));
}

static void teardown(void) {
  tj_stream_destroy(ctx, stream);
  fixture_close();
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
