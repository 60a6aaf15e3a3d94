/* fuzz_common.h: what fuzz_frontend and fuzz_codegen share: the input
 * format and the compile step.
 *
 * Input: a 5-byte header, then the .tj source (the rest of the input):
 *
 *   byte 0: options  bits 0-1 num_warps (0: the kernel's, 1, 2, 8)
 *                    bit 2    TJ_COMPILE_DEBUG (verifier after the front end)
 *                    bit 3    run the interpreter (fuzz_frontend)
 *                    bits 4-5 grid: 1x1, 2x1, 1x2, 2x2 programs
 *                    bit 6    "all" as the spec (fuzz_codegen)
 *                    bit 7    arch sm_90a instead of sm_80 (fuzz_codegen)
 *   bytes 1-3: constant overrides: 0 = none; else the high nibble picks one
 *              of the kernel's constants (TirFunc.consts, mod their count)
 *              and the low nibble a value of its kind (an int, a dtype, a
 *              bool, a float), passed as -D NAME=VALUE.
 *   byte 4: which kernel of a file with several (mod their count).
 *
 * The kernel is compiled once as written, with the -D NAME=VALUE defines
 * of a "// usage:" line if the source has one (the convention of the test
 * kernels, many of which have constants without defaults); when that
 * succeeds and a byte asks for overrides it is compiled again with them
 * replacing or joining those, so the constants the fuzzer tries are always
 * names the kernel has. A constant reported as having no value gets one
 * (an int, or a dtype when declared `: dtype`) and the compile is retried.
 * TJ_FUZZ_VERBOSE=1 prints why an input stopped. A diagnostic that says
 * "internal error" or a TJ_ERR_INTERNAL status is a tilejit bug: abort(),
 * which libFuzzer reports as a crash. Seeds are .tj files behind a header
 * (tests/fuzz/make_corpus.sh).
 */
#ifndef TJ_FUZZ_COMMON_H
#define TJ_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/api.h"

enum { FUZZ_HEADER = 5 };
enum {
  FUZZ_DEBUG = 1u << 2,
  FUZZ_INTERP = 1u << 3,
  FUZZ_SPEC_ALL = 1u << 6,
  FUZZ_SM90A = 1u << 7,
};

// No compile cache (TJ_COMPILE_NO_CACHE too); should anything still look
// for one, its directory is under /tmp. Nothing is written there.
static void fuzz_env(void) {
  setenv("TILEJIT_CACHE", "0", 1);
  setenv("TILEJIT_CACHE_DIR", "/tmp/tilejit-fuzz-nocache", 1);
  unsetenv("TILEJIT_DUMP");
}

// Whether a diagnostic reports an internal error: a header line (echoed
// source lines start with spaces and may hold any text) whose first
// "error: " is followed by "internal error" (a later one may be user text,
// such as a static_assert message).
static bool fuzz_internal(const char *msg) {
  for (const char *l = msg; *l;) {
    size_t n = strcspn(l, "\n");
    for (const char *p = l; *l != ' ' && p + 7 <= l + n; p++)
      if (*p == 'e' && !memcmp(p, "error: ", 7)) {
        if (p + 21 <= l + n && !memcmp(p + 7, "internal error", 14)) return true;
        break;
      }
    l += n;
    if (*l) l++;
  }
  return false;
}

static void fuzz_check(tj_ctx *ctx, tj_status st, const char *what) {
  const char *msg = tj_ctx_last_error(ctx);
  if (st != TJ_OK && getenv("TJ_FUZZ_VERBOSE"))
    fprintf(stderr, "fuzz: %s: %s: %.*s\n", what, tj_status_str(st), (int)strcspn(msg, "\n"), msg);
  if (st == TJ_ERR_INTERNAL || (st != TJ_OK && fuzz_internal(msg))) {
    fprintf(stderr, "fuzz: %s: %s\n%s\n", what, tj_status_str(st), msg);
    abort();
  }
}

static const char *const fuzz_ints[16] = {
  "1", "2", "4", "8", "16", "32", "64", "128", "3", "0", "-1", "7", "256", "1024", "5", "17",
};
static const char *const fuzz_dtypes[16] = {
  "bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f16", "bf16", "f32", "f64",
  "f32", "f16", "i32",
};
static const char *const fuzz_floats[16] = {
  "0.5", "1e-05", "-1.0", "0.0", "2.0", "1e30", "-0.0", "3.5",
  "inf", "-inf", "nan", "1.0", "0.125", "65504.0", "1e-40", "100.0",
};

