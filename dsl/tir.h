/* tir.h: the tile IR.
 *
 * An SSA IR with structured control flow. Every value has a dtype, a pointer
 * flag and a static shape (rank 0 = a scalar that is uniform over the
 * program). Loops and ifs are ops with nested blocks whose results are the
 * values yielded at their end, as in MLIR's scf dialect: there are no phis and
 * no gotos, so the interpreter and the LLVM lowering walk the same tree.
 *
 * Semantics that every backend must honour (the interpreter defines them):
 *  - Elementwise ops need operands of identical type and shape; sema inserts
 *    splat / expand_dims / broadcast / cast explicitly.
 *  - f16/bf16 arithmetic is computed in f32 and rounded (RNE) to the result
 *    type after every op. Transcendentals likewise.
 *  - Integer arithmetic wraps. Integer div/rem truncate toward zero; a zero
 *    divisor gives all-ones (-1) for div and the dividend for rem.
 *  - Shifts: an amount >= the bit width gives 0 for shl and lshr, and the sign
 *    fill for an arithmetic shr (signed types). Negative amounts count as huge.
 *  - float->int casts saturate; NaN becomes 0. int->float rounds to nearest.
 *  - max/min on floats are IEEE maxNum/minNum (a NaN operand is ignored).
 *  - Masked-off lanes of load/store touch no memory; load yields `other` there
 *    (zero when absent).
 *  - philox(seed, ctr, lane): Philox-4x32-10, key = (lo32(seed), hi32(seed)),
 *    counter = (lo32(ctr), hi32(ctr), 0, 0); the result is output word
 *    (lane & 3) as u32.
 */
#ifndef TJ_TIR_H
#define TJ_TIR_H

#include "dsl.h"

#define TIR_MAX_RANK 4

// Type rules, used by the verifier (and documented for the backends).
typedef enum TirRule {
  RULE_NONE,     // checked by hand in the verifier (custom op)
  RULE_UNARY,    // result type == arg type
  RULE_UNARY_F,  // as RULE_UNARY, float only
  RULE_BINARY,   // args equal type, result the same
  RULE_BINARY_I, // as RULE_BINARY, integer or bool only
  RULE_CMP,      // args equal type, result bool of that shape
  RULE_TERNARY,  // fma: three equal float types
} TirRule;

// The op table: X(ENUM, "printed name", nargs (-1 variadic), rule).
// Adding an op means a row here plus a case in the printer, verifier,
// interpreter and LLVM lowering (each switch has no default on purpose).
#define TIR_OPS(X)                                                        \
  X(CONST, "const", 0, RULE_NONE)          /* cval; scalar or splat tile */ \
  X(PROGRAM_ID, "program_id", 0, RULE_NONE)   /* axis -> i32 scalar */    \
  X(NUM_PROGRAMS, "num_programs", 0, RULE_NONE)                           \
  X(ARANGE, "arange", 0, RULE_NONE)        /* lo, hi -> [hi-lo] i32 */     \
  X(SPLAT, "splat", 1, RULE_NONE)          /* scalar -> tile */            \
  X(BROADCAST, "broadcast", 1, RULE_NONE)  /* same rank, dims 1 -> n */    \
  X(EXPAND_DIMS, "expand_dims", 1, RULE_NONE) /* insert a 1 at axis */     \
  X(RESHAPE, "reshape", 1, RULE_NONE)      /* same numel, row-major */     \
  X(TRANS, "trans", 1, RULE_NONE)          /* 2-D transpose */             \
  X(NEG, "neg", 1, RULE_UNARY)                                            \
  X(NOT, "not", 1, RULE_UNARY)             /* bitwise; logical on bool */  \
  X(ABS, "abs", 1, RULE_UNARY)                                            \
  X(EXP, "exp", 1, RULE_UNARY_F)                                          \
  X(EXP2, "exp2", 1, RULE_UNARY_F)                                        \
  X(LOG, "log", 1, RULE_UNARY_F)                                          \
  X(LOG2, "log2", 1, RULE_UNARY_F)                                        \
  X(SQRT, "sqrt", 1, RULE_UNARY_F)                                        \
  X(RSQRT, "rsqrt", 1, RULE_UNARY_F)                                      \
  X(ERF, "erf", 1, RULE_UNARY_F)                                          \
  X(TANH, "tanh", 1, RULE_UNARY_F)                                        \
  X(FLOOR, "floor", 1, RULE_UNARY_F)                                      \
  X(CEIL, "ceil", 1, RULE_UNARY_F)                                        \
  X(ADD, "add", 2, RULE_BINARY)                                           \
  X(SUB, "sub", 2, RULE_BINARY)                                           \
  X(MUL, "mul", 2, RULE_BINARY)                                           \
  X(DIV, "div", 2, RULE_BINARY)                                           \
  X(REM, "rem", 2, RULE_BINARY)                                           \
  X(MAX, "max", 2, RULE_BINARY)                                           \
  X(MIN, "min", 2, RULE_BINARY)                                           \
  X(AND, "and", 2, RULE_BINARY_I)                                         \
  X(OR, "or", 2, RULE_BINARY_I)                                           \
  X(XOR, "xor", 2, RULE_BINARY_I)                                         \
  X(SHL, "shl", 2, RULE_BINARY_I)                                         \
  X(SHR, "shr", 2, RULE_BINARY_I)    /* arithmetic if signed */           \
  X(CMP, "cmp", 2, RULE_CMP)         /* pred */                           \
  X(PTR_ADD, "ptr_add", 2, RULE_NONE) /* ptr tile + int tile (elements) */ \
  X(FMA, "fma", 3, RULE_TERNARY)                                          \
  X(WHERE, "where", 3, RULE_NONE)    /* bool cond, a, b of equal type */   \
  X(CAST, "cast", 1, RULE_NONE)      /* value conversion to result dtype */ \
  X(BITCAST, "bitcast", 1, RULE_NONE) /* same bit width */                 \
  X(LOAD, "load", -1, RULE_NONE)     /* ptr [, mask [, other]]; flags */   \
  X(STORE, "store", -1, RULE_NONE)   /* ptr, value [, mask]; no result */  \
  X(REDUCE, "reduce", 1, RULE_NONE)  /* redop, axis; drops the axis */     \
  X(DOT, "dot", 3, RULE_NONE)        /* a[M,K] b[K,N] acc[M,N] -> [M,N] */ \
  X(PHILOX, "philox", 3, RULE_NONE)  /* seed, ctr, lane -> u32 */          \
  X(FOR, "for", -1, RULE_NONE)       /* lo, hi, step, inits... */          \
  X(IF, "if", -1, RULE_NONE)         /* cond; then/else yield results */   \
  X(YIELD, "yield", -1, RULE_NONE)   /* terminator of for/if blocks */

