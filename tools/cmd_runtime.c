/* cmd_runtime.c: `tilejit info` and `tilejit cache ...`.
 *
 * Public API only (the CLI links the shared library). Exit codes: 0 ok,
 * 1 error, 2 usage; errors go to stderr as "tilejit: error: ...". `info`
 * succeeds on a machine without CUDA: it says what is missing instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tilejit/tilejit.h"

static void human_bytes(char *buf, size_t n, double b) {
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, u++;
  if (u == 0) snprintf(buf, n, "%.0f %s", b, units[u]);
  else snprintf(buf, n, "%.1f %s", b, units[u]);
}

static void human_age(char *buf, size_t n, double s) {
  if (s < 120) snprintf(buf, n, "%.0fs", s);
  else if (s < 7200) snprintf(buf, n, "%.0fm", s / 60);
  else if (s < 2 * 86400) snprintf(buf, n, "%.0fh", s / 3600);
  else snprintf(buf, n, "%.0fd", s / 86400);
}

static tj_ctx *make_ctx(void) {
  tj_ctx *ctx = NULL;
  tj_status st = tj_ctx_create(&ctx);
  if (st != TJ_OK) fprintf(stderr, "tilejit: error: cannot create a context: %s\n", tj_status_str(st));
  return ctx;
}

// Hook for the blocks library (blocks/): when it lands, list the available
// blocks and their variants here. Until then it prints nothing, rather than
// a list that would be wrong.
static void info_print_blocks(FILE *out) { (void)out; }

static void info_usage(FILE *f) {
  fputs("usage: tilejit info\n\n"
        "Prints the tilejit, LLVM and CUDA driver versions, every CUDA device\n"
        "(compute capability, SMs, memory, the arch tilejit compiles for) and\n"
        "the compile cache (directory, entries, size). Works without a GPU.\n",
        f);
}

int cmd_info(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      info_usage(stdout);
      return 0;
    }
    fprintf(stderr, "tilejit: error: unknown argument '%s' to 'info'\n\n", argv[i]);
    info_usage(stderr);
    return 2;
  }
  tj_ctx *ctx = make_ctx();
  if (!ctx) return 1;
  printf("tilejit %s\n", tj_version());
  printf("  LLVM:         %s\n", tj_llvm_version());
  int drv = 0;
  if (tj_driver_version(ctx, &drv) == TJ_OK)
    printf("  CUDA driver:  %d.%d\n", drv / 1000, (drv % 1000) / 10);
  else
    printf("  CUDA driver:  not available (%s)\n", tj_ctx_last_error(ctx));

  int n = 0;
  tj_status st = tj_device_count(ctx, &n);
  printf("devices:\n");
  if (st != TJ_OK) {
    printf("  none (%s)\n", st == TJ_ERR_NO_DEVICE && drv == 0 ? "no driver" : tj_ctx_last_error(ctx));
  }
  for (int d = 0; d < n; d++) {
    tj_device_info di;
    if (tj_device_query(ctx, d, &di) != TJ_OK) {
      printf("  %d: (query failed: %s)\n", d, tj_ctx_last_error(ctx));
      continue;
    }
    char mem[32];
    human_bytes(mem, sizeof mem, (double)di.total_mem);
    printf("  %d: %s, compute capability %d.%d, %d SMs, %s, shared memory %d KiB/block, compiles for %s\n",
           d, di.name, di.cc_major, di.cc_minor, di.sm_count, mem, di.max_shared_per_block / 1024,
           di.arch[0] ? di.arch : "(unsupported: needs 8.0+)");
  }

  printf("cache:\n");
  const char *dir = NULL;
  if (tj_cache_dir(ctx, &dir) != TJ_OK) {
    printf("  directory:    none (%s)\n", tj_ctx_last_error(ctx));
  } else {
    tj_cache_summary s;
    tj_cache_stats(ctx, &s);
    char size[32], cap[32] = "none";
    human_bytes(size, sizeof size, (double)s.bytes);
    if (s.max_bytes) human_bytes(cap, sizeof cap, (double)s.max_bytes);
    printf("  directory:    %s%s\n", dir, s.enabled ? "" : " (disabled: TILEJIT_CACHE=0)");
    printf("  entries:      %d (%s), size cap %s\n", s.entries, size, cap);
  }
  info_print_blocks(stdout);
  tj_ctx_free(ctx);
  return 0;
}

static void cache_usage(FILE *f) {
  fputs("usage: tilejit cache <command>\n\n"
        "commands:\n"
        "  list    the entries: key, kernel, arch, size, time since last use, and what code\n"
        "          they hold (ptx; ptx+cubin for an entry an older tilejit wrote)\n"
        "  clear   remove every entry\n"
        "  dir     print the cache directory\n\n"
        "The directory is $TILEJIT_CACHE_DIR, else $XDG_CACHE_HOME/tilejit, else\n"
        "~/.cache/tilejit. TILEJIT_CACHE=0 disables the cache; TILEJIT_CACHE_MAX_MB\n"
        "caps its size (least recently used entries are evicted).\n",
        f);
}

static int cache_list(tj_ctx *ctx) {
  tj_cache_entry *e = NULL;
  int n = 0;
  if (tj_cache_list(ctx, &e, &n) != TJ_OK) {
    fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
    return 1;
  }
  const char *dir = NULL;
  tj_cache_dir(ctx, &dir);
  printf("%s: %d entr%s\n", dir, n, n == 1 ? "y" : "ies");
  if (n) printf("%-16s  %-24s  %-7s  %10s  %6s  %s\n", "KEY", "KERNEL", "ARCH", "SIZE", "AGE", "CODE");
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    char size[32], age[32];
    human_bytes(size, sizeof size, (double)e[i].bytes);
    human_age(age, sizeof age, e[i].age_s);
    printf("%-16.16s  %-24s  %-7s  %10s  %6s  %s\n", e[i].key, e[i].name, e[i].arch, size, age,
           e[i].has_cubin ? "ptx+cubin" : "ptx");
    total += e[i].bytes;
  }
  if (n) {
    char size[32];
    human_bytes(size, sizeof size, (double)total);
    printf("total %s\n", size);
  }
  tj_cache_list_free(e);
  return 0;
}

int cmd_cache(int argc, char **argv) {
  if (argc < 2) {
    cache_usage(stderr);
    return 2;
  }
  const char *sub = argv[1];
  if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
    cache_usage(stdout);
    return 0;
  }
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      cache_usage(stdout);
      return 0;
    }
    fprintf(stderr, "tilejit: error: unknown argument '%s' to 'cache %s'\n", argv[i], sub);
    return 2;
  }
  if (strcmp(sub, "list") && strcmp(sub, "clear") && strcmp(sub, "dir")) {
    fprintf(stderr, "tilejit: error: unknown cache command '%s'\n\n", sub);
    cache_usage(stderr);
    return 2;
  }
  tj_ctx *ctx = make_ctx();
  if (!ctx) return 1;
  int rc = 0;
  if (!strcmp(sub, "list")) {
    rc = cache_list(ctx);
  } else if (!strcmp(sub, "dir")) {
    const char *dir;
    if (tj_cache_dir(ctx, &dir) == TJ_OK) {
      printf("%s\n", dir);
    } else {
      fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
      rc = 1;
    }
  } else {
    int removed = 0;
    if (tj_cache_clear(ctx, &removed) == TJ_OK) {
      const char *dir = "";
      tj_cache_dir(ctx, &dir);
      printf("removed %d entr%s from %s\n", removed, removed == 1 ? "y" : "ies", dir);
    } else {
      fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
      rc = 1;
    }
  }
  tj_ctx_free(ctx);
  return rc;
}