// A value of the same kind as a constant's canonical text.
static const char *fuzz_value(const char *text, unsigned pick) {
  Dtype dt;
  if (!strcmp(text, "true") || !strcmp(text, "false")) return pick & 1 ? "true" : "false";
  if (dtype_from_name(text, strlen(text), &dt)) return fuzz_dtypes[pick & 15];
  if (strpbrk(text, ".en")) return fuzz_floats[pick & 15];  // 1.0, 1e-05, inf, nan
  return fuzz_ints[pick & 15];
}

enum { FUZZ_MAX_DEFINES = 8, FUZZ_DEFINE_LEN = 96 };

typedef struct FuzzDefines {
  char text[FUZZ_MAX_DEFINES][FUZZ_DEFINE_LEN];
  const char *ptr[FUZZ_MAX_DEFINES];
  int n;
} FuzzDefines;

// Adds or replaces NAME=VALUE.
static void fuzz_define(FuzzDefines *d, const char *name, size_t nlen, const char *value, size_t vlen) {
  if (nlen == 0 || nlen + vlen + 2 > FUZZ_DEFINE_LEN) return;
  int i = 0;
  while (i < d->n && !(strncmp(d->text[i], name, nlen) == 0 && d->text[i][nlen] == '=')) i++;
  if (i == d->n) {
    if (d->n == FUZZ_MAX_DEFINES) return;
    d->n++;
  }
  snprintf(d->text[i], FUZZ_DEFINE_LEN, "%.*s=%.*s", (int)nlen, name, (int)vlen, value);
  d->ptr[i] = d->text[i];
}

// The "-D NAME=VALUE" words of the source's "// usage:" line, if any.
static void fuzz_usage_defines(const char *src, size_t len, FuzzDefines *d) {
  const char *end = src + len, *u = NULL;
  for (const char *p = src; p + 9 <= end; p++)
    if (!memcmp(p, "// usage:", 9) && (p == src || p[-1] == '\n')) {
      u = p + 9;
      break;
    }
  if (!u) return;
  const char *eol = memchr(u, '\n', (size_t)(end - u));
  if (!eol) eol = end;
  for (const char *p = u; p + 3 < eol; p++) {
    if (memcmp(p, "-D ", 3) != 0) continue;
    const char *w = p + 3, *e = w;
    while (e < eol && *e != ' ') e++;
    const char *eq = memchr(w, '=', (size_t)(e - w));
    if (eq) fuzz_define(d, w, (size_t)(eq - w), eq + 1, (size_t)(e - eq - 1));
    p = e - 1;
  }
}

// The name of the pick-th (mod their count) "kernel NAME" of the source,
// into buf; NULL with fewer than two kernels (the only one is the default).
static const char *fuzz_kernel_name(const char *src, size_t len, unsigned pick, char *buf, size_t cap) {
  const char *names[16];
  size_t lens[16];
  int n = 0;
  for (size_t i = 0; i + 7 < len && n < 16; i++) {
    if (memcmp(src + i, "kernel ", 7) != 0 || (i > 0 && src[i - 1] != '\n' && src[i - 1] != ' ')) continue;
    size_t j = i + 7, e = j;
    while (e < len && (src[e] == '_' || ((src[e] | 0x20) >= 'a' && (src[e] | 0x20) <= 'z') ||
                       (src[e] >= '0' && src[e] <= '9')))
      e++;
    if (e > j && e - j < cap) names[n] = src + j, lens[n++] = e - j;
  }
  if (n < 2) return NULL;
  unsigned k = pick % (unsigned)n;
  memcpy(buf, names[k], lens[k]);
  buf[lens[k]] = '\0';
  return buf;
}

