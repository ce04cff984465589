"""The Pallas kernels behind :func:`zoo.kernels.attention.flash_attention` (FlashAttention-2).

Tri Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning", 2023,
arXiv:2307.08691. Semantics, shapes and limits are documented in :mod:`zoo.kernels.attention`, which validates the
inputs, pads them, builds the static :class:`_Plan` of a call and calls :func:`_flash`; this module holds what runs
inside that call:

* :class:`_Plan` and the tile helpers shared by both lowerings;
* the Triton kernels (``_gpu_*``, layout ``[batch, length, heads, dim]``, grid ``(tile, batch, head)``) and the
  Mosaic TPU kernels (``_tpu_*``, layout ``[batch, heads, length, dim]``): a forward kernel (online softmax, saves
  the output and each row's log-sum-exp), a dK/dV kernel and a dQ kernel (which also writes the bias gradient when
  the bias is differentiated);
* :func:`_flash`, the ``custom_vjp`` tying the forward kernel to the two backward kernels.

With segment ids (``_Plan.segmented``) every kernel also gets the ids of its tiles and "and"s ``q == kv`` into its
mask, and skips the tile pairs without a common id; the helpers are in :mod:`zoo.kernels.attention_segments`.
Operand order of every kernel: q, k, v, [bias], [q ids, kv ids], then the backward's do, lse, delta; on TPU the
four scalar-prefetch span arrays come first.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltr

from zoo.kernels import attention_segments as seg

__all__: list[str] = []  # private to zoo.kernels.attention

# Masked logits get the float32 minimum, as in `reference`; a row whose every logit is masked ends with a
# log-sum-exp near this value, which is how the wrapper finds fully masked rows (they attend uniformly).
_MASK = float(np.finfo(np.float32).min)
_FULLY_MASKED = 0.5 * _MASK
_LANES = 128  # TPU vector lane count: the last dimension of TPU tiles


def _pow2_at_least(n: int, lo: int) -> int:
  return max(lo, pl.next_power_of_2(max(int(n), 1)))


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Static description of one kernel call (hashable: the custom_vjp's non-differentiable argument)."""
  backend: str  # 'gpu' | 'tpu'
  scale: float
  causal: bool
  q_len: int  # real lengths (the arrays the kernels see are padded)
  kv_len: int
  kv_len_padded: int
  heads: int
  kv_heads: int
  bias_bcast: tuple[bool, bool, bool] | None  # bias broadcast over (batch, heads, q) or None when no bias
  segmented: bool  # segment ids given (see zoo.kernels.attention_segments)
  block_q: int
  block_k: int
  block_q_dkv: int
  block_k_dkv: int
  block_q_dq: int
  block_k_dq: int
  num_warps: int | None
  num_stages: int | None
  interpret: Any
  debug: bool

  @property
  def groups(self) -> int:
    return self.heads // self.kv_heads

  @property
  def offset(self) -> int:  # bottom-right causal alignment: query i sees keys j <= i + offset
    return self.kv_len - self.q_len


def _block_pair(backend: str, bq: int, bk: int, q_len: int, kv_len: int, names: tuple[str, str]):
  """Clamps a (query, key) tile pair to the sequence and checks it for the backend."""
  if backend == "gpu":
    for n, v in zip(names, (bq, bk)):
      if v < 16 or v & (v - 1):
        raise ValueError(f"flash_attention: GPU (Triton) tiles must be powers of two >= 16; got {n}={v}.")
    return min(bq, _pow2_at_least(q_len, 16)), min(bk, _pow2_at_least(kv_len, 16))
  if bq % 16:
    raise ValueError(f"flash_attention: TPU query tiles must be multiples of 16; got {names[0]}={bq}.")
  if bk % _LANES:
    raise ValueError(f"flash_attention: TPU key tiles must be multiples of {_LANES}; got {names[1]}={bk}.")
  return min(bq, _round_up(q_len, 16)), min(bk, _round_up(kv_len, _LANES))


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces of the kernel bodies
# ----------------------------------------------------------------------------------------------------------------


def _keep_mask(plan: _Plan, rows, cols):
  """Which logits survive the causal mask and the key padding (None: all of them).

  ``rows``/``cols`` are the absolute query/key positions of the tile, broadcastable against each other.
  """
  keep = None
  if plan.kv_len_padded > plan.kv_len:
    keep = cols < plan.kv_len  # the padded keys
  if plan.causal:
    c = cols <= rows + plan.offset
    keep = c if keep is None else jnp.logical_and(keep, c)
  return keep


def _causal_kv_blocks(plan: _Plan, q_block, block_q: int, block_k: int, num_kv_blocks: int):
  """How many key tiles query tile ``q_block`` needs: all of them, or those up to the causal diagonal.

  At least one, so that every row has a finite log-sum-exp (rows before the diagonal are fully masked and are
  replaced by the uniform average in the wrapper).
  """
  if not plan.causal:
    return num_kv_blocks
  last_row = jnp.minimum((q_block + 1) * block_q, plan.q_len) - 1
  last_col = last_row + plan.offset
  n = lax.div(jnp.maximum(last_col, 0), block_k) + 1
  return jnp.clip(n, 1, num_kv_blocks)


def _causal_first_q_block(plan: _Plan, kv_block, block_q: int, block_k: int):
  """The first query tile that sees any key of key tile ``kv_block`` (0 without a causal mask)."""
  if not plan.causal:
    return 0
  first_row = jnp.maximum(kv_block * block_k - plan.offset, 0)
  return lax.div(first_row, block_q)


