/* tensor.c: DLTensor validation for the blocks.
 *
 * requires: a DLTensor from the caller (anything at all);
 * produces: a BlkView (rows x K with the strides the kernels take), or a
 * status and a message that names the tensor, the dimension and the values.
 *
 * The kernels address row r at (r / seq) * s_b + (r % seq) * s_r: seq is
 * the second-to-last dimension, s_r its stride, and every dimension before
 * it must collapse into the one batch stride s_b. That covers compact
 * tensors, rows padded to a larger stride, and batch-strided views (a slice
 * of a bigger [B, M, K] buffer); views whose batch dims cannot be flattened
 * (a transposed batch) are refused as unsupported rather than copied.
 */
#include "blocks_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void blk_shape_str(const DLTensor *t, char *buf, size_t n) {
  size_t used = 0;
  used += (size_t)snprintf(buf + used, n - used, "[");
  for (int d = 0; t && d < t->ndim && used < n; d++)
    used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, d ? ", " : "", t->shape[d]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

const char *blk_dtype_str(const DLTensor *t, char *buf, size_t n) {
  const DLDataType dt = t->dtype;
  const char *kind = dt.code == kDLFloat ? "f" : dt.code == kDLBfloat ? "bf"
                   : dt.code == kDLInt ? "i" : dt.code == kDLUInt ? "u" : NULL;
  if (!kind) snprintf(buf, n, "code%u/%u", dt.code, dt.bits);
  else snprintf(buf, n, "%s%u", kind, dt.bits);
  if (dt.lanes != 1) {
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "x%u", dt.lanes);
  }
  return buf;
}

static tj_dtype to_tj(DLDataType dt) {
  if (dt.lanes != 1) return TJ_VOID;
  if (dt.code == kDLFloat && dt.bits == 16) return TJ_F16;
  if (dt.code == kDLFloat && dt.bits == 32) return TJ_F32;
  if (dt.code == kDLBfloat && dt.bits == 16) return TJ_BF16;
  return TJ_VOID;
}

static void allowed_str(unsigned allowed, char *buf, size_t n) {
  static const char *const names[] = { "f16", "bf16", "f32" };
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < 3; i++)
    if (allowed & (1u << i))
      used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", names[i]);
}

tj_status blk_view(tj_blocks *b, const char *op, const char *name, const DLTensor *t,
                   unsigned allowed, BlkView *v) {
  memset(v, 0, sizeof *v);
  v->name = name;
  v->t = t;
  if (!t) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
  if (t->ndim < 1)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has %d dimensions; it needs at least 1", op, name,
                     t->ndim);
  if (!t->shape) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has a NULL shape", op, name);
  char buf[64];
  tj_dtype dt = to_tj(t->dtype);
  unsigned bit = dt == TJ_F16 ? BLK_F16 : dt == TJ_BF16 ? BLK_BF16 : dt == TJ_F32 ? BLK_F32 : 0;
  if (!(bit & allowed)) {
    char al[32];
    allowed_str(allowed, al, sizeof al);
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s has dtype %s; %s supports %s", name,
                     blk_dtype_str(t, buf, sizeof buf), op, al);
  }
  v->dtype = dt;
  v->esize = dt == TJ_F32 ? 4 : 2;

  int nd = t->ndim;
  int64_t numel = 1;
  for (int d = 0; d < nd; d++) {
    if (t->shape[d] < 0)
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has a negative size: shape[%d] = %" PRId64, op,
                       name, d, t->shape[d]);
    if (t->shape[d] > 0 && numel > INT64_MAX / t->shape[d])
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has too many elements", op, name);
    numel *= t->shape[d];
  }
  // Strides: the caller's, or compact row-major when NULL (DLPack v0.6).
  int64_t st[32];
  if (nd > 32) return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s has %d dimensions; at most 32 are supported", op, name, nd);
  int64_t run = 1;
  for (int d = nd - 1; d >= 0; d--) {
    st[d] = t->strides ? t->strides[d] : run;
    run *= t->shape[d] > 1 ? t->shape[d] : 1;
  }
  v->K = t->shape[nd - 1];
  v->M = v->K > 0 ? numel / v->K : 0;
  for (int d = 0; d < nd - 1; d++)
    if (t->shape[d] == 0) v->M = 0;
  v->empty = numel == 0;
  if (v->M > INT32_MAX || v->K > INT32_MAX - 65536)
    return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s has %" PRId64 " rows of %" PRId64
                     " elements; at most 2^31 - 1 rows of up to 2^31 - 65537 are supported",
                     op, name, v->M, v->K);
  if (v->empty) return TJ_OK;   // strides and data of an empty tensor do not matter

  for (int d = 0; d < nd; d++)
    if (st[d] < 0 && t->shape[d] > 1)
      return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s has a negative stride: stride[%d] = %" PRId64, op,
                       name, d, st[d]);
  if (v->K > 1 && st[nd - 1] != 1)
    return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s has stride[%d] = %" PRId64
                     " along the reduced dimension; blocks need stride 1 there", op, name, nd - 1,
                     st[nd - 1]);
  // span[d]: elements covered by dims d.. (one past the last offset).
  int64_t span = v->K;
  for (int d = nd - 2; d >= 0; d--) {
    if (t->shape[d] > 1 && st[d] < span) {
      if (d == nd - 2)
        return blk_error(b, TJ_ERR_INVALID_ARG, "%s rows overlap: stride[%d] = %" PRId64 " < K = %" PRId64,
                         name, d, st[d], v->K);
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s dims overlap: stride[%d] = %" PRId64
                       " < %" PRId64 " elements spanned by the dims after it", name, d, st[d], span);
    }
    if (t->shape[d] > 1) span += (t->shape[d] - 1) * st[d];
  }
  v->seq = nd >= 2 ? t->shape[nd - 2] : 1;
  v->s_r = nd >= 2 ? st[nd - 2] : 0;
  // Batch dims (0 .. nd-3) must collapse into one stride.
  int64_t sb = 0, expect = 0;
  for (int d = nd - 3; d >= 0; d--) {
    if (t->shape[d] == 1) continue;
    if (expect == 0) {
      sb = st[d];
      expect = st[d] * t->shape[d];
    } else if (st[d] != expect) {
      return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s's leading dimensions do not flatten into rows: "
                       "stride[%d] = %" PRId64 ", expected %" PRId64, op, name, d, st[d], expect);
    } else {
      expect *= t->shape[d];
    }
  }
  v->s_b = sb;
  v->nbytes = (size_t)span * (size_t)v->esize;
  if (!t->data) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has NULL data", op, name);
  v->data = (char *)t->data + t->byte_offset;
  return TJ_OK;
}

