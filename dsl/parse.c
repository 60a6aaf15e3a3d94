/* parse.c: token list -> AST (recursive descent).
 *
 * Requires: a token list from lex_tokenize. Produces: a Module of Funcs whose
 * bodies are Node trees (dsl.h); every node carries the span of its
 * representative token (the operator of a binary expression, the callee of a
 * call, the name of a let) so sema can point at the right column.
 *
 * One function per grammar rule, with the rule above it. The grammar is the
 * one of the team brief (docs/language.md), plus two leniencies sema relies
 * on: `None` is an expression (for `mask=None`, `axis=None`) and lists may be
 * empty (`full([], v, f32)`, and `tunable n in {}` so sema can say the set is
 * empty).
 *
 * Error recovery. The first error of a statement sets `panic`; from then on
 * the parse functions return promptly without reporting anything more, so
 * one mistake gives one message. The statement loop then synchronises: it
 * skips to just past the next ';', or to the '}' that closes the current
 * block, or to a `kernel`/`fn` keyword (which only appear at top level), and
 * clears the panic. Every error path consumes at least one token or stops at
 * a token that the enclosing loop consumes, so the parser always terminates.
 * Nesting (parentheses, unary chains, blocks) is bounded by MAX_DEPTH so that
 * hostile input cannot overflow the C stack; no longjmp is used. Operator
 * and subscript chains (a + b + c..., x[:, None][None]...) are parsed by
 * loops, but each link deepens the AST that sema and the span code walk
 * recursively, so the links open at once are bounded by MAX_CHAIN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsl.h"

enum { MAX_DEPTH = 200, MAX_CHAIN = 1000 };

typedef struct Parser {
  Arena *a;
  Diag *d;
  Token *tok;   // current token, never NULL (the list ends in TK_EOF)
  Token *prev;  // last consumed token, for "expected ';' after ..." spans
  Token *unclosed_at;  // where "expected '}'" was last reported (once per token)
  int depth;
  int chain;    // binary/subscript links of the expressions being parsed
  bool panic;
} Parser;

//
// Token helpers
//

static bool is_punct(Parser *p, int punct) { return p->tok->kind == TK_PUNCT && p->tok->punct == punct; }
static bool is_kw(Parser *p, int kw) { return p->tok->kind == TK_KEYWORD && p->tok->kw == kw; }
static bool at_eof(Parser *p) { return p->tok->kind == TK_EOF; }
static bool at_toplevel_kw(Parser *p) { return is_kw(p, KW_KERNEL) || is_kw(p, KW_FN); }

static Token *advance(Parser *p) {
  Token *t = p->tok;
  if (t->kind != TK_EOF) {
    p->prev = t;
    p->tok = t->next;
  }
  return t;
}

static bool consume(Parser *p, int punct) {
  if (!is_punct(p, punct)) return false;
  advance(p);
  return true;
}

static void error_at(Parser *p, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void error_at(Parser *p, Loc loc, const char *fmt, ...) {
  if (p->panic) return;
  p->panic = true;
  va_list ap;
  va_start(ap, fmt);
  diag_vat(p->d, DIAG_ERROR, loc, fmt, ap);
  va_end(ap);
}

// The span just past the previous token: where a missing ';' or ')' belongs.
static Loc after_prev(Parser *p) {
  if (!p->prev) return p->tok->loc;
  Loc l = p->prev->loc;
  const char *s = l.src + l.offset;
  // A multi-line token (never produced today) would make col meaningless.
  int n = 0;
  while (n < l.len && s[n] != '\n') n++;
  l.offset += n;
  l.col += n;
  l.len = 1;
  return l;
}

// Expects punct; `after` names what precedes it ("expected ';' after
// expression"), or is NULL for a plain "expected ')'" at the current token.
static bool expect(Parser *p, int punct, const char *after) {
  if (consume(p, punct)) return true;
  if (after)
    error_at(p, after_prev(p), "expected '%s' after %s", lex_punct_str(punct), after);
  else
    error_at(p, p->tok->loc, "expected '%s'", lex_punct_str(punct));
  return false;
}

// Expects the ';' that ends a statement. When the next token starts a new
// line, the ';' was most likely just forgotten: report it but keep parsing
// from that token as the next statement instead of skipping it.
static void expect_semi(Parser *p, const char *after) {
  if (consume(p, P_SEMI)) return;
  if (p->prev && p->tok->loc.line > p->prev->loc.line && !at_eof(p)) {
    diag_at(p->d, DIAG_ERROR, after_prev(p), "expected ';' after %s", after);
    return;
  }
  expect(p, P_SEMI, after);
}

static Token *expect_ident(Parser *p, const char *what) {
  if (p->tok->kind == TK_IDENT) return advance(p);
  if (p->tok->kind == TK_KEYWORD)
    error_at(p, p->tok->loc, "expected %s, got keyword '%s'", what, lex_keyword_str(p->tok->kw));
  else
    error_at(p, p->tok->loc, "expected %s", what);
  return NULL;
}

static Node *new_node(Parser *p, NodeKind kind, Loc loc) {
  Node *n = arena_alloc(p->a, sizeof(Node));
  if (!n) {
    // Out of memory: stop the parse quietly; parse_module notices a->failed.
    p->panic = true;
    return NULL;
  }
  n->kind = kind;
  n->loc = loc;
  return n;
}

// What an expression parse returns after an error: a harmless name that
// sema never sees (the driver stops when the parser reported errors).
static Node *poison(Parser *p) {
  Node *n = new_node(p, ND_NAME, p->tok->loc);
  if (n) n->name = "<error>";
  return n;
}

static bool enter(Parser *p, const char *what) {
  if (p->depth >= MAX_DEPTH) {
    error_at(p, p->tok->loc, "%s nested too deeply", what);
    return false;
  }
  p->depth++;
  return true;
}

static void leave(Parser *p) { p->depth--; }

// One more link of an operator or subscript chain (see the top comment);
// the caller gives its links back when the chain ends.
static bool chain_link(Parser *p) {
  if (p->chain >= MAX_CHAIN) {
    error_at(p, p->tok->loc, "expression too long: more than %d operators or subscripts in a chain",
             MAX_CHAIN);
    return false;
  }
  p->chain++;
  return true;
}

//
// Expressions
//

static Node *expr(Parser *p);

// sub = ":" | "None"
static Node *sub(Parser *p) {
  if (is_punct(p, P_COLON)) return new_node(p, ND_SLICE, advance(p)->loc);
  if (is_kw(p, KW_NONE)) return new_node(p, ND_NONE, advance(p)->loc);
  error_at(p, p->tok->loc, "expected ':' or 'None' in subscript");
  return poison(p);
}

// arg = [ IDENT "=" ] expr
static Node *arg(Parser *p) {
  if (p->tok->kind == TK_IDENT && p->tok->next->kind == TK_PUNCT && p->tok->next->punct == P_ASSIGN) {
    Token *name = advance(p);
    advance(p);
    Node *e = expr(p);
    if (e) e->argname = name->str;
    return e;
  }
  return expr(p);
}

// Parses `elem { "," elem } [","] close` after the opening token into a
// linked list; empty lists are allowed (see the top comment).
static Node *list_tail(Parser *p, int close, Node *(*elem)(Parser *), int *count) {
  Node head = {0}, *cur = &head;
  int n = 0;
  while (!p->panic && !is_punct(p, close)) {
    if (n > 0 && !consume(p, P_COMMA)) {
      error_at(p, p->tok->loc, "expected ',' or '%s'", lex_punct_str(close));
      break;
    }
    if (n > 0 && is_punct(p, close)) break;  // trailing comma
    Node *e = elem(p);
    if (!e) break;
    cur = cur->next = e;
    n++;
    if (at_eof(p)) break;
  }
  if (!p->panic) expect(p, close, NULL);
  *count = n;
  return head.next;
}

// primary = INT | FLOAT | STRING | "true" | "false" | "None" | IDENT
//         | IDENT "(" [ arg { "," arg } [","] ] ")"
//         | "(" expr ")"
//         | "[" [ expr { "," expr } [","] ] "]"
static Node *primary(Parser *p) {
  Token *t = p->tok;
  switch (t->kind) {
  case TK_INT: {
    Node *n = new_node(p, ND_INT, advance(p)->loc);
    if (n) n->ival = t->ival;
    return n;
  }
  case TK_FLOAT: {
    Node *n = new_node(p, ND_FLOAT, advance(p)->loc);
    if (n) n->fval = t->fval;
    return n;
  }
  case TK_STRING: {
    Node *n = new_node(p, ND_STRING, advance(p)->loc);
    if (n) n->str = t->str;
    return n;
  }
  case TK_KEYWORD:
    if (t->kw == KW_TRUE || t->kw == KW_FALSE) {
      Node *n = new_node(p, ND_BOOL, advance(p)->loc);
      if (n) n->ival = t->kw == KW_TRUE;
      return n;
    }
    if (t->kw == KW_NONE) return new_node(p, ND_NONE, advance(p)->loc);
    break;
  case TK_IDENT: {
    advance(p);
    if (is_punct(p, P_LPAREN)) {
      advance(p);
      Node *n = new_node(p, ND_CALL, t->loc);
      if (!n) return NULL;
      n->name = t->str;
      n->args = list_tail(p, P_RPAREN, arg, &n->nargs);
      return n;
    }
    Node *n = new_node(p, ND_NAME, t->loc);
    if (n) n->name = t->str;
    return n;
  }
  case TK_PUNCT:
    if (t->punct == P_LPAREN) {
      advance(p);
      Node *e = expr(p);
      if (!p->panic) expect(p, P_RPAREN, NULL);
      return e;
    }
    if (t->punct == P_LBRACK) {
      advance(p);
      Node *n = new_node(p, ND_LIST, t->loc);
      if (!n) return NULL;
      n->args = list_tail(p, P_RBRACK, expr, &n->nargs);
      return n;
    }
    break;
  default:
    break;
  }
  error_at(p, t->loc, "expected expression");
  return poison(p);
}

// postfix = primary { "[" sub { "," sub } "]" }
static Node *postfix(Parser *p) {
  Node *n = primary(p);
  int links = 0;
  while (n && !p->panic && is_punct(p, P_LBRACK)) {
    if (!chain_link(p)) break;
    links++;
    Token *t = advance(p);
    Node *ix = new_node(p, ND_INDEX, t->loc);
    if (!ix) {
      n = NULL;
      break;
    }
    ix->lhs = n;
    ix->args = list_tail(p, P_RBRACK, sub, &ix->nargs);
    if (!p->panic && ix->nargs == 0) error_at(p, t->loc, "expected ':' or 'None' in subscript");
    n = ix;
  }
  p->chain -= links;
  return n;
}

// unary = ("-" | "!" | "~" | "+") unary | postfix
static Node *unary(Parser *p) {
  if (is_punct(p, P_MINUS) || is_punct(p, P_BANG) || is_punct(p, P_TILDE) || is_punct(p, P_PLUS)) {
    if (!enter(p, "expression")) return poison(p);
    Token *t = advance(p);
    Node *n = new_node(p, ND_UNARY, t->loc);
    if (n) {
      n->op = t->punct;
      n->lhs = unary(p);
    }
    leave(p);
    return n;
  }
  return postfix(p);
}

// Builds lhs op rhs with the operator's span.
static Node *binary(Parser *p, Token *op, Node *lhs, Node *rhs) {
  Node *n = new_node(p, ND_BINARY, op->loc);
  if (!n) return NULL;
  n->op = op->punct;
  n->lhs = lhs;
  n->rhs = rhs;
  return n;
}

// One left-associative precedence level: sub { op sub } for the ops in ops.
static Node *left_assoc(Parser *p, Node *(*next)(Parser *), const int *ops, int nops) {
  Node *n = next(p);
  int links = 0;
  while (n && !p->panic) {
    int i = 0;
    while (i < nops && !is_punct(p, ops[i])) i++;
    if (i == nops || !chain_link(p)) break;
    links++;
    Token *op = advance(p);
    n = binary(p, op, n, next(p));
  }
  p->chain -= links;
  return n;
}

// mul = unary { ("*" | "/" | "%") unary }
static Node *mul(Parser *p) {
  static const int ops[] = {P_STAR, P_SLASH, P_PERCENT};
  return left_assoc(p, unary, ops, 3);
}

// add = mul { ("+" | "-") mul }
static Node *add(Parser *p) {
  static const int ops[] = {P_PLUS, P_MINUS};
  return left_assoc(p, mul, ops, 2);
}

// shift = add { ("<<" | ">>") add }
static Node *shift(Parser *p) {
  static const int ops[] = {P_SHL, P_SHR};
  return left_assoc(p, add, ops, 2);
}

// band = shift { "&" shift }
static Node *band(Parser *p) {
  static const int ops[] = {P_AMP};
  return left_assoc(p, shift, ops, 1);
}

// bxor = band { "^" band }
static Node *bxor(Parser *p) {
  static const int ops[] = {P_CARET};
  return left_assoc(p, band, ops, 1);
}

// bor = bxor { "|" bxor }
static Node *bor(Parser *p) {
  static const int ops[] = {P_PIPE};
  return left_assoc(p, bxor, ops, 1);
}

static bool is_cmp(Parser *p) {
  return is_punct(p, P_EQEQ) || is_punct(p, P_NE) || is_punct(p, P_LT) || is_punct(p, P_LE) ||
         is_punct(p, P_GT) || is_punct(p, P_GE);
}

// cmp = bor [ ("==" | "!=" | "<" | "<=" | ">" | ">=") bor ]
static Node *cmp(Parser *p) {
  Node *n = bor(p);
  if (!n || p->panic || !is_cmp(p)) return n;
  Token *op = advance(p);
  n = binary(p, op, n, bor(p));
  if (!p->panic && is_cmp(p))
    error_at(p, p->tok->loc, "comparison operators cannot be chained");
  return n;
}

// land = cmp { "&&" cmp }
static Node *land(Parser *p) {
  static const int ops[] = {P_ANDAND};
  return left_assoc(p, cmp, ops, 1);
}

// lor = land { "||" land }
static Node *lor(Parser *p) {
  static const int ops[] = {P_OROR};
  return left_assoc(p, land, ops, 1);
}

// expr = lor
static Node *expr(Parser *p) {
  if (!enter(p, "expression")) return poison(p);
  Node *n = lor(p);
  leave(p);
  return n;
}

//
// Statements
//

static Node *block(Parser *p);
static Node *stmt(Parser *p);

static bool is_assign_op(Token *t) {
  return t->kind == TK_PUNCT && (t->punct == P_ASSIGN || t->punct == P_PLUSEQ || t->punct == P_MINUSEQ ||
                                 t->punct == P_STAREQ || t->punct == P_SLASHEQ);
}

// Skips the rest of a broken statement (see the top comment).
static void sync_stmt(Parser *p) {
  int depth = 0;
  while (!at_eof(p) && !at_toplevel_kw(p)) {
    if (is_punct(p, P_LBRACE)) {
      depth++;
    } else if (is_punct(p, P_RBRACE)) {
      if (depth == 0) return;  // closes the current block: the block loop eats it
      advance(p);
      // The end of a compound statement, unless an `else` continues it.
      if (--depth == 0 && !is_kw(p, KW_ELSE)) return;
      continue;
    } else if (is_punct(p, P_SEMI) && depth == 0) {
      advance(p);
      return;
    }
    advance(p);
  }
}

// let-stmt = ("let" | "var") IDENT "=" expr ";"
static Node *let_stmt(Parser *p) {
  Token *kw = advance(p);
  Token *name = expect_ident(p, kw->kw == KW_LET ? "a name after 'let'" : "a name after 'var'");
  if (!name) return NULL;
  Node *n = new_node(p, kw->kw == KW_LET ? ND_LET : ND_VAR, name->loc);
  if (!n) return NULL;
  n->name = name->str;
  n->nameloc = name->loc;
  if (!expect(p, P_ASSIGN, "name")) return n;
  n->lhs = expr(p);
  if (!p->panic) expect_semi(p, "expression");
  return n;
}

// assign-stmt = IDENT ( "=" | "+=" | "-=" | "*=" | "/=" ) expr ";"
static Node *assign_stmt(Parser *p) {
  Token *name = advance(p);
  Token *op = advance(p);
  Node *n = new_node(p, ND_ASSIGN, op->loc);
  if (!n) return NULL;
  n->name = name->str;
  n->nameloc = name->loc;
  n->op = op->punct;
  n->rhs = expr(p);
  if (!p->panic) expect_semi(p, "expression");
  return n;
}

// for-stmt = "for" IDENT "in" "range" "(" expr [ "," expr [ "," expr ] ] ")" block
static Node *for_stmt(Parser *p) {
  Token *kw = advance(p);
  Node *n = new_node(p, ND_FOR, kw->loc);
  if (!n) return NULL;
  Token *name = expect_ident(p, "a loop variable after 'for'");
  if (!name) return n;
  n->name = name->str;
  n->nameloc = name->loc;
  if (!is_kw(p, KW_IN)) {
    error_at(p, p->tok->loc, "expected 'in' after the loop variable");
    return n;
  }
  advance(p);
  if (p->tok->kind != TK_IDENT || strcmp(p->tok->str, "range") != 0) {
    error_at(p, p->tok->loc, "expected 'range' after 'in'");
    return n;
  }
  Token *range = advance(p);
  if (!expect(p, P_LPAREN, "'range'")) return n;
  n->args = list_tail(p, P_RPAREN, expr, &n->nargs);
  if (p->panic) return n;
  if (n->nargs < 1 || n->nargs > 3) {
    error_at(p, range->loc, "range expects 1 to 3 arguments, got %d", n->nargs);
    return n;
  }
  n->body = block(p);
  return n;
}

// if-stmt = "if" expr block [ "else" ( block | if-stmt ) ]
static Node *if_stmt(Parser *p) {
  Token *kw = advance(p);
  Node *n = new_node(p, ND_IF, kw->loc);
  if (!n) return NULL;
  n->cond = expr(p);
  if (p->panic) return n;
  n->then = block(p);
  if (p->panic || !is_kw(p, KW_ELSE)) return n;
  advance(p);
  if (is_kw(p, KW_IF)) {
    if (!enter(p, "statement")) return n;
    n->els = if_stmt(p);
    leave(p);
  } else {
    n->els = block(p);
  }
  return n;
}

// static-assert = "static_assert" "(" expr [ "," STRING ] ")" ";"
static Node *static_assert_stmt(Parser *p) {
  Token *kw = advance(p);
  Node *n = new_node(p, ND_STATIC_ASSERT, kw->loc);
  if (!n) return NULL;
  if (!expect(p, P_LPAREN, "'static_assert'")) return n;
  n->lhs = expr(p);
  if (p->panic) return n;
  if (consume(p, P_COMMA)) {
    if (p->tok->kind != TK_STRING) {
      error_at(p, p->tok->loc, "expected a string message");
      return n;
    }
    Token *s = advance(p);
    n->rhs = new_node(p, ND_STRING, s->loc);
    if (n->rhs) n->rhs->str = s->str;
  }
  if (expect(p, P_RPAREN, NULL)) expect_semi(p, "static_assert");
  return n;
}

// tunable = "tunable" IDENT "in" "{" expr { "," expr } [","] "}" ";"
static Node *tunable_stmt(Parser *p) {
  Token *kw = advance(p);
  Node *n = new_node(p, ND_TUNABLE, kw->loc);
  if (!n) return NULL;
  Token *name = expect_ident(p, "a name after 'tunable'");
  if (!name) return n;
  n->name = name->str;
  n->nameloc = name->loc;
  if (!is_kw(p, KW_IN)) {
    error_at(p, p->tok->loc, "expected 'in' after the tunable name");
    return n;
  }
  advance(p);
  if (!is_punct(p, P_LBRACE)) {
    error_at(p, p->tok->loc, "expected '{' with the tunable's values");
    return n;
  }
  Token *lb = advance(p);
  Node *set = new_node(p, ND_LIST, lb->loc);
  if (!set) return NULL;
  set->args = list_tail(p, P_RBRACE, expr, &set->nargs);
  n->rhs = set;
  if (!p->panic) expect_semi(p, "tunable");
  return n;
}

// return-stmt = "return" [ expr ] ";"
static Node *return_stmt(Parser *p) {
  Token *kw = advance(p);
  Node *n = new_node(p, ND_RETURN, kw->loc);
  if (!n) return NULL;
  if (consume(p, P_SEMI)) return n;
  n->lhs = expr(p);
  if (!p->panic) expect_semi(p, "expression");
  return n;
}

// stmt = let-stmt | assign-stmt | for-stmt | if-stmt | static-assert
//      | tunable | return-stmt | block | expr ";"
static Node *stmt(Parser *p) {
  Token *t = p->tok;
  if (t->kind == TK_KEYWORD) {
    switch (t->kw) {
    case KW_LET:
    case KW_VAR: return let_stmt(p);
    case KW_FOR: return for_stmt(p);
    case KW_IF: return if_stmt(p);
    case KW_STATIC_ASSERT: return static_assert_stmt(p);
    case KW_TUNABLE: return tunable_stmt(p);
    case KW_RETURN: return return_stmt(p);
    case KW_ELSE: error_at(p, t->loc, "'else' without a matching 'if'"); return NULL;
    default: break;
    }
  }
  if (t->kind == TK_IDENT && is_assign_op(t->next)) return assign_stmt(p);
  if (is_punct(p, P_LBRACE)) return block(p);
  Node *e = expr(p);
  if (p->panic) return NULL;
  if (is_assign_op(p->tok)) {
    error_at(p, p->tok->loc, "only a name can be assigned to");
    return NULL;
  }
  Node *n = new_node(p, ND_EXPR_STMT, e ? e->loc : t->loc);
  if (!n) return NULL;
  n->lhs = e;
  expect_semi(p, "expression");
  return n;
}

// block = "{" { stmt } "}"
static Node *block(Parser *p) {
  if (!is_punct(p, P_LBRACE)) {
    error_at(p, p->tok->loc, "expected '{'");
    return NULL;
  }
  Token *lb = advance(p);
  Node *b = new_node(p, ND_BLOCK, lb->loc);
  if (!b) return NULL;
  if (!enter(p, "block")) return b;
  Node head = {0}, *cur = &head;
  while (!is_punct(p, P_RBRACE)) {
    if (at_eof(p) || at_toplevel_kw(p)) {
      // Nested unclosed blocks all end here; one message is enough.
      if (p->unclosed_at != p->tok)
        error_at(p, p->tok->loc, "expected '}' to close the block opened at %d:%d", lb->loc.line,
                 lb->loc.col);
      p->unclosed_at = p->tok;
      p->panic = true;
      // The enclosing statement is incomplete: let the caller's loop
      // resynchronise (at top level, at this kernel/fn keyword).
      leave(p);
      b->body = head.next;
      return b;
    }
    Token *before = p->tok;
    Node *s = stmt(p);
    if (p->panic) {
      if (p->a->failed) break;
      sync_stmt(p);
      p->panic = false;
      // Guarantee progress even if the statement died on its first token and
      // the synchroniser stopped right there.
      if (p->tok == before && !is_punct(p, P_RBRACE) && !at_eof(p) && !at_toplevel_kw(p)) advance(p);
      continue;
    }
    if (s) cur = cur->next = s;
    while (cur->next) cur = cur->next;
  }
  consume(p, P_RBRACE);
  leave(p);
  b->body = head.next;
  return b;
}

//
// Declarations
//

// param = "const" IDENT ":" IDENT [ "=" expr ]
//       | IDENT ":" "*" IDENT
//       | IDENT ":" IDENT
static Param *param(Parser *p) {
  Param *pa = arena_alloc(p->a, sizeof(Param));
  if (!pa) {
    p->panic = true;
    return NULL;
  }
  pa->kind = PARAM_SCALAR;
  if (is_kw(p, KW_CONST)) {
    advance(p);
    pa->kind = PARAM_CONST;
  }
  if (p->tok->kind != TK_IDENT) {
    error_at(p, p->tok->loc, "expected a parameter");
    return NULL;
  }
  Token *name = advance(p);
  pa->name = name->str;
  pa->loc = name->loc;
  if (!expect(p, P_COLON, "parameter name")) return NULL;
  if (pa->kind != PARAM_CONST && consume(p, P_STAR)) pa->kind = PARAM_PTR;
  Token *ty = expect_ident(p, "a type name");
  if (!ty) return NULL;
  pa->type = ty->str;
  pa->typeloc = ty->loc;
  if (pa->kind == PARAM_CONST && consume(p, P_ASSIGN)) {
    pa->defval = expr(p);
    if (p->panic) return NULL;
  }
  return pa;
}

// Skips the rest of a broken parameter list: to the next ',' at parenthesis
// depth 0 (consumed: the next parameter follows), to ')' (consumed) or to
// the body's '{'. Returns true when another parameter follows.
static bool sync_param(Parser *p) {
  int depth = 0;
  while (!at_eof(p) && !at_toplevel_kw(p) && !is_punct(p, P_LBRACE)) {
    if (is_punct(p, P_LPAREN)) depth++;
    if (is_punct(p, P_RPAREN) && depth-- == 0) {
      advance(p);
      return false;
    }
    if (is_punct(p, P_COMMA) && depth == 0) {
      advance(p);
      return true;
    }
    advance(p);
  }
  return false;
}

// fn-param = IDENT
static Param *fn_param(Parser *p) {
  Token *name = expect_ident(p, "a parameter");
  if (!name) return NULL;
  Param *pa = arena_alloc(p->a, sizeof(Param));
  if (!pa) {
    p->panic = true;
    return NULL;
  }
  pa->kind = PARAM_SCALAR;
  pa->name = name->str;
  pa->loc = name->loc;
  return pa;
}

// kernel = "kernel" IDENT "(" [ param { "," param } [","] ] ")" block
// fn     = "fn" IDENT "(" [ IDENT { "," IDENT } ] ")" block
static Func *func(Parser *p) {
  Token *kw = advance(p);
  Func *f = arena_alloc(p->a, sizeof(Func));
  if (!f) return NULL;
  f->is_kernel = kw->kw == KW_KERNEL;
  f->loc = kw->loc;
  Token *name = expect_ident(p, f->is_kernel ? "a kernel name" : "a function name");
  if (!name) return f;
  f->name = name->str;
  f->loc = name->loc;
  if (!expect(p, P_LPAREN, f->is_kernel ? "kernel name" : "function name")) return f;

  Param head = {0}, *cur = &head;
  if (!consume(p, P_RPAREN)) {
    for (;;) {
      Param *pa = f->is_kernel ? param(p) : fn_param(p);
      if (p->panic) {
        if (p->a->failed) return f;
        p->panic = false;
        if (sync_param(p)) continue;
        break;
      }
      cur = cur->next = pa;
      f->nparams++;
      if (consume(p, P_RPAREN)) break;
      if (!consume(p, P_COMMA)) {
        error_at(p, p->tok->loc, "expected ',' or ')' in the parameter list");
        p->panic = false;
        if (sync_param(p)) continue;
        break;
      }
      if (f->is_kernel && consume(p, P_RPAREN)) break;  // trailing comma
    }
  }
  f->params = head.next;
  f->body = block(p);
  return f;
}

// module = { kernel | fn } EOF
Module *parse_module(Arena *a, Diag *d, Token *toks) {
  if (!toks) return NULL;
  Parser ps = {.a = a, .d = d, .tok = toks};
  Parser *p = &ps;
  Module *m = arena_alloc(a, sizeof(Module));
  if (!m) return NULL;
  m->file = toks->loc.file;
  m->src = toks->loc.src;
  Func head = {0}, *cur = &head;
  while (!at_eof(p)) {
    if (at_toplevel_kw(p)) {
      Func *f = func(p);
      if (a->failed) return NULL;
      if (f) cur = cur->next = f;
      if (p->panic) {
        // The header or the body's braces were broken: what follows up to the
        // next kernel/fn is the rest of this function, not new errors.
        while (!at_eof(p) && !at_toplevel_kw(p)) advance(p);
        p->panic = false;
      }
      continue;
    }
    error_at(p, p->tok->loc, "expected 'kernel' or 'fn'");
    p->panic = false;
    do advance(p);
    while (!at_eof(p) && !at_toplevel_kw(p));
  }
  if (a->failed) return NULL;
  m->funcs = head.next;
  return m;
}

//
// Dump
//

static void dump_node(StrBuf *sb, const Node *n);

static void dump_list(StrBuf *sb, const Node *n) {
  for (; n; n = n->next) {
    sb_putc(sb, ' ');
    dump_node(sb, n);
  }
}

static void dump_string(StrBuf *sb, const char *s) {
  sb_putc(sb, '"');
  for (; *s; s++) {
    switch (*s) {
    case '"': sb_puts(sb, "\\\""); break;
    case '\\': sb_puts(sb, "\\\\"); break;
    case '\n': sb_puts(sb, "\\n"); break;
    case '\t': sb_puts(sb, "\\t"); break;
    default: sb_putc(sb, *s);
    }
  }
  sb_putc(sb, '"');
}

static void dump_node(StrBuf *sb, const Node *n) {
  if (!n) {
    sb_puts(sb, "<null>");
    return;
  }
  if (n->argname) sb_printf(sb, "%s=", n->argname);
  switch (n->kind) {
  case ND_INT: sb_printf(sb, "%lld", (long long)n->ival); return;
  case ND_FLOAT: {
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", n->fval);
    // Shortest form that reads back the same, and always marked as a float.
    for (int prec = 1; prec <= 17; prec++) {
      char t[64];
      snprintf(t, sizeof t, "%.*g", prec, n->fval);
      if (strtod(t, NULL) == n->fval) {
        memcpy(buf, t, sizeof t);
        break;
      }
    }
    sb_puts(sb, buf);
    if (!strpbrk(buf, ".eEni")) sb_puts(sb, ".0");
    return;
  }
  case ND_BOOL: sb_puts(sb, n->ival ? "true" : "false"); return;
  case ND_STRING: dump_string(sb, n->str ? n->str : ""); return;
  case ND_NAME: sb_puts(sb, n->name); return;
  case ND_SLICE: sb_puts(sb, ":"); return;
  case ND_NONE: sb_puts(sb, "None"); return;
  case ND_UNARY:
    sb_printf(sb, "(%s ", lex_punct_str(n->op));
    dump_node(sb, n->lhs);
    sb_putc(sb, ')');
    return;
  case ND_BINARY:
    sb_printf(sb, "(%s ", lex_punct_str(n->op));
    dump_node(sb, n->lhs);
    sb_putc(sb, ' ');
    dump_node(sb, n->rhs);
    sb_putc(sb, ')');
    return;
  case ND_CALL:
    sb_printf(sb, "(call %s", n->name);
    dump_list(sb, n->args);
    sb_putc(sb, ')');
    return;
  case ND_INDEX:
    sb_puts(sb, "(index ");
    dump_node(sb, n->lhs);
    dump_list(sb, n->args);
    sb_putc(sb, ')');
    return;
  case ND_LIST:
    sb_puts(sb, "(list");
    dump_list(sb, n->args);
    sb_putc(sb, ')');
    return;
  case ND_PTRTYPE:
    sb_puts(sb, "(ptr ");
    dump_node(sb, n->lhs);
    sb_putc(sb, ')');
    return;
  case ND_LET:
  case ND_VAR:
    sb_printf(sb, "(%s %s ", n->kind == ND_LET ? "let" : "var", n->name);
    dump_node(sb, n->lhs);
    sb_putc(sb, ')');
    return;
  case ND_ASSIGN:
    sb_printf(sb, "(%s %s ", lex_punct_str(n->op), n->name);
    dump_node(sb, n->rhs);
    sb_putc(sb, ')');
    return;
  case ND_EXPR_STMT:
    sb_puts(sb, "(expr ");
    dump_node(sb, n->lhs);
    sb_putc(sb, ')');
    return;
  case ND_BLOCK:
    sb_puts(sb, "(block");
    dump_list(sb, n->body);
    sb_putc(sb, ')');
    return;
  case ND_FOR:
    sb_printf(sb, "(for %s (range", n->name ? n->name : "<null>");
    dump_list(sb, n->args);
    sb_puts(sb, ") ");
    dump_node(sb, n->body);
    sb_putc(sb, ')');
    return;
  case ND_IF:
    sb_puts(sb, "(if ");
    dump_node(sb, n->cond);
    sb_putc(sb, ' ');
    dump_node(sb, n->then);
    if (n->els) {
      sb_putc(sb, ' ');
      dump_node(sb, n->els);
    }
    sb_putc(sb, ')');
    return;
  case ND_STATIC_ASSERT:
    sb_puts(sb, "(static_assert ");
    dump_node(sb, n->lhs);
    if (n->rhs) {
      sb_putc(sb, ' ');
      dump_node(sb, n->rhs);
    }
    sb_putc(sb, ')');
    return;
  case ND_TUNABLE:
    sb_printf(sb, "(tunable %s ", n->name ? n->name : "<null>");
    dump_node(sb, n->rhs);
    sb_putc(sb, ')');
    return;
  case ND_RETURN:
    sb_puts(sb, "(return");
    if (n->lhs) {
      sb_putc(sb, ' ');
      dump_node(sb, n->lhs);
    }
    sb_putc(sb, ')');
    return;
  case ND_COUNT: break;
  }
  sb_printf(sb, "<node %d>", (int)n->kind);
}

void parse_dump_node(StrBuf *sb, const Node *n) { dump_node(sb, n); }

static void dump_param(StrBuf *sb, const Param *pa) {
  switch (pa->kind) {
  case PARAM_PTR: sb_printf(sb, "(%s *%s)", pa->name, pa->type); return;
  case PARAM_SCALAR:
    if (pa->type)
      sb_printf(sb, "(%s %s)", pa->name, pa->type);
    else
      sb_puts(sb, pa->name);
    return;
  case PARAM_CONST:
    sb_printf(sb, "(const %s %s", pa->name, pa->type);
    if (pa->defval) {
      sb_putc(sb, ' ');
      dump_node(sb, pa->defval);
    }
    sb_putc(sb, ')');
    return;
  }
}

void parse_dump(StrBuf *sb, const Module *m) {
  for (const Func *f = m->funcs; f; f = f->next) {
    sb_printf(sb, "(%s %s (", f->is_kernel ? "kernel" : "fn", f->name ? f->name : "<null>");
    for (const Param *pa = f->params; pa; pa = pa->next) {
      if (pa != f->params) sb_putc(sb, ' ');
      dump_param(sb, pa);
    }
    sb_puts(sb, ") ");
    dump_node(sb, f->body);
    sb_puts(sb, ")\n");
  }
}
