/* bench_gpu_coldstart: how soon a new process is ready to run the blocks
 * when the compile cache is warm (issue goal: <= 50 ms for the blocks, and
 * <= 1 ms per kernel for a disk-cache hit).
 *
 * Run it twice with the same TILEJIT_CACHE_DIR: the first run fills the
 * cache, the second is the measurement. It reports the CUDA driver's own
 * start-up (cuInit, primary context) separately, since no library can make
 * that faster, and then the time from "driver ready" to "every block has
 * produced its first result".
 *
 *   usage: bench_gpu_coldstart
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dlpack/dlpack.h>

#include "tilejit/blocks.h"
#include "tilejit/tilejit.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static DLTensor tensor(void *data, int ndim, int64_t *shape, int dev) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = kDLCUDA;
  t.device.device_id = dev;
  t.ndim = ndim;
  t.dtype.code = kDLFloat;
  t.dtype.bits = 16;
  t.dtype.lanes = 1;
  t.shape = shape;
  t.strides = NULL;
  return t;
}

#define CHECK(call)                                                        \
  do {                                                                     \
    tj_status st_ = (call);                                                \
    if (st_ != TJ_OK) {                                                    \
      fprintf(stderr, "%s: %s\n", #call, tj_ctx_last_error(ctx));          \
      return st_ == TJ_ERR_NO_DEVICE ? 77 : 1;                             \
    }                                                                      \
  } while (0)

int main(void) {
  double t0 = now_ms();
  tj_ctx *ctx;
  if (tj_ctx_create(&ctx) != TJ_OK) return 1;
  int n = 0;
  CHECK(tj_device_count(ctx, &n));
  void *x, *y, *z, *w, *bias, *mean, *rstd;
  const int64_t M = 128, K = 1024;
  CHECK(tj_device_malloc(ctx, (size_t)(M * K * 2), &x));
  CHECK(tj_device_malloc(ctx, (size_t)(M * K * 2), &y));
  CHECK(tj_device_malloc(ctx, (size_t)(M * K * 2), &z));
  CHECK(tj_device_malloc(ctx, (size_t)(K * 2), &w));
  CHECK(tj_device_malloc(ctx, (size_t)(K * 2), &bias));
  CHECK(tj_device_malloc(ctx, (size_t)(M * 4), &mean));
  CHECK(tj_device_malloc(ctx, (size_t)(M * 4), &rstd));
  CHECK(tj_memset_d8(ctx, x, 0, (size_t)(M * K * 2)));
  CHECK(tj_memset_d8(ctx, w, 0, (size_t)(K * 2)));
  CHECK(tj_memset_d8(ctx, bias, 0, (size_t)(K * 2)));
  CHECK(tj_stream_synchronize(ctx, NULL));
  double t_driver = now_ms();

  tj_blocks *b;
  CHECK(tj_blocks_create(ctx, &b));
  int dev = tj_ctx_device(ctx);
  int64_t s2[2] = { M, K }, s1[1] = { K }, sm[1] = { M };
  DLTensor tx = tensor(x, 2, s2, dev), ty = tensor(y, 2, s2, dev), tz = tensor(z, 2, s2, dev), tw = tensor(w, 1, s1, dev),
           tb = tensor(bias, 1, s1, dev), tm = tensor(mean, 1, sm, dev), tr = tensor(rstd, 1, sm, dev);
  tm.dtype.bits = tr.dtype.bits = 32;

  double t[8];
  int nt = 0;
  const char *names[8];
  tj_softmax_opts so = { 0 };
  double s = now_ms();
  CHECK(tj_softmax_fwd(b, &tx, &ty, &so, NULL));
  CHECK(tj_stream_synchronize(ctx, NULL));
  names[nt] = "softmax_fwd", t[nt++] = now_ms() - s;
  s = now_ms();
  CHECK(tj_softmax_bwd(b, &ty, &tx, &tz, &so, NULL));
  CHECK(tj_stream_synchronize(ctx, NULL));
  names[nt] = "softmax_bwd", t[nt++] = now_ms() - s;
  s = now_ms();
  CHECK(tj_layernorm_fwd(b, &tx, &tw, &tb, 1e-5, &ty, &tm, &tr, NULL));
  CHECK(tj_stream_synchronize(ctx, NULL));
  names[nt] = "layernorm_fwd", t[nt++] = now_ms() - s;
  s = now_ms();
  CHECK(tj_rmsnorm_fwd(b, &tx, &tw, 1e-5, &ty, &tr, NULL));
  CHECK(tj_stream_synchronize(ctx, NULL));
  names[nt] = "rmsnorm_fwd", t[nt++] = now_ms() - s;
  double t_ready = now_ms();

  tj_cache_summary cs;
  memset(&cs, 0, sizeof cs);
  tj_cache_stats(ctx, &cs);
  printf("driver start-up (cuInit, context, first allocations): %.1f ms\n", t_driver - t0);
  for (int i = 0; i < nt; i++) printf("  first call %-14s %.2f ms\n", names[i], t[i]);
  printf("blocks ready after the driver: %.1f ms for %d kernels (%s)\n", t_ready - t_driver,
         tj_blocks_num_kernels(b), cs.disk_hits && !cs.misses ? "all from the disk cache" : "cache was cold");
  printf("cache: %llu disk hits, %llu misses\n", (unsigned long long)cs.disk_hits, (unsigned long long)cs.misses);
  tj_blocks_free(b);
  tj_ctx_free(ctx);
  return 0;
}