# ----------------------------------------------------------------------------------------------------------------
# GPU (Triton) kernels: layout [batch, length, heads, dim]; grid (tile, batch, head)
# ----------------------------------------------------------------------------------------------------------------


def _split_refs(plan: _Plan, refs, n_head: int, n_seg: int = 3):
  """``refs`` = head refs, [bias], [q ids, kv ids(, loop bounds)], rest -> (head refs, bias_ref, segment refs | None,
  rest); ``n_seg``: 3 on GPU (the ids and the program's tile range), 2 on TPU."""
  refs = list(refs)
  head, rest = refs[:n_head], refs[n_head:]
  bias_ref = rest.pop(0) if plan.bias_bcast is not None else None
  seg_refs = tuple(rest.pop(0) for _ in range(n_seg)) if plan.segmented else None
  return head, bias_ref, seg_refs, rest


def _and(keep, other):
  return other if keep is None else (keep if other is None else jnp.logical_and(keep, other))


def _gpu_fwd_kernel(*refs, plan: _Plan, num_kv_blocks: int):
  (q_ref, k_ref, v_ref), bias_ref, seg_refs, (o_ref, lse_ref) = _split_refs(plan, refs, 3)
  bq, bk = plan.block_q, plan.block_k
  i = pl.program_id(0)
  q = q_ref[...]  # [bq, d]
  rows = i * bq + jnp.arange(bq)[:, None]
  q_ids = None if seg_refs is None else seg_refs[0][...]  # [bq]
  q_span = None if seg_refs is None else seg.span(q_ids)

  def body(j, carry):
    start = j * bk
    return seg.gpu_step(seg_refs, q_ids, start, bk, functools.partial(step, start), lambda c: c, carry, q_span)

  def step(start, carry, same):
    acc, m, l = carry
    k = k_ref[pl.ds(start, bk), :]  # [bk, d]
    s = pltr.dot(q, k, trans_b=True) * plan.scale  # [bq, bk] float32
    if bias_ref is not None:
      s = s + bias_ref[:, pl.ds(start, bk)].astype(jnp.float32)  # [bq or 1, bk]
    keep = _and(_keep_mask(plan, rows, start + jnp.arange(bk)[None, :]), same)
    if keep is not None:
      s = jnp.where(keep, s, _MASK)
    m_new = jnp.maximum(m, jnp.max(s, axis=1))
    alpha = jnp.exp(m - m_new)
    p = jnp.exp(s - m_new[:, None])
    l = alpha * l + jnp.sum(p, axis=1)
    v = v_ref[pl.ds(start, bk), :]
    acc = alpha[:, None] * acc + pltr.dot(p.astype(v.dtype), v)
    return acc, m_new, l

  acc = jnp.zeros((bq, o_ref.shape[-1]), jnp.float32)
  m = jnp.full((bq,), _MASK, jnp.float32)
  l = jnp.zeros((bq,), jnp.float32)
  lo, hi = seg.gpu_range(seg_refs and seg_refs[2], 0, _causal_kv_blocks(plan, i, bq, bk, num_kv_blocks))
  acc, m, l = lax.fori_loop(lo, hi, body, (acc, m, l))
  o_ref[...] = (acc / jnp.where(l == 0.0, 1.0, l)[:, None]).astype(o_ref.dtype)
  lse_ref[...] = m + jnp.log(l)


def _gpu_bias_spec(plan: _Plan, block_q: int | None, block_k: int | None, q_len_p: int, kv_len_p: int, grid: str):
  """BlockSpec of the additive bias ``[Bb, Hb, Qb, kv_len_p]`` (Bb, Hb, Qb broadcast when 1)."""
  bb, hb, qb = plan.bias_bcast
  g = plan.groups
  if grid == "q":  # grid (q tile, batch, head); block: one head, a query tile, every key
    qblk = 1 if qb else block_q
    return pl.BlockSpec((None, None, qblk, kv_len_p),
                        lambda i, b, h: (0 if bb else b, 0 if hb else h, 0 if qb else i, 0))
  # grid (key tile, batch, kv head); block: the group's heads, every query, a key tile
  return pl.BlockSpec((None, 1 if hb else g, 1 if qb else q_len_p, block_k),
                      lambda j, b, h: (0 if bb else b, 0 if hb else h, 0, j))


def _gpu_params(plan: _Plan, head_dim: int):
  warps = plan.num_warps or (4 if head_dim <= 64 else 8)
  return pltr.CompilerParams(num_warps=warps, num_stages=plan.num_stages or 2)


