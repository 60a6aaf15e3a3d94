/* cache.c: the compile cache: keys, the per-context map, on-disk entries.
 *
 * requires: codegen/hash.h (BLAKE3); produces: RtEntry objects for the
 * launcher and api.c, files under the cache directory, the tj_cache_* API.
 *
 * Keys. A key is BLAKE3 over everything that can change the generated code:
 * the tilejit version and the ELF build-id of the binary holding this code
 * (so a rebuilt library never trusts PTX from an older build), the LLVM
 * version, the source text, the kernel name, every resolved constant
 * (TirFunc.consts: defines, tunables and defaults), num_warps and the other
 * codegen options, the specialisation bits of the arguments and the arch.
 * It is computed in two steps: a digest of the kernel (cache_digest, at
 * compile time, while the source is at hand) and the key proper from digest,
 * spec and arch (cache_key, at each new variant).
 *
 * How the disk cache stays consistent. Triton's cache has lost entries and
 * mixed a cubin with another build's metadata when several processes
 * compiled at once. Here an entry is one file, <hex key>.tjc:
 *
 *   magic "TJCACHE\0" | u32 format | u32 header size | key[32]
 *   | i32 shared_bytes, num_warps, spill_stores, spill_loads
 *   | u32 name_len, arch_len | u64 ptx_len, cubin_len | u64 reserved
 *   | name | arch | ptx | cubin | BLAKE3 of all the above
 *
 * The cubin section is empty: kernels are JIT-compiled from the PTX
 * (launch.c says why not through the linker, whose cubin it held). A reader
 * still accepts a nonempty one, checksummed, and ignores it.
 *
 * all integers little-endian. A writer builds the whole entry in memory,
 * writes it to a unique temp file in the same directory (mkstemp), fsyncs
 * it and rename()s it over the final name, then fsyncs the directory.
 * rename is atomic, so a reader sees either no file or one complete entry,
 * never a mixture; concurrent writers of the same key each install a
 * complete file and the last one wins (they hold the same content). A reader
 * checks magic, version, every length against the file size, the key and the
 * checksum; on any mismatch the entry is removed (if it is still the file we
 * read), a warning is counted, and the caller rebuilds it. The cache may be
 * capped ($TILEJIT_CACHE_MAX_MB): after a write, least-recently-used entries
 * go first; a hit touches the file's mtime, which is the LRU clock.
 */
#define _GNU_SOURCE  // dl_iterate_phdr
#include "rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../codegen/hash.h"

#define CACHE_MAGIC "TJCACHE"    // 8 bytes with its NUL
#define CACHE_FORMAT 1u
#define CACHE_HEADER 96u
#define CACHE_SUM 32u
#define CACHE_EXT ".tjc"

// ---------------------------------------------------------------- keys

static pthread_once_t build_id_once = PTHREAD_ONCE_INIT;
static char build_id_hex[2 * 64 + 1];  // written once inside build_id_once

static int find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  uintptr_t target = (uintptr_t)data;
  bool mine = false;
  for (int i = 0; i < info->dlpi_phnum && !mine; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && target >= lo && target < lo + ph->p_memsz) mine = true;
  }
  if (!mine) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    const unsigned char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      const unsigned char *name = p + sizeof *nh;
      const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
      if (desc + nh->n_descsz > end) break;
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
        size_t n = nh->n_descsz < 64 ? nh->n_descsz : 64;
        for (size_t j = 0; j < n; j++) snprintf(build_id_hex + 2 * j, 3, "%02x", desc[j]);
        return 1;
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return 1;
}

static void build_id_init(void) { dl_iterate_phdr(find_build_id, (void *)(uintptr_t)&cache_build_id); }

const char *cache_build_id(void) {
  pthread_once(&build_id_once, build_id_init);
  return build_id_hex;
}

void cache_digest(const CacheKeyInputs *in, uint8_t out[32]) {
  CgHash h;
  cg_hash_init(&h);
  cg_hash_str(&h, "tilejit-cache-key");
  uint32_t fmt = CACHE_FORMAT;
  cg_hash_field(&h, &fmt, sizeof fmt);
  cg_hash_str(&h, in->tilejit_version);
  cg_hash_str(&h, in->build_id);
  cg_hash_str(&h, in->llvm_version);
  cg_hash_field(&h, in->source, in->source ? in->source_len : 0);
  cg_hash_str(&h, in->kernel);
  int32_t n = in->nconsts;
  cg_hash_field(&h, &n, sizeof n);
  for (int i = 0; i < in->nconsts; i++) {
    cg_hash_str(&h, in->consts[i].name);
    cg_hash_str(&h, in->consts[i].text);
  }
  int32_t nw = in->num_warps;
  cg_hash_field(&h, &nw, sizeof nw);
  cg_hash_str(&h, in->options);
  cg_hash_final(&h, out);
}

