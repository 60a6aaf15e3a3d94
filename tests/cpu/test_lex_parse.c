/* test_lex_parse.c: tokens and spans, precedence, every statement kind, the
 * golden diagnostics of the tests/dsl/parse files (expectations in the files'
 * comments: `// expect-error: LINE:COL: message`), one byte-exact rendered
 * diagnostic, nesting limits, and robustness on truncated and random input.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsl/dsl.h"
#include "testutil.h"

typedef struct Fe {
  Arena a;
  Diag d;
  Token *toks;
  Module *m;
} Fe;

static void fe_run(Fe *fe, const char *file, const char *src, size_t len) {
  arena_init(&fe->a);
  diag_init(&fe->d);
  fe->d.max_errors = 1000;
  fe->toks = lex_tokenize(&fe->a, &fe->d, file, src, len);
  ck_assert_ptr_nonnull(fe->toks);
  fe->m = parse_module(&fe->a, &fe->d, fe->toks);
  ck_assert_ptr_nonnull(fe->m);
}

static void fe_done(Fe *fe) {
  diag_free(&fe->d);
  arena_free(&fe->a);
}

static const char *diag_text(Fe *fe) { return fe->d.text.data ? fe->d.text.data : ""; }

// Dump of the whole module, malloc'd.
static char *dump_src(const char *src, int want_errors) {
  Fe fe;
  fe_run(&fe, "t.tj", src, strlen(src));
  ck_assert_msg(fe.d.nerrors == want_errors, "%s\n%s", src, diag_text(&fe));
  StrBuf sb;
  sb_init(&sb);
  parse_dump(&sb, fe.m);
  fe_done(&fe);
  return sb_steal(&sb);
}

// Dump of the expression e, parsed as `let r = e;` inside a kernel.
static char *dump_expr(const char *e) {
  char src[512];
  snprintf(src, sizeof src, "kernel k() { let r = %s; }", e);
  Fe fe;
  fe_run(&fe, "t.tj", src, strlen(src));
  ck_assert_msg(fe.d.nerrors == 0, "%s\n%s", e, diag_text(&fe));
  Node *let = fe.m->funcs->body->body;
  ck_assert_int_eq(let->kind, ND_LET);
  StrBuf sb;
  sb_init(&sb);
  parse_dump_node(&sb, let->lhs);
  fe_done(&fe);
  return sb_steal(&sb);
}

// ---------------------------------------------------------------- lexer

static Token *lex_str(Fe *fe, const char *s) {
  arena_init(&fe->a);
  diag_init(&fe->d);
  fe->toks = lex_tokenize(&fe->a, &fe->d, "l.tj", s, strlen(s));
  ck_assert_ptr_nonnull(fe->toks);
  return fe->toks;
}

static void check_tok(Token *t, TokKind kind, int line, int col, int len) {
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->kind, kind);
  ck_assert_int_eq(t->loc.line, line);
  ck_assert_int_eq(t->loc.col, col);
  ck_assert_int_eq(t->loc.len, len);
}

START_TEST(test_tokens_and_spans) {
  Fe fe;
  Token *t = lex_str(&fe, "let x = 0x1F + 1.5e+3 // c\n\t* .5 /* a\nb */ - 3. >= a<<b;\r\n\"s\\\"q\\n\\t\\\\\" 7");
  check_tok(t, TK_KEYWORD, 1, 1, 3);
  ck_assert_int_eq(t->kw, KW_LET);
  check_tok(t = t->next, TK_IDENT, 1, 5, 1);
  ck_assert_str_eq(t->str, "x");
  check_tok(t = t->next, TK_PUNCT, 1, 7, 1);
  ck_assert_int_eq(t->punct, P_ASSIGN);
  check_tok(t = t->next, TK_INT, 1, 9, 4);
  ck_assert_int_eq(t->ival, 31);
  check_tok(t = t->next, TK_PUNCT, 1, 14, 1);
  check_tok(t = t->next, TK_FLOAT, 1, 16, 6);
  ck_assert(t->fval == 1500.0);
  check_tok(t = t->next, TK_PUNCT, 2, 2, 1);  // a tab is one column
  ck_assert_int_eq(t->punct, P_STAR);
  check_tok(t = t->next, TK_FLOAT, 2, 4, 2);
  ck_assert(t->fval == 0.5);
  check_tok(t = t->next, TK_PUNCT, 3, 6, 1);  // after a multi-line comment
  ck_assert_int_eq(t->punct, P_MINUS);
  check_tok(t = t->next, TK_FLOAT, 3, 8, 2);
  ck_assert(t->fval == 3.0);
  check_tok(t = t->next, TK_PUNCT, 3, 11, 2);
  ck_assert_int_eq(t->punct, P_GE);
  check_tok(t = t->next, TK_IDENT, 3, 14, 1);
  check_tok(t = t->next, TK_PUNCT, 3, 15, 2);
  ck_assert_int_eq(t->punct, P_SHL);
  check_tok(t = t->next, TK_IDENT, 3, 17, 1);
  check_tok(t = t->next, TK_PUNCT, 3, 18, 1);
  check_tok(t = t->next, TK_STRING, 4, 1, 12);
  ck_assert_str_eq(t->str, "s\"q\n\t\\");
  check_tok(t = t->next, TK_INT, 4, 14, 1);
  check_tok(t = t->next, TK_EOF, 4, 15, 1);
  ck_assert_ptr_null(t->next);
  ck_assert_int_eq(fe.d.nerrors, 0);
  fe_done(&fe);
}
END_TEST

