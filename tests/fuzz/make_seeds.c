/* make_seeds.c: writes seed files for fuzz_cache and fuzz_tunestore with
 * the real writers (not a fuzz target; run by tests/fuzz/make_corpus.sh).
 *
 * Compile-cache entries come from compiling small kernels to PTX with the
 * cache on (runtime/cache.c writes them); tuning files from tuning a kernel
 * with a fake device and a fake benchmark (as tests/cpu/test_autotune.c
 * does), one configuration failing, so both outcomes appear. Each file is
 * also copied truncated and with a flipped byte, for the readers' error
 * paths.
 *
 * usage: make_seeds <work dir> <cache corpus dir> <tunestore corpus dir>
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/tune.h"

static const char *const KERNELS[] = {
  "kernel add(z: *f32, x: *f32, y: *f32, n: i32) {\n"
  "    let o = program_id(0) * 64 + arange(0, 64);\n"
  "    store(z + o, load(x + o, o < n) + load(y + o, o < n), o < n);\n"
  "}\n",
  "kernel rowmax(m: *f16, x: *f16, n: i32) {\n"
  "    let c = arange(0, 32);\n"
  "    store(m + program_id(0), max(load(x + program_id(0) * n + c, c < n, -inf), 0));\n"
  "}\n",
};

static const char *SCALE =
    "kernel scale(y: *f32, x: *f32, n: i32) {\n"
    "    tunable BLOCK in {64, 128, 256};\n"
    "    tunable num_warps in {1, 2};\n"
    "    let o = program_id(0) * BLOCK + arange(0, BLOCK);\n"
    "    store(y + o, load(x + o, o < n) * 2.0, o < n);\n"
    "}\n";

static tj_status fake_bench(tj_tuner *t, int index, double *ms, StrBuf *err, void *user) {
  (void)user;
  tj_tune_config c;
  int64_t block = 0;
  tj_tuner_config(t, index, &c);
  tj_tuner_config_value(t, &c, "BLOCK", &block);
  if (block == 256) {
    sb_puts(err, "cuLaunchKernel failed: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES");
    return TJ_ERR_CUDA;
  }
  *ms = 0.001 * (double)(index + 3);
  return TJ_OK;
}

static int write_file(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(b, 1, n, f);
  return fclose(f) == 0 && w == n ? 0 : -1;
}

// Copies every file of src ending in ext into dst as <prefix><i>, plus a
// truncated and a corrupted variant of the first one.
static int harvest(const char *src, const char *ext, const char *dst, const char *prefix) {
  DIR *d = opendir(src);
  if (!d) return -1;
  struct dirent *de;
  int n = 0;
  char path[4096];
  while ((de = readdir(d)) != NULL) {
    size_t l = strlen(de->d_name), el = strlen(ext);
    if (l <= el || strcmp(de->d_name + l - el, ext) || de->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", src, de->d_name);
    char *buf;
    size_t len;
    StrBuf err;
    sb_init(&err);
    if (util_read_file(path, &buf, &len, &err) != TJ_OK) {
      sb_free(&err);
      continue;
    }
    sb_free(&err);
    snprintf(path, sizeof path, "%s/%s%d", dst, prefix, n);
    write_file(path, buf, len);
    if (n == 0) {
      snprintf(path, sizeof path, "%s/%s-truncated", dst, prefix);
      write_file(path, buf, len / 2);
      buf[len / 3] ^= 0x20;
      snprintf(path, sizeof path, "%s/%s-flipped", dst, prefix);
      write_file(path, buf, len);
    }
    free(buf);
    n++;
  }
  closedir(d);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: make_seeds <work dir> <cache corpus dir> <tunestore corpus dir>\n");
    return 2;
  }
  tj_ctx *ctx;
  if (tj_ctx_create(&ctx) != TJ_OK || tj_ctx_set_cache_dir(ctx, argv[1]) != TJ_OK) return 1;
  for (size_t i = 0; i < sizeof KERNELS / sizeof KERNELS[0]; i++) {
    tj_compile_opts o = { .source = KERNELS[i], .path = "seed.tj", .arch = i ? "sm_90" : "sm_80" };
    tj_kernel *k;
    if (tj_kernel_compile(ctx, &o, &k) != TJ_OK) {
      fprintf(stderr, "make_seeds: %s\n", tj_ctx_last_error(ctx));
      return 1;
    }
    tj_kernel_free(k);
  }
  tj_compile_opts o = { .source = SCALE, .path = "scale.tj" };
  const char *keys[] = { "n" };
  tj_tuner *t;
  if (tj_tuner_create(ctx, &o, keys, 1, &t) != TJ_OK) {
    fprintf(stderr, "make_seeds: %s\n", tj_ctx_last_error(ctx));
    return 1;
  }
  tune_set_device(t, "Fake GPU", 9, 0, "sm_90");
  tune_set_bench_hook(t, fake_bench, NULL);
  for (int64_t n = 1000; n <= 100000; n *= 100) {
    tj_tune_config best;
    if (tj_tuner_tune(t, &n, 1, NULL, NULL, 0, NULL, 0, &best) != TJ_OK) {
      fprintf(stderr, "make_seeds: %s\n", tj_ctx_last_error(ctx));
      return 1;
    }
  }
  tj_tuner_free(t);
  tj_ctx_free(ctx);
  char tune_dir[4096];
  snprintf(tune_dir, sizeof tune_dir, "%s/tune", argv[1]);
  int nc = harvest(argv[1], ".tjc", argv[2], "entry");
  int nt = harvest(tune_dir, ".tjt", argv[3], "result");
  printf("make_seeds: %d cache entries, %d tuning files\n", nc, nt);
  return nc > 0 && nt > 0 ? 0 : 1;
}