void cache_key(const uint8_t digest[32], uint64_t spec, const char *arch, uint8_t out[32]) {
  CgHash h;
  cg_hash_init(&h);
  cg_hash_field(&h, digest, 32);
  uint8_t s[8];
  for (int i = 0; i < 8; i++) s[i] = (uint8_t)(spec >> (8 * i));
  cg_hash_field(&h, s, 8);
  cg_hash_str(&h, arch);
  cg_hash_final(&h, out);
}

void cache_key_hex(const uint8_t key[32], char out[65]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hx[key[i] >> 4];
    out[2 * i + 1] = hx[key[i] & 15];
  }
  out[64] = '\0';
}

// ---------------------------------------------------------------- entries

RtEntry *cache_entry_new(void) {
  RtEntry *e = tj_calloc(1, sizeof *e);
  if (!e) return NULL;
  if (pthread_mutex_init(&e->mu, NULL) != 0) { tj_free(e); return NULL; }
  e->spill_stores = e->spill_loads = -1;
  return e;
}

void cache_entry_free(RtEntry *e) {
  if (!e) return;
  tj_free(e->name);
  tj_free(e->arch);
  tj_free(e->ptx);
  pthread_mutex_destroy(&e->mu);
  tj_free(e);
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void checksum(const uint8_t *buf, size_t len, uint8_t out[32]) {
  CgHash h;
  cg_hash_init(&h);
  cg_hash_update(&h, buf, len);
  cg_hash_final(&h, out);
}

tj_status cache_encode(const RtEntry *e, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  size_t nl = e->name ? strlen(e->name) : 0, al = e->arch ? strlen(e->arch) : 0;
  if (!e->ptx || nl == 0 || nl > 1024 || al == 0 || al > 64) return TJ_ERR_INTERNAL;
  size_t total = CACHE_HEADER + nl + al + e->ptx_len + CACHE_SUM;
  uint8_t *b = tj_calloc(1, total);
  if (!b) return TJ_ERR_NO_MEMORY;
  memcpy(b, CACHE_MAGIC, 8);
  put32(b + 8, CACHE_FORMAT);
  put32(b + 12, CACHE_HEADER);
  memcpy(b + 16, e->key, 32);
  put32(b + 48, (uint32_t)e->shared_bytes);
  put32(b + 52, (uint32_t)e->num_warps);
  put32(b + 56, (uint32_t)e->spill_stores);
  put32(b + 60, (uint32_t)e->spill_loads);
  put32(b + 64, (uint32_t)nl);
  put32(b + 68, (uint32_t)al);
  put64(b + 72, e->ptx_len);
  put64(b + 80, 0);   // the cubin section: empty since kernels are JIT-compiled from the PTX
  uint8_t *p = b + CACHE_HEADER;
  memcpy(p, e->name, nl), p += nl;
  memcpy(p, e->arch, al), p += al;
  memcpy(p, e->ptx, e->ptx_len), p += e->ptx_len;
  checksum(b, total - CACHE_SUM, p);
  *out = b;
  *len = total;
  return TJ_OK;
}

static char *dup_n(const uint8_t *p, size_t n) {
  char *s = tj_malloc(n + 1);
  if (!s) return NULL;
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

tj_status cache_decode(const uint8_t *b, size_t len, const uint8_t key[32], RtEntry **out,
                       StrBuf *why) {
  *out = NULL;
  if (len < CACHE_HEADER + CACHE_SUM) {
    sb_printf(why, "truncated (%zu bytes)", len);
    return TJ_ERR_CORRUPT;
  }
  if (memcmp(b, CACHE_MAGIC, 8) != 0) { sb_puts(why, "bad magic"); return TJ_ERR_CORRUPT; }
  if (get32(b + 8) != CACHE_FORMAT || get32(b + 12) != CACHE_HEADER) {
    sb_printf(why, "format %u, expected %u", get32(b + 8), CACHE_FORMAT);
    return TJ_ERR_CORRUPT;
  }
  uint64_t nl = get32(b + 64), al = get32(b + 68), pl = get64(b + 72), cl = get64(b + 80);
  // Each length is bounded by the file size first, so the sum cannot overflow.
  if (nl == 0 || nl > 1024 || al == 0 || al > 64 || pl > len || cl > len ||
      CACHE_HEADER + nl + al + pl + cl + CACHE_SUM != len) {
    sb_printf(why, "lengths do not match the file size (%zu bytes)", len);
    return TJ_ERR_CORRUPT;
  }
  uint8_t sum[32];
  checksum(b, len - CACHE_SUM, sum);
  if (memcmp(sum, b + len - CACHE_SUM, 32) != 0) { sb_puts(why, "checksum mismatch"); return TJ_ERR_CORRUPT; }
  if (key && memcmp(b + 16, key, 32) != 0) { sb_puts(why, "entry holds another key"); return TJ_ERR_CORRUPT; }
  RtEntry *e = cache_entry_new();
  if (!e) return TJ_ERR_NO_MEMORY;
  memcpy(e->key, b + 16, 32);
  e->shared_bytes = (int32_t)get32(b + 48);
  e->num_warps = (int32_t)get32(b + 52);
  e->spill_stores = (int32_t)get32(b + 56);
  e->spill_loads = (int32_t)get32(b + 60);
  const uint8_t *p = b + CACHE_HEADER;
  e->name = dup_n(p, nl), p += nl;
  e->arch = dup_n(p, al), p += al;
  e->ptx = dup_n(p, pl);   // a cubin section after it (an older writer's) is checked, not kept
  e->ptx_len = pl;
  if (!e->name || !e->arch || !e->ptx) {
    cache_entry_free(e);
    return TJ_ERR_NO_MEMORY;
  }
  *out = e;
  return TJ_OK;
}

// ---------------------------------------------------------------- disk

tj_status cache_path(const char *dir, const uint8_t key[32], StrBuf *out) {
  char hex[65];
  cache_key_hex(key, hex);
  sb_printf(out, "%s/%s" CACHE_EXT, dir, hex);
  return out->failed ? TJ_ERR_NO_MEMORY : TJ_OK;
}

static tj_status read_all(int fd, uint8_t **out, size_t *len, StrBuf *why) {
  struct stat st;
  if (fstat(fd, &st) != 0) { sb_printf(why, "fstat: %s", strerror(errno)); return TJ_ERR_IO; }
  size_t n = (size_t)st.st_size;
  uint8_t *b = tj_malloc(n ? n : 1);
  if (!b) return TJ_ERR_NO_MEMORY;
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, b + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { tj_free(b); sb_printf(why, "read: %s", strerror(errno)); return TJ_ERR_IO; }
    if (r == 0) break;
    got += (size_t)r;
  }
  *out = b;
  *len = got;
  return TJ_OK;
}

tj_status cache_disk_read(const char *dir, const uint8_t key[32], RtEntry **out, StrBuf *why) {
  *out = NULL;
  StrBuf path;
  sb_init(&path);
  if (cache_path(dir, key, &path) != TJ_OK) { sb_free(&path); return TJ_ERR_NO_MEMORY; }
  int fd = open(path.data, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    tj_status s = errno == ENOENT ? TJ_ERR_NOT_FOUND : TJ_ERR_IO;
    if (s == TJ_ERR_IO) sb_printf(why, "%s: %s", path.data, strerror(errno));
    sb_free(&path);
    return s;
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  tj_status s = read_all(fd, &buf, &len, why);
  if (s == TJ_OK) s = cache_decode(buf, len, key, out, why);
  tj_free(buf);
  if (s == TJ_ERR_CORRUPT) {
    // Remove it only if it is still the file we read: a concurrent writer
    // may have renamed a good entry over it meanwhile.
    struct stat a, b;
    if (fstat(fd, &a) == 0 && stat(path.data, &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev)
      unlink(path.data);
  } else if (s == TJ_OK) {
    futimens(fd, NULL);  // LRU clock; failure (read-only cache) is harmless
  }
  close(fd);
  sb_free(&path);
  return s;
}

static int mkdir_p(const char *dir) {
  char *p = tj_strdup(dir);
  if (!p) return -1;
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) { tj_free(p); return -1; }
    *s = '/';
  }
  int r = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
  tj_free(p);
  return r;
}

static int write_full(int fd, const uint8_t *b, size_t n) {
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

tj_status cache_write_atomic(const char *dir, const char *name, const uint8_t *buf, size_t len,
                             StrBuf *why) {
  if (mkdir_p(dir) != 0) {
    sb_printf(why, "cannot create %s: %s", dir, strerror(errno));
    return TJ_ERR_IO;
  }
  tj_status s = TJ_OK;
  StrBuf tmp, path;
  sb_init(&tmp);
  sb_init(&path);
  sb_printf(&tmp, "%s/.%s.tmp.XXXXXX", dir, name);
  sb_printf(&path, "%s/%s", dir, name);
  if (tmp.failed || path.failed) { s = TJ_ERR_NO_MEMORY; goto out; }
  int fd = mkstemp(tmp.data);
  if (fd < 0) {
    sb_printf(why, "cannot create a temp file in %s: %s", dir, strerror(errno));
    s = TJ_ERR_IO;
    goto out;
  }
  fchmod(fd, 0644);
  if (write_full(fd, buf, len) != 0 || fsync(fd) != 0) {
    sb_printf(why, "cannot write %s: %s", tmp.data, strerror(errno));
    close(fd);
    unlink(tmp.data);
    s = TJ_ERR_IO;
    goto out;
  }
  close(fd);
  if (rename(tmp.data, path.data) != 0) {
    sb_printf(why, "cannot rename to %s: %s", path.data, strerror(errno));
    unlink(tmp.data);
    s = TJ_ERR_IO;
    goto out;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);  // make the rename itself durable
    close(dfd);
  }
out:
  sb_free(&tmp);
  sb_free(&path);
  return s;
}

tj_status cache_read_fd(int fd, uint8_t **out, size_t *len, StrBuf *why) { return read_all(fd, out, len, why); }

tj_status cache_disk_write(const char *dir, const RtEntry *e, StrBuf *why) {
  uint8_t *buf = NULL;
  size_t len = 0;
  tj_status s = cache_encode(e, &buf, &len);
  if (s != TJ_OK) { sb_puts(why, "cannot encode entry"); return s; }
  char name[65 + sizeof CACHE_EXT];
  cache_key_hex(e->key, name);
  memcpy(name + 64, CACHE_EXT, sizeof CACHE_EXT);
  s = cache_write_atomic(dir, name, buf, len, why);
  tj_free(buf);
  return s;
}

typedef struct DirItem {
  char *name;
  uint64_t bytes;
  struct timespec mtime;
} DirItem;

static bool is_entry_name(const char *n) {
  size_t l = strlen(n);
  return l == 64 + strlen(CACHE_EXT) && !strcmp(n + 64, CACHE_EXT) && n[0] != '.';
}
static bool is_temp_name(const char *n) { return n[0] == '.' && strstr(n, ".tmp.") != NULL; }

static void free_items(DirItem *it, int n) {
  for (int i = 0; i < n; i++) tj_free(it[i].name);
  tj_free(it);
}

// Lists entry files of dir (and, with temps, stray temp files). A missing
// directory is an empty cache. TJ_ERR_IO (errno set) when the directory
// cannot be read; TJ_ERR_NO_MEMORY, with nothing listed, when the list cannot
// be built whole: a partial list would make tj_cache_list and the stats lie.
static tj_status scan_dir(const char *dir, bool temps, DirItem **out, int *count) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? TJ_OK : TJ_ERR_IO;
  DirItem *items = NULL;
  int n = 0, cap = 0;
  tj_status s = TJ_OK;
  struct dirent *de;
  StrBuf p;
  sb_init(&p);
  while ((de = readdir(d)) != NULL) {
    if (!is_entry_name(de->d_name) && !(temps && is_temp_name(de->d_name))) continue;
    p.len = 0;
    sb_printf(&p, "%s/%s", dir, de->d_name);
    if (p.failed) { s = TJ_ERR_NO_MEMORY; break; }
    struct stat st;
    if (stat(p.data, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (n == cap) {
      int ncap = cap ? cap * 2 : 32;
      DirItem *ni = tj_realloc(items, sizeof *items * (size_t)ncap);
      if (!ni) { s = TJ_ERR_NO_MEMORY; break; }
      items = ni;
      cap = ncap;
    }
    items[n].name = tj_strdup(de->d_name);
    if (!items[n].name) { s = TJ_ERR_NO_MEMORY; break; }
    items[n].bytes = (uint64_t)st.st_size;
    items[n].mtime = st.st_mtim;
    n++;
  }
  sb_free(&p);
  closedir(d);
  if (s != TJ_OK) {
    free_items(items, n);
    return s;
  }
  *out = items;
  *count = n;
  return TJ_OK;
}

// The error of a scan_dir that failed, on ctx.
static tj_status scan_error(tj_ctx *ctx, tj_status s, const char *dir) {
  if (s == TJ_ERR_NO_MEMORY) return api_error(ctx, s, "out of memory while reading cache directory %s", dir);
  return api_error(ctx, s, "cannot read cache directory %s: %s", dir, strerror(errno));
}

static int by_mtime(const void *a, const void *b) {
  const DirItem *x = a, *y = b;
  if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
  if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
  return strcmp(x->name, y->name);
}

// Best effort, like the write that calls it: out of memory (or an unreadable
// directory) evicts nothing, and a path that cannot be built skips that file;
// the cache is then over its limit until the next write, never damaged.
int cache_disk_evict(const char *dir, uint64_t max_bytes, const uint8_t keep[32]) {
  DirItem *it;
  int n;
  if (scan_dir(dir, true, &it, &n) != TJ_OK) return 0;
  char keephex[65] = "";
  if (keep) cache_key_hex(keep, keephex);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  uint64_t total = 0;
  int removed = 0;
  StrBuf p;
  sb_init(&p);
  for (int i = 0; i < n; i++) {
    if (is_temp_name(it[i].name)) {
      // A temp file older than an hour belongs to a writer that died.
      if (now.tv_sec - it[i].mtime.tv_sec > 3600) {
        p.len = 0;
        sb_printf(&p, "%s/%s", dir, it[i].name);
        if (!p.failed) unlink(p.data);
      }
      it[i].bytes = 0;
      continue;
    }
    total += it[i].bytes;
  }
  qsort(it, (size_t)n, sizeof *it, by_mtime);
  for (int i = 0; i < n && total > max_bytes; i++) {
    if (!it[i].bytes || (keep && !strncmp(it[i].name, keephex, 64))) continue;
    p.len = 0;
    sb_printf(&p, "%s/%s", dir, it[i].name);
    if (!p.failed && unlink(p.data) == 0) {
      total -= it[i].bytes;
      removed++;
    }
  }
  sb_free(&p);
  free_items(it, n);
  return removed;
}

// ---------------------------------------------------------------- per-context map

static unsigned bucket_of(const uint8_t key[32]) {
  return (unsigned)(((uint32_t)key[0] | (uint32_t)key[1] << 8) % RT_BUCKETS);
}

// Requires rt->mu.
static RtEntry *map_find(RtDevice *rt, const uint8_t key[32]) {
  for (RtEntry *e = rt->buckets[bucket_of(key)]; e; e = e->next)
    if (!memcmp(e->key, key, 32)) return e;
  return NULL;
}

static bool disk_usable(RtDevice *rt) { return rt->cache_on && rt->cache_dir; }

RtEntry *cache_insert(tj_ctx *ctx, RtEntry *e, bool write_disk) {
  RtDevice *rt = ctx->rt;
  pthread_mutex_lock(&rt->mu);
  RtEntry *old = map_find(rt, e->key);
  if (!old) {
    unsigned b = bucket_of(e->key);
    e->next = rt->buckets[b];
    rt->buckets[b] = e;
  }
  pthread_mutex_unlock(&rt->mu);
  if (old) {
    // Same key, same content: keep the entry others may already point at.
    cache_entry_free(e);
    return old;
  }
  if (write_disk && disk_usable(rt)) cache_update_disk(ctx, e);
  return e;
}

void cache_update_disk(tj_ctx *ctx, const RtEntry *e) {
  RtDevice *rt = ctx->rt;
  if (!disk_usable(rt)) return;
  StrBuf why;
  sb_init(&why);
  tj_status s = cache_disk_write(rt->cache_dir, e, &why);
  if (s != TJ_OK) {
    rt_warn(ctx, "cannot write cache entry: %s", why.data ? why.data : tj_status_str(s));
  } else {
    int ev = rt->cache_max_bytes ? cache_disk_evict(rt->cache_dir, rt->cache_max_bytes, e->key) : 0;
    pthread_mutex_lock(&rt->mu);
    rt->counters.writes++;
    rt->counters.evictions += (uint64_t)ev;
    pthread_mutex_unlock(&rt->mu);
  }
  sb_free(&why);
}

tj_status cache_lookup(tj_ctx *ctx, const uint8_t key[32], bool use_disk, RtEntry **out) {
  RtDevice *rt = ctx->rt;
  *out = NULL;
  pthread_mutex_lock(&rt->mu);
  RtEntry *e = map_find(rt, key);
  if (e) rt->counters.mem_hits++;
  pthread_mutex_unlock(&rt->mu);
  if (e) {
    *out = e;
    return TJ_OK;
  }
  if (use_disk && disk_usable(rt)) {
    StrBuf why;
    sb_init(&why);
    tj_status s = cache_disk_read(rt->cache_dir, key, &e, &why);
    if (s == TJ_OK) {
      sb_free(&why);
      pthread_mutex_lock(&rt->mu);
      rt->counters.disk_hits++;
      pthread_mutex_unlock(&rt->mu);
      *out = cache_insert(ctx, e, false);
      return TJ_OK;
    }
    if (s == TJ_ERR_CORRUPT || s == TJ_ERR_IO) {
      char hex[65];
      cache_key_hex(key, hex);
      if (s == TJ_ERR_CORRUPT) {
        pthread_mutex_lock(&rt->mu);
        rt->counters.corrupt++;
        pthread_mutex_unlock(&rt->mu);
      }
      rt_warn(ctx, "cache entry %.16s... %s: %s; rebuilding it", hex,
              s == TJ_ERR_CORRUPT ? "is corrupt and was removed" : "cannot be read",
              why.data ? why.data : "");
    }
    sb_free(&why);
  }
  pthread_mutex_lock(&rt->mu);
  rt->counters.misses++;
  pthread_mutex_unlock(&rt->mu);
  return TJ_ERR_NOT_FOUND;
}

void cache_map_clear(tj_ctx *ctx, bool unload) {
  RtDevice *rt = ctx->rt;
  pthread_mutex_lock(&rt->mu);
  for (int b = 0; b < RT_BUCKETS; b++) {
    RtEntry *e = rt->buckets[b];
    while (e) {
      RtEntry *next = e->next;
      if (unload && e->mod) rt_driver()->cuModuleUnload(e->mod);
      cache_entry_free(e);
      e = next;
    }
    rt->buckets[b] = NULL;
  }
  pthread_mutex_unlock(&rt->mu);
}

// ---------------------------------------------------------------- public

tj_status tj_cache_dir(tj_ctx *ctx, const char **out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_cache_dir: out is NULL");
  *out = ctx->rt->cache_dir;
  if (!*out)
    return api_error(ctx, TJ_ERR_NOT_FOUND,
                     "no cache directory: set TILEJIT_CACHE_DIR, XDG_CACHE_HOME or HOME");
  return TJ_OK;
}

tj_status tj_ctx_set_cache_dir(tj_ctx *ctx, const char *dir) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!dir || !*dir) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_ctx_set_cache_dir: dir is empty");
  char *d = tj_strdup(dir);
  if (!d) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  pthread_mutex_lock(&ctx->rt->mu);
  tj_free(ctx->rt->cache_dir);
  ctx->rt->cache_dir = d;
  pthread_mutex_unlock(&ctx->rt->mu);
  return TJ_OK;
}

