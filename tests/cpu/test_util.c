/* test_util.c: arena, StrBuf, PtrVec, file reading, dtypes, the diagnostic
 * renderer and the f16/bf16 conversions (exhaustive over all 16-bit patterns;
 * every rounding tie checked).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsl/dsl.h"
#include "testutil.h"

static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bitsf(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// Value of an f16 bit pattern computed in double, independently of util.c.
static double f16_value(uint16_t h) {
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v;
  if (e == 31) v = m ? NAN : INFINITY;
  else if (e == 0) v = ldexp(m, -24);
  else v = ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

// ---------------------------------------------------------------- arena

START_TEST(test_arena_basic) {
  Arena a;
  arena_init(&a);
  char *prev = NULL;
  for (int i = 0; i < 20000; i++) {
    size_t n = (size_t)(i % 37) + 1;
    unsigned char *p = arena_alloc(&a, n);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 16, 0);
    for (size_t k = 0; k < n; k++) ck_assert_uint_eq(p[k], 0);
    memset(p, 0xab, n);
    ck_assert_ptr_ne(p, prev);
    prev = (char *)p;
  }
  // A request larger than a chunk gets its own block and stays usable.
  unsigned char *big = arena_alloc(&a, 1 << 20);
  ck_assert_ptr_nonnull(big);
  ck_assert_uint_eq((uintptr_t)big % 16, 0);
  ck_assert_uint_eq(big[0], 0);
  ck_assert_uint_eq(big[(1 << 20) - 1], 0);
  memset(big, 1, 1 << 20);
  ck_assert(!a.failed);
  ck_assert_uint_ge(a.total, (size_t)(1 << 20));
  arena_free(&a);
  ck_assert_ptr_null(a.head);
  ck_assert_uint_eq(a.total, 0);
  // Reusable after free.
  ck_assert_ptr_nonnull(arena_alloc(&a, 8));
  arena_free(&a);
  arena_free(NULL);
}
END_TEST

START_TEST(test_arena_strings_and_failure) {
  Arena a;
  arena_init(&a);
  ck_assert_str_eq(arena_strdup(&a, "hello"), "hello");
  ck_assert_str_eq(arena_strndup(&a, "hello world", 5), "hello");
  ck_assert_str_eq(arena_printf(&a, "%s-%d", "x", 42), "x-42");
  char longs[1000];
  memset(longs, 'q', sizeof longs - 1);
  longs[sizeof longs - 1] = '\0';
  char *p = arena_printf(&a, "<%s>", longs);
  ck_assert_uint_eq(strlen(p), 1001);
  ck_assert_int_eq(p[0], '<');
  ck_assert_int_eq(p[1000], '>');
  // Failure is sticky: an impossible request fails and so does the next one.
  ck_assert_ptr_null(arena_alloc(&a, SIZE_MAX - 8));
  ck_assert(a.failed);
  ck_assert_ptr_null(arena_alloc(&a, 8));
  ck_assert_ptr_null(arena_strdup(&a, "x"));
  arena_free(&a);
  ck_assert(!a.failed);
}
END_TEST

START_TEST(test_strbuf_vec) {
  StrBuf sb;
  sb_init(&sb);
  char *empty = sb_steal(&sb);
  ck_assert_str_eq(empty, "");
  free(empty);
  sb_putc(&sb, 'a');
  sb_puts(&sb, "bc");
  sb_putn(&sb, "defXYZ", 3);
  sb_printf(&sb, "%d%s", 12, "!");
  ck_assert_str_eq(sb.data, "abcdef12!");
  ck_assert_uint_eq(sb.len, 9);
  for (int i = 0; i < 1000; i++) sb_printf(&sb, "%04d", i);
  ck_assert_uint_eq(sb.len, 9 + 4000);
  ck_assert_int_eq(memcmp(sb.data + 9 + 4 * 999, "0999", 4), 0);
  char *s = sb_steal(&sb);
  ck_assert_ptr_null(sb.data);
  ck_assert_uint_eq(sb.len, 0);
  ck_assert_uint_eq(strlen(s), 4009);
  free(s);
  sb_free(&sb);
  sb_free(NULL);

  Arena a;
  arena_init(&a);
  PtrVec v = {0};
  int xs[100];
  for (int i = 0; i < 100; i++) vec_push(&a, &v, &xs[i]);
  ck_assert_int_eq(v.len, 100);
  for (int i = 0; i < 100; i++) ck_assert_ptr_eq(v.data[i], &xs[i]);
  arena_free(&a);
}
END_TEST

START_TEST(test_read_file) {
  char *data;
  size_t len;
  StrBuf err;
  sb_init(&err);
  char *path = tj_test_path("tests/dsl/parse/chained_cmp.tj");
  ck_assert_int_eq(util_read_file(path, &data, &len, &err), TJ_OK);
  ck_assert_uint_gt(len, 10);
  ck_assert_uint_eq(strlen(data), len);
  ck_assert(strncmp(data, "kernel k(", 9) == 0);
  free(data);
  free(path);

  const char *missing = "/nonexistent-dir/tilejit/none.tj";
  ck_assert_int_eq(util_read_file(missing, &data, &len, &err), TJ_ERR_IO);
  ck_assert_ptr_null(data);
  ck_assert_ptr_nonnull(strstr(err.data, missing));
  ck_assert_ptr_nonnull(strstr(err.data, strerror(ENOENT)));
  sb_free(&err);

  // A directory opens but cannot be read.
  path = tj_test_path("tests");
  ck_assert_int_eq(util_read_file(path, &data, &len, &err), TJ_ERR_IO);
  ck_assert_ptr_nonnull(strstr(err.data, strerror(EISDIR)));
  free(path);
  sb_free(&err);
}
END_TEST

// ---------------------------------------------------------------- dtype

START_TEST(test_dtype) {
  static const char *names[] = {"void", "bool", "i8",  "i16", "i32", "i64",  "u8",
                                "u16",  "u32",  "u64", "f16", "bf16", "f32", "f64"};
  static const int bytes[] = {0, 1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 2, 4, 8};
  ck_assert_int_eq(sizeof names / sizeof names[0], DT_COUNT);
  for (int d = 0; d < DT_COUNT; d++) {
    ck_assert_str_eq(dtype_name((Dtype)d), names[d]);
    ck_assert_str_eq(tj_dtype_name((tj_dtype)d), names[d]);
    ck_assert_int_eq(dtype_bytes((Dtype)d), bytes[d]);
    Dtype got;
    if (d == DT_VOID) {
      ck_assert(!dtype_from_name("void", 4, &got));
    } else {
      ck_assert(dtype_from_name(names[d], strlen(names[d]), &got));
      ck_assert_int_eq(got, d);
    }
  }
  ck_assert_str_eq(tj_dtype_name(TJ_DTYPE_COUNT), "?");
  ck_assert_str_eq(tj_dtype_name((tj_dtype)-1), "?");
  Dtype got;
  ck_assert(!dtype_from_name("f3", 2, &got));
  ck_assert(!dtype_from_name("f32x", 4, &got));
  ck_assert(dtype_from_name("f32x", 3, &got) && got == DT_F32);
  ck_assert_int_eq(dtype_bits(DT_BOOL), 1);
  ck_assert_int_eq(dtype_bits(DT_BF16), 16);
  ck_assert_int_eq(dtype_bits(DT_U64), 64);
  ck_assert(dtype_is_float(DT_F16) && dtype_is_float(DT_BF16) && dtype_is_float(DT_F64));
  ck_assert(!dtype_is_float(DT_I32) && !dtype_is_float(DT_BOOL));
  ck_assert(dtype_is_int(DT_I8) && dtype_is_int(DT_U64) && !dtype_is_int(DT_BOOL) && !dtype_is_int(DT_F32));
  ck_assert(dtype_is_signed(DT_I64) && !dtype_is_signed(DT_U32) && !dtype_is_signed(DT_F32) &&
            !dtype_is_signed(DT_BOOL));
}
END_TEST

// ---------------------------------------------------------------- diag

static Loc mkloc(const char *src, int line, int col, int len) {
  // Find the offset of line:col by walking the text.
  int l = 1, off = 0;
  while (l < line) {
    if (src[off++] == '\n') l++;
  }
  Loc loc = {"k.tj", src, line, col, len, off + col - 1};
  return loc;
}

START_TEST(test_diag_render) {
  const char *src = "kernel k() {\n  let y = x + w;\n}\n";
  Diag d;
  diag_init(&d);
  ck_assert_int_eq(d.max_errors, 20);
  diag_at(&d, DIAG_ERROR, mkloc(src, 2, 11, 5), "tile shapes differ: [%d] vs [%d, 1]", 128, 128);
  ck_assert_str_eq(d.text.data,
                   "k.tj:2:11: error: tile shapes differ: [128] vs [128, 1]\n"
                   "    2 |   let y = x + w;\n"
                   "      |           ^~~~~\n");
  ck_assert_int_eq(d.nerrors, 1);
  diag_free(&d);

  // Levels, clipping of the ~ run at the line end, and a span at the end.
  diag_init(&d);
  diag_at(&d, DIAG_WARNING, mkloc(src, 2, 15, 40), "w");
  diag_at(&d, DIAG_NOTE, mkloc(src, 3, 2, 1), "n");
  ck_assert_str_eq(d.text.data,
                   "k.tj:2:15: warning: w\n"
                   "    2 |   let y = x + w;\n"
                   "      |               ^~\n"
                   "k.tj:3:2: note: n\n"
                   "    3 | }\n"
                   "      |  ^\n");
  ck_assert_int_eq(d.nerrors, 0);
  ck_assert_int_eq(d.nwarnings, 1);
  diag_free(&d);
}
END_TEST

START_TEST(test_diag_gutter_tabs_control) {
  // Line 12345: the gutter grows past four digits; tabs are kept in both
  // the source line and the caret line; a control byte prints as '?'.
  StrBuf sb;
  sb_init(&sb);
  for (int i = 1; i < 12345; i++) sb_putc(&sb, '\n');
  size_t off = sb.len;
  sb_puts(&sb, "\tx\x01 = \ty;\r\n");
  Loc loc = {"big.tj", sb.data, 12345, 7, 2, (int)off + 6};
  Diag d;
  diag_init(&d);
  diag_at(&d, DIAG_ERROR, loc, "m");
  ck_assert_str_eq(d.text.data,
                   "big.tj:12345:7: error: m\n"
                   " 12345 | \tx? = \ty;\n"
                   "       | \t     ^~\n");
  diag_free(&d);
  // Line 12: at least four columns of gutter.
  diag_init(&d);
  Loc l12 = {"a.tj", sb.data + off - 11, 12, 1, 1, 11};
  diag_at(&d, DIAG_ERROR, l12, "m");
  ck_assert_str_eq(d.text.data, "a.tj:12:1: error: m\n   12 | \tx? = \ty;\n      | ^\n");
  diag_free(&d);
  sb_free(&sb);
}
END_TEST

START_TEST(test_diag_plain_and_limit) {
  Diag d;
  diag_init(&d);
  diag_plain(&d, DIAG_ERROR, "cannot read '%s'", "x.tj");
  diag_plain(&d, DIAG_WARNING, "hmm");
  Loc none = {0};
  diag_at(&d, DIAG_NOTE, none, "no span");
  ck_assert_str_eq(d.text.data,
                   "tilejit: error: cannot read 'x.tj'\n"
                   "tilejit: warning: hmm\n"
                   "tilejit: note: no span\n");
  diag_free(&d);

  diag_init(&d);
  d.max_errors = 3;
  for (int i = 0; i < 10; i++) diag_plain(&d, DIAG_ERROR, "e%d", i);
  diag_plain(&d, DIAG_NOTE, "dropped");
  ck_assert_int_eq(d.nerrors, 10);
  ck_assert_str_eq(d.text.data,
                   "tilejit: error: e0\n"
                   "tilejit: error: e1\n"
                   "tilejit: error: e2\n"
                   "tilejit: error: too many errors, stopping\n");
  diag_free(&d);
}
END_TEST

// ---------------------------------------------------------------- f16

START_TEST(test_f16_roundtrip_exhaustive) {
  for (uint32_t h = 0; h < 65536; h++) {
    float f = f16_to_f32((uint16_t)h);
    double want = f16_value((uint16_t)h);
    if (isnan(want)) {
      ck_assert(isnan(f));
      // The payload moves up unchanged (quiet bit included).
      ck_assert_uint_eq(fbits(f), ((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13));
    } else {
      ck_assert_msg((double)f == want, "h=%04x", h);
      ck_assert_int_eq(signbit(f) != 0, (h >> 15) != 0);
    }
    ck_assert_msg(f32_to_f16(f) == h, "h=%04x -> %04x", h, f32_to_f16(f));
  }
}
END_TEST

START_TEST(test_f16_rounding_ties) {
  // Every midpoint between adjacent positive finite f16 values is exact in
  // f32; it must round to the even neighbour, and one f32 ulp either side
  // must round to the nearer one. Subnormals included (h from 0).
  for (uint32_t h = 0; h < 0x7bff; h++) {
    double lo = f16_value((uint16_t)h), hi = f16_value((uint16_t)(h + 1));
    float mid = (float)((lo + hi) / 2);
    ck_assert((double)mid == (lo + hi) / 2);
    uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
    ck_assert_msg(f32_to_f16(mid) == even, "tie above %04x", h);
    ck_assert_msg(f32_to_f16(-mid) == (0x8000 | even), "negative tie above %04x", h);
    ck_assert_uint_eq(f32_to_f16(nextafterf(mid, 0)), h);
    ck_assert_uint_eq(f32_to_f16(nextafterf(mid, INFINITY)), h + 1);
  }
  // Overflow: 65520 is the tie between 65504 (odd mantissa) and 2^16 -> inf.
  ck_assert_uint_eq(f32_to_f16(65504.0f), 0x7bff);
  ck_assert_uint_eq(f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff);
  ck_assert_uint_eq(f32_to_f16(65520.0f), 0x7c00);
  ck_assert_uint_eq(f32_to_f16(1e10f), 0x7c00);
  ck_assert_uint_eq(f32_to_f16(-1e10f), 0xfc00);
  ck_assert_uint_eq(f32_to_f16(INFINITY), 0x7c00);
  ck_assert_uint_eq(f32_to_f16(-INFINITY), 0xfc00);
  // Underflow: half of the smallest subnormal (2^-25) ties to zero; anything
  // above it rounds up to the smallest subnormal.
  ck_assert_uint_eq(f32_to_f16(ldexpf(1, -25)), 0x0000);
  ck_assert_uint_eq(f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
  ck_assert_uint_eq(f32_to_f16(ldexpf(3, -26)), 0x0001);
  ck_assert_uint_eq(f32_to_f16(ldexpf(1, -26)), 0x0000);
  ck_assert_uint_eq(f32_to_f16(-ldexpf(1, -30)), 0x8000);
  ck_assert_uint_eq(f32_to_f16(bitsf(1)), 0x0000);  // f32 subnormal
  ck_assert_uint_eq(f32_to_f16(-0.0f), 0x8000);
  // The largest subnormal rounds up into the smallest normal.
  ck_assert_uint_eq(f32_to_f16(nextafterf((float)f16_value(0x0400), 0)), 0x0400);
  ck_assert_uint_eq(f32_to_f16(1.0f), 0x3c00);
  ck_assert_uint_eq(f32_to_f16(-2.5f), 0xc100);
  ck_assert_uint_eq(f32_to_f16(0.1f), 0x2e66);
}
END_TEST

START_TEST(test_f16_nan_and_random) {
  // Quiet NaNs keep their quiet bit and top payload; a NaN whose payload
  // lies only in the dropped bits stays a NaN.
  ck_assert_uint_eq(f32_to_f16(bitsf(0x7fc00000)), 0x7e00);
  ck_assert_uint_eq(f32_to_f16(bitsf(0xffc00000)), 0xfe00);
  ck_assert_uint_eq(f32_to_f16(bitsf(0x7fd56000)), 0x7eab);
  ck_assert_uint_eq(f32_to_f16(bitsf(0x7f800001)), 0x7e00);
  ck_assert(isnan(f16_to_f32(f32_to_f16(NAN))));

  // Random f32s against a nearest-value search done in double.
  uint32_t s = 0x12345678;
  for (int i = 0; i < 300000; i++) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    // Bias the exponent into and around the f16 range.
    uint32_t bits = (s & 0x807fffff) | ((uint32_t)(96 + (s >> 23) % 48) << 23);
    float f = bitsf(bits);
    double a = fabs((double)f);
    uint16_t want;
    if (a >= 65520.0) {
      want = 0x7c00;
    } else {
      uint32_t lo = 0, hi = 0x7c00;  // largest pattern with value <= a
      while (hi - lo > 1) {
        uint32_t m = (lo + hi) / 2;
        if (f16_value((uint16_t)m) <= a) lo = m;
        else hi = m;
      }
      double dlo = a - f16_value((uint16_t)lo), dhi = f16_value((uint16_t)(lo + 1)) - a;
      want = (uint16_t)(dlo < dhi ? lo : dhi < dlo ? lo + 1 : (lo & 1) ? lo + 1 : lo);
    }
    if (bits >> 31) want |= 0x8000;
    ck_assert_msg(f32_to_f16(f) == want, "f=%a got %04x want %04x", (double)f, f32_to_f16(f), want);
  }
}
END_TEST

// ---------------------------------------------------------------- bf16

START_TEST(test_bf16) {
  for (uint32_t h = 0; h < 65536; h++) {
    float f = bf16_to_f32((uint16_t)h);
    ck_assert_uint_eq(fbits(f), h << 16);
    ck_assert_msg(f32_to_bf16(f) == h, "h=%04x", h);
    if ((h & 0x7f80) == 0x7f80 || h == 0x7f7f || h == 0xff7f) continue;
    // Ties between h and h+1 go to even; just off the tie goes to the nearer.
    uint32_t mid = (h << 16) | 0x8000;
    uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
    ck_assert_uint_eq(f32_to_bf16(bitsf(mid)), even);
    ck_assert_uint_eq(f32_to_bf16(bitsf(mid - 1)), h);
    ck_assert_uint_eq(f32_to_bf16(bitsf(mid + 1)), h + 1);
  }
  // Overflow to infinity at the tie above the largest finite value (odd).
  ck_assert_uint_eq(f32_to_bf16(bitsf(0x7f7f8000)), 0x7f80);
  ck_assert_uint_eq(f32_to_bf16(bitsf(0x7f7f7fff)), 0x7f7f);
  ck_assert_uint_eq(f32_to_bf16(bitsf(0xff7f8000)), 0xff80);
  ck_assert_uint_eq(f32_to_bf16(bitsf(0x7f7fffff)), 0x7f80);
  // NaNs stay NaNs; quiet ones keep their payload's top bits.
  ck_assert_uint_eq(f32_to_bf16(bitsf(0x7fc00001)), 0x7fc0);
  ck_assert_uint_eq(f32_to_bf16(bitsf(0x7f800001)), 0x7fc0);
  ck_assert_uint_eq(f32_to_bf16(bitsf(0xffffffff)), 0xffff);
  ck_assert_uint_eq(f32_to_bf16(1.0f), 0x3f80);
  ck_assert_uint_eq(f32_to_bf16(bitsf(0x00008000)), 0x0000);  // subnormal tie -> even 0
  ck_assert_uint_eq(f32_to_bf16(bitsf(0x00018000)), 0x0002);  // subnormal tie -> even 2
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("util");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_arena_basic);
  tcase_add_test(tc, test_arena_strings_and_failure);
  tcase_add_test(tc, test_strbuf_vec);
  tcase_add_test(tc, test_read_file);
  tcase_add_test(tc, test_dtype);
  tcase_add_test(tc, test_diag_render);
  tcase_add_test(tc, test_diag_gutter_tabs_control);
  tcase_add_test(tc, test_diag_plain_and_limit);
  tcase_add_test(tc, test_f16_roundtrip_exhaustive);
  tcase_add_test(tc, test_f16_rounding_ties);
  tcase_add_test(tc, test_f16_nan_and_random);
  tcase_add_test(tc, test_bf16);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tj_test_run(suite()); }