START_TEST(test_punct_keywords_numbers) {
  Fe fe;
  // Longest match: "<<=" is "<<" "=", "&&&" is "&&" "&", "!==" is "!=" "=".
  static const int want[] = {P_SHL, P_ASSIGN, P_ANDAND, P_AMP, P_NE, P_ASSIGN, P_ARROW, P_OROR,
                             P_PIPE, P_PLUSEQ, P_MINUSEQ, P_STAREQ, P_SLASHEQ, P_LE, P_GT,
                             P_DOT, P_QUESTION, P_PERCENT, P_CARET, P_TILDE, P_BANG, P_SHR};
  Token *t = lex_str(&fe, "<<= &&& !== -> ||| += -= *= /= <= > . ? % ^ ~ ! >>");
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++, t = t->next) {
    ck_assert_int_eq(t->kind, TK_PUNCT);
    ck_assert_msg(t->punct == want[i], "punct %zu: %s", i, lex_punct_str(t->punct));
  }
  ck_assert_int_eq(t->kind, TK_EOF);
  fe_done(&fe);

  for (int k = 0; k < KW_COUNT; k++) {
    t = lex_str(&fe, lex_keyword_str(k));
    ck_assert_int_eq(t->kind, TK_KEYWORD);
    ck_assert_int_eq(t->kw, k);
    fe_done(&fe);
  }
  t = lex_str(&fe, "none kernels _fn f16 inf");
  for (int i = 0; i < 5; i++, t = t->next) ck_assert_int_eq(t->kind, TK_IDENT);
  fe_done(&fe);

  t = lex_str(&fe, "9223372036854775807 0x7fffffffffffffff 0 00 1e-5 1E5 2.5e-3 0.0");
  ck_assert_int_eq(t->ival, INT64_MAX);
  ck_assert_int_eq((t = t->next)->ival, INT64_MAX);
  ck_assert_int_eq((t = t->next)->ival, 0);
  ck_assert_int_eq((t = t->next)->ival, 0);
  ck_assert((t = t->next)->kind == TK_FLOAT && t->fval == 1e-5);
  ck_assert((t = t->next)->kind == TK_FLOAT && t->fval == 1e5);
  ck_assert((t = t->next)->kind == TK_FLOAT && t->fval == 2.5e-3);
  ck_assert((t = t->next)->kind == TK_FLOAT && t->fval == 0.0);
  ck_assert_int_eq(fe.d.nerrors, 0);
  fe_done(&fe);

  t = lex_str(&fe, "9223372036854775808 1e 1e+ 0x 0xg 1e999");
  ck_assert_int_eq(fe.d.nerrors, 6);
  ck_assert_ptr_nonnull(strstr(fe.d.text.data, "l.tj:1:1: error: integer literal too large\n"));
  ck_assert_ptr_nonnull(strstr(fe.d.text.data, "l.tj:1:21: error: invalid number '1e'\n"));
  ck_assert_ptr_nonnull(strstr(fe.d.text.data, "l.tj:1:24: error: invalid number '1e+'\n"));
  ck_assert_ptr_nonnull(strstr(fe.d.text.data, "l.tj:1:28: error: invalid number '0x'\n"));
  ck_assert_ptr_nonnull(strstr(fe.d.text.data, "l.tj:1:31: error: invalid number '0xg'\n"));
  ck_assert_ptr_nonnull(strstr(fe.d.text.data, "l.tj:1:35: error: float literal too large\n"));
  // Bad numbers still become one token each, so the parser stays in step.
  int n = 0;
  for (t = fe.toks; t->kind != TK_EOF; t = t->next) n++;
  ck_assert_int_eq(n, 6);
  fe_done(&fe);
}
END_TEST

