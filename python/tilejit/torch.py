"""tilejit.torch: the blocks as torch.autograd.Functions, so they can sit in a
model and take part in .backward().

    import tilejit.torch as tjt
    y = tjt.layer_norm(x, (K,), weight, bias)     # like F.layer_norm
    y = tjt.softmax(x, -1)                        # like torch.softmax
    y = tjt.dropout_act(x, bias, p=0.1, activation="gelu", training=self.training)
    o = tjt.attention(q, k, v, layout=None, causal=True)
    loss.backward()

Forward and backward run on the tensors' device and torch's current stream.
Inputs whose rows the blocks cannot address (last stride not 1, leading
dims that do not flatten) are made contiguous first; other strided views
(e.g. rows padded in a larger buffer) are passed as they are. Outputs are
contiguous. Weights and biases of another dtype than x are cast to x's dtype
for the kernels and their gradients cast back. Double backward is not
supported. Backward passes take their scratch from torch's allocator on the
current stream (a workspace per call), not from the device handle's shared
scratch, so backward passes on different streams or threads do not race.
"""
import torch
from torch.autograd.function import once_differentiable

from . import blocks as _b

__all__ = ["softmax", "log_softmax", "layer_norm", "rms_norm", "dropout_act", "attention", "rowable"]


def rowable(t):
    """True when the blocks can read t's rows in place (blocks/tensor.c's rules)."""
    shape, st = list(t.shape), list(t.stride())
    nd = len(shape)
    if nd == 0 or t.numel() == 0:
        return nd > 0
    K = shape[-1]
    if K > 1 and st[-1] != 1:
        return False
    if any(s < 0 for s, n in zip(st, shape) if n > 1):
        return False
    span = K
    for d in range(nd - 2, -1, -1):
        if shape[d] > 1 and st[d] < span:
            return False
        if shape[d] > 1:
            span += (shape[d] - 1) * st[d]
    expect = 0
    for d in range(nd - 3, -1, -1):
        if shape[d] == 1:
            continue
        if expect == 0:
            expect = st[d] * shape[d]
        elif st[d] != expect:
            return False
        else:
            expect *= shape[d]
    return True


def _rows(t):
    return t if t is None or rowable(t) else t.contiguous()


def _param(p, x):
    """A [K] weight/bias as the kernels want it: x's dtype, contiguous."""
    if p is None:
        return None
    p = p.detach()
    if p.dtype != x.dtype:
        p = p.to(x.dtype)
    return p.contiguous()


def _workspace(size_fn, x):
    """A per-call workspace for a backward pass over x: torch.empty of
    size_fn(x) bytes on x's device (the caching allocator's blocks are
    512-byte aligned; the library wants 16), None when none is needed."""
    n = size_fn(x)
    return torch.empty(n, dtype=torch.uint8, device=x.device) if n else None


def _grad_as(g, p):
    if g is None or p is None:
        return None
    return g.to(p.dtype) if g.dtype != p.dtype else g


# ---------------------------------------------------------------- softmax

class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, log, causal, mask):
        y = _b.softmax(_rows(x.detach()), log=log, causal=causal,
                       mask=_rows(mask.detach()) if mask is not None else None)
        ctx.save_for_backward(y)
        ctx.log, ctx.causal = log, causal
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        dx = _b.softmax_backward(y, _rows(dy), log=ctx.log, causal=ctx.causal)
        return dx, None, None, None


def softmax(x, dim=-1, *, log=False, causal=False, mask=None):
    """torch.softmax(x, dim) (log_softmax with log=True), with optional
    causal masking of the last two dims and an additive mask ([seq, K] or
    [K], no gradient). dim other than the last moves that dim last."""
    d = dim % x.dim()
    if d != x.dim() - 1:
        return softmax(x.movedim(d, -1), -1, log=log, causal=causal, mask=mask).movedim(-1, d)
    return _Softmax.apply(x, bool(log), bool(causal), mask)


def log_softmax(x, dim=-1, **kw):
    return softmax(x, dim, log=True, **kw)


# ---------------------------------------------------------------- norms

def _flatten_norm(x, normalized_shape, params):
    """Collapses a multi-dim normalized_shape into one last dim."""
    if normalized_shape is None:
        return x, params, None
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[-len(ns):]) != ns:
        raise ValueError(f"tilejit.torch: normalized_shape {ns} does not match the input's {tuple(x.shape)}")
    if len(ns) == 1:
        return x, params, None
    shape = x.shape
    return (x.reshape(*shape[:-len(ns)], -1), [p.reshape(-1) if p is not None else None for p in params], shape)


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        x_ = _rows(x.detach())
        w_, b_ = _param(weight, x_), _param(bias, x_)
        y, mean, rstd = _b.layer_norm(x_, w_, b_, eps)
        ctx.save_for_backward(x_, w_, mean, rstd)
        ctx.params = (weight, bias)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x_, w_, mean, rstd = ctx.saved_tensors
        weight, bias = ctx.params
        need_dw = bool(ctx.needs_input_grad[1])
        need_db = bool(ctx.needs_input_grad[2])
        dx, dw, db = _b.layer_norm_backward(_rows(dy), x_, w_, mean, rstd, need_dw=need_dw, need_db=need_db,
                                            workspace=_workspace(_b.norm_bwd_workspace_size, x_))
        return dx, _grad_as(dw, weight), _grad_as(db, bias), None


