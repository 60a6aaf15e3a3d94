/* store.c: tuning results on disk, beside the compile cache.
 *
 * requires: runtime/cache.c (atomic writes); produces: <cache dir>/tune/
 * <hex key>.tjt files and the tj_tune_list/clear API.
 *
 * One file per tuning key, plain text so that a person can read why a
 * configuration won (`tilejit tune --list` shows a summary):
 *
 *   tilejit-tune 1
 *   key <64 hex>
 *   kernel softmax
 *   file examples/softmax.tj          ("-" when compiled from a string)
 *   device NVIDIA H200
 *   cc 9.0
 *   arch sm_90
 *   sizes n=4096                      (bucketed; "-" without key sizes)
 *   axes BLOCK num_warps              ("-" without axes)
 *   best 3                            (index of a config line below, -1 none)
 *   config 1024 4 ok 0.0123           (values, then ok and milliseconds,
 *   config 8192 1 fail TJ_ERR_CUDA msg    or fail, the status and a message)
 *   written 1767225600
 *   blake3 <64 hex of every byte before this line>
 *
 * The rules are the compile cache's (runtime/cache.c): written to a temp
 * file in the same directory, fsync'd and renamed over the final name, so a
 * reader sees a whole file or none; a reader checks the magic, every field,
 * the key against the file name and the checksum, and on any mismatch removes
 * the file (if it is still the one it read) and reports TJ_ERR_CORRUPT, and
 * the caller tunes again.
 */
#include "tune.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../codegen/hash.h"
#include "../runtime/rt.h"

#define TUNE_MAGIC "tilejit-tune 1"
#define TUNE_EXT ".tjt"

void tune_file_free(TuneFile *f) {
  if (!f) return;
  tj_free(f->configs);
  f->configs = NULL;
  f->nconfigs = 0;
}

static void hex32(const uint8_t b[32], char out[65]) { cache_key_hex(b, out); }