typedef enum TirOp {
#define X(id, name, nargs, rule) TIR_##id,
  TIR_OPS(X)
#undef X
  TIR_OP_COUNT
} TirOp;

extern const char *const tir_op_names[TIR_OP_COUNT];
extern const signed char tir_op_nargs[TIR_OP_COUNT];
extern const unsigned char tir_op_rules[TIR_OP_COUNT];

typedef enum TirCmp { CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_EQ, CMP_NE, CMP_COUNT } TirCmp;
typedef enum TirRedop { RED_SUM, RED_MAX, RED_MIN, RED_ARGMAX, RED_ARGMIN, RED_COUNT } TirRedop;
extern const char *const tir_cmp_names[CMP_COUNT];     // "lt" ...
extern const char *const tir_redop_names[RED_COUNT];   // "sum" ...

// LOAD / STORE flags
enum { TIR_HAS_MASK = 1u << 0, TIR_HAS_OTHER = 1u << 1 };

typedef struct TirType {
  Dtype dtype;   // element type (pointee when ptr)
  bool ptr;      // tile of pointers to dtype
  int rank;      // 0..TIR_MAX_RANK
  int shape[TIR_MAX_RANK];
} TirType;

typedef struct TirValue TirValue;
typedef struct TirInst TirInst;
typedef struct TirBlock TirBlock;

struct TirValue {
  int id;            // dense, 0..func->nvalues-1
  TirType type;
  TirInst *def;      // defining inst, or NULL for block args and params
  int idx;           // result index in def, or arg index in block
  TirBlock *block;   // block of which this is an arg (params: the body)
  const char *name;  // source name hint (printer comments), may be NULL
};

struct TirInst {
  TirOp op;
  int nargs, nres;
  TirValue **args;
  TirValue **res;
  TirBlock *blocks[2];  // FOR: body; IF: then, else
  int nblocks;
  union { int64_t i; double f; } cval;  // CONST: i for ints/bool, f for floats
  int axis;     // PROGRAM_ID, NUM_PROGRAMS, EXPAND_DIMS, REDUCE
  int lo, hi;   // ARANGE
  int pred;     // CMP: TirCmp
  int redop;    // REDUCE: TirRedop (argmax/argmin give i32)
  unsigned flags;
  Loc loc;
  TirInst *next, *prev;
  TirBlock *parent;
};

struct TirBlock {
  TirValue **args;   // FOR body: induction variable (i32/i64), then carried values
  int nargs;
  TirInst *first, *last;
  TirInst *owner;    // enclosing FOR/IF, NULL for the function body
};

// Specialisation facts about a runtime argument, part of the cache key.
enum { TIR_SPEC_ALIGN16 = 1u << 0, TIR_SPEC_DIV16 = 1u << 1, TIR_SPEC_ONE = 1u << 2 };

typedef struct TirParam {
  const char *name;
  bool ptr;          // pointer to dtype; else scalar of dtype
  Dtype dtype;
  unsigned spec;     // TIR_SPEC_* (set by the caller before codegen)
  TirValue *value;   // body block argument
  Loc loc;
} TirParam;

typedef struct TirConstDef {  // a resolved compile-time constant
  const char *name;
  const char *text;  // canonical text: "128", "f16", "true", "1e-05"
} TirConstDef;

typedef struct TirTunable {
  const char *name;
  int64_t *values;
  int nvalues;
} TirTunable;