tj_status blk_same_shape(tj_blocks *b, const BlkView *a, const BlkView *ref) {
  const DLTensor *x = a->t, *y = ref->t;
  bool same = x->ndim == y->ndim;
  for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == y->shape[d];
  if (same) return TJ_OK;
  char sa[128], sr[128];
  blk_shape_str(x, sa, sizeof sa);
  blk_shape_str(y, sr, sizeof sr);
  return blk_error(b, TJ_ERR_INVALID_ARG, "%s shape %s differs from %s shape %s", a->name, sa,
                   ref->name, sr);
}

tj_status blk_same_dtype(tj_blocks *b, const BlkView *a, const BlkView *ref) {
  if (a->dtype == ref->dtype) return TJ_OK;
  return blk_error(b, TJ_ERR_INVALID_ARG, "%s has dtype %s but %s has %s", a->name, blk_dt(a->dtype),
                   ref->name, blk_dt(ref->dtype));
}

// A per-column vector (w, b, bias and their gradients): optional, shape [K],
// the dtype of the reference view vx.
tj_status blk_vec_view(tj_blocks *b, const char *op, const char *name, const DLTensor *t,
                       const BlkView *vx, BlkView *v) {
  memset(v, 0, sizeof *v);
  if (!t) return TJ_OK;
  tj_status st = blk_view(b, op, name, t, BLK_FLOATS, v);
  if (st != TJ_OK) return st;
  if (t->ndim != 1 || t->shape[0] != vx->K) {
    char s[128];
    blk_shape_str(t, s, sizeof s);
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s shape %s differs from [K] = [%" PRId64 "]", name, s, vx->K);
  }
  return blk_same_dtype(b, v, vx);
}

bool blk_uniform_rows(const BlkView *v, int64_t *rs) {
  int64_t nbatch = v->seq > 0 ? v->M / v->seq : 0;
  if (v->M <= 1) { *rs = v->K; return true; }
  if (nbatch <= 1) { *rs = v->s_r; return true; }
  if (v->seq == 1) { *rs = v->s_b; return true; }
  if (v->s_b == v->seq * v->s_r) { *rs = v->s_r; return true; }
  return false;
}

static const char *device_name(int type) {
  switch (type) {
  case kDLCPU: return "kDLCPU";
  case kDLCUDA: return "kDLCUDA";
  case kDLCUDAHost: return "kDLCUDAHost";
  case kDLOpenCL: return "kDLOpenCL";
  case kDLVulkan: return "kDLVulkan";
  case kDLMetal: return "kDLMetal";
  case kDLROCM: return "kDLROCM";
  case kDLCUDAManaged: return "kDLCUDAManaged";
  default: return "an unknown device type";
  }
}

tj_status blk_device(tj_blocks *b, const char *op, BlkView *const *v, int n, bool *gpu) {
  const BlkView *first = NULL;
  for (int i = 0; i < n; i++) {
    if (!v[i] || !v[i]->t) continue;
    const DLDevice dev = v[i]->t->device;
    if (!first) {
      first = v[i];
      if (dev.device_type != kDLCPU && dev.device_type != kDLCUDA && dev.device_type != kDLCUDAManaged)
        return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s is on %s (%d); blocks run on kDLCPU and kDLCUDA",
                         op, v[i]->name, device_name(dev.device_type), dev.device_type);
      continue;
    }
    const DLDevice d0 = first->t->device;
    bool cuda0 = d0.device_type != kDLCPU, cuda = dev.device_type != kDLCPU;
    if (dev.device_type != kDLCPU && dev.device_type != kDLCUDA && dev.device_type != kDLCUDAManaged)
      return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s is on %s (%d); blocks run on kDLCPU and kDLCUDA",
                       op, v[i]->name, device_name(dev.device_type), dev.device_type);
    if (cuda0 != cuda || (cuda && dev.device_id != d0.device_id))
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s is on %s:%d but %s is on %s:%d", op, v[i]->name,
                       device_name(dev.device_type), dev.device_id, first->name,
                       device_name(d0.device_type), d0.device_id);
  }
  *gpu = first && first->t->device.device_type != kDLCPU;
  if (!*gpu) return TJ_OK;
  int want = tj_ctx_device(b->ctx);
  if (first->t->device.device_id != want)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s is on cuda:%d but the context is bound to cuda:%d",
                     op, first->name, first->t->device.device_id, want);
  for (int i = 0; i < n; i++) {
    if (!v[i] || !v[i]->t || v[i]->empty) continue;
    tj_status st = blk_check_device_ptr(b, op, v[i]->name, v[i]->data);
    if (st != TJ_OK) return st;
  }
  return TJ_OK;
}