START_TEST(test_lex_errors_continue) {
  Fe fe;
  static const char src[] = "a $ b\x00 c \xff\xfe d \"open\ne /* x";
  arena_init(&fe.a);
  diag_init(&fe.d);
  Token *t = lex_tokenize(&fe.a, &fe.d, "l.tj", src, sizeof src - 1);
  ck_assert_ptr_nonnull(t);
  const char *want[] = {"a", "b", "c", "d", NULL, "e"};
  for (int i = 0; i < 6; i++, t = t->next) {
    if (want[i]) {
      ck_assert_int_eq(t->kind, TK_IDENT);
      ck_assert_str_eq(t->str, want[i]);
    } else {
      ck_assert_int_eq(t->kind, TK_STRING);
      ck_assert_str_eq(t->str, "open");
    }
  }
  ck_assert_int_eq(t->kind, TK_EOF);
  ck_assert_int_eq(fe.d.nerrors, 5);
  const char *txt = fe.d.text.data;
  ck_assert_ptr_nonnull(strstr(txt, "l.tj:1:3: error: unexpected character '$'\n"));
  ck_assert_ptr_nonnull(strstr(txt, "l.tj:1:6: error: unexpected byte 0x00\n"));
  // A run of non-ASCII bytes is one error spanning the run.
  ck_assert_ptr_nonnull(strstr(txt, "l.tj:1:10: error: unexpected byte 0xff\n"
                                    "    1 | a $ b? c \xff\xfe d \"open\n"
                                    "      |          ^~\n"));
  ck_assert_ptr_nonnull(strstr(txt, "l.tj:1:15: error: unterminated string\n"));
  ck_assert_ptr_nonnull(strstr(txt, "l.tj:2:3: error: unterminated comment\n"));
  fe_done(&fe);
}
END_TEST

// ---------------------------------------------------------------- parser

static void check_expr(const char *src, const char *want) {
  char *got = dump_expr(src);
  ck_assert_msg(strcmp(got, want) == 0, "%s: got %s, want %s", src, got, want);
  free(got);
}

START_TEST(test_precedence) {
  check_expr("a + b * c", "(+ a (* b c))");
  check_expr("a - b - c", "(- (- a b) c)");
  check_expr("a / b % c * d", "(* (% (/ a b) c) d)");
  check_expr("a << 1 + 2", "(<< a (+ 1 2))");
  check_expr("a & b | c ^ d", "(| (& a b) (^ c d))");
  // Rust precedence: bitwise binds tighter than comparison.
  check_expr("a < M & b", "(< a (& M b))");
  check_expr("(a < M) & (b < N)", "(& (< a M) (< b N))");
  check_expr("a < M && b < N || c", "(|| (&& (< a M) (< b N)) c)");
  check_expr("a == (b != c)", "(== a (!= b c))");
  // ...so the Triton habit `a < M & b < N` is a chained comparison.
  char *d = dump_src("kernel k() { let m = a < M & b < N; }", 1);
  free(d);
  check_expr("-a * -b", "(* (- a) (- b))");
  check_expr("!~+-x", "(! (~ (+ (- x))))");
  check_expr("-x[:, None]", "(- (index x : None))");
  check_expr("x[None, :][:]", "(index (index x None :) :)");
  check_expr("f(a, b = 1, c=g(2),)", "(call f a b=1 c=(call g 2))");
  check_expr("f()", "(call f)");
  check_expr("[1, 2.5, 3,]", "(list 1 2.5 3)");
  check_expr("[]", "(list)");
  check_expr("true && !false", "(&& true (! false))");
  check_expr("1.0 + .5 + 3. + 1e-5", "(+ (+ (+ 1.0 0.5) 3.0) 1e-05)");
  check_expr("\"s\\n\"", "\"s\\n\"");
  check_expr("load(p, mask=None)", "(call load p mask=None)");
  check_expr("((((a))))", "a");
  check_expr("a >> 2 >= b", "(>= (>> a 2) b)");
  check_expr("0x10 % -inf", "(% 16 (- inf))");
}
END_TEST