def layer_norm(x, normalized_shape=None, weight=None, bias=None, eps=1e-5):
    """F.layer_norm over the last dimension (or the last len(normalized_shape) dims)."""
    x2, (w2, b2), shape = _flatten_norm(x, normalized_shape, [weight, bias])
    y = _LayerNorm.apply(x2, w2, b2, float(eps))
    return y.reshape(shape) if shape is not None else y


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        x_ = _rows(x.detach())
        w_ = _param(weight, x_)
        y, rstd = _b.rms_norm(x_, w_, eps)
        ctx.save_for_backward(x_, w_, rstd)
        ctx.weight = weight
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x_, w_, rstd = ctx.saved_tensors
        dx, dw = _b.rms_norm_backward(_rows(dy), x_, w_, rstd, need_dw=bool(ctx.needs_input_grad[1]),
                                      workspace=_workspace(_b.norm_bwd_workspace_size, x_))
        return dx, _grad_as(dw, ctx.weight), None


def rms_norm(x, normalized_shape=None, weight=None, eps=None):
    """F.rms_norm: x * rsqrt(mean(x^2) + eps) * weight; eps None = torch.finfo(x.dtype).eps as torch does."""
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    x2, (w2,), shape = _flatten_norm(x, normalized_shape, [weight])
    y = _RMSNorm.apply(x2, w2, float(eps))
    return y.reshape(shape) if shape is not None else y


# ---------------------------------------------------------------- dropout

class _DropoutAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias, p, activation, act_a, act_b, training, seed, offset):
        x_ = _rows(x.detach())
        b_ = _param(bias, x_)
        if training and p > 0 and seed is None:
            seed, offset = _b.next_dropout_seed(x_)
        kw = dict(p=p, training=training, activation=activation, act_a=act_a, act_b=act_b, seed=seed,
                  offset=offset)
        y = _b.dropout_act(x_, b_, **kw)
        ctx.save_for_backward(x_, b_)
        ctx.kw, ctx.bias = kw, bias
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x_, b_ = ctx.saved_tensors
        dx, db = _b.dropout_act_backward(_rows(dy), x_, b_, need_dbias=bool(ctx.needs_input_grad[1]),
                                         workspace=_workspace(_b.dropout_bwd_workspace_size, x_), **ctx.kw)
        return (dx, _grad_as(db, ctx.bias)) + (None,) * 7


def dropout_act(x, bias=None, p=0.1, activation="none", training=True, act_a=None, act_b=None, seed=None,
                offset=None):
    """dropout(act(x + bias), p) fused (xFormers' FusedDropoutBias). Without
    seed, (seed, offset) come from the device handle's generator, fresh for
    every call; the backward pass regenerates the same mask."""
    return _DropoutAct.apply(x, bias, float(p), activation, act_a, act_b, bool(training), seed, offset)


# ---------------------------------------------------------------- attention

class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, layout, scale, causal):
        q_, k_, v_ = q.detach(), k.detach(), v.detach()
        o, lse = _b.attention(q_, k_, v_, layout, scale=scale, causal=causal)
        ctx.save_for_backward(q_, k_, v_, o, lse)
        ctx.layout, ctx.scale, ctx.causal = layout, scale, causal
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, do, dlse):
        q_, k_, v_, o, lse = ctx.saved_tensors
        dq, dk, dv = _b.attention_backward(q_, k_, v_, o, lse, do.contiguous(), ctx.layout, scale=ctx.scale,
                                           causal=ctx.causal,
                                           workspace=_workspace(_b.attention_bwd_workspace_size, q_))
        return dq, dk, dv, None, None, None


def attention(q, k, v, layout=None, scale=None, causal=False, return_lse=False):
    """Blocksparse (or dense: layout None) attention on [B, H, S, D] tensors,
    like F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    restricted to the layout's live blocks. layout: an AttnLayout or a
    tilejit.patterns Pattern. return_lse=True also returns the f32 row
    log-sum-exp [B, H, S]."""
    o, lse = _Attention.apply(q, k, v, layout, scale, bool(causal))
    return (o, lse) if return_lse else o
