/* dtype.c: element type names, sizes and predicates.
 *
 * Requires: nothing. Produces: the Dtype tables; the public tj_dtype_name
 * lives here too because tj_dtype and Dtype share their numbering.
 */
#include <string.h>

#include "dsl.h"

_Static_assert((int)DT_COUNT == (int)TJ_DTYPE_COUNT, "Dtype and tj_dtype must agree");
_Static_assert((int)DT_F16 == (int)TJ_F16 && (int)DT_U64 == (int)TJ_U64,
               "Dtype and tj_dtype must agree");

static const struct {
  const char *name;
  int bits, bytes;
} dtypes[] = {
  [DT_VOID] = {"void", 0, 0},
  [DT_BOOL] = {"bool", 1, 1},
  [DT_I8] = {"i8", 8, 1},    [DT_I16] = {"i16", 16, 2},
  [DT_I32] = {"i32", 32, 4}, [DT_I64] = {"i64", 64, 8},
  [DT_U8] = {"u8", 8, 1},    [DT_U16] = {"u16", 16, 2},
  [DT_U32] = {"u32", 32, 4}, [DT_U64] = {"u64", 64, 8},
  [DT_F16] = {"f16", 16, 2}, [DT_BF16] = {"bf16", 16, 2},
  [DT_F32] = {"f32", 32, 4}, [DT_F64] = {"f64", 64, 8},
};
_Static_assert(sizeof dtypes / sizeof dtypes[0] == DT_COUNT, "dtype table length");

static bool valid(Dtype d) { return (int)d >= 0 && d < DT_COUNT; }

const char *dtype_name(Dtype d) { return valid(d) ? dtypes[d].name : "?"; }

TJ_API const char *tj_dtype_name(tj_dtype d) { return dtype_name((Dtype)d); }

// "void" is not a value type, so it is not accepted as a name.
bool dtype_from_name(const char *s, size_t n, Dtype *out) {
  for (int d = DT_BOOL; d < DT_COUNT; d++) {
    if (strlen(dtypes[d].name) == n && memcmp(dtypes[d].name, s, n) == 0) {
      *out = (Dtype)d;
      return true;
    }
  }
  return false;
}

int dtype_bits(Dtype d) { return valid(d) ? dtypes[d].bits : 0; }
int dtype_bytes(Dtype d) { return valid(d) ? dtypes[d].bytes : 0; }
bool dtype_is_float(Dtype d) { return d == DT_F16 || d == DT_BF16 || d == DT_F32 || d == DT_F64; }
bool dtype_is_int(Dtype d) { return d >= DT_I8 && d <= DT_U64; }
bool dtype_is_signed(Dtype d) { return d >= DT_I8 && d <= DT_I64; }
