/* lex.c: source text -> token list.
 *
 * Requires: a source buffer (length given; it may contain NUL bytes or
 * invalid UTF-8). Produces: a singly linked list of Tokens ending in TK_EOF,
 * all in the arena, every token with its {file, line, col, len} span.
 *
 * The lexer never gives up: a bad character, number or string is reported and
 * skipped (or turned into a best-effort token) so the parser still sees the
 * rest of the file and one run reports every problem. Columns count bytes.
 *
 * Token locations point into a NUL-terminated copy of the source in which NUL
 * bytes are replaced by 0x01: the diagnostic renderer finds line ends by
 * scanning for '\n' or NUL and must not stop early, or run past the end of a
 * caller's buffer that was never terminated.
 */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsl.h"

static const char *const keyword_str[] = {
#define X(id, s) s,
  TJ_KEYWORDS(X)
#undef X
};
_Static_assert(sizeof keyword_str / sizeof keyword_str[0] == KW_COUNT, "keyword table length");

static const char *const punct_str[] = {
  "(", ")", "{", "}", "[", "]", ",", ";", ":", ".", "->",
  "+", "-", "*", "/", "%",
  "&", "|", "^", "~", "!", "<<", ">>",
  "<", "<=", ">", ">=", "==", "!=", "&&", "||",
  "=", "+=", "-=", "*=", "/=",
  "?",
};
_Static_assert(sizeof punct_str / sizeof punct_str[0] == P_COUNT, "punctuator table length");

const char *lex_punct_str(int punct) {
  return punct >= 0 && punct < P_COUNT ? punct_str[punct] : "?";
}

const char *lex_keyword_str(int kw) { return kw >= 0 && kw < KW_COUNT ? keyword_str[kw] : "?"; }

typedef struct Lexer {
  Arena *a;
  Diag *d;
  const char *file;
  const char *src;   // the caller's bytes (lexed)
  const char *copy;  // the sanitized NUL-terminated copy (rendered)
  size_t len, pos;
  int line;
  size_t line_start;  // offset of the first byte of the current line
  Token head, *tail;
} Lexer;

static Loc loc_at(Lexer *lx, size_t start, size_t end) {
  Loc l;
  l.file = lx->file;
  l.src = lx->copy;
  l.line = lx->line;
  l.col = (int)(start - lx->line_start) + 1;
  l.len = end > start ? (int)(end - start) : 1;
  l.offset = (int)start;
  return l;
}

