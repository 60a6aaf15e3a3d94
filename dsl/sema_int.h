/* sema_int.h: what the sema_*.c files share (not part of the public front end).
 *
 * sema.c          entry point, kernel params, -D values, tunables, scopes,
 *                 statements and structured control flow (for / if)
 * sema_expr.c     evaluation results (SVal), type promotion, implicit
 *                 conversions (the one place they live), operators, folding
 * sema_builtins.c builtin calls and inlining of fn helpers
 *
 * Every expression evaluates to an SVal: either a compile-time constant,
 * folded here and materialised as a TIR_CONST only where it meets a runtime
 * value (with the dtype promotion decides), or a tile IR value. POISON marks
 * an expression whose error was already reported; anything computed from it
 * is POISON too, silently, so one mistake gives one message.
 */
#ifndef TJ_SEMA_INT_H
#define TJ_SEMA_INT_H

#include "tir.h"

typedef enum SvKind {
  SV_POISON,  // an error was reported; suppress dependent errors
  SV_VOID,    // no value (store(...), an fn without return)
  SV_INT,     // i, dt (an int dtype)
  SV_FLOAT,   // f, dt (a float dtype)
  SV_BOOL,    // i (0/1)
  SV_DTYPE,   // dt is the value
  SV_STRING,  // s
  SV_LIST,    // list/nlist: a shape literal [a, b]
  SV_VALUE,   // v: a tile IR value (rank 0 = scalar)
} SvKind;

typedef struct SVal SVal;
struct SVal {
  SvKind kind;
  bool weak;      // a literal (or folded from literals only): adopts the other operand's type
  Dtype dt;
  int64_t i;
  double f;
  const char *s;
  TirValue *v;
  SVal *list;
  int nlist;
};

typedef enum BindKind { BIND_LET, BIND_VAR, BIND_PARAM, BIND_CONST, BIND_LOOP, BIND_FNPARAM } BindKind;

// A binding in a scope frame.
typedef struct Binding Binding;
struct Binding {
  const char *name;
  SVal val;
  BindKind kind;   // only BIND_VAR is assignable
  bool typed;      // vtype holds the var's fixed type (vars of numeric kinds)
  TirType vtype;   // the type every assignment must keep
  Loc loc;         // declaration
  Binding *next;
};

typedef struct Frame Frame;
struct Frame {
  Binding *binds;
  Frame *parent;
};

typedef struct Sema {
  Arena *a;
  Diag *d;
  const Module *m;
  const SemaOptions *opt;
  TirFunc *f;
  TirBlock *blk;         // insertion block
  Frame *scope;
  Frame *globals;        // predeclared names only (fns see nothing else)
  Frame *kernel_frame;   // the kernel's top-level scope (tunables live here)
  const Func *kernel;
  int depth;             // fn inlining depth
  bool depth_failed;     // recursion reported: every further fn call is poison
  int eval_depth;        // eval() recursion, through inlined fns too (bounds the C stack)
  bool eval_depth_failed; // reported once; every deeper eval is poison
  bool big_tile_reported; // a "too large" tile in the current statement (one per statement)
  bool in_fn;            // lowering an fn body (return is legal at its end)
  bool *define_used;     // per opt->defines entry
  PtrVec consts;         // TirConstDef*
  PtrVec tunables;       // TirTunable*
  int tunable_warps;     // value of `tunable num_warps`, 0 if none
  int tunable_stages;    // value of `tunable num_stages`, 0 if none
  int tunable_minsm;     // value of `tunable min_programs_per_sm`, 0 if none
} Sema;

#define SEMA_MAX_DEPTH 32
// Expression nesting that eval() follows, summed over inlined fn bodies. The
// parser bounds one expression; this bounds 32 inlinings of such bodies so
// that hostile input cannot overflow the C stack (ASan frames included).
#define SEMA_MAX_EVAL_DEPTH 2000
#define SEMA_MAX_NUMEL (1 << 20)

// -v wrapping like the IR's integers: INT64_MIN negates to itself, with no
// signed overflow in the compiler (folding constants must not be UB).
static inline int64_t sema_neg(int64_t v) { return (int64_t)(0 - (uint64_t)v); }

// sema_expr.c
SVal sv_poison(void);
SVal sv_void(void);
SVal sv_int(int64_t v, Dtype dt, bool weak);
SVal sv_float(double v, Dtype dt, bool weak);
SVal sv_bool(bool b);
SVal sv_value(TirValue *v);
bool sv_is_num_const(SVal v);  // INT, FLOAT or BOOL
// The dtype an operand contributes to promotion (constants: their dt).
Dtype sv_dtype(SVal v);
TirType sv_type(SVal v);       // scalar type for constants
// "[128, 64] f16", "i32" (constants), "dtype", "string"... for messages
const char *sv_desc(Sema *s, SVal v);
const char *shape_str(Sema *s, TirType t);  // "[128, 64]" ("[]" for scalars)
const char *type_str(Sema *s, TirType t);   // "[128, 64] f16"

// Result dtype of combining two operands; DT_VOID when bool meets a non-bool.
Dtype promote(Dtype a, bool aweak, Dtype b, bool bweak, bool *weak);
// Numpy broadcast of two shapes; false when they are incompatible.
bool broadcast_shapes(TirType a, TirType b, TirType *out);
// Converts a constant to dtype dt (wrapping ints, saturating float->int).
SVal const_convert(SVal c, Dtype dt);
// Materialises v with exactly dtype dt and shape/rank of `shape` (ptr kept
// for pointer values): constants become CONST, values get CAST, SPLAT,
// EXPAND_DIMS (at the front) and BROADCAST. The caller has checked that the
// shape broadcasts; dt is ignored for pointers.
TirValue *coerce(Sema *s, SVal v, Dtype dt, TirType shape, Loc loc);
// Materialises a constant with its own type (weak ints: i32 or i64).
TirValue *materialize(Sema *s, SVal v, Loc loc);
// Joins n numeric operands: common dtype by promotion, common shape by
// broadcasting, then coerces each into out[]. Reports mismatches at loc
// naming `what` ("operator '+'", "where"). Returns false after an error.
bool unify(Sema *s, SVal *ops, int n, Loc loc, const char *what, TirValue **out, Dtype *dt);

SVal eval(Sema *s, const Node *n);
// Binary operator on evaluated operands (used by compound assignment too).
SVal binary_op(Sema *s, int op, SVal l, SVal r, Loc loc);
Loc expr_span(const Node *n);   // the whole source extent of an expression
TirValue *emit1(Sema *s, TirOp op, TirType rt, TirValue **args, int nargs, Loc loc);
bool is_pow2(int64_t v);

// sema_builtins.c
SVal eval_call(Sema *s, const Node *n);
bool builtin_exists(const char *name);

// sema.c
Binding *scope_lookup(Sema *s, const char *name);
const Func *module_find(const Module *m, const char *name);
void scope_push(Sema *s);
void scope_pop(Sema *s);
Binding *scope_bind(Sema *s, const char *name, SVal v, BindKind kind, Loc loc);
// Lowers the statements of a block in the current scope; the last statement
// of an fn body may be a return, whose value is stored in *ret.
void lower_stmts(Sema *s, const Node *first, SVal *ret);
void lower_stmt(Sema *s, const Node *n);

#endif
