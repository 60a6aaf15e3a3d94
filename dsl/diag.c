/* diag.c: the one renderer for diagnostics.
 *
 * Requires: Locs whose src is the NUL-terminated source copy made by the
 * lexer. Produces: text of the form
 *
 *   softmax.tj:12:17: error: tile shapes differ: [128] vs [128, 1]
 *      12 |   let y = x + w;
 *         |           ^~~~~
 *
 * The gutter is as wide as the line number needs (at least 4 digits), so the
 * bars of one message line up. The caret line copies the tabs of the source
 * line in front of the caret so the caret sits under the right character in
 * any tab width. Control bytes of the source line are shown as '?' so that
 * a stray NUL or escape in the input cannot cut or garble the message.
 */
#include <stdio.h>
#include <string.h>

#include "dsl.h"

static const char *level_name(DiagLevel lv) {
  switch (lv) {
  case DIAG_ERROR: return "error";
  case DIAG_WARNING: return "warning";
  case DIAG_NOTE: return "note";
  }
  return "error";
}

void diag_init(Diag *d) {
  sb_init(&d->text);
  d->nerrors = d->nwarnings = 0;
  d->max_errors = 20;
}

void diag_free(Diag *d) {
  if (!d) return;
  sb_free(&d->text);
}

// Decides whether a diagnostic of level lv is recorded, counting it, and
// writes the "too many errors" line once when the limit is first passed.
// Warnings and notes after that point belong to dropped errors or are noise.
static bool admit(Diag *d, DiagLevel lv) {
  bool over = d->max_errors > 0 && d->nerrors >= d->max_errors;
  if (lv == DIAG_ERROR) {
    d->nerrors++;
    if (d->max_errors > 0 && d->nerrors == d->max_errors + 1)
      sb_puts(&d->text, "tilejit: error: too many errors, stopping\n");
  } else if (lv == DIAG_WARNING) {
    d->nwarnings++;
  }
  return !over;
}

static int digits(int n) {
  int k = 1;
  while (n >= 10) {
    n /= 10;
    k++;
  }
  return k;
}

static void render_source(StrBuf *sb, Loc loc) {
  const char *src = loc.src;
  // The offset is authoritative; line/col only label it.
  const char *start = src + loc.offset;
  const char *ls = start;
  while (ls > src && ls[-1] != '\n') ls--;
  const char *le = start;
  while (*le && *le != '\n') le++;
  if (le > ls && le[-1] == '\r') le--;
  if (start > le) start = le;

  int w = digits(loc.line);
  if (w < 4) w = 4;
  sb_printf(sb, " %*d | ", w, loc.line);
  for (const char *p = ls; p < le; p++) {
    unsigned char c = (unsigned char)*p;
    sb_putc(sb, (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c);
  }
  sb_putc(sb, '\n');
  sb_printf(sb, " %*s | ", w, "");
  for (const char *p = ls; p < start; p++) sb_putc(sb, *p == '\t' ? '\t' : ' ');
  sb_putc(sb, '^');
  long rest = (long)(le - start) - 1;  // characters after the caret on this line
  long tildes = loc.len - 1;
  if (tildes > rest) tildes = rest;
  for (long i = 0; i < tildes; i++) sb_putc(sb, '~');
  sb_putc(sb, '\n');
}

void diag_vat(Diag *d, DiagLevel lv, Loc loc, const char *fmt, va_list ap) {
  if (!admit(d, lv)) return;
  StrBuf *sb = &d->text;
  if (!loc.file && !loc.src) {
    sb_printf(sb, "tilejit: %s: ", level_name(lv));
    sb_vprintf(sb, fmt, ap);
    sb_putc(sb, '\n');
    return;
  }
  sb_printf(sb, "%s:%d:%d: %s: ", loc.file ? loc.file : "<input>", loc.line, loc.col,
            level_name(lv));
  sb_vprintf(sb, fmt, ap);
  sb_putc(sb, '\n');
  if (loc.src && loc.line > 0 && loc.offset >= 0) render_source(sb, loc);
}

void diag_at(Diag *d, DiagLevel lv, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_vat(d, lv, loc, fmt, ap);
  va_end(ap);
}

void diag_plain(Diag *d, DiagLevel lv, const char *fmt, ...) {
  if (!admit(d, lv)) return;
  sb_printf(&d->text, "tilejit: %s: ", level_name(lv));
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(&d->text, fmt, ap);
  va_end(ap);
  sb_putc(&d->text, '\n');
}