START_TEST(test_statements) {
  const char *src =
      "fn h(a, b) { return a + b; }\n"
      "fn v() { return; }\n"
      "kernel k(y: *T, n: i32, const T: dtype, const B: i32 = 64 * 2, s: f32,) {\n"
      "  let a = 1;\n"
      "  var b = a;\n"
      "  b = 2; b += 3; b -= 4; b *= 5; b /= 6;\n"
      "  for i in range(n) { b += i; }\n"
      "  for j in range(0, n, 2) { }\n"
      "  if a { } else if b { } else { b = 0; }\n"
      "  if c { }\n"
      "  static_assert(B > 0);\n"
      "  static_assert(B > 0, \"B must be positive\");\n"
      "  tunable num_warps in {1, 2, 4,};\n"
      "  tunable W in {};\n"
      "  { let inner = 0; }\n"
      "  store(y, b);\n"
      "}\n";
  char *got = dump_src(src, 0);
  const char *want =
      "(fn h (a b) (block (return (+ a b))))\n"
      "(fn v () (block (return)))\n"
      "(kernel k ((y *T) (n i32) (const T dtype) (const B i32 (* 64 2)) (s f32)) (block"
      " (let a 1) (var b a) (= b 2) (+= b 3) (-= b 4) (*= b 5) (/= b 6)"
      " (for i (range n) (block (+= b i))) (for j (range 0 n 2) (block))"
      " (if a (block) (if b (block) (block (= b 0)))) (if c (block))"
      " (static_assert (> B 0)) (static_assert (> B 0) \"B must be positive\")"
      " (tunable num_warps (list 1 2 4)) (tunable W (list))"
      " (block (let inner 0)) (expr (call store y b))))\n";
  ck_assert_msg(strcmp(got, want) == 0, "got:\n%s\nwant:\n%s", got, want);
  free(got);

  // The module structure itself.
  Fe fe;
  fe_run(&fe, "t.tj", src, strlen(src));
  Func *f = fe.m->funcs;
  ck_assert(!f->is_kernel && f->nparams == 2 && f->params->kind == PARAM_SCALAR && !f->params->type);
  f = f->next->next;
  ck_assert(f->is_kernel);
  ck_assert_str_eq(f->name, "k");
  ck_assert_int_eq(f->nparams, 5);
  Param *p = f->params;
  ck_assert(p->kind == PARAM_PTR && !strcmp(p->type, "T") && p->typeloc.col == 14);
  p = p->next;
  ck_assert(p->kind == PARAM_SCALAR && !strcmp(p->type, "i32") && p->loc.col == 17);
  p = p->next;
  ck_assert(p->kind == PARAM_CONST && !strcmp(p->type, "dtype") && !p->defval);
  p = p->next;
  ck_assert(p->kind == PARAM_CONST && p->defval && p->defval->kind == ND_BINARY);
  ck_assert_ptr_null(p->next->next);
  ck_assert_ptr_null(f->next);
  fe_done(&fe);
}
END_TEST