// Strings go on one line: newlines and other control bytes become spaces.
static void put_line_text(StrBuf *sb, const char *s) {
  if (!s || !*s) {
    sb_putc(sb, '-');
    return;
  }
  for (; *s; s++) sb_putc(sb, (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s);
}

tj_status tune_file_encode(const tj_tuner *t, const uint8_t key[32], const int64_t *buckets,
                           const tj_tune_result *res, int nres, int best, char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  char hex[65];
  hex32(key, hex);
  StrBuf sb;
  sb_init(&sb);
  sb_printf(&sb, TUNE_MAGIC "\nkey %s\nkernel ", hex);
  put_line_text(&sb, t->base->name);
  sb_puts(&sb, "\nfile ");
  put_line_text(&sb, t->path);
  sb_puts(&sb, "\ndevice ");
  put_line_text(&sb, t->dev_name);
  sb_printf(&sb, "\ncc %d.%d\narch ", t->cc_major, t->cc_minor);
  put_line_text(&sb, t->dev_arch);
  sb_puts(&sb, "\nsizes ");
  tune_sizes_text(t, buckets, &sb);
  sb_puts(&sb, "\naxes");
  if (t->naxes == 0) sb_puts(&sb, " -");
  for (int a = 0; a < t->naxes; a++) sb_printf(&sb, " %s", t->axes[a].name);
  int best_line = -1;
  for (int i = 0; i < nres; i++)
    if (res[i].index == best) best_line = i;
  sb_printf(&sb, "\nbest %d\n", best_line);
  for (int i = 0; i < nres; i++) {
    sb_puts(&sb, "config");
    for (int a = 0; a < t->naxes; a++) sb_printf(&sb, " %lld", (long long)res[i].cfg.v[a]);
    if (res[i].status == TJ_OK && res[i].ms >= 0) {
      sb_printf(&sb, " ok %.9g\n", res[i].ms);
    } else {
      sb_printf(&sb, " fail %s ", tj_status_str(res[i].status == TJ_OK ? TJ_ERR_INTERNAL : res[i].status));
      put_line_text(&sb, res[i].error);
      sb_putc(&sb, '\n');
    }
  }
  sb_printf(&sb, "written %lld\n", (long long)time(NULL));
  if (sb.failed) {
    sb_free(&sb);
    return TJ_ERR_NO_MEMORY;
  }
  uint8_t sum[32];
  CgHash h;
  cg_hash_init(&h);
  cg_hash_update(&h, sb.data, sb.len);
  cg_hash_final(&h, sum);
  hex32(sum, hex);
  sb_printf(&sb, "blake3 %s\n", hex);
  if (sb.failed) {
    sb_free(&sb);
    return TJ_ERR_NO_MEMORY;
  }
  *len = sb.len;
  *out = sb_steal(&sb);
  return TJ_OK;
}

// ---------------------------------------------------------------- decoding

typedef struct Lines {
  const char *p, *end;
} Lines;

// The next line (without '\n') into *s/*n; false at the end or when the
// last line has no newline (a truncated file).
static bool next_line(Lines *l, const char **s, size_t *n) {
  if (l->p >= l->end) return false;
  const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
  if (!nl) return false;
  *s = l->p;
  *n = (size_t)(nl - l->p);
  l->p = nl + 1;
  return true;
}

// Expects "<word> <rest>" and copies rest into buf.
static bool field(Lines *l, const char *word, char *buf, size_t cap) {
  const char *s;
  size_t n, w = strlen(word);
  if (!next_line(l, &s, &n) || n < w + 1 || strncmp(s, word, w) != 0 || s[w] != ' ') return false;
  size_t rest = n - w - 1;
  if (rest >= cap) rest = cap - 1;
  memcpy(buf, s + w + 1, rest);
  buf[rest] = '\0';
  for (size_t i = 0; i < rest; i++)
    if (buf[i] == '\0') return false;
  return true;
}

static bool is_hex64(const char *s) {
  if (strlen(s) != 64) return false;
  for (int i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

static bool parse_ll(const char **p, long long *v) {
  char *end;
  errno = 0;
  long long x = strtoll(*p, &end, 10);
  if (end == *p || errno) return false;
  *v = x;
  *p = end;
  return true;
}

static tj_status status_from_name(const char *s, size_t n) {
  for (int i = 1; i < TJ_STATUS_COUNT; i++) {
    const char *nm = tj_status_str((tj_status)i);
    if (strlen(nm) == n && !strncmp(nm, s, n)) return (tj_status)i;
  }
  return TJ_ERR_INTERNAL;
}

#define BAD(...)                    \
  do {                              \
    sb_printf(why, __VA_ARGS__);    \
    tune_file_free(out);            \
    return TJ_ERR_CORRUPT;          \
  } while (0)

tj_status tune_file_decode(const char *buf, size_t len, const char *want_key, TuneFile *out, StrBuf *why) {
  memset(out, 0, sizeof *out);
  out->best = -1;
  // The checksum line first: it protects everything else.
  static const size_t sumline = 7 + 64 + 1;  // "blake3 " hex "\n"
  if (len < sizeof TUNE_MAGIC + sumline) BAD("truncated (%zu bytes)", len);
  const char *sl = buf + len - sumline;
  if (strncmp(sl, "blake3 ", 7) != 0 || buf[len - 1] != '\n' || (sl > buf && sl[-1] != '\n'))
    BAD("no checksum line (truncated?)");
  char got[65];
  memcpy(got, sl + 7, 64);
  got[64] = '\0';
  uint8_t sum[32];
  CgHash h;
  cg_hash_init(&h);
  cg_hash_update(&h, buf, (size_t)(sl - buf));
  cg_hash_final(&h, sum);
  char want[65];
  hex32(sum, want);
  if (strcmp(got, want) != 0) BAD("checksum mismatch");

  Lines l = { buf, sl };
  const char *s;
  size_t n;
  if (!next_line(&l, &s, &n) || n != strlen(TUNE_MAGIC) || strncmp(s, TUNE_MAGIC, n) != 0) BAD("bad magic or format");
  char tmp[256];
  if (!field(&l, "key", out->key, sizeof out->key) || !is_hex64(out->key)) BAD("bad key line");
  if (want_key && strcmp(out->key, want_key) != 0) BAD("file holds another key");
  if (!field(&l, "kernel", out->kernel, sizeof out->kernel)) BAD("bad kernel line");
  if (!field(&l, "file", out->file, sizeof out->file)) BAD("bad file line");
  if (!field(&l, "device", out->device, sizeof out->device)) BAD("bad device line");
  if (!field(&l, "cc", tmp, sizeof tmp) || sscanf(tmp, "%d.%d", &out->cc_major, &out->cc_minor) != 2)
    BAD("bad cc line");
  if (!field(&l, "arch", out->arch, sizeof out->arch)) BAD("bad arch line");
  if (!field(&l, "sizes", out->sizes, sizeof out->sizes)) BAD("bad sizes line");
  if (!field(&l, "axes", tmp, sizeof tmp)) BAD("bad axes line");
  if (strcmp(tmp, "-") != 0) {
    char *save = NULL;
    for (char *tok = strtok_r(tmp, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
      if (out->naxes == TJ_TUNE_MAX_AXES || strlen(tok) >= sizeof out->axes[0]) BAD("bad axes line");
      snprintf(out->axes[out->naxes++], sizeof out->axes[0], "%s", tok);
    }
  }
  long long best;
  const char *p;
  if (!field(&l, "best", tmp, sizeof tmp) || (p = tmp, !parse_ll(&p, &best)) || *p) BAD("bad best line");
  int cap = 0;
  for (;;) {
    Lines save = l;
    if (!next_line(&l, &s, &n)) BAD("missing 'written' line");
    if (n >= 8 && !strncmp(s, "written ", 8)) {
      char w[32];
      size_t wn = n - 8 < sizeof w - 1 ? n - 8 : sizeof w - 1;
      memcpy(w, s + 8, wn);
      w[wn] = '\0';
      long long wt;
      p = w;
      if (!parse_ll(&p, &wt) || *p) BAD("bad written line");
      out->written = wt;
      break;
    }
    l = save;
    if (!field(&l, "config", tmp, sizeof tmp)) BAD("bad config line %d", out->nconfigs);
    if (out->nconfigs == TJ_TUNE_MAX_CONFIGS) BAD("too many configurations");
    if (out->nconfigs == cap) {
      cap = cap ? 2 * cap : 16;
      TuneFileConfig *nc = tj_realloc(out->configs, sizeof *nc * (size_t)cap);
      if (!nc) {
        tune_file_free(out);
        return TJ_ERR_NO_MEMORY;
      }
      out->configs = nc;
    }
    TuneFileConfig *c = &out->configs[out->nconfigs];
    memset(c, 0, sizeof *c);
    p = tmp;
    for (int a = 0; a < out->naxes; a++) {
      long long v;
      if (*p != ' ' && a > 0) BAD("bad config line %d", out->nconfigs);
      while (*p == ' ') p++;
      if (!parse_ll(&p, &v)) BAD("bad config line %d", out->nconfigs);
      c->values[a] = v;
    }
    while (*p == ' ') p++;
    if (!strncmp(p, "ok ", 3)) {
      char *end;
      c->ms = strtod(p + 3, &end);
      if (end == p + 3 || *end || !(c->ms >= 0)) BAD("bad time in config line %d", out->nconfigs);
      c->status = TJ_OK;
    } else if (!strncmp(p, "fail ", 5)) {
      p += 5;
      size_t sn = strcspn(p, " ");
      c->status = status_from_name(p, sn);
      p += sn;
      while (*p == ' ') p++;
      snprintf(c->error, sizeof c->error, "%s", p);
      c->ms = -1;
    } else {
      BAD("bad outcome in config line %d", out->nconfigs);
    }
    out->nconfigs++;
  }
  if (l.p != l.end) BAD("text after the 'written' line");
  if (best < -1 || best >= out->nconfigs) BAD("best %lld is not a configuration", best);
  if (best >= 0 && out->configs[best].status != TJ_OK) BAD("best configuration %lld failed", best);
  out->best = (int)best;
  return TJ_OK;
}
#undef BAD

// ---------------------------------------------------------------- files

char *tune_store_dir(tj_ctx *ctx) {
  const char *dir = ctx->rt->cache_dir;
  if (!dir) return NULL;
  StrBuf sb;
  sb_init(&sb);
  sb_printf(&sb, "%s/tune", dir);
  if (sb.failed) {
    sb_free(&sb);
    return NULL;
  }
  return sb_steal(&sb);
}

// tune_store_dir's NULL: no directory, or no memory for its name.
static tj_status no_dir_status(tj_ctx *ctx) { return ctx->rt->cache_dir ? TJ_ERR_NO_MEMORY : TJ_ERR_NOT_FOUND; }

static tj_status no_dir_error(tj_ctx *ctx) {
  if (ctx->rt->cache_dir) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  return api_error(ctx, TJ_ERR_NOT_FOUND, "no cache directory (set TILEJIT_CACHE_DIR or HOME)");
}

bool tune_store_enabled(tj_ctx *ctx) { return ctx->rt->cache_on && ctx->rt->cache_dir; }

tj_status tune_store_path(tj_ctx *ctx, const uint8_t key[32], StrBuf *out) {
  char *dir = tune_store_dir(ctx);
  if (!dir) return no_dir_status(ctx);
  char hex[65];
  hex32(key, hex);
  sb_printf(out, "%s/%s" TUNE_EXT, dir, hex);
  tj_free(dir);
  return out->failed ? TJ_ERR_NO_MEMORY : TJ_OK;
}

tj_status tune_store_read(tj_ctx *ctx, const uint8_t key[32], TuneFile *out, StrBuf *why) {
  memset(out, 0, sizeof *out);
  StrBuf path;
  sb_init(&path);
  tj_status s = tune_store_path(ctx, key, &path);
  if (s != TJ_OK) {
    sb_free(&path);
    return s;
  }
  int fd = open(path.data, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    s = errno == ENOENT ? TJ_ERR_NOT_FOUND : TJ_ERR_IO;
    if (s == TJ_ERR_IO) sb_printf(why, "%s: %s", path.data, strerror(errno));
    sb_free(&path);
    return s;
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  s = cache_read_fd(fd, &buf, &len, why);
  char hex[65];
  hex32(key, hex);
  if (s == TJ_OK) s = tune_file_decode((const char *)buf, len, hex, out, why);
  tj_free(buf);
  if (s == TJ_ERR_CORRUPT) {
    // Only if it is still the file we read: a writer may have replaced it.
    struct stat a, b;
    if (fstat(fd, &a) == 0 && stat(path.data, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
      unlink(path.data);
  }
  close(fd);
  sb_free(&path);
  return s;
}

tj_status tune_store_write(tj_ctx *ctx, const uint8_t key[32], const char *buf, size_t len, StrBuf *why) {
  char *dir = tune_store_dir(ctx);
  if (!dir) return no_dir_status(ctx);
  char name[65 + sizeof TUNE_EXT];
  hex32(key, name);
  memcpy(name + 64, TUNE_EXT, sizeof TUNE_EXT);
  tj_status s = cache_write_atomic(dir, name, (const uint8_t *)buf, len, why);
  tj_free(dir);
  return s;
}

// ---------------------------------------------------------------- public: list, clear

tj_status tj_tune_dir(tj_ctx *ctx, char **out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tune_dir: out is NULL");
  *out = tune_store_dir(ctx);
  if (!*out) return no_dir_error(ctx);
  return TJ_OK;
}

static bool is_result_name(const char *n) {
  size_t l = strlen(n);
  return l == 64 + strlen(TUNE_EXT) && !strcmp(n + 64, TUNE_EXT) && n[0] != '.';
}

static int by_kernel(const void *a, const void *b) {
  const tj_tune_entry *x = a, *y = b;
  int c = strcmp(x->kernel, y->kernel);
  return c ? c : strcmp(x->key, y->key);
}

static void fill_entry(tj_tune_entry *e, const TuneFile *f) {
  snprintf(e->kernel, sizeof e->kernel, "%s", f->kernel);
  snprintf(e->file, sizeof e->file, "%s", f->file);
  snprintf(e->device, sizeof e->device, "%s", f->device);
  snprintf(e->sizes, sizeof e->sizes, "%s", f->sizes);
  e->cc_major = f->cc_major;
  e->cc_minor = f->cc_minor;
  e->nconfigs = f->nconfigs;
  e->best_ms = -1;
  for (int i = 0; i < f->nconfigs; i++) e->nfailed += f->configs[i].status != TJ_OK;
  if (f->best >= 0) {
    const TuneFileConfig *c = &f->configs[f->best];
    size_t used = 0;
    for (int a = 0; a < f->naxes && used < sizeof e->best; a++) {
      int w = snprintf(e->best + used, sizeof e->best - used, "%s%s=%lld", a ? " " : "", f->axes[a],
                       (long long)c->values[a]);
      if (w < 0) break;
      used += (size_t)w;
    }
    e->best_ms = c->ms;
  } else {
    snprintf(e->best, sizeof e->best, "(none usable)");
  }
}

tj_status tj_tune_list(tj_ctx *ctx, tj_tune_entry **out, int *count) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out || !count) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tune_list: out or count is NULL");
  *out = NULL;
  *count = 0;
  char *dir = tune_store_dir(ctx);
  if (!dir) return no_dir_error(ctx);
  DIR *d = opendir(dir);
  if (!d) {
    tj_status s = errno == ENOENT ? TJ_OK : api_error(ctx, TJ_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    tj_free(dir);
    return s;
  }
  tj_tune_entry *items = NULL;
  int n = 0, cap = 0;
  tj_status s = TJ_OK;
  struct dirent *de;
  StrBuf p, why;
  sb_init(&p);
  sb_init(&why);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  while ((de = readdir(d)) != NULL) {
    if (!is_result_name(de->d_name)) continue;
    p.len = 0;
    sb_printf(&p, "%s/%s", dir, de->d_name);
    if (p.failed) { s = TJ_ERR_NO_MEMORY; break; }
    int fd = open(p.data, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      continue;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      tj_tune_entry *ni = tj_realloc(items, sizeof *ni * (size_t)cap);
      if (!ni) { close(fd); s = TJ_ERR_NO_MEMORY; break; }
      items = ni;
    }
    tj_tune_entry *e = &items[n++];
    memset(e, 0, sizeof *e);
    memcpy(e->key, de->d_name, 64);
    e->key[64] = '\0';
    e->bytes = (uint64_t)st.st_size;
    e->age_s = (double)(now.tv_sec - st.st_mtim.tv_sec);
    uint8_t *buf = NULL;
    size_t len = 0;
    why.len = 0;
    TuneFile f;
    tj_status rs = cache_read_fd(fd, &buf, &len, &why);
    if (rs == TJ_OK) rs = tune_file_decode((const char *)buf, len, e->key, &f, &why);
    tj_free(buf);
    close(fd);
    if (rs == TJ_OK) {
      fill_entry(e, &f);
      tune_file_free(&f);
    } else if (rs == TJ_ERR_NO_MEMORY) {
      s = rs;   // not the file's fault: do not list it as corrupt
      break;
    } else {
      e->corrupt = 1;
      e->best_ms = -1;
    }
  }
  closedir(d);
  sb_free(&p);
  sb_free(&why);
  tj_free(dir);
  if (s != TJ_OK) {
    tj_free(items);
    return api_error(ctx, s, "out of memory");
  }
  if (n > 1) qsort(items, (size_t)n, sizeof *items, by_kernel);
  *out = items;
  *count = n;
  return TJ_OK;
}

void tj_tune_list_free(tj_tune_entry *entries) { tj_free(entries); }

tj_status tj_tune_clear(tj_ctx *ctx, int *removed) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (removed) *removed = 0;
  char *dir = tune_store_dir(ctx);
  if (!dir) return no_dir_error(ctx);
  DIR *d = opendir(dir);
  if (!d) {
    tj_status s = errno == ENOENT ? TJ_OK : api_error(ctx, TJ_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    tj_free(dir);
    return s;
  }
  int r = 0;
  struct dirent *de;
  StrBuf p;
  sb_init(&p);
  while ((de = readdir(d)) != NULL) {
    bool temp = de->d_name[0] == '.' && strstr(de->d_name, ".tmp.") != NULL;
    if (!is_result_name(de->d_name) && !temp) continue;
    p.len = 0;
    sb_printf(&p, "%s/%s", dir, de->d_name);
    if (!p.failed && unlink(p.data) == 0 && !temp) r++;
  }
  closedir(d);
  sb_free(&p);
  tj_free(dir);
  if (removed) *removed = r;
  return TJ_OK;
}