def _gpu_forward(plan: _Plan, q, k, v, bias, segs):
  """q: [b, Tq, h, d], k: [b, Tk, hk, d], v: [b, Tk, hk, dv] (padded) -> out [b, Tq, h, dv], lse [b, h, Tq].

  ``segs``: the prepared ids ``([b, Tq], [b, Tk])`` int32, or None.
  """
  b, tq, h, d = q.shape
  tk, dv = k.shape[1], v.shape[-1]
  g = plan.groups
  bq = plan.block_q
  in_specs = [
      pl.BlockSpec((None, bq, None, d), lambda i, bi, hi: (bi, i, hi, 0)),
      pl.BlockSpec((None, tk, None, d), lambda i, bi, hi: (bi, 0, lax.div(hi, g), 0)),
      pl.BlockSpec((None, tk, None, dv), lambda i, bi, hi: (bi, 0, lax.div(hi, g), 0)),
  ]
  args = [q, k, v]
  if bias is not None:
    in_specs.append(_gpu_bias_spec(plan, bq, None, tq, tk, "q"))
    args.append(bias)
  if segs is not None:
    bounds, bounds_spec = seg.gpu_bounds_spec(segs, bq, plan.block_k, "q")
    in_specs += [*seg.gpu_specs(bq, tq, None, tk, "q"), bounds_spec]
    args += [*segs, bounds]
  return pl.pallas_call(
      functools.partial(_gpu_fwd_kernel, plan=plan, num_kv_blocks=tk // plan.block_k),
      grid=(tq // bq, b, h),
      in_specs=in_specs,
      out_specs=[pl.BlockSpec((None, bq, None, dv), lambda i, bi, hi: (bi, i, hi, 0)),
                 pl.BlockSpec((None, None, bq), lambda i, bi, hi: (bi, hi, i))],
      out_shape=[jax.ShapeDtypeStruct((b, tq, h, dv), q.dtype), jax.ShapeDtypeStruct((b, h, tq), jnp.float32)],
      compiler_params=_gpu_params(plan, max(d, dv)),
      interpret=plan.interpret, debug=plan.debug, name="zoo_flash_fwd",
  )(*args)


def _gpu_dkv_kernel(*refs, plan: _Plan, num_q_blocks: int):
  (q_ref, k_ref, v_ref), bias_ref, seg_refs, rest = _split_refs(plan, refs, 3)
  do_ref, lse_ref, delta_ref, dk_ref, dv_ref = rest
  bq, bk = plan.block_q_dkv, plan.block_k_dkv
  j = pl.program_id(0)
  k = k_ref[...]  # [bk, d]
  v = v_ref[...]  # [bk, dv]
  cols = j * bk + jnp.arange(bk)[None, :]
  dk = jnp.zeros(k.shape, jnp.float32)
  dv = jnp.zeros(v.shape, jnp.float32)
  lo, hi = seg.gpu_range(seg_refs and seg_refs[2], _causal_first_q_block(plan, j, bq, bk), num_q_blocks)
  if seg_refs is not None:
    kv_ids = seg_refs[1][...]  # [bk]
    kv_span = seg.span(kv_ids)
  for head in range(plan.groups):  # the query heads that share this key/value head (grouped-query attention)
    def body(i, carry, head=head):
      start = i * bq
      if seg_refs is None:
        return step(start, head, carry, None)
      q_ids = seg_refs[0][pl.ds(start, bq)]
      return lax.cond(seg.overlap(*seg.span(q_ids), *kv_span),
                      lambda c: step(start, head, c, q_ids[:, None] == kv_ids[None, :]), lambda c: c, carry)

    def step(start, head, carry, same):
      dk, dv = carry
      q = q_ref[pl.ds(start, bq), head, :]  # [bq, d]
      do = do_ref[pl.ds(start, bq), head, :]  # [bq, dv]
      s = pltr.dot(q, k, trans_b=True) * plan.scale
      if bias_ref is not None:
        hb = 0 if plan.bias_bcast[1] else head
        brows = pl.ds(0, 1) if plan.bias_bcast[2] else pl.ds(start, bq)
        s = s + bias_ref[hb, brows, :].astype(jnp.float32)
      keep = _and(_keep_mask(plan, start + jnp.arange(bq)[:, None], cols), same)
      if keep is not None:
        s = jnp.where(keep, s, _MASK)
      p = jnp.exp(s - lse_ref[head, pl.ds(start, bq)][:, None])  # [bq, bk]
      dv = dv + pltr.dot(p.astype(do.dtype), do, trans_a=True)
      dp = pltr.dot(do, v, trans_b=True)
      ds = p * (dp - delta_ref[head, pl.ds(start, bq)][:, None])
      dk = dk + pltr.dot(ds.astype(q.dtype), q, trans_a=True)
      return dk, dv
    dk, dv = lax.fori_loop(lo, hi, body, (dk, dv))
  dk_ref[...] = (dk * plan.scale).astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def _gpu_dq_kernel(*refs, plan: _Plan, num_kv_blocks: int, need_dbias: bool):
  (q_ref, k_ref, v_ref), bias_ref, seg_refs, rest = _split_refs(plan, refs, 3)
  do_ref, lse_ref, delta_ref, dq_ref = rest[:4]
  dbias_ref = rest[4] if need_dbias else None
  bq, bk = plan.block_q_dq, plan.block_k_dq
  i = pl.program_id(0)
  q = q_ref[...]
  do = do_ref[...]
  lse = lse_ref[...][:, None]
  delta = delta_ref[...][:, None]
  rows = i * bq + jnp.arange(bq)[:, None]
  q_ids = None if seg_refs is None else seg_refs[0][...]
  q_span = None if seg_refs is None else seg.span(q_ids)

  def skip(start, dq):  # a tile pair with no allowed pair: its bias gradient is 0
    if dbias_ref is not None:
      dbias_ref[:, pl.ds(start, bk)] = jnp.zeros((bq, bk), dbias_ref.dtype)
    return dq

  def body(j, dq):
    start = j * bk
    return seg.gpu_step(seg_refs, q_ids, start, bk, functools.partial(step, start), functools.partial(skip, start),
                        dq, q_span)

  def step(start, dq, same):
    k = k_ref[pl.ds(start, bk), :]
    v = v_ref[pl.ds(start, bk), :]
    s = pltr.dot(q, k, trans_b=True) * plan.scale
    if bias_ref is not None:
      s = s + bias_ref[:, pl.ds(start, bk)].astype(jnp.float32)
    keep = _and(_keep_mask(plan, rows, start + jnp.arange(bk)[None, :]), same)
    if keep is not None:
      s = jnp.where(keep, s, _MASK)
    p = jnp.exp(s - lse)
    ds = p * (pltr.dot(do, v, trans_b=True) - delta)
    if dbias_ref is not None:
      dbias_ref[:, pl.ds(start, bk)] = ds.astype(dbias_ref.dtype)
    return dq + pltr.dot(ds.astype(k.dtype), k)

  lo, hi = seg.gpu_range(seg_refs and seg_refs[2], 0, _causal_kv_blocks(plan, i, bq, bk, num_kv_blocks))
  dq = lax.fori_loop(lo, hi, body, jnp.zeros(q.shape, jnp.float32))
  dq_ref[...] = (dq * plan.scale).astype(dq_ref.dtype)
  if dbias_ref is not None and (plan.causal or plan.segmented):
    def zero(j, carry):  # tiles outside the loop were never visited: their gradient is 0
      dbias_ref[:, pl.ds(j * bk, bk)] = jnp.zeros((bq, bk), dbias_ref.dtype)
      return carry
    lax.fori_loop(0, lo, zero, 0)
    lax.fori_loop(hi, num_kv_blocks, zero, 0)


def _gpu_backward(plan: _Plan, q, k, v, bias, segs, do, lse, delta, need_dbias: bool):
  """Padded GPU-layout inputs -> dq, dk, dv (padded) and the full float32 ``ds`` [b, h, Tq, Tk] or None."""
  b, tq, h, d = q.shape
  tk, hk, dv = k.shape[1], k.shape[2], v.shape[-1]
  g = plan.groups
  params = _gpu_params(plan, max(d, dv))

  # dK, dV: one program per (key tile, batch, kv head); it loops over the group's query heads and query tiles.
  bq, bk = plan.block_q_dkv, plan.block_k_dkv
  in_specs = [
      pl.BlockSpec((None, tq, g, d), lambda j, bi, hi: (bi, 0, hi, 0)),
      pl.BlockSpec((None, bk, None, d), lambda j, bi, hi: (bi, j, hi, 0)),
      pl.BlockSpec((None, bk, None, dv), lambda j, bi, hi: (bi, j, hi, 0)),
  ]
  args = [q, k, v]
  if bias is not None:
    in_specs.append(_gpu_bias_spec(plan, None, bk, tq, tk, "kv"))
    args.append(bias)
  if segs is not None:
    bounds, bounds_spec = seg.gpu_bounds_spec(segs, bq, bk, "kv")
    in_specs += [*seg.gpu_specs(None, tq, bk, tk, "kv"), bounds_spec]
    args += [*segs, bounds]
  in_specs += [
      pl.BlockSpec((None, tq, g, dv), lambda j, bi, hi: (bi, 0, hi, 0)),
      pl.BlockSpec((None, g, tq), lambda j, bi, hi: (bi, hi, 0)),
      pl.BlockSpec((None, g, tq), lambda j, bi, hi: (bi, hi, 0)),
  ]
  args += [do, lse, delta]
  dk, dv_ = pl.pallas_call(
      functools.partial(_gpu_dkv_kernel, plan=plan, num_q_blocks=tq // bq),
      grid=(tk // bk, b, hk),
      in_specs=in_specs,
      out_specs=[pl.BlockSpec((None, bk, None, d), lambda j, bi, hi: (bi, j, hi, 0)),
                 pl.BlockSpec((None, bk, None, dv), lambda j, bi, hi: (bi, j, hi, 0))],
      out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
      compiler_params=params, interpret=plan.interpret, debug=plan.debug, name="zoo_flash_bwd_dkv",
  )(*args)

  # dQ (and the bias gradient): one program per (query tile, batch, head); it loops over the key tiles.
  bq = plan.block_q_dq
  in_specs = [
      pl.BlockSpec((None, bq, None, d), lambda i, bi, hi: (bi, i, hi, 0)),
      pl.BlockSpec((None, tk, None, d), lambda i, bi, hi: (bi, 0, lax.div(hi, g), 0)),
      pl.BlockSpec((None, tk, None, dv), lambda i, bi, hi: (bi, 0, lax.div(hi, g), 0)),
  ]
  args = [q, k, v]
  if bias is not None:
    in_specs.append(_gpu_bias_spec(plan, bq, None, tq, tk, "q"))
    args.append(bias)
  if segs is not None:
    bounds, bounds_spec = seg.gpu_bounds_spec(segs, bq, plan.block_k_dq, "q")
    in_specs += [*seg.gpu_specs(bq, tq, None, tk, "q"), bounds_spec]
    args += [*segs, bounds]
  in_specs += [
      pl.BlockSpec((None, bq, None, dv), lambda i, bi, hi: (bi, i, hi, 0)),
      pl.BlockSpec((None, None, bq), lambda i, bi, hi: (bi, hi, i)),
      pl.BlockSpec((None, None, bq), lambda i, bi, hi: (bi, hi, i)),
  ]
  args += [do, lse, delta]
  out_specs = [pl.BlockSpec((None, bq, None, d), lambda i, bi, hi: (bi, i, hi, 0))]
  out_shape = [jax.ShapeDtypeStruct(q.shape, q.dtype)]
  if need_dbias:
    out_specs.append(pl.BlockSpec((None, None, bq, tk), lambda i, bi, hi: (bi, hi, i, 0)))
    out_shape.append(jax.ShapeDtypeStruct((b, h, tq, tk), jnp.float32))
  res = pl.pallas_call(
      functools.partial(_gpu_dq_kernel, plan=plan, num_kv_blocks=tk // plan.block_k_dq, need_dbias=need_dbias),
      grid=(tq // bq, b, h),
      in_specs=in_specs, out_specs=out_specs, out_shape=out_shape,
      compiler_params=params, interpret=plan.interpret, debug=plan.debug, name="zoo_flash_bwd_dq",
  )(*args)
  return res[0], dk, dv_, (res[1] if need_dbias else None)


# ----------------------------------------------------------------------------------------------------------------
# TPU (Mosaic) kernels: layout [batch, heads, length, dim]; grid (batch, head, tile, tile), the last axis a
# reduction carried in VMEM scratch. Row statistics (lse, delta) travel broadcast over 128 lanes.
# ----------------------------------------------------------------------------------------------------------------

_TRANS_B = (((1,), (1,)), ((), ()))


def _tpu_logits(plan: _Plan, q, k, bias_ref, rows0, cols0, seg_refs=None):
  s = lax.dot_general(q, k, _TRANS_B, preferred_element_type=jnp.float32) * plan.scale
  if bias_ref is not None:
    s = s + bias_ref[...].astype(jnp.float32)
  shape = s.shape
  rows = rows0 + lax.broadcasted_iota(jnp.int32, shape, 0)
  cols = cols0 + lax.broadcasted_iota(jnp.int32, shape, 1)
  keep = _keep_mask(plan, rows, cols)
  if seg_refs is not None:
    keep = _and(keep, seg.tpu_same(seg_refs, shape[1]))
  return s if keep is None else jnp.where(keep, s, _MASK)


def _lanes(x, n: int):
  """[rows, 128] (every lane equal) -> [rows, n], n a multiple of 128."""
  return x if n == _LANES else jnp.tile(x, (1, n // _LANES))


def _tpu_refs(plan: _Plan, refs):
  """The kernel's refs: (SMEM tile spans | None, q, k, v, bias_ref, segment-id refs | None, the rest)."""
  spans, refs = (refs[:4], refs[6:]) if plan.segmented else (None, refs)  # (the 2 bounds serve the index maps)
  (q_ref, k_ref, v_ref), bias_ref, seg_refs, rest = _split_refs(plan, refs, 3, 2)
  return spans, q_ref, k_ref, v_ref, bias_ref, seg_refs, rest


def _tpu_visit(run, spans, i, j, num_q_blocks, num_kv_blocks):
  """``run`` and, with segment ids, whether query tile ``i`` and key tile ``j`` can share an id."""
  if spans is None:
    return run
  ok = seg.tpu_visit(spans, pl.program_id(0), i, j, num_q_blocks, num_kv_blocks)
  return ok if run is None else jnp.logical_and(run, ok)


def _tpu_call(plan: _Plan, kernel, grid, in_specs, out_specs, out_shape, scratch, semantics, prefetch, args, name):
  """pallas_call with the segment spans (when given) as scalar-prefetch operands in SMEM."""
  grid_spec = pltpu.PrefetchScalarGridSpec(num_scalar_prefetch=len(prefetch), grid=grid, in_specs=in_specs,
                                           out_specs=out_specs, scratch_shapes=scratch)
  return pl.pallas_call(kernel, grid_spec=grid_spec, out_shape=out_shape, compiler_params=_tpu_params(*semantics),
                        interpret=plan.interpret, debug=plan.debug, name=name)(*prefetch, *args)


def _tpu_fwd_kernel(*refs, plan: _Plan, num_q_blocks: int, num_kv_blocks: int):
  spans, q_ref, k_ref, v_ref, bias_ref, seg_refs, rest = _tpu_refs(plan, refs)
  o_ref, lse_ref, m_sc, l_sc, acc_sc = rest
  bq, bk = plan.block_q, plan.block_k
  i, j = pl.program_id(2), pl.program_id(3)

  @pl.when(j == 0)
  def _init():
    m_sc[...] = jnp.full(m_sc.shape, _MASK, jnp.float32)
    l_sc[...] = jnp.zeros(l_sc.shape, jnp.float32)
    acc_sc[...] = jnp.zeros(acc_sc.shape, jnp.float32)

  @pl.when(_tpu_visit(j < _causal_kv_blocks(plan, i, bq, bk, num_kv_blocks), spans, i, j, num_q_blocks,
                      num_kv_blocks))
  def _step():
    s = _tpu_logits(plan, q_ref[...], k_ref[...], bias_ref, i * bq, j * bk, seg_refs)  # [bq, bk]
    m_prev = m_sc[...]  # [bq, 128]
    m_new = jnp.maximum(m_prev, jnp.max(s, axis=1)[:, None])
    alpha = jnp.exp(m_prev - m_new)
    p = jnp.exp(s - _lanes(m_new, bk))
    l_sc[...] = alpha * l_sc[...] + jnp.sum(p, axis=1)[:, None]
    m_sc[...] = m_new
    v = v_ref[...]
    acc_sc[...] = (_lanes(alpha, acc_sc.shape[-1]) * acc_sc[...]
                   + lax.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32))

  @pl.when(j == num_kv_blocks - 1)
  def _finish():
    l = l_sc[...]
    o_ref[...] = (acc_sc[...] / _lanes(jnp.where(l == 0.0, 1.0, l), acc_sc.shape[-1])).astype(o_ref.dtype)
    lse_ref[...] = m_sc[...] + jnp.log(l)


def _tpu_bias_spec(plan: _Plan, block_q: int, block_k: int, index):
  """BlockSpec of the bias ``[Bb, Hb, Qb, Tk]``; ``index(grid ids) -> (batch, head, q tile, k tile)``."""
  bb, hb, qb = plan.bias_bcast

  def index_map(*ids):
    b, h, i, j = index(*ids)
    return (0 if bb else b, 0 if hb else h, 0 if qb else i, j)
  return pl.BlockSpec((None, None, 1 if qb else block_q, block_k), index_map)


def _tpu_params(n_parallel: int, n_arbitrary: int):
  return pltpu.CompilerParams(dimension_semantics=("parallel",) * n_parallel + ("arbitrary",) * n_arbitrary)


def _tpu_extra(plan: _Plan, bias, segs, bq: int, bk: int, index, outer: str):
  """Specs, operands and scalar-prefetch operands of the bias and segment ids; ``index(*grid ids, *prefetch refs)
  -> (batch, head, q tile, k tile)``; ``outer``: the grid's outer tile side (`seg.tile_bounds`)."""
  specs, args, prefetch = [], [], []
  if bias is not None:
    specs.append(_tpu_bias_spec(plan, bq, bk, index))
    args.append(bias)
  if segs is not None:
    specs += seg.tpu_specs(lambda *ids: index(*ids)[::2], lambda *ids: index(*ids)[::3], bq, bk)
    args += list(seg.tpu_layout(segs))
    prefetch = seg.tile_bounds(segs, bq, bk, outer)
  return specs, args, prefetch


def _tpu_forward(plan: _Plan, q, k, v, bias, segs):
  """q: [b, h, Tq, d], k: [b, hk, Tk, d], v: [b, hk, Tk, dv] (padded) -> out [b, h, Tq, dv], lse [b, h, Tq, 128]."""
  b, h, tq, d = q.shape
  tk, dv = k.shape[2], v.shape[-1]
  g, bq, bk = plan.groups, plan.block_q, plan.block_k
  nk = tk // bk

  def kv_block(bi, i, j, pre):  # skipped tiles (causal, segments) point at one used: nothing new is fetched
    j = jnp.minimum(j, _causal_kv_blocks(plan, i, bq, bk, nk) - 1) if plan.causal else j
    return seg.clamp(pre, bi, i, j, tq // bq)

  index = lambda bi, hi, i, j, *pre: (bi, hi, i, kv_block(bi, i, j, pre))
  in_specs = [
      pl.BlockSpec((None, None, bq, d), lambda bi, hi, i, j, *_: (bi, hi, i, 0)),
      pl.BlockSpec((None, None, bk, d), lambda bi, hi, i, j, *pre: (bi, lax.div(hi, g), kv_block(bi, i, j, pre), 0)),
      pl.BlockSpec((None, None, bk, dv), lambda bi, hi, i, j, *pre: (bi, lax.div(hi, g), kv_block(bi, i, j, pre), 0)),
  ]
  specs, args, prefetch = _tpu_extra(plan, bias, segs, bq, bk, index, "q")
  return _tpu_call(
      plan, functools.partial(_tpu_fwd_kernel, plan=plan, num_q_blocks=tq // bq, num_kv_blocks=nk),
      (b, h, tq // bq, nk), in_specs + specs,
      [pl.BlockSpec((None, None, bq, dv), lambda bi, hi, i, j, *_: (bi, hi, i, 0)),
       pl.BlockSpec((None, None, bq, _LANES), lambda bi, hi, i, j, *_: (bi, hi, i, 0))],
      [jax.ShapeDtypeStruct((b, h, tq, dv), q.dtype), jax.ShapeDtypeStruct((b, h, tq, _LANES), jnp.float32)],
      [pltpu.VMEM((bq, _LANES), jnp.float32), pltpu.VMEM((bq, _LANES), jnp.float32),
       pltpu.VMEM((bq, dv), jnp.float32)],
      (3, 1), prefetch, [q, k, v, *args], "zoo_flash_fwd")


def _tpu_dkv_kernel(*refs, plan: _Plan, num_q_blocks: int, num_kv_blocks: int):
  spans, q_ref, k_ref, v_ref, bias_ref, seg_refs, rest = _tpu_refs(plan, refs)
  do_ref, lse_ref, delta_ref, dk_ref, dv_ref, dk_sc, dv_sc = rest
  bq, bk = plan.block_q_dkv, plan.block_k_dkv
  j, head, i = pl.program_id(2), pl.program_id(3), pl.program_id(4)

  @pl.when(jnp.logical_and(head == 0, i == 0))
  def _init():
    dk_sc[...] = jnp.zeros(dk_sc.shape, jnp.float32)
    dv_sc[...] = jnp.zeros(dv_sc.shape, jnp.float32)

  @pl.when(_tpu_visit(i >= _causal_first_q_block(plan, j, bq, bk), spans, i, j, num_q_blocks, num_kv_blocks))
  def _step():
    q, do, v = q_ref[...], do_ref[...], v_ref[...]
    s = _tpu_logits(plan, q, k_ref[...], bias_ref, i * bq, j * bk, seg_refs)  # [bq, bk]
    p = jnp.exp(s - _lanes(lse_ref[...], bk))
    dv_sc[...] += lax.dot(p.T.astype(do.dtype), do, preferred_element_type=jnp.float32)
    dp = lax.dot_general(do, v, _TRANS_B, preferred_element_type=jnp.float32)
    ds = p * (dp - _lanes(delta_ref[...], bk))
    dk_sc[...] += lax.dot(ds.T.astype(q.dtype), q, preferred_element_type=jnp.float32)

  @pl.when(jnp.logical_and(head == plan.groups - 1, i == num_q_blocks - 1))
  def _finish():
    dk_ref[...] = (dk_sc[...] * plan.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv_sc[...].astype(dv_ref.dtype)


def _tpu_dq_kernel(*refs, plan: _Plan, num_q_blocks: int, num_kv_blocks: int, need_dbias: bool):
  spans, q_ref, k_ref, v_ref, bias_ref, seg_refs, rest = _tpu_refs(plan, refs)
  do_ref, lse_ref, delta_ref, dq_ref = rest[:4]
  dbias_ref = rest[4] if need_dbias else None
  dq_sc = rest[-1]
  bq, bk = plan.block_q_dq, plan.block_k_dq
  i, j = pl.program_id(2), pl.program_id(3)
  run = _tpu_visit(j < _causal_kv_blocks(plan, i, bq, bk, num_kv_blocks), spans, i, j, num_q_blocks, num_kv_blocks)

  @pl.when(j == 0)
  def _init():
    dq_sc[...] = jnp.zeros(dq_sc.shape, jnp.float32)

  @pl.when(run)
  def _step():
    k, do = k_ref[...], do_ref[...]
    s = _tpu_logits(plan, q_ref[...], k, bias_ref, i * bq, j * bk, seg_refs)
    p = jnp.exp(s - _lanes(lse_ref[...], bk))
    dp = lax.dot_general(do, v_ref[...], _TRANS_B, preferred_element_type=jnp.float32)
    ds = p * (dp - _lanes(delta_ref[...], bk))
    if dbias_ref is not None:
      dbias_ref[...] = ds.astype(dbias_ref.dtype)
    dq_sc[...] += lax.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

  if dbias_ref is not None and (plan.causal or plan.segmented):
    @pl.when(jnp.logical_not(run))
    def _zero():
      dbias_ref[...] = jnp.zeros(dbias_ref.shape, dbias_ref.dtype)

  @pl.when(j == num_kv_blocks - 1)
  def _finish():
    dq_ref[...] = (dq_sc[...] * plan.scale).astype(dq_ref.dtype)


def _tpu_backward(plan: _Plan, q, k, v, bias, segs, do, lse, delta, need_dbias: bool):
  """Padded TPU-layout inputs (lse, delta: [b, h, Tq, 128]) -> dq, dk, dv and ``ds`` [b, h, Tq, Tk] or None."""
  b, h, tq, d = q.shape
  hk, tk, dv = k.shape[1], k.shape[2], v.shape[-1]
  g = plan.groups

  # dK, dV: grid (batch, kv head, key tile, head in group, query tile); the last two axes accumulate in VMEM.
  bq, bk = plan.block_q_dkv, plan.block_k_dkv

  def q_block(bi, j, i, pre):  # skipped query tiles (causal, segments): stay on one used
    i = jnp.maximum(i, _causal_first_q_block(plan, j, bq, bk)) if plan.causal else i
    return seg.clamp(pre, bi, j, i, tk // bk)

  qspec = lambda dim: pl.BlockSpec((None, None, bq, dim),
                                   lambda bi, hi, j, gi, i, *pre: (bi, hi * g + gi, q_block(bi, j, i, pre), 0))
  kspec = lambda dim: pl.BlockSpec((None, None, bk, dim), lambda bi, hi, j, gi, i, *_: (bi, hi, j, 0))
  specs, extra, prefetch = _tpu_extra(plan, bias, segs, bq, bk,
                                      lambda bi, hi, j, gi, i, *pre: (bi, hi * g + gi, q_block(bi, j, i, pre), j),
                                      "kv")
  dk, dv_ = _tpu_call(
      plan, functools.partial(_tpu_dkv_kernel, plan=plan, num_q_blocks=tq // bq, num_kv_blocks=tk // bk),
      (b, hk, tk // bk, g, tq // bq), [qspec(d), kspec(d), kspec(dv), *specs, qspec(dv), qspec(_LANES),
                                       qspec(_LANES)],
      [kspec(d), kspec(dv)], [jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
      [pltpu.VMEM((bk, d), jnp.float32), pltpu.VMEM((bk, dv), jnp.float32)],
      (3, 2), prefetch, [q, k, v, *extra, do, lse, delta], "zoo_flash_bwd_dkv")

  # dQ (and the bias gradient): grid (batch, head, query tile, key tile).
  bq, bk = plan.block_q_dq, plan.block_k_dq
  nk = tk // bk

  def kv_block(bi, i, j, pre):
    j = jnp.minimum(j, _causal_kv_blocks(plan, i, bq, bk, nk) - 1) if plan.causal else j
    return seg.clamp(pre, bi, i, j, tq // bq)

  qspec = lambda dim: pl.BlockSpec((None, None, bq, dim), lambda bi, hi, i, j, *_: (bi, hi, i, 0))
  kspec = lambda dim: pl.BlockSpec((None, None, bk, dim),
                                   lambda bi, hi, i, j, *pre: (bi, lax.div(hi, g), kv_block(bi, i, j, pre), 0))
  specs, extra, prefetch = _tpu_extra(plan, bias, segs, bq, bk,
                                      lambda bi, hi, i, j, *pre: (bi, hi, i, kv_block(bi, i, j, pre)), "q")
  out_specs = [qspec(d)]
  out_shape = [jax.ShapeDtypeStruct(q.shape, q.dtype)]
  if need_dbias:
    out_specs.append(pl.BlockSpec((None, None, bq, bk), lambda bi, hi, i, j, *_: (bi, hi, i, j)))
    out_shape.append(jax.ShapeDtypeStruct((b, h, tq, tk), jnp.float32))
  res = _tpu_call(
      plan, functools.partial(_tpu_dq_kernel, plan=plan, num_q_blocks=tq // bq, num_kv_blocks=nk,
                              need_dbias=need_dbias),
      (b, h, tq // bq, nk), [qspec(d), kspec(d), kspec(dv), *specs, qspec(dv), qspec(_LANES), qspec(_LANES)],
      out_specs, out_shape, [pltpu.VMEM((bq, d), jnp.float32)], (3, 1), prefetch,
      [q, k, v, *extra, do, lse, delta], "zoo_flash_bwd_dq")
  return res[0], dk, dv_, (res[1] if need_dbias else None)


# ----------------------------------------------------------------------------------------------------------------
# custom_vjp: forward saves (inputs, out, lse); backward runs the dK/dV and dQ kernels
# ----------------------------------------------------------------------------------------------------------------
# The arrays here are already padded and in the backend's layout (GPU [b, t, h, d], TPU [b, h, t, d]); `bias` is
# the additive bias [Bb, Hb, Qb, Tk] or None. Outputs: out (padded, backend layout) and lse [b, h, Tq].


def _forward(plan: _Plan, q, k, v, bias, segs):
  if plan.backend == "gpu":
    return _gpu_forward(plan, q, k, v, bias, segs)
  out, lse = _tpu_forward(plan, q, k, v, bias, segs)
  return out, lse[..., 0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(plan: _Plan, q, k, v, bias, segs):
  """``segs``: the prepared segment ids ``(q [b, Tq], kv [b, Tk])`` int32 (`attention_segments.prepare`) or None."""
  return _forward(plan, q, k, v, bias, segs)


def _flash_fwd(plan: _Plan, q, k, v, bias, segs):
  # symbolic_zeros=True: the primals come wrapped with a `perturbed` flag, so the bias gradient (an O(length^2)
  # write) is computed only when the caller differentiates the bias.
  need_dbias = bias is not None and bias.perturbed
  q, k, v = q.value, k.value, v.value
  bias = None if bias is None else bias.value
  segs = None if segs is None else tuple(x.value for x in segs)
  out, lse = _forward(plan, q, k, v, bias, segs)
  return (out, lse), (q, k, v, bias, segs, out, lse, () if need_dbias else None)


def _flash_bwd(plan: _Plan, res, cts):
  q, k, v, bias, segs, out, lse, need_dbias = res
  need_dbias = need_dbias is not None
  do = cts[0]  # the lse cotangent is ignored: the wrapper only compares lse against a threshold
  no_segs = None if segs is None else (None, None)  # integer ids: no cotangent
  if isinstance(do, jax.custom_derivatives.SymbolicZero):
    return (jnp.zeros_like(q), jnp.zeros_like(k), jnp.zeros_like(v),
            None if bias is None else jnp.zeros_like(bias), no_segs)
  # Fully masked rows are replaced by the uniform average outside the kernel; an infinite lse makes their
  # probabilities exactly 0 here, so they add nothing to dq/dk/dv (their gradient flows through that average).
  lse = jnp.where(lse < _FULLY_MASKED, jnp.inf, lse)
  if plan.backend == "gpu":
    delta = jnp.einsum("bqhd,bqhd->bhq", out.astype(jnp.float32), do.astype(jnp.float32))
    dq, dk, dv, ds = _gpu_backward(plan, q, k, v, bias, segs, do, lse, delta, need_dbias)
  else:
    delta = jnp.einsum("bhqd,bhqd->bhq", out.astype(jnp.float32), do.astype(jnp.float32))
    lanes = lambda x: jnp.broadcast_to(x[..., None], (*x.shape, _LANES))
    dq, dk, dv, ds = _tpu_backward(plan, q, k, v, bias, segs, do, lanes(lse), lanes(delta), need_dbias)
  dbias = None
  if need_dbias:  # reduce the full [b, h, Tq, Tk] gradient to the bias's broadcast shape
    axes = tuple(a for a, bc in zip(range(3), plan.bias_bcast) if bc)
    dbias = jnp.sum(ds, axis=axes, keepdims=True).astype(bias.dtype) if axes else ds.astype(bias.dtype)
  return dq, dk, dv, dbias, no_segs


_flash.defvjp(_flash_fwd, _flash_bwd, symbolic_zeros=True)