START_TEST(test_node_locs) {
  const char *src =
      "kernel k(x: *f32) {\n"
      "  let v = load(x + 1, mask=m) * 2;\n"
      "  v += 1;\n"
      "  for i in range(4, 8) { }\n"
      "  tunable W in {1};\n"
      "}\n";
  Fe fe;
  fe_run(&fe, "t.tj", src, strlen(src));
  ck_assert_int_eq(fe.d.nerrors, 0);
  Node *s = fe.m->funcs->body->body;
  ck_assert_int_eq(s->kind, ND_LET);
  ck_assert(s->nameloc.line == 2 && s->nameloc.col == 7 && s->nameloc.len == 1);
  Node *mul = s->lhs;
  ck_assert(mul->kind == ND_BINARY && mul->op == P_STAR && mul->loc.col == 31 && mul->loc.len == 1);
  Node *call = mul->lhs;
  ck_assert(call->kind == ND_CALL && call->loc.col == 11 && call->loc.len == 4 && call->nargs == 2);
  ck_assert(call->args->kind == ND_BINARY && call->args->loc.col == 18);
  ck_assert_str_eq(call->args->next->argname, "mask");
  ck_assert_int_eq(call->args->next->loc.col, 28);
  s = s->next;
  ck_assert(s->kind == ND_ASSIGN && s->op == P_PLUSEQ && s->loc.col == 5 && s->loc.len == 2);
  ck_assert(s->nameloc.col == 3);
  s = s->next;
  ck_assert(s->kind == ND_FOR && s->nargs == 2 && s->loc.col == 3 && s->nameloc.col == 7);
  ck_assert(s->body && s->body->kind == ND_BLOCK);
  s = s->next;
  ck_assert(s->kind == ND_TUNABLE && s->nameloc.col == 11 && s->rhs->kind == ND_LIST && s->rhs->nargs == 1);
  // Every span points into the source text itself.
  ck_assert_int_eq(strncmp(fe.m->src + call->loc.offset, "load", 4), 0);
  ck_assert_str_eq(fe.m->file, "t.tj");
  fe_done(&fe);
}
END_TEST

START_TEST(test_golden_render) {
  const char *src = "kernel k(x: *f32) {\n\tlet v = (a + b;\n}\n";
  Fe fe;
  fe_run(&fe, "golden.tj", src, strlen(src));
  ck_assert_str_eq(diag_text(&fe),
                   "golden.tj:2:16: error: expected ')'\n"
                   "    2 | \tlet v = (a + b;\n"
                   "      | \t              ^\n");
  fe_done(&fe);

  src = "kernel k() {\n    let m = 0 < n <= 4;\n}\n";
  fe_run(&fe, "golden.tj", src, strlen(src));
  ck_assert_str_eq(diag_text(&fe),
                   "golden.tj:2:19: error: comparison operators cannot be chained\n"
                   "    2 |     let m = 0 < n <= 4;\n"
                   "      |                   ^~\n");
  fe_done(&fe);
}
END_TEST

// ---------------------------------------------------------------- expectation files

typedef struct Expect {
  int line, col;
  char msg[256];
  bool matched;
} Expect;

enum { MAX_EXPECT = 64 };

// Collects `// expect-error: LINE:COL: message` comments from src.
static int read_expectations(const char *src, Expect *out, int max) {
  static const char tag[] = "// expect-error: ";
  int n = 0;
  for (const char *p = strstr(src, tag); p && n < max; p = strstr(p + 1, tag)) {
    const char *q = p + sizeof tag - 1;
    int line, col, used = 0;
    if (sscanf(q, "%d:%d: %n", &line, &col, &used) != 2 || used == 0) continue;
    q += used;
    size_t len = strcspn(q, "\r\n");
    if (len >= sizeof out[n].msg) len = sizeof out[n].msg - 1;
    out[n].line = line;
    out[n].col = col;
    memcpy(out[n].msg, q, len);
    out[n].msg[len] = '\0';
    out[n].matched = false;
    n++;
  }
  return n;
}

// Collects the errors of rendered diagnostics: lines "FILE:LINE:COL: error: MSG".
static int read_errors(const char *text, const char *file, Expect *out, int max) {
  int n = 0;
  size_t flen = strlen(file);
  for (const char *p = text; *p && n < max;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    int line, col, used = 0;
    if (len > flen && !strncmp(p, file, flen) && p[flen] == ':' &&
        sscanf(p + flen + 1, "%d:%d: error: %n", &line, &col, &used) == 2 && used > 0) {
      const char *m = p + flen + 1 + used;
      size_t mlen = len - (size_t)(m - p);
      if (mlen >= sizeof out[n].msg) mlen = sizeof out[n].msg - 1;
      out[n].line = line;
      out[n].col = col;
      memcpy(out[n].msg, m, mlen);
      out[n].msg[mlen] = '\0';
      out[n].matched = false;
      n++;
    } else if (!strncmp(p, "tilejit: error:", 15)) {
      ck_abort_msg("%s: unexpected diagnostic: %.*s", file, (int)len, p);
    }
    p += len + (eol ? 1 : 0);
  }
  return n;
}