// Reads the header of an entry file for listing (no checksum: listing stays
// cheap; damaged entries are caught when used).
void cache_peek(const uint8_t *h, size_t n, tj_cache_entry *ce) {
  if (n < CACHE_HEADER || memcmp(h, CACHE_MAGIC, 8) != 0) {
    snprintf(ce->name, sizeof ce->name, "(damaged)");
    return;
  }
  uint32_t nl = get32(h + 64), al = get32(h + 68);
  if (nl > 1024 || al > 64 || CACHE_HEADER + nl + al > n) return;
  size_t cn = nl < sizeof ce->name - 1 ? nl : sizeof ce->name - 1;
  memcpy(ce->name, h + CACHE_HEADER, cn);
  ce->name[cn] = '\0';
  size_t ca = al < sizeof ce->arch - 1 ? al : sizeof ce->arch - 1;
  memcpy(ce->arch, h + CACHE_HEADER + nl, ca);
  ce->arch[ca] = '\0';
  ce->has_cubin = get64(h + 80) > 0;
}

static void peek_entry(const char *path, tj_cache_entry *ce) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  uint8_t h[CACHE_HEADER + 1024 + 64];
  ssize_t n = read(fd, h, sizeof h);
  close(fd);
  cache_peek(h, n > 0 ? (size_t)n : 0, ce);
}