// "constant 'NAME' has no value": a value for NAME, of the kind its
// declaration in the source suggests.
static bool fuzz_missing_const(const char *msg, const char *src, size_t len, unsigned pick, FuzzDefines *d) {
  const char *p = strstr(msg, "error: constant '");
  if (!p) return false;
  p += 17;
  const char *q = strchr(p, '\'');
  if (!q || strncmp(q, "' has no value", 14) != 0 || q - p > 64) return false;
  char decl[80];
  snprintf(decl, sizeof decl, "%.*s: dtype", (int)(q - p), p);
  bool is_dtype = false;
  for (size_t i = 0; i + strlen(decl) <= len && !is_dtype; i++)
    is_dtype = !memcmp(src + i, decl, strlen(decl));
  const char *v = is_dtype ? fuzz_dtypes[pick & 15] : fuzz_ints[pick & 7];
  int before = d->n;
  fuzz_define(d, p, (size_t)(q - p), v, strlen(v));
  return d->n > before;
}

// The input's source (what follows the header) in an allocation of its
// own, so ASan sees reads past its end, and a context to compile it in.
// Returns false (nothing to free) when the input is too short or either
// cannot be made. *len 0 means an empty source: pass "" (source_len 0
// would mean strlen).
static bool fuzz_open(const uint8_t *data, size_t size, char **src, size_t *len, tj_ctx **ctx) {
  if (size < FUZZ_HEADER) return false;
  *len = size - FUZZ_HEADER;
  *src = malloc(*len ? *len : 1);
  if (!*src) return false;
  memcpy(*src, data + FUZZ_HEADER, *len);
  *ctx = NULL;
  if (tj_ctx_create(ctx) != TJ_OK) {
    free(*src);
    return false;
  }
  return true;
}

// Compiles the input's kernel (front end only unless full), with the
// header's constant overrides when the plain compile succeeds. Returns NULL
// when it does not compile; aborts on an internal error.
static tj_kernel *fuzz_compile(tj_ctx *ctx, const uint8_t *hdr, const char *src, size_t len, bool full) {
  static const int warps[4] = {0, 1, 2, 8};
  FuzzDefines defs = {0};
  fuzz_usage_defines(src, len, &defs);
  tj_compile_opts o = {0};
  o.source = src;
  o.source_len = len;
  o.path = "fuzz.tj";
  o.num_warps = warps[hdr[0] & 3];
  o.flags = TJ_COMPILE_NO_CACHE | TJ_COMPILE_FRONTEND | (hdr[0] & FUZZ_DEBUG ? TJ_COMPILE_DEBUG : 0);
  char kname[64];
  o.kernel = fuzz_kernel_name(src, len, hdr[4], kname, sizeof kname);
  tj_kernel *k = NULL;
  tj_status st;
  for (int tries = 0;; tries++) {
    o.defines = defs.ptr;
    o.ndefines = defs.n;
    st = tj_kernel_compile(ctx, &o, &k);
    fuzz_check(ctx, st, "compile");
    if (st == TJ_OK) break;
    if (tries == 3 || !fuzz_missing_const(tj_ctx_last_error(ctx), src, len, hdr[1] + (unsigned)tries, &defs))
      return NULL;
  }

  bool changed = false;
  const TirFunc *f = k->func;
  for (int i = 1; i < FUZZ_HEADER && f->nconsts > 0; i++) {
    if (!hdr[i]) continue;
    const TirConstDef *c = &f->consts[(hdr[i] >> 4) % f->nconsts];
    const char *v = fuzz_value(c->text, hdr[i] & 15);
    fuzz_define(&defs, c->name, strlen(c->name), v, strlen(v));
    changed = true;
  }
  if (changed) {
    tj_kernel_free(k);
    k = NULL;
    o.defines = defs.ptr;
    o.ndefines = defs.n;
    st = tj_kernel_compile(ctx, &o, &k);
    fuzz_check(ctx, st, "compile with -D");
    if (st != TJ_OK) return NULL;
  }
  if (full) {
    tj_kernel_free(k);
    k = NULL;
    o.flags &= ~(unsigned)TJ_COMPILE_FRONTEND;
    o.arch = hdr[0] & FUZZ_SM90A ? "sm_90a" : "sm_80";
    o.assume = hdr[0] & FUZZ_SPEC_ALL ? "all" : NULL;
    st = tj_kernel_compile(ctx, &o, &k);
    fuzz_check(ctx, st, "compile to PTX");
    if (st != TJ_OK) return NULL;
  }
  return k;
}

#endif