// Checks that the errors in diag_text are exactly the expectations of src,
// in any order; each error must also be followed by its caret lines.
static void check_expectations(const char *file, const char *src, const char *text, int nerrors) {
  Expect want[MAX_EXPECT], got[MAX_EXPECT];
  int nw = read_expectations(src, want, MAX_EXPECT);
  int ng = read_errors(text, file, got, MAX_EXPECT);
  ck_assert_msg(nw > 0, "%s has no expect-error lines", file);
  ck_assert_msg(ng == nerrors, "%s: %d errors counted, %d rendered", file, nerrors, ng);
  for (int i = 0; i < ng; i++) {
    bool found = false;
    for (int j = 0; j < nw && !found; j++) {
      if (!want[j].matched && want[j].line == got[i].line && want[j].col == got[i].col &&
          !strcmp(want[j].msg, got[i].msg)) {
        want[j].matched = found = true;
      }
    }
    ck_assert_msg(found, "%s: unexpected error %d:%d: %s\nall output:\n%s", file, got[i].line,
                  got[i].col, got[i].msg, text);
  }
  for (int j = 0; j < nw; j++)
    ck_assert_msg(want[j].matched, "%s: missing error %d:%d: %s\nall output:\n%s", file, want[j].line,
                  want[j].col, want[j].msg, text);
}

START_TEST(test_expect_files) {
  char *dir = tj_test_path("tests/dsl/parse");
  DIR *dp = opendir(dir);
  ck_assert_msg(dp != NULL, "cannot open %s", dir);
  int nfiles = 0;
  struct dirent *e;
  while ((e = readdir(dp))) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 3, ".tj") != 0) continue;
    char rel[512];
    snprintf(rel, sizeof rel, "tests/dsl/parse/%s", e->d_name);
    size_t len;
    char *src = tj_test_read_file(rel, &len);
    ck_assert_ptr_nonnull(src);
    Fe fe;
    fe_run(&fe, rel, src, len);
    check_expectations(rel, src, diag_text(&fe), fe.d.nerrors);
    // Several errors per file: the parser resynchronised each time.
    ck_assert_int_ge(fe.d.nerrors, 2);
    fe_done(&fe);
    free(src);
    nfiles++;
  }
  closedir(dp);
  free(dir);
  ck_assert_int_ge(nfiles, 9);
}
END_TEST

// ---------------------------------------------------------------- limits, robustness

static char *repeat(const char *pre, int n, const char *mid, const char *post, int m) {
  StrBuf sb;
  sb_init(&sb);
  for (int i = 0; i < n; i++) sb_puts(&sb, pre);
  sb_puts(&sb, mid);
  for (int i = 0; i < m; i++) sb_puts(&sb, post);
  return sb_steal(&sb);
}

static void check_deep(const char *pre, int n, const char *mid, const char *post, const char *msg) {
  char *body = repeat(pre, n, mid, post, n);
  StrBuf sb;
  sb_init(&sb);
  // Blocks are statements of their own; expressions need `let z = ...;`.
  bool is_block = strchr(pre, '{') != NULL;
  sb_printf(&sb, "kernel k() { let a = 1; %s%s%s let b = ; }\nkernel after() { let c = ; }\n",
            is_block ? "" : "let z = ", body, is_block ? "" : ";");
  Fe fe;
  fe_run(&fe, "deep.tj", sb.data, sb.len);
  ck_assert_msg(strstr(diag_text(&fe), msg) != NULL, "%s x%d:\n%.400s", pre, n, diag_text(&fe));
  // One error for the nesting, then the parser recovers and finds the rest.
  ck_assert_msg(fe.d.nerrors == 3, "%s x%d: %d errors\n%.2000s", pre, n, fe.d.nerrors, diag_text(&fe));
  ck_assert_ptr_nonnull(fe.m->funcs->next);
  ck_assert_str_eq(fe.m->funcs->next->name, "after");
  fe_done(&fe);
  sb_free(&sb);
  free(body);
}

