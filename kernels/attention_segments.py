"""Segment ids for :func:`zoo.kernels.attention.attention`: checks, the dense rule, and the kernels' block skipping.

Segment ids are int arrays ``q_segment_ids [batch, q_length]`` and ``kv_segment_ids [batch, kv_length]``
(``kv`` defaults to ``q``'s ids when the lengths agree). Query ``i`` may attend to key ``j`` iff
``q_segment_ids[i] == kv_segment_ids[j] >= 0``; a negative id marks padding (a padded query attends to nothing, so
its row is fully masked and follows the module's convention: uniform attention over every key; a padded key is never
attended). The rule is "and-ed" with any mask, bias and causal mask, as the segment ids of jax's splash attention
(``jax.experimental.pallas.ops.tpu.splash_attention``) and of its Triton flash op
(``jax.experimental.pallas.ops.gpu.attention``).

The Pallas kernels never build a ``[q, k]`` mask in HBM: they get the (padded) ids as small per-tile int arrays and
compare them inside the kernel, after the wrapper has rewritten padding so that one equality test is the whole rule
(negative query ids become ``-1``, negative key ids ``-2``, which no query id equals). A (query tile, key tile) pair
with no allowed pair is skipped: each tile's ids span ``[lo, hi]`` over its non-negative ids, and two tiles can only
share an id when their spans overlap. The test is exact for self-attention over sorted (packed) ids (a tile's ids
are then a run of consecutive segments); otherwise it is conservative (a tile pair it keeps may still be fully
masked, which costs time, never correctness). The Triton kernels loop only over the first..last tile of the other
side that their tile can share an id with (`tile_bounds`, computed in the wrapper from the spans: O(tiles^2) ints),
and inside that range compute the spans of the tiles in the kernel and skip with ``lax.cond``. The TPU kernels get
the spans per tile as scalar-prefetched arrays (SMEM) and skip the tile's compute with ``pl.when``; their index
maps clamp each key (dK/dV: query) tile to the first..last tile the other side visits, so no DMA is issued outside
that range. Inside it (unsorted ids, or a tile of padding between segments) a skipped tile is still fetched:
splash's ``data_next`` table, which redirects every skipped fetch, is not built here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

__all__: list[str] = []  # private to zoo.kernels.attention

Q_PAD = -1  # padded / negative query ids after `prepare`
KV_PAD = -2  # padded / negative key ids after `prepare`: never equal to a query id
_EMPTY_LO = int(np.iinfo(np.int32).max)  # span of a tile without a non-negative id: [int32 max, -1]


def check(q_segment_ids, kv_segment_ids, batch: int, q_len: int, kv_len: int, where: str = "attention"):
  """Validates the ids; returns ``(q_ids, kv_ids)`` (``kv`` defaulted to ``q``'s), or ``(None, None)``."""
  if q_segment_ids is None:
    if kv_segment_ids is not None:
      raise ValueError(f"{where}: `kv_segment_ids` needs `q_segment_ids` (int [batch, q_length] = "
                       f"[{batch}, {q_len}]); got only `kv_segment_ids`.")
    return None, None
  if kv_segment_ids is None:
    if q_len != kv_len:
      raise ValueError(f"{where}: `kv_segment_ids` (int [batch, kv_length] = [{batch}, {kv_len}]) is required when "
                       f"q_length ({q_len}) != kv_length ({kv_len}); only `q_segment_ids` was given.")
    kv_segment_ids = q_segment_ids
  for name, x, length, what in (("q_segment_ids", q_segment_ids, q_len, "q_length"),
                                ("kv_segment_ids", kv_segment_ids, kv_len, "kv_length")):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
      raise TypeError(f"{where}: `{name}` must be an int array [batch, {what}] = [{batch}, {length}]; got "
                      f"{type(x).__name__}.")
    if not jnp.issubdtype(x.dtype, jnp.integer):
      raise TypeError(f"{where}: `{name}` must have an integer dtype (int [batch, {what}] = [{batch}, {length}]); "
                      f"got {x.dtype}.")
    if tuple(x.shape) != (batch, length):
      raise ValueError(f"{where}: `{name}` must have shape [batch, {what}] = [{batch}, {length}]; got shape "
                       f"{tuple(x.shape)}.")
  return q_segment_ids, kv_segment_ids


def dense_mask(q_ids, kv_ids):
  """``[b, 1, q, k]`` bool: ``q_ids[i] == kv_ids[j] >= 0`` (the reference's rule, O(q * k))."""
  same = q_ids[:, :, None] == kv_ids[:, None, :]
  return (same & (q_ids[:, :, None] >= 0) & (kv_ids[:, None, :] >= 0))[:, None]


def prepare(q_ids, kv_ids, q_len_padded: int, kv_len_padded: int):
  """int32 ids padded to the kernels' lengths, padding rewritten so that ``q == kv`` alone is the rule."""
  q = jnp.where(q_ids >= 0, q_ids, Q_PAD).astype(jnp.int32)
  kv = jnp.where(kv_ids >= 0, kv_ids, KV_PAD).astype(jnp.int32)
  q = jnp.pad(q, ((0, 0), (0, q_len_padded - q.shape[1])), constant_values=Q_PAD)
  kv = jnp.pad(kv, ((0, 0), (0, kv_len_padded - kv.shape[1])), constant_values=KV_PAD)
  return q, kv


def span(ids):
  """``(lo, hi)`` over the non-negative entries of ``ids`` (last axis); ``(int32 max, <0)`` when there are none."""
  lo = jnp.min(jnp.where(ids >= 0, ids, _EMPTY_LO), axis=-1)
  hi = jnp.max(ids, axis=-1)
  return lo, hi


def tile_spans(ids, block: int):
  """``ids [b, n * block]`` -> ``(lo, hi)`` each ``[b * n]`` int32 (flattened for SMEM): every tile's span."""
  b, t = ids.shape
  lo, hi = span(ids.reshape(b, t // block, block))
  return lo.reshape(-1), hi.reshape(-1)


def overlap(q_lo, q_hi, kv_lo, kv_hi):
  """Whether a query tile and a key tile can share a non-negative id (False when either has none)."""
  return jnp.logical_and(kv_lo <= q_hi, q_lo <= kv_hi)


def allowed_fraction(q_ids, kv_ids, block_q: int, block_k: int, *, causal: bool = False) -> float:
  """The fraction of (query tile, key tile) pairs the kernels visit (numpy; for benchmarks and tests).

  ``q_ids``/``kv_ids`` are ``[b, q]``/``[b, k]`` with lengths multiples of the blocks. ``causal`` also drops the
  tiles above the diagonal (equal lengths).
  """
  q, kv = np.asarray(q_ids), np.asarray(kv_ids)
  q = np.where(q >= 0, q, Q_PAD)
  kv = np.where(kv >= 0, kv, KV_PAD)
  b = q.shape[0]
  qt, kt = q.reshape(b, -1, block_q), kv.reshape(b, -1, block_k)
  q_lo = np.where(qt >= 0, qt, _EMPTY_LO).min(-1)
  kv_lo = np.where(kt >= 0, kt, _EMPTY_LO).min(-1)
  ok = (kv_lo[:, None, :] <= qt.max(-1)[:, :, None]) & (q_lo[:, :, None] <= kt.max(-1)[:, None, :])
  if causal:
    i = np.arange(qt.shape[1])[:, None]
    j = np.arange(kt.shape[1])[None, :]
    ok &= (j * block_k) <= ((i + 1) * block_q - 1)
  return float(ok.mean())


# ----------------------------------------------------------------------------------------------------------------
# Triton: ids as 1-D tiles; spans computed in the kernel, skip with lax.cond
# ----------------------------------------------------------------------------------------------------------------


def gpu_specs(q_block: int | None, q_len_p: int, kv_block: int | None, kv_len_p: int, grid: str):
  """BlockSpecs of the ids ``[b, Tq]`` / ``[b, Tk]``: the program's own tile, every id of the other side."""
  if grid == "q":  # grid (q tile, batch, head)
    return [pl.BlockSpec((None, q_block), lambda i, bi, hi: (bi, i)),
            pl.BlockSpec((None, kv_len_p), lambda i, bi, hi: (bi, 0))]
  return [pl.BlockSpec((None, q_len_p), lambda j, bi, hi: (bi, 0)),  # grid (key tile, batch, kv head)
          pl.BlockSpec((None, kv_block), lambda j, bi, hi: (bi, j))]


def gpu_step(seg_refs, q_ids, kv_start: int | Any, block_k: int, step, skip, carry, q_span=None):
  """``step(carry, same)`` where the tiles can share an id, else ``skip(carry)``; ``step(carry, None)`` without
  segments. ``same [bq, bk]`` is the in-kernel segment mask; ``q_ids [bq]`` are the query tile's ids, the key
  tile's are loaded from ``kv_start``."""
  if seg_refs is None:
    return step(carry, None)
  kv_ids = seg_refs[1][pl.ds(kv_start, block_k)]
  q_lo, q_hi = span(q_ids) if q_span is None else q_span
  ok = overlap(q_lo, q_hi, *span(kv_ids))
  return lax.cond(ok, lambda c: step(c, q_ids[:, None] == kv_ids[None, :]), skip, carry)


# ----------------------------------------------------------------------------------------------------------------
# Mosaic TPU: ids broadcast over lanes (queries) / sublanes (keys) as splash attention lays them out; per-tile spans
# scalar-prefetched into SMEM
# ----------------------------------------------------------------------------------------------------------------

LANES, SUBLANES = 128, 8


def tpu_layout(segs):
  """``([b, Tq], [b, Tk])`` -> ``([b, Tq, 128], [b, 8, Tk])``: the vreg-friendly layouts of splash attention."""
  q, kv = segs
  return (lax.broadcast_in_dim(q, (*q.shape, LANES), (0, 1)),
          lax.broadcast_in_dim(kv, (kv.shape[0], SUBLANES, kv.shape[1]), (0, 2)))


def tile_bounds(segs, block_q: int, block_k: int, outer: str):
  """Six int32 arrays: the spans ``q_lo, q_hi`` ``[b * q tiles]``, ``kv_lo, kv_hi`` ``[b * kv tiles]``, and per
  tile of the ``outer`` side (``'q'``: forward and dQ; ``'kv'``: dK/dV) the first and last tile of the other side
  it visits, ``[b * outer tiles]`` (``0, 0`` when it visits none). The TPU kernels scalar-prefetch all six (see
  `clamp`); the Triton kernels loop over first..last only."""
  b = segs[0].shape[0]
  spans = [*tile_spans(segs[0], block_q), *tile_spans(segs[1], block_k)]
  q_lo, q_hi, kv_lo, kv_hi = (x.reshape(b, -1) for x in spans)
  ok = overlap(q_lo[:, :, None], q_hi[:, :, None], kv_lo[:, None, :], kv_hi[:, None, :])  # [b, nq, nk]: tiny
  if outer == "kv":
    ok = ok.transpose(0, 2, 1)
  n = ok.shape[2]
  idx = jnp.arange(n, dtype=jnp.int32)
  first = jnp.min(jnp.where(ok, idx, n), axis=2)
  last = jnp.max(jnp.where(ok, idx, -1), axis=2)
  first, last = jnp.where(last < 0, 0, first), jnp.maximum(last, 0)  # a tile visiting nothing: any index
  return spans + [first.reshape(-1).astype(jnp.int32), last.reshape(-1).astype(jnp.int32)]


def clamp(prefetch, batch, outer_tile, inner_tile, num_outer_tiles: int):
  """The tile index a TPU index map fetches: ``inner_tile`` clamped to the range the outer tile visits.

  Outside that range the index stays on its first/last tile, so the pipeline issues no new DMA for the skipped
  tiles there (as the causal clamp does); tiles inside the range that the kernel skips (unsorted ids) are still
  fetched. ``prefetch`` is empty without segment ids.
  """
  if not prefetch:
    return inner_tile
  k = batch * num_outer_tiles + outer_tile
  return jnp.minimum(jnp.maximum(inner_tile, prefetch[4][k]), prefetch[5][k])


def gpu_bounds_spec(segs, block_q: int, block_k: int, outer: str):
  """The Triton kernels' loop range: ``[b, outer tiles, 2]`` (first, last) and its BlockSpec (the program's own)."""
  b = segs[0].shape[0]
  *_, first, last = tile_bounds(segs, block_q, block_k, outer)
  bounds = jnp.stack([first, last], axis=-1).reshape(b, -1, 2)
  return bounds, pl.BlockSpec((None, None, 2), lambda t, bi, hi: (bi, t, 0))


def gpu_range(bounds_ref, lo, hi):
  """``[lo, hi)`` narrowed to the tiles the program visits (``bounds_ref``: its (first, last)); None refs: as is."""
  if bounds_ref is None:
    return lo, hi
  return jnp.maximum(lo, bounds_ref[0]), jnp.minimum(hi, bounds_ref[1] + 1)


def tpu_specs(q_index, kv_index, block_q: int, block_k: int):
  """BlockSpecs of the two `tpu_layout` arrays; ``q_index/kv_index(*grid ids) -> (batch, tile)``."""
  def q_map(*ids):
    b, i = q_index(*ids)
    return b, i, 0

  def kv_map(*ids):
    b, j = kv_index(*ids)
    return b, 0, j
  return [pl.BlockSpec((None, block_q, LANES), q_map), pl.BlockSpec((None, SUBLANES, block_k), kv_map)]


def tpu_visit(spans, batch, i, j, num_q_tiles: int, num_kv_tiles: int):
  """Whether query tile ``i`` and key tile ``j`` of example ``batch`` can share an id (scalar reads of SMEM)."""
  q_lo, q_hi, kv_lo, kv_hi = spans
  qi, kj = batch * num_q_tiles + i, batch * num_kv_tiles + j
  return overlap(q_lo[qi], q_hi[qi], kv_lo[kj], kv_hi[kj])


def tpu_same(seg_refs, block_k: int):
  """In-kernel segment mask ``[bq, bk]`` of one tile pair from the `tpu_layout` refs."""
  q = seg_refs[0][...]  # [bq, 128], every lane equal
  if block_k != LANES:
    q = jnp.tile(q, (1, block_k // LANES))
  return q == seg_refs[1][:1, :]  # [1, bk]


def shard_spec(batch_axes):
  """PartitionSpec of ``[batch, length]`` ids under the kernel's shard_map."""
  return jax.sharding.PartitionSpec(batch_axes, None)