static int by_entry_name(const void *a, const void *b) {
  const tj_cache_entry *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  c = strcmp(x->arch, y->arch);
  return c ? c : strcmp(x->key, y->key);
}

tj_status tj_cache_list(tj_ctx *ctx, tj_cache_entry **out, int *count) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out || !count) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_cache_list: out or count is NULL");
  *out = NULL;
  *count = 0;
  const char *dir;
  tj_status s = tj_cache_dir(ctx, &dir);
  if (s != TJ_OK) return s;
  DirItem *it;
  int n;
  if ((s = scan_dir(dir, false, &it, &n)) != TJ_OK) return scan_error(ctx, s, dir);
  tj_cache_entry *ents = tj_calloc((size_t)(n ? n : 1), sizeof *ents);
  if (!ents) { free_items(it, n); return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory"); }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  StrBuf p;
  sb_init(&p);
  for (int i = 0; i < n; i++) {
    tj_cache_entry *ce = &ents[i];
    memcpy(ce->key, it[i].name, 64);
    ce->key[64] = '\0';
    ce->bytes = it[i].bytes;
    ce->age_s = (double)(now.tv_sec - it[i].mtime.tv_sec) + 1e-9 * (double)(now.tv_nsec - it[i].mtime.tv_nsec);
    if (ce->age_s < 0) ce->age_s = 0;
    p.len = 0;
    sb_printf(&p, "%s/%s", dir, it[i].name);
    if (p.failed) break;
    peek_entry(p.data, ce);
  }
  bool oom = p.failed;
  sb_free(&p);
  free_items(it, n);
  if (oom) {
    tj_free(ents);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  qsort(ents, (size_t)n, sizeof *ents, by_entry_name);
  *out = ents;
  *count = n;
  return TJ_OK;
}

void tj_cache_list_free(tj_cache_entry *entries) { tj_free(entries); }

tj_status tj_cache_clear(tj_ctx *ctx, int *removed) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (removed) *removed = 0;
  const char *dir;
  tj_status s = tj_cache_dir(ctx, &dir);
  if (s != TJ_OK) return s;
  DirItem *it;
  int n;
  if ((s = scan_dir(dir, true, &it, &n)) != TJ_OK) return scan_error(ctx, s, dir);
  int gone = 0;
  StrBuf p;
  sb_init(&p);
  for (int i = 0; i < n; i++) {
    p.len = 0;
    sb_printf(&p, "%s/%s", dir, it[i].name);
    if (p.failed) break;
    if (unlink(p.data) == 0 && !is_temp_name(it[i].name)) gone++;
  }
  bool oom = p.failed;
  sb_free(&p);
  free_items(it, n);
  if (removed) *removed = gone;  // what did go, even when not everything did
  if (oom) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory while clearing cache directory %s", dir);
  return TJ_OK;
}