START_TEST(test_nesting_limits) {
  check_deep("(", 256, "x", ")", "error: expression nested too deeply");
  check_deep("(", 100000, "x", ")", "error: expression nested too deeply");
  check_deep("-", 100000, "x", "", "error: expression nested too deeply");
  check_deep("[", 100000, "x", "]", "error: expression nested too deeply");
  check_deep("f(", 100000, "x", ")", "error: expression nested too deeply");
  check_deep("{", 100000, "", "}", "error: block nested too deeply");
  check_deep("if x {", 100000, "", "}", "error: expression nested too deeply");
  check_deep("if x {} else ", 100000, "{}", "", "nested too deeply");

  // Reasonable nesting is fine.
  char *e = repeat("(", 100, "x", ")", 100);
  char *got = dump_expr(e);
  ck_assert_str_eq(got, "x");
  free(got);
  free(e);
}
END_TEST

// Operator and subscript chains are loops in the parser but left spines in
// the AST that sema walks recursively: 20000 `+` overflowed sema's stack
// (found by fuzzing). The links are bounded; a long but sane chain parses.
START_TEST(test_chain_limits) {
  check_deep("x + ", 100000, "x", "", "error: expression too long: more than 1000 operators");
  check_deep("x * ", 1001, "x", "", "error: expression too long: more than 1000 operators");
  check_deep("", 100000, "x", "[:]", "error: expression too long: more than 1000 operators");
  // A chain inside an operand of another counts with it: the AST is as deep.
  char *chain600 = repeat("x + ", 600, "x", "", 0);
  char *inner = repeat("(", 1, chain600, ")", 1);
  check_deep("x + ", 600, inner, "", "error: expression too long: more than 1000 operators");
  free(inner);
  free(chain600);

  char *chain = repeat("x + ", 999, "x", "", 0);
  StrBuf sb;
  sb_init(&sb);
  sb_printf(&sb, "kernel k(x: i32) { let r = %s; let s = %s; }", chain, chain);
  Fe fe;
  fe_run(&fe, "chain.tj", sb.data, sb.len);
  ck_assert_msg(fe.d.nerrors == 0, "%.400s", diag_text(&fe));
  int n = 0;
  for (Node *e = fe.m->funcs->body->body->next->lhs; e->kind == ND_BINARY; e = e->lhs) n++;
  ck_assert_int_eq(n, 999);
  fe_done(&fe);
  sb_free(&sb);
  free(chain);
}
END_TEST

static const char kernel_src[] =
    "fn sig(x) { return 1.0 / (1.0 + exp(-x)); }\n"
    "kernel softmax(y: *T, x: *T, stride: i32, n: i32, const T: dtype, const BLOCK: i32 = 1024) {\n"
    "    let row = program_id(0);\n"
    "    let cols = arange(0, BLOCK);\n"
    "    let mask = cols < n && (cols >= 0);\n"
    "    var acc = zeros([BLOCK], f32);\n"
    "    for i in range(0, n, 2) { acc += sig(cast(load(x + i, mask, -inf), f32))[:, None]; }\n"
    "    if row == 0 { acc = acc * 2.5e-3; } else if true { } else { acc -= 1; }\n"
    "    static_assert(BLOCK > 0, \"BLOCK\");\n"
    "    tunable num_warps in {1, 2, 4};\n"
    "    store(y + row * stride + cols, acc / sum(acc, 0), mask=mask);\n"
    "}\n";

START_TEST(test_truncated_prefixes) {
  size_t full = strlen(kernel_src);
  char *got = dump_src(kernel_src, 0);
  free(got);
  size_t end = full - 1;  // the final '}' is at end-1; the last byte is '\n'
  // The first line is a complete fn: cut right after it, the module is valid.
  size_t fn_end = (size_t)(strchr(kernel_src, '\n') - kernel_src);
  for (size_t n = 1; n < full; n++) {
    Fe fe;
    fe_run(&fe, "cut.tj", kernel_src, n);
    if (n < end && n != fn_end && n != fn_end + 1)
      ck_assert_msg(fe.d.nerrors > 0, "prefix of %zu bytes parsed without error", n);
    else
      ck_assert_int_eq(fe.d.nerrors, 0);
    fe_done(&fe);
  }
}
END_TEST

