/* api.c: the public entry points that drive the compiler pipeline.
 *
 * tj_kernel_compile reads as the list of passes it runs:
 *   lex -> parse -> sema (lowers to tile IR, folds, CSE, DCE) -> verify
 *   -> print tile IR -> cache key -> [cache hit | LLVM lowering -> lean passes -> PTX]
 * The front end always runs: it is fast and yields the signature and the
 * IR the interpreter needs. A cache hit then skips LLVM entirely (so
 * tj_kernel_llvm is NULL on a hit). TILEJIT_DUMP=tir,llvm,ptx (or all)
 * prints those stages to stderr as they are produced.
 * Everything a compilation allocates lives in the kernel's arena; the texts
 * handed to the user (tir, llvm, ptx) are malloc'd and owned by the kernel.
 */
#include "api.h"

#include "rt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[TJ_STATUS_COUNT] = {
  "TJ_OK", "TJ_ERR_INVALID_ARG", "TJ_ERR_COMPILE", "TJ_ERR_NOT_FOUND",
  "TJ_ERR_NO_MEMORY", "TJ_ERR_IO", "TJ_ERR_BOUNDS", "TJ_ERR_NO_DEVICE",
  "TJ_ERR_CUDA", "TJ_ERR_UNSUPPORTED", "TJ_ERR_CORRUPT", "TJ_ERR_INTERNAL",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == TJ_STATUS_COUNT,
               "status name table out of date");

const char *tj_version(void) { return "0.1.0"; }

const char *tj_status_str(tj_status s) {
  if ((unsigned)s >= TJ_STATUS_COUNT) return "TJ_ERR_UNKNOWN";
  return status_names[s];
}

tj_status api_error(tj_ctx *ctx, tj_status s, const char *fmt, ...) {
  if (!ctx) return s;
  va_list ap;
  va_start(ap, fmt);
  StrBuf sb;
  sb_init(&sb);
  sb_vprintf(&sb, fmt, ap);
  va_end(ap);
  // A message that cannot be allocated reads "out of memory" (err_oom):
  // that is then the first thing wrong, whatever s says.
  bool oom = sb.failed;
  char *msg = oom ? (sb_free(&sb), NULL) : sb_steal(&sb);
  pthread_mutex_lock(&ctx->lock);
  tj_free(ctx->err);
  ctx->err = msg;
  ctx->err_oom = !msg;
  pthread_mutex_unlock(&ctx->lock);
  return s;
}

void api_clear_error(tj_ctx *ctx) {
  pthread_mutex_lock(&ctx->lock);
  ctx->err_oom = false;
  if (ctx->err) ctx->err[0] = '\0';
  pthread_mutex_unlock(&ctx->lock);
}

tj_status tj_ctx_create(tj_ctx **out) { return tj_ctx_create_device(0, out); }

tj_status tj_ctx_create_device(int device, tj_ctx **out) {
  if (!out) return TJ_ERR_INVALID_ARG;
  *out = NULL;
  if (device < 0) return TJ_ERR_INVALID_ARG;
  tj_ctx *ctx = tj_calloc(1, sizeof *ctx);
  if (!ctx) return TJ_ERR_NO_MEMORY;
  if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
    tj_free(ctx);
    return TJ_ERR_NO_MEMORY;
  }
  ctx->err = tj_calloc(1, 1);
  if (!ctx->err) {
    pthread_mutex_destroy(&ctx->lock);
    tj_free(ctx);
    return TJ_ERR_NO_MEMORY;
  }
  if (rt_ctx_init(ctx, device) != TJ_OK) {
    tj_free(ctx->err);
    pthread_mutex_destroy(&ctx->lock);
    tj_free(ctx);
    return TJ_ERR_NO_MEMORY;
  }
  *out = ctx;
  return TJ_OK;
}

void tj_ctx_free(tj_ctx *ctx) {
  if (!ctx) return;
  rt_ctx_fini(ctx);
  tj_free(ctx->err);
  pthread_mutex_destroy(&ctx->lock);
  tj_free(ctx);
}

const char *tj_ctx_last_error(const tj_ctx *ctx) {
  if (!ctx) return "tj_ctx_last_error: ctx is NULL";
  if (ctx->err_oom) return "out of memory (while reporting an error)";
  return ctx->err ? ctx->err : "";
}

