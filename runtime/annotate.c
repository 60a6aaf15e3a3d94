/* annotate.c: PTX with the .tj source lines it came from, for the CLI's
 * `--emit ptx+src` and for users reading why a kernel is fast or slow. The
 * work is cg_ptx_annotate's; this file keeps the result with the kernel. */
#include <stdlib.h>

#include "api.h"

// The source text of the kernel: every Loc of its IR points into it.
static const char *kernel_source(const tj_kernel *k) {
  const TirFunc *f = k->func;
  for (int i = 0; i < f->nparams; i++)
    if (f->params[i].loc.src) return f->params[i].loc.src;
  for (const TirInst *in = f->body ? f->body->first : NULL; in; in = in->next)
    if (in->loc.src) return in->loc.src;
  return NULL;
}

const char *tj_kernel_ptx_annotated(tj_kernel *k) {
  if (!k || !k->ptx || !k->func) return NULL;
  if (!k->ptx_annotated) {
    const char *src = kernel_source(k);
    k->ptx_annotated = src ? cg_ptx_annotate(k->ptx, src) : NULL;
  }
  return k->ptx_annotated ? k->ptx_annotated : k->ptx;
}