static void error_span(Lexer *lx, size_t start, size_t end, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void error_span(Lexer *lx, size_t start, size_t end, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_vat(lx->d, DIAG_ERROR, loc_at(lx, start, end), fmt, ap);
  va_end(ap);
}

static Token *new_token(Lexer *lx, TokKind kind, size_t start, size_t end) {
  Token *t = arena_alloc(lx->a, sizeof(Token));
  if (!t) return NULL;
  t->kind = kind;
  t->loc = loc_at(lx, start, end);
  lx->tail->next = t;
  lx->tail = t;
  return t;
}

static int peek(Lexer *lx, size_t k) {
  return lx->pos + k < lx->len ? (unsigned char)lx->src[lx->pos + k] : -1;
}

static bool is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_ident_char(int c) { return is_ident_start(c) || is_digit(c); }
static bool is_hex(int c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static int hex_val(int c) { return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }

// Skips whitespace and comments; keeps line bookkeeping.
static void skip_space(Lexer *lx) {
  while (lx->pos < lx->len) {
    int c = peek(lx, 0);
    if (c == '\n') {
      lx->pos++;
      lx->line++;
      lx->line_start = lx->pos;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
      lx->pos++;
    } else if (c == '/' && peek(lx, 1) == '/') {
      while (lx->pos < lx->len && lx->src[lx->pos] != '\n') lx->pos++;
    } else if (c == '/' && peek(lx, 1) == '*') {
      size_t start = lx->pos;
      int sline = lx->line;
      size_t sls = lx->line_start;
      lx->pos += 2;
      bool closed = false;
      while (lx->pos < lx->len) {
        if (lx->src[lx->pos] == '*' && peek(lx, 1) == '/') {
          lx->pos += 2;
          closed = true;
          break;
        }
        if (lx->src[lx->pos] == '\n') {
          lx->line++;
          lx->line_start = lx->pos + 1;
        }
        lx->pos++;
      }
      if (!closed) {
        // Report at the opening "/*", not at the end of the file.
        int eline = lx->line;
        size_t els = lx->line_start;
        lx->line = sline;
        lx->line_start = sls;
        error_span(lx, start, start + 2, "unterminated comment");
        lx->line = eline;
        lx->line_start = els;
      }
    } else {
      return;
    }
  }
}

// Parses a float from text[0..n) independent of the process locale.
static double parse_double(Lexer *lx, const char *text, size_t n, bool *ok) {
  char buf[128];
  char *heap = NULL;
  char *s = buf;
  if (n + 8 > sizeof buf) {
    heap = arena_alloc(lx->a, n + 8);
    if (!heap) {
      *ok = false;
      return 0;
    }
    s = heap;
  }
  memcpy(s, text, n);
  s[n] = '\0';
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if ((size_t)(end - s) != n) {
    // The host application may have set a locale whose decimal point is not
    // '.'; retry with its separator.
    const char *dp = localeconv()->decimal_point;
    char *dot = strchr(s, '.');
    if (dot && dp && strlen(dp) == 1) *dot = dp[0];
    errno = 0;
    v = strtod(s, &end);
  }
  *ok = (size_t)(end - s) == n && !(errno == ERANGE && isinf(v));
  return v;
}

static void lex_number(Lexer *lx) {
  size_t start = lx->pos;
  bool is_float = false, bad = false;
  if (peek(lx, 0) == '0' && (peek(lx, 1) == 'x' || peek(lx, 1) == 'X')) {
    lx->pos += 2;
    uint64_t v = 0;
    bool overflow = false, any = false;
    while (is_hex(peek(lx, 0))) {
      if (v > (uint64_t)INT64_MAX >> 4) overflow = true;
      v = v << 4 | (uint64_t)hex_val(peek(lx, 0));
      if (v > (uint64_t)INT64_MAX) overflow = true;
      any = true;
      lx->pos++;
    }
    while (is_ident_char(peek(lx, 0))) {
      lx->pos++;
      bad = true;
    }
    Token *t = new_token(lx, TK_INT, start, lx->pos);
    if (!t) return;
    if (!any || bad) {
      error_span(lx, start, lx->pos, "invalid number '%.*s'", (int)(lx->pos - start), lx->src + start);
    } else if (overflow) {
      error_span(lx, start, lx->pos, "integer literal too large");
    } else {
      t->ival = (int64_t)v;
    }
    return;
  }
  while (is_digit(peek(lx, 0))) lx->pos++;
  if (peek(lx, 0) == '.') {
    is_float = true;
    lx->pos++;
    while (is_digit(peek(lx, 0))) lx->pos++;
  }
  if (peek(lx, 0) == 'e' || peek(lx, 0) == 'E') {
    is_float = true;
    lx->pos++;
    if (peek(lx, 0) == '+' || peek(lx, 0) == '-') lx->pos++;
    if (!is_digit(peek(lx, 0))) bad = true;
    while (is_digit(peek(lx, 0))) lx->pos++;
  }
  // "12abc" is one bad token rather than a number followed by a name.
  while (is_ident_char(peek(lx, 0)) || (bad && peek(lx, 0) == '.')) {
    lx->pos++;
    bad = true;
  }
  size_t n = lx->pos - start;
  const char *text = lx->src + start;
  Token *t = new_token(lx, is_float ? TK_FLOAT : TK_INT, start, lx->pos);
  if (!t) return;
  if (bad) {
    error_span(lx, start, lx->pos, "invalid number '%.*s'", (int)n, text);
    return;
  }
  if (is_float) {
    bool ok;
    t->fval = parse_double(lx, text, n, &ok);
    if (!ok) error_span(lx, start, lx->pos, "float literal too large");
    return;
  }
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t dgt = (uint64_t)(text[i] - '0');
    if (v > ((uint64_t)INT64_MAX - dgt) / 10) {
      error_span(lx, start, lx->pos, "integer literal too large");
      return;
    }
    v = v * 10 + dgt;
  }
  t->ival = (int64_t)v;
}

static void lex_string(Lexer *lx) {
  size_t start = lx->pos;
  lx->pos++;  // opening quote
  StrBuf sb;
  sb_init(&sb);
  bool closed = false;
  while (lx->pos < lx->len) {
    int c = peek(lx, 0);
    if (c == '"') {
      lx->pos++;
      closed = true;
      break;
    }
    if (c == '\n') break;  // a string never spans lines: report it here
    if (c == '\\') {
      int e = peek(lx, 1);
      char out = 0;
      switch (e) {
      case '"': out = '"'; break;
      case '\\': out = '\\'; break;
      case 'n': out = '\n'; break;
      case 't': out = '\t'; break;
      default: break;
      }
      if (out) {
        sb_putc(&sb, out);
        lx->pos += 2;
        continue;
      }
      if (e == -1 || e == '\n') {
        lx->pos++;
        break;
      }
      if (e >= 0x20 && e < 0x7f)
        error_span(lx, lx->pos, lx->pos + 2, "unknown escape sequence '\\%c'", e);
      else
        error_span(lx, lx->pos, lx->pos + 2, "unknown escape sequence");
      lx->pos += 2;
      continue;
    }
    sb_putc(&sb, (char)c);
    lx->pos++;
  }
  // A literal cut short by out of memory fails the compilation (no
  // silently truncated static_assert message).
  if (sb.failed) lx->a->failed = true;
  Token *t = new_token(lx, TK_STRING, start, lx->pos);
  if (t) {
    t->str = arena_strndup(lx->a, sb.data ? sb.data : "", sb.len);
    if (!closed) error_span(lx, start, lx->pos, "unterminated string");
  }
  sb_free(&sb);
}

// Longest match: the two-character punctuators are tried first.
static int match_punct(Lexer *lx, int *n) {
  int c0 = peek(lx, 0), c1 = peek(lx, 1);
  for (int p = 0; p < P_COUNT; p++) {
    const char *s = punct_str[p];
    if (s[1] && s[0] == c0 && s[1] == c1) {
      *n = 2;
      return p;
    }
  }
  for (int p = 0; p < P_COUNT; p++) {
    const char *s = punct_str[p];
    if (!s[1] && s[0] == c0) {
      *n = 1;
      return p;
    }
  }
  return -1;
}

Token *lex_tokenize(Arena *a, Diag *d, const char *file, const char *src, size_t len) {
  Lexer lx = {0};
  lx.a = a;
  lx.d = d;
  lx.file = arena_strdup(a, file ? file : "<input>");
  char *copy = arena_alloc(a, len + 1);
  if (!copy || !lx.file) return NULL;
  for (size_t i = 0; i < len; i++) copy[i] = src[i] ? src[i] : '\x01';
  lx.copy = copy;
  lx.src = src;
  lx.len = len;
  lx.line = 1;
  lx.tail = &lx.head;

  for (;;) {
    skip_space(&lx);
    if (a->failed) return NULL;
    if (lx.pos >= lx.len) break;
    size_t start = lx.pos;
    int c = peek(&lx, 0);
    if (is_ident_start(c)) {
      while (is_ident_char(peek(&lx, 0))) lx.pos++;
      size_t n = lx.pos - start;
      Token *t = new_token(&lx, TK_IDENT, start, lx.pos);
      if (!t) return NULL;
      t->str = arena_strndup(a, src + start, n);
      for (int k = 0; k < KW_COUNT; k++) {
        if (strlen(keyword_str[k]) == n && memcmp(keyword_str[k], src + start, n) == 0) {
          t->kind = TK_KEYWORD;
          t->kw = k;
          break;
        }
      }
      continue;
    }
    if (is_digit(c) || (c == '.' && is_digit(peek(&lx, 1)))) {
      lex_number(&lx);
      continue;
    }
    if (c == '"') {
      lex_string(&lx);
      continue;
    }
    int n;
    int p = match_punct(&lx, &n);
    if (p >= 0) {
      lx.pos += (size_t)n;
      Token *t = new_token(&lx, TK_PUNCT, start, lx.pos);
      if (!t) return NULL;
      t->punct = p;
      t->str = punct_str[p];
      continue;
    }
    if (c > 0x20 && c < 0x7f) {
      lx.pos++;
      error_span(&lx, start, lx.pos, "unexpected character '%c'", c);
      continue;
    }
    // Control or non-ASCII bytes: one error for a run of them, so a UTF-8
    // character (or binary garbage) is one message, not one per byte.
    lx.pos++;
    if (c >= 0x80)
      while (peek(&lx, 0) >= 0x80) lx.pos++;
    error_span(&lx, start, lx.pos, "unexpected byte 0x%02x", c);
  }
  Token *eof = new_token(&lx, TK_EOF, lx.len, lx.len);
  if (!eof || a->failed) return NULL;
  return lx.head.next;
}