static uint32_t rng_next(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

START_TEST(test_random_input) {
  uint64_t seed = 0x7117e5eedull;
  char buf[512];
  // Random bytes (NULs, invalid UTF-8 and all).
  for (int iter = 0; iter < 3000; iter++) {
    size_t n = 1 + rng_next(&seed) % 300;
    for (size_t i = 0; i < n; i++) buf[i] = (char)rng_next(&seed);
    bool blank = true;
    for (size_t i = 0; i < n; i++) blank &= buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\t';
    Fe fe;
    fe_run(&fe, "rand.tj", buf, n);
    ck_assert(blank || fe.d.nerrors > 0);
    fe_done(&fe);
  }
  // Random token soup, which gets much deeper into the parser.
  static const char *const vocab[] = {
      "kernel", "fn", "let", "var", "for", "in", "range", "if", "else", "return", "tunable",
      "static_assert", "const", "None", "true", "x", "f", "(", ")", "{", "}", "[", "]", ",", ";",
      ":", "=", "+=", "+", "-", "*", "<", "==", "&&", "!", "1", "2.5", "\"s\"", "*f32", "i32",
      "$", "/*", "\"", "0x", "1e"};
  const int nv = (int)(sizeof vocab / sizeof vocab[0]);
  for (int iter = 0; iter < 5000; iter++) {
    StrBuf sb;
    sb_init(&sb);
    if (iter % 2) sb_puts(&sb, "kernel k(a: i32) { ");
    int ntok = 1 + (int)(rng_next(&seed) % 60);
    for (int i = 0; i < ntok; i++) {
      sb_puts(&sb, vocab[rng_next(&seed) % (uint32_t)nv]);
      sb_putc(&sb, rng_next(&seed) % 5 ? ' ' : '\n');
    }
    Fe fe;
    fe_run(&fe, "soup.tj", sb.data, sb.len);
    // Whatever the input, the module is well formed enough to dump.
    StrBuf dump;
    sb_init(&dump);
    parse_dump(&dump, fe.m);
    sb_free(&dump);
    ck_assert_msg(fe.d.nerrors > 0, "no error for:\n%s", sb.data);
    fe_done(&fe);
    sb_free(&sb);
  }
}
END_TEST

START_TEST(test_error_limit_in_parser) {
  // Many broken statements: every one is reported up to the default limit,
  // then one "too many errors" line.
  StrBuf sb;
  sb_init(&sb);
  sb_puts(&sb, "kernel k() {\n");
  for (int i = 0; i < 50; i++) sb_puts(&sb, "  let = 1;\n");
  sb_puts(&sb, "}\n");
  Arena a;
  arena_init(&a);
  Diag d;
  diag_init(&d);
  Module *m = parse_module(&a, &d, lex_tokenize(&a, &d, "many.tj", sb.data, sb.len));
  ck_assert_ptr_nonnull(m);
  ck_assert_int_eq(d.nerrors, 50);
  int lines = 0;
  for (const char *p = d.text.data; (p = strstr(p, ": error: expected a name after 'let'")); p++) lines++;
  ck_assert_int_eq(lines, 20);
  ck_assert_ptr_nonnull(strstr(d.text.data, "\ntilejit: error: too many errors, stopping\n"));
  diag_free(&d);
  arena_free(&a);
  sb_free(&sb);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("lex_parse");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_tokens_and_spans);
  tcase_add_test(tc, test_punct_keywords_numbers);
  tcase_add_test(tc, test_lex_errors_continue);
  tcase_add_test(tc, test_precedence);
  tcase_add_test(tc, test_statements);
  tcase_add_test(tc, test_node_locs);
  tcase_add_test(tc, test_golden_render);
  tcase_add_test(tc, test_expect_files);
  tcase_add_test(tc, test_nesting_limits);
  tcase_add_test(tc, test_chain_limits);
  tcase_add_test(tc, test_truncated_prefixes);
  tcase_add_test(tc, test_random_input);
  tcase_add_test(tc, test_error_limit_in_parser);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tj_test_run(suite()); }