typedef struct TirFunc {
  const char *name;
  const char *file;
  TirParam *params;
  int nparams;
  TirBlock *body;
  int nvalues;
  int num_warps;
  int num_stages;       // cp.async stages for loads feeding dot in loops; 0: default (3), 1: none
  int min_programs_per_sm;  // ptxas keeps this many programs resident per SM (.minnctapersm); 0: no bound
  TirConstDef *consts;  // every constant of the kernel, in declaration order
  int nconsts;
  TirTunable *tunables;
  int ntunables;
  Arena *arena;
} TirFunc;

//
// tir.c: types, building, printing
//
TirType tir_type(Dtype dt, int rank, const int *shape);
TirType tir_scalar(Dtype dt);
TirType tir_with_dtype(TirType t, Dtype dt);  // same shape, other dtype, not ptr
bool tir_type_eq(TirType a, TirType b);
bool tir_shape_eq(TirType a, TirType b);
int64_t tir_numel(TirType t);
// "[128, 64] f16", "*f32", "[64] *f16", "i32"
void tir_type_str(StrBuf *sb, TirType t);

// Building conventions (the verifier enforces them):
//  - Params are the args of f->body, in order (tir_func_add_param).
//  - FOR: args lo, hi, step (same i32/i64 scalar type), then the initial
//    carried values; results = the carried values after the loop. blocks[0]
//    is the body: args iv (lo's type), then one per carried value; it ends in
//    a YIELD of the next carried values (may be omitted when none).
//  - IF: args cond (bool scalar); blocks[0] then, blocks[1] else (required
//    when there are results). Each ends in a YIELD of the results (optional
//    when none).
//  - LOAD/STORE: the caller sets flags to match the optional args; CMP pred,
//    REDUCE redop/axis, ARANGE lo/hi, *_DIMS/PROGRAM_ID axis likewise.
//  - Float CONSTs may hold an unrounded double (0.1 for f32); consumers round
//    to the element type.
// The builder checks nothing; on arena failure it returns NULL and the
// arena's failed flag is set.
TirFunc *tir_func_new(Arena *a, const char *name, const char *file);
TirValue *tir_func_add_param(TirFunc *f, const char *name, bool ptr, Dtype dt, Loc loc);
TirBlock *tir_block_new(TirFunc *f);
TirValue *tir_block_add_arg(TirFunc *f, TirBlock *b, TirType t, const char *name);
// Appends an inst with nargs args and nres results of the given types.
TirInst *tir_inst_new(TirFunc *f, TirBlock *b, TirOp op, TirValue **args, int nargs,
                      const TirType *rtypes, int nres, Loc loc);
// Single-result convenience: returns the result value (NULL for no result).
TirValue *tir_emit(TirFunc *f, TirBlock *b, TirOp op, TirType rt,
                   TirValue **args, int nargs, Loc loc);
TirValue *tir_const_int(TirFunc *f, TirBlock *b, TirType t, int64_t v, Loc loc);
TirValue *tir_const_float(TirFunc *f, TirBlock *b, TirType t, double v, Loc loc);
void tir_inst_remove(TirInst *in);
// Attaches a nested block to a FOR (body) or IF (then, then else) and sets
// b->owner. The block may be filled before or after attaching.
void tir_inst_add_block(TirInst *in, TirBlock *b);
// b holds an instruction of op, at any depth.
bool tir_block_has(const TirBlock *b, TirOp op);
// in sits in the body of a FOR, however deeply nested.
bool tir_in_loop(const TirInst *in);
// Rewrites every use of `from` inside b (recursively) to `to`.
void tir_replace_uses(TirBlock *b, TirValue *from, TirValue *to);
// Shortest round-trip text of a double, always recognisable as a float
// ("1.0", "1e-05", "inf", "-inf", "nan"); buf of at least 32 bytes.
void tir_format_double(char *buf, size_t n, double v);

// Stable text form, read by golden tests. Values are numbered %0, %1...
// in print order (not by id, so gaps left by DCE do not show); params print
// by name (%x); no source locations. Multi-result ops list each result:
//   %4, %5 = for %6 = %2 to %n step %3 iter(%7 = %0, %8 = %1) : ([64] f32, i32) {
// A result with a source name hint gets a trailing `// name` comment.
void tir_print(StrBuf *sb, const TirFunc *f);

//
// tir_verify.c
//
// Checks SSA dominance, types against the op table's rules and every custom
// rule. Problems are reported as "internal error: tir: ..." to d. Returns true
// when the function is well formed.
bool tir_verify(const TirFunc *f, Diag *d);
// As tir_verify, telling apart bad IR (TJ_ERR_INTERNAL) from running out of
// memory while checking (TJ_ERR_NO_MEMORY).
tj_status tir_verify_status(const TirFunc *f, Diag *d);

//
// tir_opt.c: cleanup passes run after sema (each keeps the IR verified)
//
// Element semantics shared by fold and the interpreter: dsl/tir_eval.h.
void tir_fold(TirFunc *f);  // constant folding of scalar arithmetic
void tir_dce(TirFunc *f);   // removes what feeds no store (unused loads too)
void tir_cse(TirFunc *f);   // merges identical pure insts (same or enclosing block)

#endif