tj_status tj_cache_stats(tj_ctx *ctx, tj_cache_summary *out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_cache_stats: out is NULL");
  memset(out, 0, sizeof *out);
  RtDevice *rt = ctx->rt;
  pthread_mutex_lock(&rt->mu);
  out->enabled = disk_usable(rt);
  out->max_bytes = rt->cache_max_bytes;
  out->mem_hits = rt->counters.mem_hits;
  out->disk_hits = rt->counters.disk_hits;
  out->misses = rt->counters.misses;
  out->writes = rt->counters.writes;
  out->corrupt = rt->counters.corrupt;
  out->evictions = rt->counters.evictions;
  out->warnings = rt->counters.warnings;
  pthread_mutex_unlock(&rt->mu);
  if (!rt->cache_dir) return TJ_OK;
  // An unreadable directory counts as empty (the counters above still
  // answer); running out of memory is an error, not a count of zero.
  DirItem *it;
  int n;
  tj_status s = scan_dir(rt->cache_dir, false, &it, &n);
  if (s == TJ_ERR_NO_MEMORY) return scan_error(ctx, s, rt->cache_dir);
  if (s == TJ_OK) {
    out->entries = n;
    for (int i = 0; i < n; i++) out->bytes += it[i].bytes;
    free_items(it, n);
  }
  return TJ_OK;
}
