/* test_cache.c: the compile cache (runtime/cache.c).
 *
 * The cache layer is tested on its own with synthetic entries (keys,
 * encoding, atomic files, corruption, LRU, the per-context map and the
 * public tj_cache_* calls); the end-to-end tests compile a real kernel to
 * PTX, which needs no GPU.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "codegen/hash.h"
#include "runtime/rt.h"

static const char *const KSRC =
    "kernel add1(y: *f32, x: *f32, n: i32) {\n"
    "    tunable BLOCK in {128, 256};\n"
    "    let offs = program_id(0) * BLOCK + arange(0, BLOCK);\n"
    "    let mask = offs < n;\n"
    "    store(y + offs, load(x + offs, mask) + 1.0, mask);\n"
    "}\n";

// A fresh empty directory under /tmp; malloc'd.
static char *fresh_dir(void) {
  char *d = strdup("/tmp/tj-test-cache-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(d));
  return d;
}

static void rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  char p[1024];
  while ((de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

// Number of files in dir; *temps gets how many of them are temp files.
static int count_files(const char *dir, int *temps) {
  DIR *d = opendir(dir);
  int n = 0, t = 0;
  if (!d) return 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    n++;
    if (strstr(de->d_name, ".tmp.")) t++;
  }
  closedir(d);
  if (temps) *temps = t;
  return n;
}

static RtEntry *synthetic(int seed, size_t ptx_bytes) {
  RtEntry *e = cache_entry_new();
  ck_assert_ptr_nonnull(e);
  uint8_t digest[32] = {0};
  digest[0] = (uint8_t)seed;
  digest[1] = (uint8_t)(seed >> 8);
  cache_key(digest, (uint64_t)seed, "sm_80", e->key);
  e->name = strdup("synthetic");
  e->arch = strdup("sm_80");
  e->ptx = malloc(ptx_bytes + 1);
  for (size_t i = 0; i < ptx_bytes; i++) e->ptx[i] = (char)('a' + (i + (size_t)seed) % 26);
  e->ptx[ptx_bytes] = '\0';
  e->ptx_len = ptx_bytes;
  e->shared_bytes = 1024 * seed;
  e->num_warps = 4;
  e->spill_stores = 8;
  e->spill_loads = 16;
  return e;
}

static void assert_same_entry(const RtEntry *a, const RtEntry *b) {
  ck_assert_mem_eq(a->key, b->key, 32);
  ck_assert_str_eq(a->name, b->name);
  ck_assert_str_eq(a->arch, b->arch);
  ck_assert_uint_eq(a->ptx_len, b->ptx_len);
  ck_assert_str_eq(a->ptx, b->ptx);
  ck_assert_int_eq(a->shared_bytes, b->shared_bytes);
  ck_assert_int_eq(a->num_warps, b->num_warps);
  ck_assert_int_eq(a->spill_stores, b->spill_stores);
  ck_assert_int_eq(a->spill_loads, b->spill_loads);
}

// buf (an encoded entry) as an older writer made it: a 333-byte cubin
// section after the PTX, the checksum recomputed.
static uint8_t *with_old_cubin(const uint8_t *buf, size_t len, size_t *out_len) {
  size_t cl = 333, body = len - 32;
  uint8_t *b = malloc(len + cl);
  ck_assert_ptr_nonnull(b);
  memcpy(b, buf, body);
  for (size_t i = 0; i < cl; i++) b[body + i] = (uint8_t)(i * 7);
  for (int i = 0; i < 8; i++) b[80 + i] = (uint8_t)((uint64_t)cl >> (8 * i));
  CgHash h;
  cg_hash_init(&h);
  cg_hash_update(&h, b, body + cl);
  cg_hash_final(&h, b + body + cl);
  *out_len = len + cl;
  return b;
}

static char *entry_path(const char *dir, const uint8_t key[32]) {
  StrBuf sb;
  sb_init(&sb);
  cache_path(dir, key, &sb);
  return sb_steal(&sb);
}

static tj_ctx *ctx_in(const char *dir) {
  tj_ctx *ctx = NULL;
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  ck_assert_int_eq(tj_ctx_set_cache_dir(ctx, dir), TJ_OK);
  return ctx;
}

// ---------------------------------------------------------------- keys

START_TEST(key_stable_and_sensitive) {
  TirConstDef consts[2] = { { "BLOCK", "128" }, { "T", "f16" } };
  CacheKeyInputs base = {
    .tilejit_version = "0.1.0", .build_id = "abcd", .llvm_version = "19.1.7",
    .source = KSRC, .source_len = strlen(KSRC), .kernel = "add1",
    .consts = consts, .nconsts = 2, .num_warps = 4, .options = "line_info=1",
  };
  uint8_t d0[32], d1[32];
  cache_digest(&base, d0);
  cache_digest(&base, d1);
  ck_assert_mem_eq(d0, d1, 32);

  // Changing any single input must change the digest.
  TirConstDef c_val[2] = { { "BLOCK", "256" }, { "T", "f16" } };
  TirConstDef c_name[2] = { { "BLOCKS", "128" }, { "T", "f16" } };
  TirConstDef c_shift[2] = { { "BLOCK", "12" }, { "8T", "f16" } };  // no field run-together
  char src2[512];
  snprintf(src2, sizeof src2, "%s ", KSRC);
  CacheKeyInputs v[11];
  for (int i = 0; i < 11; i++) v[i] = base;
  v[0].tilejit_version = "0.1.1";
  v[1].build_id = "abce";
  v[2].llvm_version = "19.1.6";
  v[3].source = src2, v[3].source_len = strlen(src2);
  v[4].kernel = "add2";
  v[5].consts = c_val;
  v[6].consts = c_name;
  v[7].consts = c_shift;
  v[8].nconsts = 1;
  v[9].num_warps = 8;
  v[10].options = "line_info=0";
  for (int i = 0; i < 11; i++) {
    cache_digest(&v[i], d1);
    ck_assert_msg(memcmp(d0, d1, 32) != 0, "input %d does not change the key", i);
    for (int j = 0; j < i; j++) {
      uint8_t dj[32];
      cache_digest(&v[j], dj);
      ck_assert_msg(memcmp(dj, d1, 32) != 0, "inputs %d and %d collide", i, j);
    }
  }

  uint8_t k0[32], k1[32];
  cache_key(d0, 0, "sm_80", k0);
  cache_key(d0, 0, "sm_80", k1);
  ck_assert_mem_eq(k0, k1, 32);
  cache_key(d0, TIR_SPEC_ALIGN16, "sm_80", k1);
  ck_assert(memcmp(k0, k1, 32) != 0);
  cache_key(d0, (uint64_t)TIR_SPEC_DIV16 << 3, "sm_80", k1);
  ck_assert(memcmp(k0, k1, 32) != 0);
  cache_key(d0, 0, "sm_90", k1);
  ck_assert(memcmp(k0, k1, 32) != 0);
  cache_key(d1, 0, "sm_80", k1);
  ck_assert(memcmp(k0, k1, 32) != 0);

  char hex[65];
  cache_key_hex(k0, hex);
  ck_assert_uint_eq(strlen(hex), 64);
  ck_assert_uint_eq(strspn(hex, "0123456789abcdef"), 64);
}
END_TEST

START_TEST(blake3_known_answer) {
  // BLAKE3 of the empty input (from the BLAKE3 specification's test vectors).
  static const uint8_t empty[32] = {
    0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc, 0xc9, 0x49,
    0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca, 0xe4, 0x1f, 0x32, 0x62,
  };
  CgHash h;
  uint8_t out[32];
  cg_hash_init(&h);
  cg_hash_final(&h, out);
  ck_assert_mem_eq(out, empty, 32);
}
END_TEST

// ---------------------------------------------------------------- format

// The JIT's verbose info log, as the driver's ptxas writes it.
START_TEST(spill_counts_from_jit_log) {
  int st = 0, ld = 0;
  rt_parse_spills("ptxas info    : Function properties for k\n"
                  "    16 bytes stack frame, 24 bytes spill stores, 40 bytes spill loads\n"
                  "ptxas info    : Used 255 registers\n", &st, &ld);
  ck_assert_int_eq(st, 24);
  ck_assert_int_eq(ld, 40);
  rt_parse_spills("    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", &st, &ld);
  ck_assert_int_eq(st, 0);
  ck_assert_int_eq(ld, 0);
  rt_parse_spills("", &st, &ld);   // a JIT-cache hit leaves the log empty
  ck_assert_int_eq(st, -1);
  ck_assert_int_eq(ld, -1);
  rt_parse_spills("bytes spill stores", &st, &ld);   // no number before the words
  ck_assert_int_eq(st, -1);
  ck_assert_int_eq(ld, -1);
}
END_TEST

START_TEST(encode_decode_roundtrip) {
  // with_cubin: the file as an older writer made it, with the linker's cubin
  // after the PTX; it decodes to the same entry (the section is checked by
  // the checksum and skipped). A new writer leaves the section empty.
  for (int with_cubin = 0; with_cubin < 2; with_cubin++) {
    RtEntry *e = synthetic(3, 1000);
    uint8_t *buf;
    size_t len;
    ck_assert_int_eq(cache_encode(e, &buf, &len), TJ_OK);
    ck_assert_uint_eq(len, 96 + strlen("synthetic") + strlen("sm_80") + 1000 + 32);   // no cubin section
    if (with_cubin) {
      size_t old_len;
      uint8_t *old = with_old_cubin(buf, len, &old_len);
      free(buf);
      buf = old, len = old_len;
    }
    RtEntry *d = NULL;
    StrBuf why;
    sb_init(&why);
    ck_assert_int_eq(cache_decode(buf, len, e->key, &d, &why), TJ_OK);
    assert_same_entry(e, d);
    cache_entry_free(d);
    if (with_cubin) {   // and a flipped byte in the cubin section is caught
      buf[len - 40] ^= 1;
      ck_assert_int_eq(cache_decode(buf, len, e->key, &d, &why), TJ_ERR_CORRUPT);
    }
    sb_free(&why);
    free(buf);
    cache_entry_free(e);
  }
}
END_TEST

START_TEST(decode_rejects_every_damage) {
  RtEntry *e = synthetic(5, 200);
  uint8_t *buf;
  size_t len;
  ck_assert_int_eq(cache_encode(e, &buf, &len), TJ_OK);
  // Flip one bit at every position: each must be caught, none may crash.
  for (size_t i = 0; i < len; i++) {
    buf[i] ^= 0x10;
    RtEntry *d = NULL;
    StrBuf why;
    sb_init(&why);
    tj_status s = cache_decode(buf, len, e->key, &d, &why);
    ck_assert_msg(s == TJ_ERR_CORRUPT, "flipped byte %zu not detected (status %d)", i, s);
    ck_assert_ptr_null(d);
    ck_assert(why.len > 0);
    sb_free(&why);
    buf[i] ^= 0x10;
  }
  // Every truncation, including the empty file.
  for (size_t n = 0; n < len; n += (n < 200 ? 1 : 37)) {
    RtEntry *d = NULL;
    StrBuf why;
    sb_init(&why);
    ck_assert_int_eq(cache_decode(buf, n, e->key, &d, &why), TJ_ERR_CORRUPT);
    sb_free(&why);
  }
  // A valid entry stored under another key's name.
  uint8_t other[32];
  memcpy(other, e->key, 32);
  other[31] ^= 1;
  RtEntry *d = NULL;
  StrBuf why;
  sb_init(&why);
  ck_assert_int_eq(cache_decode(buf, len, other, &d, &why), TJ_ERR_CORRUPT);
  ck_assert_str_eq(why.data, "entry holds another key");
  sb_free(&why);
  free(buf);
  cache_entry_free(e);
}
END_TEST

// ---------------------------------------------------------------- disk

START_TEST(disk_write_read_no_temp_left) {
  char *dir = fresh_dir();
  char sub[1100];
  snprintf(sub, sizeof sub, "%s/a/b", dir);  // created on demand
  RtEntry *e = synthetic(7, 5000);
  StrBuf why;
  sb_init(&why);
  ck_assert_int_eq(cache_disk_write(sub, e, &why), TJ_OK);
  int temps;
  ck_assert_int_eq(count_files(sub, &temps), 1);
  ck_assert_int_eq(temps, 0);
  RtEntry *d = NULL;
  ck_assert_int_eq(cache_disk_read(sub, e->key, &d, &why), TJ_OK);
  assert_same_entry(e, d);
  cache_entry_free(d);
  uint8_t missing[32] = {1, 2, 3};
  ck_assert_int_eq(cache_disk_read(sub, missing, &d, &why), TJ_ERR_NOT_FOUND);
  // Overwriting is atomic too: still one file, new content.
  e->spill_loads = 99;
  ck_assert_int_eq(cache_disk_write(sub, e, &why), TJ_OK);
  ck_assert_int_eq(count_files(sub, NULL), 1);
  ck_assert_int_eq(cache_disk_read(sub, e->key, &d, &why), TJ_OK);
  ck_assert_int_eq(d->spill_loads, 99);
  cache_entry_free(d);
  sb_free(&why);
  cache_entry_free(e);
  rm_dir(sub);
  snprintf(sub, sizeof sub, "%s/a", dir);
  rmdir(sub);
  rm_dir(dir);
  free(dir);
}
END_TEST

// A reader racing many writers of one key sees a whole entry or none.
START_TEST(disk_writes_atomic_under_race) {
  char *dir = fresh_dir();
  RtEntry *a = synthetic(11, 200000);
  RtEntry *b = synthetic(11, 150000);  // same key, other content
  b->spill_loads = 1;
  enum { WRITERS = 4, ROUNDS = 40 };
  pid_t pids[WRITERS];
  for (int w = 0; w < WRITERS; w++) {
    pids[w] = fork();
    ck_assert_int_ge(pids[w], 0);
    if (pids[w] == 0) {
      StrBuf why;
      sb_init(&why);
      for (int r = 0; r < ROUNDS; r++)
        if (cache_disk_write(dir, (w + r) % 2 ? a : b, &why) != TJ_OK) _exit(1);
      _exit(0);
    }
  }
  int seen = 0, alive = WRITERS;
  while (alive > 0) {
    RtEntry *d = NULL;
    StrBuf why;
    sb_init(&why);
    tj_status s = cache_disk_read(dir, a->key, &d, &why);
    ck_assert_msg(s == TJ_OK || s == TJ_ERR_NOT_FOUND, "reader saw a damaged entry: %s", why.data);
    if (s == TJ_OK) {
      seen++;
      assert_same_entry(d->spill_loads == 1 ? b : a, d);
      cache_entry_free(d);
    }
    sb_free(&why);
    int status;
    pid_t p = waitpid(-1, &status, WNOHANG);
    if (p > 0) {
      ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      alive--;
    }
  }
  ck_assert_int_gt(seen, 0);
  int temps;
  ck_assert_int_eq(count_files(dir, &temps), 1);
  ck_assert_int_eq(temps, 0);
  cache_entry_free(a);
  cache_entry_free(b);
  rm_dir(dir);
  free(dir);
}
END_TEST

static void damage_file(const char *path, bool truncate_it) {
  if (truncate_it) {
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(truncate(path, st.st_size / 2), 0);
    return;
  }
  int fd = open(path, O_RDWR);
  ck_assert_int_ge(fd, 0);
  uint8_t c;
  ck_assert_int_eq(pread(fd, &c, 1, 300), 1);
  c ^= 0x01;
  ck_assert_int_eq(pwrite(fd, &c, 1, 300), 1);
  close(fd);
}

// Through a context: a damaged entry is a miss, is removed, counted and
// warned about, and the rebuilt entry is valid again.
START_TEST(corrupt_entry_detected_removed_rebuilt) {
  for (int trunc = 0; trunc < 2; trunc++) {
    char *dir = fresh_dir();
    tj_ctx *ctx = ctx_in(dir);
    RtEntry *e = synthetic(13, 4000);
    uint8_t key[32];
    memcpy(key, e->key, 32);
    RtEntry *in = cache_insert(ctx, e, true);
    ck_assert_ptr_eq(in, e);
    char *path = entry_path(dir, key);
    ck_assert_int_eq(access(path, F_OK), 0);
    damage_file(path, trunc);

    tj_ctx *ctx2 = ctx_in(dir);  // empty memory map: must go to disk
    RtEntry *got = NULL;
    ck_assert_int_eq(cache_lookup(ctx2, key, true, &got), TJ_ERR_NOT_FOUND);
    ck_assert_int_ne(access(path, F_OK), 0);  // removed
    tj_cache_summary s;
    ck_assert_int_eq(tj_cache_stats(ctx2, &s), TJ_OK);
    ck_assert_uint_eq(s.corrupt, 1);
    ck_assert_uint_eq(s.warnings, 1);
    ck_assert_uint_eq(s.misses, 1);
    ck_assert_int_eq(s.entries, 0);

    // Rebuild: insert again, then a third context reads it back.
    cache_insert(ctx2, synthetic(13, 4000), true);
    tj_ctx *ctx3 = ctx_in(dir);
    ck_assert_int_eq(cache_lookup(ctx3, key, true, &got), TJ_OK);
    ck_assert_int_eq(got->shared_bytes, 13 * 1024);
    ck_assert_int_eq(tj_cache_stats(ctx3, &s), TJ_OK);
    ck_assert_uint_eq(s.disk_hits, 1);
    ck_assert_uint_eq(s.corrupt, 0);
    // A second lookup is served from memory.
    ck_assert_int_eq(cache_lookup(ctx3, key, true, &got), TJ_OK);
    ck_assert_int_eq(tj_cache_stats(ctx3, &s), TJ_OK);
    ck_assert_uint_eq(s.mem_hits, 1);
    free(path);
    tj_ctx_free(ctx);
    tj_ctx_free(ctx2);
    tj_ctx_free(ctx3);
    rm_dir(dir);
    free(dir);
  }
}
END_TEST

static void set_mtime(const char *dir, const uint8_t key[32], time_t t) {
  char *p = entry_path(dir, key);
  struct timespec ts[2] = { { t, 0 }, { t, 0 } };
  ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
  free(p);
}

static bool exists(const char *dir, const uint8_t key[32]) {
  char *p = entry_path(dir, key);
  bool r = access(p, F_OK) == 0;
  free(p);
  return r;
}

START_TEST(lru_eviction) {
  char *dir = fresh_dir();
  RtEntry *e[5];
  StrBuf why;
  sb_init(&why);
  time_t now = time(NULL);
  for (int i = 0; i < 5; i++) {
    e[i] = synthetic(20 + i, 100000);
    ck_assert_int_eq(cache_disk_write(dir, e[i], &why), TJ_OK);
    set_mtime(dir, e[i]->key, now - 1000 + 100 * i);  // e[0] oldest
  }
  // A hit refreshes e[0]: it becomes the most recently used.
  RtEntry *d = NULL;
  ck_assert_int_eq(cache_disk_read(dir, e[0]->key, &d, &why), TJ_OK);
  cache_entry_free(d);
  // Room for three entries of ~100 KB: e[1] and e[2] (least recent) go.
  int removed = cache_disk_evict(dir, 3 * 100500, NULL);
  ck_assert_int_eq(removed, 2);
  ck_assert(exists(dir, e[0]->key));
  ck_assert(!exists(dir, e[1]->key));
  ck_assert(!exists(dir, e[2]->key));
  ck_assert(exists(dir, e[3]->key));
  ck_assert(exists(dir, e[4]->key));
  // The entry just written is kept even when it alone exceeds the cap.
  ck_assert_int_eq(cache_disk_evict(dir, 1, e[3]->key), 2);
  ck_assert(exists(dir, e[3]->key));
  ck_assert_int_eq(count_files(dir, NULL), 1);
  for (int i = 0; i < 5; i++) cache_entry_free(e[i]);
  sb_free(&why);
  rm_dir(dir);
  free(dir);
}
END_TEST

START_TEST(lru_cap_from_environment) {
  char *dir = fresh_dir();
  setenv("TILEJIT_CACHE_MAX_MB", "0.25", 1);  // 256 KB: two 100 KB entries fit
  tj_ctx *ctx = ctx_in(dir);
  unsetenv("TILEJIT_CACHE_MAX_MB");
  time_t now = time(NULL);
  uint8_t keys[4][32];
  for (int i = 0; i < 4; i++) {
    RtEntry *e = synthetic(40 + i, 100000);
    memcpy(keys[i], e->key, 32);
    cache_insert(ctx, e, true);
    set_mtime(dir, keys[i], now - 100 + i);
  }
  ck_assert_int_eq(count_files(dir, NULL), 2);
  ck_assert(exists(dir, keys[2]) && exists(dir, keys[3]));
  tj_cache_summary s;
  ck_assert_int_eq(tj_cache_stats(ctx, &s), TJ_OK);
  ck_assert_uint_eq(s.evictions, 2);
  ck_assert_uint_eq(s.writes, 4);
  ck_assert_uint_eq(s.max_bytes, 256 * 1024);
  ck_assert_int_eq(s.entries, 2);
  tj_ctx_free(ctx);
  rm_dir(dir);
  free(dir);
}
END_TEST

START_TEST(cache_disabled_by_environment) {
  char *dir = fresh_dir();
  setenv("TILEJIT_CACHE", "0", 1);
  tj_ctx *ctx = ctx_in(dir);
  unsetenv("TILEJIT_CACHE");
  RtEntry *e = synthetic(50, 100);
  uint8_t key[32];
  memcpy(key, e->key, 32);
  cache_insert(ctx, e, true);
  ck_assert_int_eq(count_files(dir, NULL), 0);
  // Someone else's entry on disk is not read either.
  StrBuf why;
  sb_init(&why);
  RtEntry *other = synthetic(51, 100);
  ck_assert_int_eq(cache_disk_write(dir, other, &why), TJ_OK);
  RtEntry *got;
  ck_assert_int_eq(cache_lookup(ctx, other->key, true, &got), TJ_ERR_NOT_FOUND);
  tj_cache_summary s;
  ck_assert_int_eq(tj_cache_stats(ctx, &s), TJ_OK);
  ck_assert_int_eq(s.enabled, 0);
  ck_assert_uint_eq(s.writes, 0);
  cache_entry_free(other);
  sb_free(&why);
  tj_ctx_free(ctx);
  rm_dir(dir);
  free(dir);
}
END_TEST

START_TEST(public_list_clear_stats) {
  char *dir = fresh_dir();
  tj_ctx *ctx = ctx_in(dir);
  const char *got_dir;
  ck_assert_int_eq(tj_cache_dir(ctx, &got_dir), TJ_OK);
  ck_assert_str_eq(got_dir, dir);
  tj_cache_entry *ents;
  int n;
  ck_assert_int_eq(tj_cache_list(ctx, &ents, &n), TJ_OK);
  ck_assert_int_eq(n, 0);
  tj_cache_list_free(ents);
  cache_insert(ctx, synthetic(60, 1000), true);
  cache_insert(ctx, synthetic(61, 2000), true);
  // A stray temp file from a dead writer is not an entry.
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s/.deadbeef.tmp.XXXXXX", dir);
  int fd = mkstemp(tmp);
  ck_assert_int_ge(fd, 0);
  close(fd);
  ck_assert_int_eq(tj_cache_list(ctx, &ents, &n), TJ_OK);
  ck_assert_int_eq(n, 2);
  for (int i = 0; i < n; i++) {
    ck_assert_str_eq(ents[i].name, "synthetic");
    ck_assert_str_eq(ents[i].arch, "sm_80");
    ck_assert_uint_eq(strlen(ents[i].key), 64);
    ck_assert(ents[i].age_s >= 0 && ents[i].age_s < 60);
    ck_assert_uint_gt(ents[i].bytes, 1000);
  }
  ck_assert_int_eq(ents[0].has_cubin + ents[1].has_cubin, 0);   // new entries: PTX only
  tj_cache_list_free(ents);
  tj_cache_summary s;
  ck_assert_int_eq(tj_cache_stats(ctx, &s), TJ_OK);
  ck_assert_int_eq(s.entries, 2);
  ck_assert_int_eq(s.enabled, 1);
  ck_assert_uint_gt(s.bytes, 3000);
  int removed = -1;
  ck_assert_int_eq(tj_cache_clear(ctx, &removed), TJ_OK);
  ck_assert_int_eq(removed, 2);
  ck_assert_int_eq(count_files(dir, NULL), 0);  // the temp file went too
  tj_ctx_free(ctx);
  rm_dir(dir);
  free(dir);
}
END_TEST

// ---------------------------------------------------------------- end to end

static tj_status compile_add1(tj_ctx *ctx, unsigned flags, const char *block, tj_kernel **k) {
  char def[32];
  snprintf(def, sizeof def, "BLOCK=%s", block);
  const char *defs[] = { def };
  tj_compile_opts o = { .source = KSRC, .path = "add1.tj", .defines = defs, .ndefines = 1,
                        .arch = "sm_80", .flags = flags };
  return tj_kernel_compile(ctx, &o, k);
}

START_TEST(compile_hit_skips_llvm) {
  char *dir = fresh_dir();
  tj_ctx *ctx = ctx_in(dir);
  tj_kernel *k1 = NULL, *k2 = NULL, *k3 = NULL;
  tj_status st = compile_add1(ctx, 0, "128", &k1);
  ck_assert_msg(st == TJ_OK, "compile failed: %s", tj_ctx_last_error(ctx));
  ck_assert_ptr_nonnull(tj_kernel_llvm(k1));
  ck_assert_ptr_nonnull(strstr(tj_kernel_ptx(k1), ".entry add1"));
  ck_assert_int_eq(count_files(dir, NULL), 1);

  tj_ctx *ctx2 = ctx_in(dir);  // another "process": disk hit
  ck_assert_int_eq(compile_add1(ctx2, 0, "128", &k2), TJ_OK);
  ck_assert_ptr_null(tj_kernel_llvm(k2));  // LLVM did not run
  ck_assert_str_eq(tj_kernel_ptx(k1), tj_kernel_ptx(k2));
  ck_assert_ptr_nonnull(tj_kernel_tir(k2));  // the front end always runs
  tj_cache_summary s;
  ck_assert_int_eq(tj_cache_stats(ctx2, &s), TJ_OK);
  ck_assert_uint_eq(s.disk_hits, 1);
  ck_assert_uint_eq(s.misses, 0);

  // Another constant is another key.
  ck_assert_int_eq(compile_add1(ctx2, 0, "256", &k3), TJ_OK);
  ck_assert_ptr_nonnull(tj_kernel_llvm(k3));
  ck_assert_int_eq(count_files(dir, NULL), 2);
  tj_kernel_free(k3);
  // TJ_COMPILE_NO_CACHE runs LLVM despite the entry.
  ck_assert_int_eq(compile_add1(ctx2, TJ_COMPILE_NO_CACHE, "256", &k3), TJ_OK);
  ck_assert_ptr_nonnull(tj_kernel_llvm(k3));
  // The PTX entry is usable without a GPU: no cubin in it.
  tj_cache_entry *ents;
  int n;
  ck_assert_int_eq(tj_cache_list(ctx2, &ents, &n), TJ_OK);
  ck_assert_int_eq(n, 2);
  ck_assert_str_eq(ents[0].name, "add1");
  ck_assert_str_eq(ents[0].arch, "sm_80");
  tj_cache_list_free(ents);
  tj_kernel_free(k1);
  tj_kernel_free(k2);
  tj_kernel_free(k3);
  tj_ctx_free(ctx);
  tj_ctx_free(ctx2);
  rm_dir(dir);
  free(dir);
}
END_TEST

// TJ_COMPILE_NO_FP_FUSION is part of the key: with the fused PTX on disk, a
// compile without fusion misses, runs LLVM and gets separate mul and add;
// and each setting then hits its own entry.
START_TEST(fp_fusion_in_the_key) {
  static const char src[] =
      "kernel axpb(y: *f32, x: *f32, a: *f32, n: i32) {\n"
      "    let offs = program_id(0) * 128 + arange(0, 128);\n"
      "    let mask = offs < n;\n"
      "    store(y + offs, load(x + offs, mask) * load(a + offs, mask) + 1.0, mask);\n"
      "}\n";
  char *dir = fresh_dir();
  tj_ctx *ctx = ctx_in(dir);
  tj_kernel *k[4] = { NULL };
  const unsigned flags[4] = { 0, TJ_COMPILE_NO_FP_FUSION, 0, TJ_COMPILE_NO_FP_FUSION };
  for (int i = 0; i < 4; i++) {
    tj_compile_opts o = { .source = src, .path = "axpb.tj", .arch = "sm_80", .flags = flags[i] };
    ck_assert_msg(tj_kernel_compile(ctx, &o, &k[i]) == TJ_OK, "%s", tj_ctx_last_error(ctx));
    bool fused = !flags[i];
    const char *ptx = tj_kernel_ptx(k[i]);
    ck_assert_msg((strstr(ptx, "fma.rn.f32") != NULL) == fused, "compile %d:\n%s", i, ptx);
    ck_assert_msg((strstr(ptx, "mul.rn.f32") != NULL) == !fused, "compile %d:\n%s", i, ptx);
    ck_assert_msg((tj_kernel_llvm(k[i]) != NULL) == (i < 2), "compile %d: LLVM ran: %d", i,
                  tj_kernel_llvm(k[i]) != NULL);
  }
  ck_assert_int_eq(count_files(dir, NULL), 2);
  for (int i = 0; i < 4; i++) tj_kernel_free(k[i]);
  tj_ctx_free(ctx);
  rm_dir(dir);
  free(dir);
}
END_TEST

// Eight processes compile the same kernel into an empty cache at once: all
// succeed, with the same PTX, and exactly one valid entry remains.
START_TEST(concurrent_processes_one_entry) {
  char *dir = fresh_dir();
  enum { PROCS = 8 };
  int fds[PROCS][2];
  pid_t pids[PROCS];
  for (int i = 0; i < PROCS; i++) {
    ck_assert_int_eq(pipe(fds[i]), 0);
    pids[i] = fork();
    ck_assert_int_ge(pids[i], 0);
    if (pids[i] == 0) {
      close(fds[i][0]);
      tj_ctx *ctx = NULL;
      tj_kernel *k = NULL;
      if (tj_ctx_create(&ctx) != TJ_OK || tj_ctx_set_cache_dir(ctx, dir) != TJ_OK) _exit(2);
      if (compile_add1(ctx, 0, "128", &k) != TJ_OK) {
        fprintf(stderr, "child %d: %s\n", i, tj_ctx_last_error(ctx));
        _exit(3);
      }
      // Report a digest of the PTX to the parent.
      uint8_t h[32];
      const void *parts[] = { tj_kernel_ptx(k) };
      size_t lens[] = { strlen(tj_kernel_ptx(k)) };
      cg_blake3(parts, lens, 1, h);
      if (write(fds[i][1], h, 32) != 32) _exit(4);
      _exit(0);
    }
    close(fds[i][1]);
  }
  uint8_t first[32];
  for (int i = 0; i < PROCS; i++) {
    int status;
    ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed (status %d)", i, status);
    uint8_t h[32];
    ck_assert_int_eq(read(fds[i][0], h, 32), 32);
    close(fds[i][0]);
    if (i == 0) memcpy(first, h, 32);
    else ck_assert_mem_eq(first, h, 32);
  }
  int temps;
  ck_assert_int_eq(count_files(dir, &temps), 1);
  ck_assert_int_eq(temps, 0);
  // The one entry is valid: a fresh context hits it.
  tj_ctx *ctx = ctx_in(dir);
  tj_kernel *k = NULL;
  ck_assert_int_eq(compile_add1(ctx, 0, "128", &k), TJ_OK);
  tj_cache_summary s;
  ck_assert_int_eq(tj_cache_stats(ctx, &s), TJ_OK);
  ck_assert_uint_eq(s.disk_hits, 1);
  ck_assert_uint_eq(s.corrupt, 0);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  rm_dir(dir);
  free(dir);
}
END_TEST

START_TEST(compile_cache_disabled_writes_nothing) {
  char *dir = fresh_dir();
  setenv("TILEJIT_CACHE", "0", 1);
  tj_ctx *ctx = ctx_in(dir);
  unsetenv("TILEJIT_CACHE");
  tj_kernel *k = NULL;
  ck_assert_msg(compile_add1(ctx, 0, "128", &k) == TJ_OK, "%s", tj_ctx_last_error(ctx));
  ck_assert_ptr_nonnull(tj_kernel_ptx(k));
  ck_assert_int_eq(count_files(dir, NULL), 0);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  rm_dir(dir);
  free(dir);
}
END_TEST

static Suite *cache_suite(void) {
  Suite *s = suite_create("cache");
  TCase *tc = tcase_create("layer");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, key_stable_and_sensitive);
  tcase_add_test(tc, blake3_known_answer);
  tcase_add_test(tc, spill_counts_from_jit_log);
  tcase_add_test(tc, encode_decode_roundtrip);
  tcase_add_test(tc, decode_rejects_every_damage);
  tcase_add_test(tc, disk_write_read_no_temp_left);
  tcase_add_test(tc, disk_writes_atomic_under_race);
  tcase_add_test(tc, corrupt_entry_detected_removed_rebuilt);
  tcase_add_test(tc, lru_eviction);
  tcase_add_test(tc, lru_cap_from_environment);
  tcase_add_test(tc, cache_disabled_by_environment);
  tcase_add_test(tc, public_list_clear_stats);
  suite_add_tcase(s, tc);
  TCase *e2e = tcase_create("end_to_end");
  tcase_set_timeout(e2e, 120);
  tcase_add_test(e2e, compile_hit_skips_llvm);
  tcase_add_test(e2e, fp_fusion_in_the_key);
  tcase_add_test(e2e, concurrent_processes_one_entry);
  tcase_add_test(e2e, compile_cache_disabled_writes_nothing);
  suite_add_tcase(s, e2e);
  return s;
}

int main(void) {
  // Compiling must not depend on a GPU being present, so these tests never
  // load the driver: PTX-only entries are what a GPU-less machine writes.
  setenv("TILEJIT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  return tj_test_run(cache_suite());
}
