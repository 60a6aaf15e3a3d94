/* util.c: arena, growable strings and pointer vectors, file reading, and the
 * f16/bf16 <-> f32 conversions.
 *
 * Requires: nothing. Produces: the memory and number primitives every other
 * module uses.
 *
 * The half-precision conversions are bit-exact definitions, not helpers: the
 * interpreter, constant folding and the tests all round through them, so the
 * CPU reference semantics are whatever these functions compute. They are
 * written with integer operations only (no FPU rounding mode, no x87 excess
 * precision, no dependence on F16C), round to nearest with ties to even, keep
 * NaN payloads as far as the narrower format allows and never turn a NaN into
 * an infinity.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsl.h"

//
// Allocation hook
//

// Process-global, like Lua's lua_Alloc, and meant to be set once, before any
// context exists. It is published as a pointer to an immutable copy (release
// on set, acquire on every use; NULL means the C library's), so a call that
// races with tj_set_allocator sees the old hook or the new one whole, never
// a mix of the two. Copies are never freed, since a reader may still hold
// one; they are kept on a list so that setting the same hook again reuses
// its copy (tests install and remove one hook many times) and so that leak
// checkers see them as reachable. They come from the C library, not from a
// hook, since they outlive it.
typedef struct HookCopy {
  tj_allocator a;
  struct HookCopy *next;
} HookCopy;

static _Atomic(const tj_allocator *) g_hook;
static pthread_mutex_t g_hooks_mu = PTHREAD_MUTEX_INITIALIZER;
static HookCopy *g_hooks;  // every copy made; guarded by g_hooks_mu

tj_status tj_set_allocator(const tj_allocator *a) {
  if (!a) {
    atomic_store_explicit(&g_hook, NULL, memory_order_release);
    return TJ_OK;
  }
  if (!a->alloc || !a->realloc || !a->free) return TJ_ERR_INVALID_ARG;
  pthread_mutex_lock(&g_hooks_mu);
  HookCopy *c = g_hooks;
  while (c && (c->a.alloc != a->alloc || c->a.realloc != a->realloc || c->a.free != a->free ||
               c->a.user != a->user))
    c = c->next;
  if (!c && (c = malloc(sizeof *c)) != NULL) {
    c->a = *a;
    c->next = g_hooks;
    g_hooks = c;
  }
  pthread_mutex_unlock(&g_hooks_mu);
  if (!c) return TJ_ERR_NO_MEMORY;
  atomic_store_explicit(&g_hook, &c->a, memory_order_release);
  return TJ_OK;
}

static const tj_allocator *hook(void) { return atomic_load_explicit(&g_hook, memory_order_acquire); }

void *tj_malloc(size_t n) {
  if (n == 0) n = 1;
  const tj_allocator *h = hook();
  return h ? h->alloc(h->user, n) : malloc(n);
}

void *tj_calloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) return NULL;
  size_t n = count * size;
  void *p = tj_malloc(n);
  if (p) memset(p, 0, n ? n : 1);
  return p;
}

void *tj_realloc(void *p, size_t n) {
  if (!p) return tj_malloc(n);
  if (n == 0) n = 1;
  const tj_allocator *h = hook();
  return h ? h->realloc(h->user, p, n) : realloc(p, n);
}

void tj_free(void *p) {
  if (!p) return;
  const tj_allocator *h = hook();
  if (h) h->free(h->user, p);
  else free(p);
}

char *tj_strndup(const char *s, size_t n) {
  size_t len = 0;
  while (len < n && s[len]) len++;
  char *p = tj_malloc(len + 1);
  if (!p) return NULL;
  memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

char *tj_strdup(const char *s) { return tj_strndup(s, SIZE_MAX); }

//
// Arena
//

// Each chunk holds its payload right after the header; the header is padded
// to 16 bytes so that payload offsets that are multiples of 16 stay aligned
// (malloc returns 16-byte aligned blocks on every platform we build for; the
// alignment of `data` is still re-checked at run time below).
struct ArenaChunk {
  ArenaChunk *next;
  size_t cap, used;
  size_t pad_;
  _Alignas(16) unsigned char data[];
};

enum { ARENA_CHUNK = 64 * 1024 };

void arena_init(Arena *a) {
  a->head = NULL;
  a->total = 0;
  a->failed = false;
}

void arena_free(Arena *a) {
  if (!a) return;
  ArenaChunk *c = a->head;
  while (c) {
    ArenaChunk *next = c->next;
    tj_free(c);
    c = next;
  }
  arena_init(a);
}

void *arena_alloc(Arena *a, size_t n) {
  if (a->failed) return NULL;
  if (n == 0) n = 1;
  if (n > SIZE_MAX / 2) {
    a->failed = true;
    return NULL;
  }
  size_t need = (n + 15) & ~(size_t)15;
  ArenaChunk *c = a->head;
  if (!c || c->cap - c->used < need) {
    // Large requests get a chunk of their own, placed behind the current head
    // so the head's remaining space is not wasted.
    size_t cap = need > ARENA_CHUNK / 4 ? need : ARENA_CHUNK;
    ArenaChunk *nc = tj_malloc(sizeof(ArenaChunk) + cap + 15);
    if (!nc) {
      a->failed = true;
      return NULL;
    }
    nc->cap = cap;
    nc->used = 0;
    // Skip to the first 16-byte boundary in case malloc only gave 8.
    uintptr_t base = (uintptr_t)nc->data;
    size_t skew = (16 - (base & 15)) & 15;
    nc->used = skew;
    nc->cap = cap + skew;
    if (c && need > ARENA_CHUNK / 4) {
      nc->next = c->next;
      c->next = nc;
    } else {
      nc->next = c;
      a->head = nc;
    }
    a->total += cap;
    c = nc;
  }
  void *p = c->data + c->used;
  c->used += need;
  memset(p, 0, n);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  if (!p) return NULL;
  if (n) memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) {
    a->failed = true;
    return NULL;
  }
  if ((size_t)n < sizeof small) return arena_strndup(a, small, (size_t)n);
  char *p = arena_alloc(a, (size_t)n + 1);
  if (!p) return NULL;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

//
// StrBuf
//

void sb_init(StrBuf *sb) {
  sb->data = NULL;
  sb->len = sb->cap = 0;
  sb->failed = false;
}

void sb_free(StrBuf *sb) {
  if (!sb) return;
  tj_free(sb->data);
  sb_init(sb);
}

// Makes room for n more bytes plus the terminating NUL.
static bool sb_reserve(StrBuf *sb, size_t n) {
  if (sb->failed) return false;
  if (sb->len + n + 1 <= sb->cap) return true;
  size_t cap = sb->cap ? sb->cap : 64;
  while (cap < sb->len + n + 1) {
    if (cap > SIZE_MAX / 2) {
      sb->failed = true;
      return false;
    }
    cap *= 2;
  }
  char *p = tj_realloc(sb->data, cap);
  if (!p) {
    sb->failed = true;
    return false;
  }
  sb->data = p;
  sb->cap = cap;
  return true;
}

void sb_putn(StrBuf *sb, const char *s, size_t n) {
  if (!sb_reserve(sb, n)) return;
  if (n) memcpy(sb->data + sb->len, s, n);
  sb->len += n;
  sb->data[sb->len] = '\0';
}

void sb_putc(StrBuf *sb, char c) { sb_putn(sb, &c, 1); }

void sb_puts(StrBuf *sb, const char *s) { sb_putn(sb, s, strlen(s)); }

void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap2);
  va_end(ap2);
  if (n < 0) {
    sb->failed = true;
    return;
  }
  if ((size_t)n < sizeof small) {
    sb_putn(sb, small, (size_t)n);
    return;
  }
  if (!sb_reserve(sb, (size_t)n)) return;
  vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
  sb->len += (size_t)n;
}

void sb_printf(StrBuf *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(sb, fmt, ap);
  va_end(ap);
}

char *sb_steal(StrBuf *sb) {
  char *p = sb->data;
  if (!p) p = tj_calloc(1, 1);
  sb_init(sb);
  return p;
}

//
// PtrVec
//

void vec_push(Arena *a, PtrVec *v, void *p) {
  if (v->len == v->cap) {
    int cap = v->cap ? v->cap * 2 : 8;
    void **d = arena_alloc(a, sizeof(void *) * (size_t)cap);
    if (!d) return;  // a->failed is set; the caller checks at the pass end
    if (v->len) memcpy(d, v->data, sizeof(void *) * (size_t)v->len);
    v->data = d;
    v->cap = cap;
  }
  v->data[v->len++] = p;
}

//
// Files
//

static void put_errno(StrBuf *err, const char *what, const char *path, int e) {
  char msg[256];
  // XSI strerror_r (we build with _POSIX_C_SOURCE, not _GNU_SOURCE) is
  // thread-safe where strerror is not.
  if (strerror_r(e, msg, sizeof msg) != 0) snprintf(msg, sizeof msg, "error %d", e);
  if (err) sb_printf(err, "cannot %s '%s': %s", what, path, msg);
}

tj_status util_read_file(const char *path, char **data, size_t *len, StrBuf *err) {
  *data = NULL;
  if (len) *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    put_errno(err, "open", path, errno);
    return TJ_ERR_IO;
  }
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n + 1 >= cap) {
      size_t ncap = cap ? cap * 2 : 16384;
      char *nb = tj_realloc(buf, ncap);
      if (!nb) {
        tj_free(buf);
        fclose(f);
        if (err) sb_printf(err, "cannot read '%s': out of memory", path);
        return TJ_ERR_IO;
      }
      buf = nb;
      cap = ncap;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    int e = errno;
    tj_free(buf);
    fclose(f);
    put_errno(err, "read", path, e ? e : EIO);
    return TJ_ERR_IO;
  }
  fclose(f);
  buf[n] = '\0';
  *data = buf;
  if (len) *len = n;
  return TJ_OK;
}

//
// Half precision
//

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// Shifts m right by s (1..31) rounding to nearest, ties to even.
static uint32_t shr_rne(uint32_t m, int s) {
  uint32_t keep = m >> s;
  uint32_t rest = m & ((1u << s) - 1);
  uint32_t half = 1u << (s - 1);
  if (rest > half || (rest == half && (keep & 1))) keep++;
  return keep;
}

uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  int exp = (int)((x >> 23) & 0xff);
  uint32_t mant = x & 0x7fffff;
  if (exp == 0xff) {
    if (!mant) return sign | 0x7c00;
    // Keep the top payload bits (quiet bit included); a payload living only
    // in the dropped bits must not turn the NaN into an infinity.
    uint16_t m = (uint16_t)(mant >> 13);
    if (!m) m = 0x200;
    return sign | 0x7c00 | m;
  }
  int he = exp - 127 + 15;
  if (he >= 31) return sign | 0x7c00;
  if (he >= 1) {
    // Normal result. A carry out of the mantissa bumps the exponent, which is
    // exactly right, up to and including overflow into infinity (0x7c00).
    uint32_t v = ((uint32_t)he << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (v & 1))) v++;
    return sign | (uint16_t)v;
  }
  // Subnormal (or zero) result, in units of 2^-24. f32 subnormals are far
  // below half of the smallest f16 subnormal.
  if (exp == 0) return sign;
  int shift = 14 - he;  // >= 14
  if (shift > 24) return sign;
  return sign | (uint16_t)shr_rne(mant | 0x800000, shift);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000 | (mant << 13));
  if (exp == 0) {
    if (!mant) return bits_f32(sign);
    // Normalise the subnormal: shift until the implicit bit appears.
    int e = 113;  // f32 biased exponent of 2^-14
    while (!(mant & 0x400)) {
      mant <<= 1;
      e--;
    }
    return bits_f32(sign | ((uint32_t)e << 23) | ((mant & 0x3ff) << 13));
  }
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7f800000) == 0x7f800000 && (x & 0x7fffff)) {
    uint16_t h = (uint16_t)(x >> 16);
    if (!(h & 0x7f)) h |= 0x40;  // payload only in the dropped half: stay NaN
    return h;
  }
  // Same exponent range as f32, so adding the rounding bias handles
  // subnormals and overflow to infinity alike.
  uint32_t bias = 0x7fff + ((x >> 16) & 1);
  return (uint16_t)((x + bias) >> 16);
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }
