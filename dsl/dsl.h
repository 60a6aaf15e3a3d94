/* dsl.h: internal exports of the front end and the shared utilities.
 *
 * Data path: source text -> lex (tokens) -> parse (AST) -> sema (typed tile IR,
 * see tir.h). Everything a compilation allocates comes from one Arena and is
 * freed with arena_free(). Nothing here aborts or exits on user input: errors
 * are appended to a Diag and the caller turns them into a tj_status.
 */
#ifndef TJ_DSL_H
#define TJ_DSL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tilejit/tilejit.h"

//
// util.c
//

// Every heap block of the library comes from these, which call the hook set
// with tj_set_allocator (tj_free is public: it frees what the API hands out).
// A size of 0 allocates 1 byte; tj_calloc returns NULL on overflow.
void *tj_malloc(size_t n);
void *tj_calloc(size_t count, size_t size);
void *tj_realloc(void *p, size_t n);
char *tj_strdup(const char *s);
char *tj_strndup(const char *s, size_t n);

// Arena: bump allocator in chained chunks. Allocation failure is sticky:
// arena_alloc returns NULL and sets a->failed; callers check once at a pass
// boundary rather than after every node.
typedef struct ArenaChunk ArenaChunk;
typedef struct Arena {
  ArenaChunk *head;
  size_t total;
  bool failed;
} Arena;

void arena_init(Arena *a);
void arena_free(Arena *a);                  // frees everything; arena reusable
void *arena_alloc(Arena *a, size_t n);      // zeroed, 16-byte aligned
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// Growable heap string (not arena: it outlives compilations, e.g. tir text).
typedef struct StrBuf {
  char *data;
  size_t len, cap;
  bool failed;  // sticky out-of-memory
} StrBuf;

void sb_init(StrBuf *sb);
void sb_free(StrBuf *sb);
void sb_putc(StrBuf *sb, char c);
void sb_puts(StrBuf *sb, const char *s);
void sb_putn(StrBuf *sb, const char *s, size_t n);
void sb_printf(StrBuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap);
char *sb_steal(StrBuf *sb);  // returns tj_malloc'd NUL-terminated text ("" if empty)

// Growable array of pointers in an arena (AST/IR lists built while parsing).
typedef struct PtrVec {
  void **data;
  int len, cap;
} PtrVec;
void vec_push(Arena *a, PtrVec *v, void *p);

// Read a whole file into tj_malloc'd memory. Returns TJ_ERR_IO on failure and
// writes a message (with strerror) into err.
tj_status util_read_file(const char *path, char **data, size_t *len, StrBuf *err);

// IEEE half / bfloat16 conversions with round-to-nearest-even, shared by the
// interpreter, constant folding and tests so they all round the same way.
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float bf16_to_f32(uint16_t h);

//
// dtype.c
//

// Element types. TJ_* public enum values (tilejit.h) are the same numbers.
typedef enum Dtype {
  DT_VOID = 0,  // no value (store, yield)
  DT_BOOL,
  DT_I8, DT_I16, DT_I32, DT_I64,
  DT_U8, DT_U16, DT_U32, DT_U64,
  DT_F16, DT_BF16, DT_F32, DT_F64,
  DT_COUNT
} Dtype;

const char *dtype_name(Dtype d);            // "f16"
bool dtype_from_name(const char *s, size_t n, Dtype *out);
int dtype_bits(Dtype d);                    // bool: 8 in memory, 1 as a value
int dtype_bytes(Dtype d);                   // storage size
bool dtype_is_float(Dtype d);
bool dtype_is_int(Dtype d);                 // signed or unsigned, not bool
bool dtype_is_signed(Dtype d);              // signed integer (false for floats)

//
// diag.c
//

// A source span. file/src point at the compilation's source (arena owned).
typedef struct Loc {
  const char *file;
  const char *src;     // whole source text, for printing the line
  int line, col, len;  // 1-based line and column; len >= 1
  int offset;          // byte offset of the span start
} Loc;

typedef enum DiagLevel { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE } DiagLevel;

// Collects rendered diagnostics. Rendering:
//   softmax.tj:12:17: error: tile shapes differ: [128] vs [128, 1]
//      12 |   let y = x + w;
//         |           ^~~~~
typedef struct Diag {
  StrBuf text;
  int nerrors, nwarnings;
  int max_errors;  // stop recording after this many (default 20)
} Diag;

void diag_init(Diag *d);
void diag_free(Diag *d);
void diag_at(Diag *d, DiagLevel lv, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_vat(Diag *d, DiagLevel lv, Loc loc, const char *fmt, va_list ap);
// An error not tied to a source span ("tilejit: error: ...").
void diag_plain(Diag *d, DiagLevel lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

//
// lex.c
//

typedef enum TokKind {
  TK_EOF,
  TK_IDENT,
  TK_INT,     // ival
  TK_FLOAT,   // fval
  TK_STRING,  // str (unescaped, arena)
  TK_PUNCT,   // punctuator or operator; text in loc span, id in punct
  TK_KEYWORD, // kw
} TokKind;

// Keywords. `None` is the new-axis marker in subscripts (x[:, None]).
#define TJ_KEYWORDS(X) \
  X(KERNEL, "kernel") X(FN, "fn") X(CONST, "const") X(LET, "let") X(VAR, "var") \
  X(FOR, "for") X(IN, "in") X(IF, "if") X(ELSE, "else") X(RETURN, "return") \
  X(TUNABLE, "tunable") X(STATIC_ASSERT, "static_assert") X(TRUE, "true") \
  X(FALSE, "false") X(NONE, "None") X(BREAK_UNUSED, "__reserved")

typedef enum Keyword {
#define X(id, s) KW_##id,
  TJ_KEYWORDS(X)
#undef X
  KW_COUNT
} Keyword;

// Punctuators, longest first in the lexer.
typedef enum Punct {
  P_LPAREN, P_RPAREN, P_LBRACE, P_RBRACE, P_LBRACK, P_RBRACK,
  P_COMMA, P_SEMI, P_COLON, P_DOT, P_ARROW,                 // ( ) { } [ ] , ; : . ->
  P_PLUS, P_MINUS, P_STAR, P_SLASH, P_PERCENT,              // + - * / %
  P_AMP, P_PIPE, P_CARET, P_TILDE, P_BANG, P_SHL, P_SHR,    // & | ^ ~ ! << >>
  P_LT, P_LE, P_GT, P_GE, P_EQEQ, P_NE, P_ANDAND, P_OROR,   // < <= > >= == != && ||
  P_ASSIGN, P_PLUSEQ, P_MINUSEQ, P_STAREQ, P_SLASHEQ,       // = += -= *= /=
  P_QUESTION,                                               // ? (reserved)
  P_COUNT
} Punct;

typedef struct Token Token;
struct Token {
  TokKind kind;
  Loc loc;
  Token *next;
  int punct;        // Punct, for TK_PUNCT
  int kw;           // Keyword, for TK_KEYWORD
  int64_t ival;     // TK_INT (fits in int64; larger is an error)
  double fval;      // TK_FLOAT
  const char *str;  // TK_IDENT name (NUL-terminated copy), TK_STRING value
};

// Tokenizes src (len bytes, need not be NUL-terminated). Comments: // and
// /* */. Errors (bad character, unterminated comment or string, bad number)
// go to d; lexing continues past them. Always returns a list ending in TK_EOF
// unless the arena ran out of memory (then NULL).
Token *lex_tokenize(Arena *a, Diag *d, const char *file, const char *src, size_t len);
const char *lex_punct_str(int punct);
const char *lex_keyword_str(int kw);

//
// parse.c: the AST
//

typedef enum NodeKind {
  // expressions
  ND_INT,       // ival
  ND_FLOAT,     // fval
  ND_BOOL,      // ival 0/1
  ND_STRING,    // str (only as static_assert message)
  ND_NAME,      // name
  ND_UNARY,     // op (Punct: P_MINUS, P_BANG, P_TILDE, P_PLUS), lhs
  ND_BINARY,    // op (Punct), lhs, rhs; && and || too
  ND_CALL,      // name (callee), args (linked by next; an arg may have argname)
  ND_INDEX,     // lhs[args]: each arg is ND_SLICE (":") or ND_NONE ("None")
  ND_SLICE,     // ":" in a subscript
  ND_NONE,      // "None" in a subscript
  ND_LIST,      // [a, b, ...] (shapes) or {a, b, ...} (tunable sets); args
  ND_PTRTYPE,   // "*T" in a type position; lhs is the element type name
  // statements
  ND_LET,       // let name = lhs;        (immutable binding)
  ND_VAR,       // var name = lhs;        (reassignable; loop-carried if assigned in a loop)
  ND_ASSIGN,    // name = rhs;  op = P_ASSIGN or P_PLUSEQ... for compound
  ND_EXPR_STMT, // lhs;
  ND_BLOCK,     // { body } (body linked by next)
  ND_FOR,       // for name in range(args) body   (args: 1-3 exprs: [lo,] hi [, step])
  ND_IF,        // if cond then [else els]  (els is ND_BLOCK or ND_IF)
  ND_STATIC_ASSERT, // static_assert(lhs [, rhs = ND_STRING]);
  ND_TUNABLE,   // tunable name in rhs (ND_LIST);
  ND_RETURN,    // return [lhs];  (only as the last statement of an fn)
  ND_COUNT
} NodeKind;

typedef struct Node Node;
struct Node {
  NodeKind kind;
  Loc loc;           // representative span (operator for binary, name for calls)
  Node *next;        // sibling in statement / argument / element lists
  const char *name;  // ND_NAME, ND_CALL callee, ND_LET/VAR/ASSIGN/FOR/TUNABLE target
  const char *argname; // set on a call argument written name=expr
  Loc nameloc;       // span of `name` for LET/VAR/ASSIGN/FOR/TUNABLE
  int op;            // Punct of ND_UNARY / ND_BINARY / ND_ASSIGN
  int64_t ival;
  double fval;
  const char *str;
  Node *lhs, *rhs;
  Node *cond, *then, *els;
  Node *body;        // ND_BLOCK statements, ND_FOR body (an ND_BLOCK)
  Node *args;        // ND_CALL / ND_INDEX / ND_LIST / ND_FOR range args
  int nargs;
};

typedef enum ParamKind {
  PARAM_PTR,    // name: *f16   or  name: *T  (T a dtype constant)
  PARAM_SCALAR, // name: i32 / f32 / bool / T
  PARAM_CONST,  // const name: i32 | i64 | f32 | bool | dtype  (given with -D)
} ParamKind;

typedef struct Param Param;
struct Param {
  ParamKind kind;
  const char *name;
  Loc loc;          // span of the name
  const char *type; // type name as written: "f16", "T", "dtype", "i32"...
  Loc typeloc;
  Node *defval;     // const NAME: i32 = 128  (optional default for a constant)
  Param *next;
};

typedef struct Func Func;   // a kernel or an inlinable `fn` helper
struct Func {
  bool is_kernel;
  const char *name;
  Loc loc;
  Param *params;    // fn helpers: kind PARAM_SCALAR with type NULL (generic)
  int nparams;
  Node *body;       // ND_BLOCK
  Func *next;
};

typedef struct Module {
  Func *funcs;      // kernels and fns in source order
  const char *file;
  const char *src;
} Module;

// Parses a token list. Syntax errors go to d; the parser resynchronises at
// ';' or '}' and keeps going. Returns a module even when there were errors
// (check d->nerrors); NULL only on out-of-memory.
Module *parse_module(Arena *a, Diag *d, Token *toks);
// Debug: S-expression dump of the AST (tests, TILEJIT_DUMP=ast).
void parse_dump(StrBuf *sb, const Module *m);
// Debug: S-expression of one expression or statement, e.g. "(+ a (* b 2))".
void parse_dump_node(StrBuf *sb, const Node *n);

//
// sema.c: type and shape checking, constant evaluation, lowering to tile IR
//

struct TirFunc;

// A compile-time constant given from outside (-D NAME=VALUE or the API).
typedef struct Define {
  const char *name;
  const char *value;  // text as on the command line: "128", "f16", "true", "1e-5"
} Define;

typedef struct SemaOptions {
  const char *kernel;    // which kernel; NULL = the only one (error if several)
  const Define *defines;
  int ndefines;
  int num_warps;         // 0 = from `tunable num_warps` or default 4
} SemaOptions;

// Checks the chosen kernel and lowers it to tile IR in arena a. Constants
// fold; `if` on a constant is resolved statically; fn helpers are inlined;
// tunables take the -D value (which must be in the set) or their first value.
// Returns NULL when there were errors (all reported to d).
struct TirFunc *sema_lower(Arena *a, Diag *d, const Module *m, const SemaOptions *opt);

#endif