// Splits "NAME=VALUE" defines into the sema form; rejects malformed ones.
static tj_status parse_defines(tj_ctx *ctx, Arena *a, const tj_compile_opts *o, Define **out) {
  *out = NULL;
  if (o->ndefines < 0) return api_error(ctx, TJ_ERR_INVALID_ARG, "ndefines is negative (%d)", o->ndefines);
  if (o->ndefines == 0) return TJ_OK;
  if (!o->defines) return api_error(ctx, TJ_ERR_INVALID_ARG, "defines is NULL but ndefines is %d", o->ndefines);
  Define *defs = arena_alloc(a, sizeof(Define) * (size_t)o->ndefines);
  if (!defs) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  for (int i = 0; i < o->ndefines; i++) {
    const char *d = o->defines[i];
    if (!d) return api_error(ctx, TJ_ERR_INVALID_ARG, "define %d is NULL", i);
    const char *eq = strchr(d, '=');
    if (!eq || eq == d || !eq[1])
      return api_error(ctx, TJ_ERR_INVALID_ARG, "define '%s' is not of the form NAME=VALUE", d);
    defs[i].name = arena_strndup(a, d, (size_t)(eq - d));
    defs[i].value = arena_strdup(a, eq + 1);
    if (!defs[i].name || !defs[i].value) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  *out = defs;
  return TJ_OK;
}

void tj_kernel_free(tj_kernel *k) {
  if (!k) return;
  rt_kernel_free(k);
  tj_free(k->name);
  tj_free(k->tir);
  tj_free(k->llvm);
  tj_free(k->ptx);
  tj_free(k->ptx_annotated);
  tj_free(k->arch);
  arena_free(&k->arena);
  tj_free(k);
}

// Turns a Diag into the context's error (diagnostics text verbatim).
static tj_status diag_error(tj_ctx *ctx, Diag *d, tj_status s) {
  const char *text = d->text.data ? d->text.data : "";
  if (!*text) return api_error(ctx, s, "%s", tj_status_str(s));
  return api_error(ctx, s, "%s", text);
}

static tj_status run_frontend(tj_ctx *ctx, tj_kernel *k, const tj_compile_opts *o,
                              const char *src, size_t len, const char *file) {
  Arena *a = &k->arena;
  Diag d;
  diag_init(&d);
  tj_status st = TJ_OK;

  Define *defs = NULL;
  if ((st = parse_defines(ctx, a, o, &defs)) != TJ_OK) goto out;

  char *src_copy = arena_strndup(a, src, len);
  char *file_copy = arena_strdup(a, file);
  if (!src_copy || !file_copy) { st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory"); goto out; }

  Token *toks = lex_tokenize(a, &d, file_copy, src_copy, len);
  Module *m = toks ? parse_module(a, &d, toks) : NULL;
  if (!m || a->failed) { st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory while parsing"); goto out; }
  if (d.nerrors) { st = diag_error(ctx, &d, TJ_ERR_COMPILE); goto out; }

  SemaOptions so = { .kernel = o->kernel, .defines = defs, .ndefines = o->ndefines,
                     .num_warps = o->num_warps };
  TirFunc *f = sema_lower(a, &d, m, &so);
  if (a->failed) { st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory in sema"); goto out; }
  if (!f || d.nerrors) { st = diag_error(ctx, &d, TJ_ERR_COMPILE); goto out; }
  if (o->flags & TJ_COMPILE_DEBUG) {
    // The verifier's own scratch running out is not malformed IR.
    tj_status vs = tir_verify_status(f, &d);
    if (vs == TJ_ERR_NO_MEMORY) { st = api_error(ctx, vs, "out of memory while verifying the tile IR"); goto out; }
    if (vs != TJ_OK) { st = diag_error(ctx, &d, TJ_ERR_INTERNAL); goto out; }
  }
  k->func = f;
  k->num_warps = f->num_warps;

  StrBuf sb;
  sb_init(&sb);
  tir_print(&sb, f);
  if (sb.failed) { sb_free(&sb); st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory"); goto out; }
  k->tir = sb_steal(&sb);
  k->name = tj_strdup(f->name);
  if (!k->tir || !k->name) st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
out:
  diag_free(&d);
  return st;
}

bool api_dump_wanted(const char *stage) {
  const char *v = getenv("TILEJIT_DUMP");
  if (!v || !*v) return false;
  size_t n = strlen(stage);
  for (const char *p = v; *p;) {
    size_t len = strcspn(p, ",");
    if ((len == n && !strncmp(p, stage, n)) || (len == 3 && !strncmp(p, "all", 3))) return true;
    p += len;
    if (*p == ',') p++;
  }
  return false;
}

void api_dump(const char *stage, const char *kernel, const char *text) {
  fprintf(stderr, "// ---- tilejit %s: %s ----\n%s", stage, kernel ? kernel : "?", text ? text : "");
  if (text && *text && text[strlen(text) - 1] != '\n') fputc('\n', stderr);
  fprintf(stderr, "// ---- end %s: %s ----\n", stage, kernel ? kernel : "?");
}

// The unspecialised variant (spec 0) through the cache. The arch is the
// caller's, else the context's device, else sm_80 (rt_default_arch).
// Parses tj_compile_opts.assume into the launcher's spec bits (RT_SPEC_BITS
// per parameter, as rt_compile_variant expects).
static tj_status parse_assume(tj_ctx *ctx, const TirFunc *f, const char *assume, uint64_t *spec) {
  *spec = 0;
  if (!assume || !*assume) return TJ_OK;
  if (!strcmp(assume, "all")) {
    for (int i = 0; i < f->nparams && i < RT_SPEC_MAX_PARAMS; i++) {
      const TirParam *p = &f->params[i];
      unsigned bits = p->ptr ? TIR_SPEC_ALIGN16 : dtype_is_int(p->dtype) ? TIR_SPEC_DIV16 : 0;
      *spec |= (uint64_t)bits << (RT_SPEC_BITS * i);
    }
    return TJ_OK;
  }
  const char *s = assume;
  while (*s) {
    const char *eq = strchr(s, '='), *end = strchr(s, ',');
    if (!end) end = s + strlen(s);
    if (!eq || eq > end || eq == s)
      return api_error(ctx, TJ_ERR_INVALID_ARG, "assume: '%.*s' is not NAME=16 or NAME=1", (int)(end - s), s);
    int i = 0;
    while (i < f->nparams && (strlen(f->params[i].name) != (size_t)(eq - s) ||
                              strncmp(f->params[i].name, s, (size_t)(eq - s))))
      i++;
    if (i == f->nparams)
      return api_error(ctx, TJ_ERR_INVALID_ARG, "assume: kernel '%s' has no parameter '%.*s'", f->name,
                       (int)(eq - s), s);
    const TirParam *p = &f->params[i];
    int v = (int)strtol(eq + 1, NULL, 10);
    unsigned bits;
    if (p->ptr && v == 16) bits = TIR_SPEC_ALIGN16;
    else if (!p->ptr && dtype_is_int(p->dtype) && v == 16) bits = TIR_SPEC_DIV16;
    else if (!p->ptr && dtype_is_int(p->dtype) && v == 1) bits = TIR_SPEC_ONE;
    else
      return api_error(ctx, TJ_ERR_INVALID_ARG, "assume: '%.*s': %s '%s' can only be assumed %s",
                       (int)(end - s), s, p->ptr ? "pointer" : "parameter", p->name,
                       p->ptr ? "=16 (16-byte aligned)" : dtype_is_int(p->dtype) ? "=16 or =1" : "nothing");
    if (i < RT_SPEC_MAX_PARAMS) *spec |= (uint64_t)bits << (RT_SPEC_BITS * i);
    s = *end ? end + 1 : end;
  }
  return TJ_OK;
}

static tj_status run_backend(tj_ctx *ctx, tj_kernel *k, const tj_compile_opts *o) {
  char arch[16];
  tj_status st = rt_default_arch(ctx, o->arch, arch);
  if (st != TJ_OK) return st;
  uint64_t spec;
  if ((st = parse_assume(ctx, k->func, o->assume, &spec)) != TJ_OK) return st;
  RtEntry *e;
  char *llvm = NULL;
  if ((st = rt_compile_variant(ctx, k, spec, arch, true, &e, &llvm)) != TJ_OK) return st;
  k->llvm = llvm;
  k->ptx = tj_strdup(e->ptx);
  k->shared_bytes = e->shared_bytes;
  k->arch = tj_strdup(arch);
  if (!k->ptx || !k->arch) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  return TJ_OK;
}

tj_status tj_kernel_compile(tj_ctx *ctx, const tj_compile_opts *o, tj_kernel **out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_compile: out is NULL");
  *out = NULL;
  if (!o) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_compile: opts is NULL");
  if (!o->source && !o->path)
    return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_compile: neither source nor path is set");
  const unsigned known = TJ_COMPILE_NO_CACHE | TJ_COMPILE_FRONTEND | TJ_COMPILE_DEBUG | TJ_COMPILE_NO_FP_FUSION;
  if (o->flags & ~known)
    return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_compile: unknown flags 0x%x", o->flags & ~known);
  if (o->num_warps < 0 || o->num_warps > 32 || (o->num_warps & (o->num_warps - 1)))
    return api_error(ctx, TJ_ERR_INVALID_ARG, "num_warps must be a power of two from 1 to 32, got %d",
                     o->num_warps);
  api_clear_error(ctx);

  char *filedata = NULL;
  const char *src = o->source;
  size_t len = o->source_len;
  const char *file = o->path ? o->path : "<source>";
  if (!src) {
    StrBuf err;
    sb_init(&err);
    tj_status st = util_read_file(o->path, &filedata, &len, &err);
    if (st != TJ_OK) {
      api_error(ctx, st, "%s", err.data ? err.data : "cannot read file");
      sb_free(&err);
      return st;
    }
    sb_free(&err);
    src = filedata;
  } else if (len == 0) {
    len = strlen(src);
  }

  tj_kernel *k = tj_calloc(1, sizeof *k);
  if (!k) { tj_free(filedata); return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory"); }
  arena_init(&k->arena);

  tj_status st = run_frontend(ctx, k, o, src, len, file);
  if (st == TJ_OK) st = rt_kernel_init(ctx, k, src, len, o->flags);
  tj_free(filedata);
  if (st == TJ_OK && api_dump_wanted("tir")) api_dump("tir", k->name, k->tir);
  if (st == TJ_OK && !(o->flags & TJ_COMPILE_FRONTEND)) st = run_backend(ctx, k, o);
  if (st != TJ_OK) {
    tj_kernel_free(k);
    return st;
  }
  *out = k;
  return TJ_OK;
}

const char *tj_kernel_name(const tj_kernel *k) { return k ? k->name : NULL; }
const char *tj_kernel_tir(const tj_kernel *k) { return k ? k->tir : NULL; }
const char *tj_kernel_llvm(const tj_kernel *k) { return k ? k->llvm : NULL; }
const char *tj_kernel_ptx(const tj_kernel *k) { return k ? k->ptx : NULL; }
int tj_kernel_num_warps(const tj_kernel *k) { return k ? k->num_warps : 0; }
int tj_kernel_num_params(const tj_kernel *k) { return k && k->func ? k->func->nparams : 0; }

tj_status tj_kernel_param(const tj_kernel *k, int i, tj_param_info *out) {
  if (!k || !k->func || !out || i < 0 || i >= k->func->nparams) return TJ_ERR_INVALID_ARG;
  const TirParam *p = &k->func->params[i];
  out->name = p->name;
  out->is_ptr = p->ptr;
  out->dtype = (tj_dtype)p->dtype;
  return TJ_OK;
}

// Checks that args match the kernel's signature in count and kind; shared by
// the interpreter and the GPU launcher so both reject the same mistakes.
tj_status api_check_args(tj_ctx *ctx, const tj_kernel *k, const tj_arg *args, int nargs) {
  const TirFunc *f = k->func;
  if (nargs != f->nparams)
    return api_error(ctx, TJ_ERR_INVALID_ARG, "kernel '%s' takes %d arguments, got %d",
                     f->name, f->nparams, nargs);
  if (nargs > 0 && !args)
    return api_error(ctx, TJ_ERR_INVALID_ARG, "args is NULL but nargs is %d", nargs);
  for (int i = 0; i < nargs; i++) {
    const TirParam *p = &f->params[i];
    tj_arg_kind want = p->ptr ? TJ_ARG_PTR : dtype_is_float(p->dtype) ? TJ_ARG_FLOAT : TJ_ARG_INT;
    if (args[i].kind == want) continue;
    // Integers are accepted where a float scalar is expected (exact for
    // reasonable values); nothing else converts silently.
    if (want == TJ_ARG_FLOAT && args[i].kind == TJ_ARG_INT) continue;
    static const char *const kinds[] = { "?", "pointer", "integer", "float" };
    unsigned ak = (unsigned)args[i].kind <= 3 ? (unsigned)args[i].kind : 0;
    return api_error(ctx, TJ_ERR_INVALID_ARG,
                     "argument %d ('%s') of kernel '%s' must be %s %s, got %s", i, p->name, f->name,
                     p->ptr ? "a pointer to" : "a scalar", dtype_name(p->dtype), kinds[ak]);
  }
  return TJ_OK;
}

tj_status tj_kernel_interpret(tj_ctx *ctx, const tj_kernel *k, const unsigned grid[3],
                              const tj_arg *args, int nargs) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!k || !k->func) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_interpret: kernel is NULL");
  if (!grid) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_interpret: grid is NULL");
  tj_status st = api_check_args(ctx, k, args, nargs);
  if (st != TJ_OK) return st;
  for (int i = 0; i < nargs; i++)
    if (args[i].kind == TJ_ARG_PTR && !args[i].u.buf.ptr && args[i].u.buf.nbytes)
      return api_error(ctx, TJ_ERR_INVALID_ARG, "argument %d ('%s') is NULL but has %zu bytes", i,
                       k->func->params[i].name, args[i].u.buf.nbytes);
  api_clear_error(ctx);
  Diag d;
  diag_init(&d);
  st = interp_run(k->func, grid, args, nargs, &d);
  if (st != TJ_OK) st = diag_error(ctx, &d, st);
  diag_free(&d);
  return st;
}
