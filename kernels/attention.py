"""Scaled dot-product attention: the one attention function every model in the zoo calls.

Layout and semantics follow ``jax.nn.dot_product_attention``::

  query: [batch, q_length, heads, head_dim]
  key:   [batch, kv_length, kv_heads, head_dim]     kv_heads divides heads (grouped-query attention)
  value: [batch, kv_length, kv_heads, value_dim]
  bias:  broadcastable to [batch, heads, q_length, kv_length], added to the logits
  mask:  bool, broadcastable to [batch, heads, q_length, kv_length]; True means "may attend"
  q_segment_ids: int [batch, q_length], kv_segment_ids: int [batch, kv_length] (default: q's): query i may attend
         to key j only if q_segment_ids[i] == kv_segment_ids[j] >= 0 (packed sequences; negative = padding)
  out:   [batch, q_length, heads, value_dim]

  out = softmax(scale * query @ key^T + bias, masked) @ value,   scale = 1/sqrt(head_dim) by default

The causal mask is bottom-right aligned when the lengths differ (query ``i`` sees keys ``j <= i + kv_length -
q_length``), and a fully masked row attends uniformly to every key, as in ``jax.nn.dot_product_attention``.

The Pallas kernels implement FlashAttention-2: Tri Dao, "FlashAttention-2: Faster Attention with Better Parallelism
and Work Partitioning", 2023, arXiv:2307.08691 (building on Dao et al., "FlashAttention: Fast and Memory-Efficient
Exact Attention with IO-Awareness", 2022, arXiv:2205.14135). The forward pass walks the keys block by block with an
online softmax and saves only the output and the log-sum-exp of every query row; the backward pass recomputes the
probabilities block by block from that log-sum-exp. Memory is O(length), never O(length^2) (except the bias
gradient, which has the bias's own O(q_length * kv_length) size).

Parts, in the order of DESIGN.md "Kernels":

* :class:`BlockSizes`: tile sizes, with :meth:`BlockSizes.get_default` per backend (``'gpu'`` or ``'tpu'``).
* The kernel bodies, in :mod:`zoo.kernels.attention_pallas` (this file would pass 1000 lines with them): a Triton
  lowering (``_gpu_*``, layout ``[batch, length, heads, dim]``) and a Mosaic TPU lowering (``_tpu_*``, layout
  ``[batch, heads, length, dim]``), each with a forward kernel, a dK/dV kernel and a dQ kernel (which also writes
  the bias gradient when the bias is differentiated), and their ``custom_vjp``.
* :func:`flash_attention`: the kernel entry point for one lowering, wired with ``jax.custom_vjp``. Any lengths
  (padded to the block size internally, the padding masked), differing query/key lengths, grouped-query heads,
  a bias and/or a mask (the mask is folded into an additive bias: ``0`` where allowed, ``finfo(float32).min``
  elsewhere, broadcast no further than the two need, so a key-padding mask ``[batch, 1, 1, kv_length]`` stays
  O(length)), ``interpret``/``debug`` switches as jax's own Pallas ops have.
* :func:`attention`: the public function, ``impl='auto' | 'pallas' | 'xla'``. The backend is chosen with
  ``jax.lax.platform_dependent`` at lowering time, so one jitted function carries every path and exports for any
  platform.
* :func:`reference`: plain ``jnp``, the source of truth, the test oracle and the fallback.
* Segment ids, in :mod:`zoo.kernels.attention_segments`: checks, the dense rule (the reference's), and the kernels'
  per-tile masks and tile skipping, in the style of jax's splash attention. The ids reach the kernels as small
  per-tile int arrays (never a ``[q, k]`` mask in HBM); a (query tile, key tile) pair whose id spans do not
  overlap is skipped (Triton: the tile loop narrowed to the tiles that can match, ``lax.cond`` inside; TPU: spans
  scalar-prefetched into SMEM, ``pl.when``, index maps clamped so skipped tiles issue no DMA), in the forward and
  both backward kernels. Exact for self-attention over sorted (packed) ids,
  conservative otherwise.

Details and limits:

* Softmax statistics and accumulators are float32 whatever the input dtype; the probabilities are cast to the
  value dtype before the second matmul, as the reference casts its weights.
* A fully masked row (no allowed key, e.g. the first rows of a causal mask when q_length > kv_length, or a query
  with a negative segment id or an id no key has) ends the forward kernel with a log-sum-exp at the float32 minimum
  (or -inf when all its tiles were skipped); the wrapper replaces those rows by the mean of the values (uniform
  attention, as the reference), and the backward kernels give them zero probability, so their gradient flows only
  through that mean.
* The bias gradient (an O(q_length * kv_length) write) is computed only when the bias is differentiated
  (``custom_vjp(symbolic_zeros=True)`` tells the forward pass which inputs are perturbed).
* Under a mesh (``jax.set_mesh``) the kernel runs per shard in a ``shard_map`` over the batch and head axes (see
  `_mesh_split`); without a mesh context a sharded batch is gathered by XLA, which cannot split a kernel call.
* A traced ``scale`` (a learned inverse temperature, as Hopfield layers have) multiplies the queries before the
  kernel, which then runs with scale 1; its gradient flows through that product.
* First-order gradients only (the backward kernels have no derivative of their own), as jax's Pallas ops.
  Dropout (``dropout_rate > 0``), mixed input dtypes, head dims above 256 (GPU) / 512 (TPU) and float16 on TPU
  use the reference under ``impl='auto'`` (logged) and raise under ``impl='pallas'``.
* ``jax.export`` works for one platform at a time (``platforms=('cuda',)``, ``('tpu',)`` or ``('cpu',)``). A
  multi-platform export of ``impl='auto'|'pallas'`` fails: jax lowers every ``platform_dependent`` branch for every
  requested platform, and a ``pallas_call`` lowers only for its own backend (jax 0.10.2).
* GPU: head dims are zero-padded to a power of two >= 16, lengths to the tile; TPU: head dims to a multiple of 128
  (free on the 128-wide MXU), query lengths to a multiple of 16 and key lengths of 128.
* Verified here: the numbers in the Pallas interpreter on CPU (both kernels, against `reference`) and the lowering
  to Triton and Mosaic by ``jax.export`` for ``cuda`` and ``tpu``. Export does not run the Triton or Mosaic
  compilers themselves (they need the device), and no GPU/TPU was available to this build: the default tiles
  (see :meth:`BlockSizes.get_default`) are not tuned on hardware (benchmarks/attention.py measures them).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from zoo.kernels.attention_pallas import _FULLY_MASKED, _LANES, _MASK, _Plan, _block_pair, _flash, _pow2_at_least
from zoo.kernels.attention_pallas import _round_up
from zoo.kernels import attention_segments as _segments

__all__ = ["BlockSizes", "attention", "flash_attention", "kernel_unsupported_reason", "reference"]

_log = logging.getLogger(__name__)
_KERNEL_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


# ----------------------------------------------------------------------------------------------------------------
# Block sizes
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Tile sizes of the kernels: they change speed, never the result.

  Attributes:
    block_q, block_k: query and key tile of the forward kernel.
    block_q_dkv, block_k_dkv: query and key tile of the dK/dV kernel (one program per key tile).
    block_q_dq, block_k_dq: query and key tile of the dQ kernel (one program per query tile).
    num_warps, num_stages: Triton launch parameters (GPU only); ``None`` picks 4 warps for head_dim <= 64 and 8
      above, and 2 pipeline stages.

  A tile larger than the (padded) sequence is shrunk to it. GPU tiles must be powers of two >= 16 (Triton);
  TPU query tiles multiples of 16 and key tiles multiples of 128 (Mosaic's (sublane, lane) tiling).
  """
  block_q: int
  block_k: int
  block_q_dkv: int
  block_k_dkv: int
  block_q_dq: int
  block_k_dq: int
  num_warps: int | None = None
  num_stages: int | None = None

  def __post_init__(self):
    for f in ("block_q", "block_k", "block_q_dkv", "block_k_dkv", "block_q_dq", "block_k_dq"):
      v = getattr(self, f)
      if not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"BlockSizes: `{f}` must be a positive int; got {v!r}.")

  @classmethod
  def get_default(cls, backend: str = "gpu", head_dim: int | None = None) -> BlockSizes:
    """Defaults per backend (``'gpu'``: Triton, ``'tpu'``: Mosaic TPU) and, on GPU, head size.

    GPU: the forward tiles of jax's own Triton attention (``jax.experimental.pallas.ops.gpu.attention``, 128x128,
    4/8 warps, 2 stages); 64x64 tiles for the two backward kernels, which keep two float32 accumulators of
    ``[block, head_dim]`` in registers. Head dims above 128 halve the tiles, so that a 128x256 bfloat16 query
    tile plus two double-buffered key/value tiles (320 KiB) does not overflow an H100's 228 KiB of shared
    memory. TPU: 128 everywhere, as jax's ``ops.tpu.flash_attention``. Neither set has been tuned on hardware
    here (no accelerator was available to this build); see benchmarks/RESULTS.md.
    """
    if backend == "gpu":
      if head_dim is not None and head_dim > 128:
        return cls(block_q=64, block_k=64, block_q_dkv=32, block_k_dkv=32, block_q_dq=32, block_k_dq=32)
      return cls(block_q=128, block_k=128, block_q_dkv=64, block_k_dkv=64, block_q_dq=64, block_k_dq=64)
    if backend == "tpu":
      return cls(block_q=128, block_k=128, block_q_dkv=128, block_k_dkv=128, block_q_dq=128, block_k_dq=128)
    raise ValueError(f"BlockSizes.get_default: `backend` must be 'gpu' or 'tpu'; got {backend!r}.")




# ----------------------------------------------------------------------------------------------------------------
# Kernel entry point
# ----------------------------------------------------------------------------------------------------------------


def _static_scale(scale, head_dim: int) -> float | None:
  if scale is None:
    return head_dim ** -0.5
  try:
    return float(scale)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return None  # a traced scale: the kernels need it at compile time


def _bias4(x, name: str, b: int, h: int, tq: int, tk: int):
  """``x`` broadcastable to [b, h, tq, tk] -> rank 4 with each dim either 1 or full."""
  x = jnp.asarray(x)
  full = (b, h, tq, tk)
  if x.ndim > 4 or any(n not in (1, f) for n, f in zip(x.shape[::-1], full[::-1])):
    raise ValueError(f"attention: `{name}` must be broadcastable to [batch, heads, q_length, kv_length] = "
                     f"{list(full)}; got shape {x.shape}.")
  return x.reshape((1,) * (4 - x.ndim) + x.shape)


def _additive_bias(bias, mask, b: int, h: int, tq: int, tk: int):
  """The bias and mask as one additive bias [Bb, Hb, Qb, tk] (Bb in {1, b}, Hb in {1, h}, Qb in {1, tq}), or None.

  The mask becomes ``0`` / ``finfo(float32).min``, so a masked logit is the float32 minimum as in `reference`.
  Only the key axis is materialised to full size; the other axes stay broadcast where both inputs allow.
  """
  if bias is None and mask is None:
    return None
  if bias is not None:
    bias = _bias4(bias, "bias", b, h, tq, tk)
    if not jnp.issubdtype(bias.dtype, jnp.floating):
      bias = bias.astype(jnp.float32)
  if mask is not None:
    mask = _bias4(mask, "mask", b, h, tq, tk)
    if mask.dtype != jnp.bool_:
      mask = mask != 0  # as `reference`'s jnp.where reads it
    base = jnp.zeros((), jnp.float32) if bias is None else bias.astype(jnp.promote_types(bias.dtype, jnp.float32))
    bias = jnp.where(mask, base, _MASK)
  if bias.shape[3] == 1:
    bias = jnp.broadcast_to(bias, (*bias.shape[:3], tk))
  return bias


def kernel_unsupported_reason(query, key, value, *, bias=None, mask=None, scale=None, dropout_rate: float = 0.0,
                              backend: str = "gpu") -> str | None:
  """Why the Pallas kernel does not apply to these inputs on ``backend`` (None when it does).

  Any bias, mask and scale the reference accepts are supported; they are arguments so that callers can ask about a
  complete call.
  """
  del bias, mask, scale  # a traced scale multiplies the queries before the kernel
  if dropout_rate > 0.0:
    return "dropout on the attention weights is not implemented in the kernel"
  dtypes = sorted({jnp.dtype(x.dtype).name for x in (query, key, value)})
  if len(dtypes) != 1 or jnp.dtype(query.dtype) not in [jnp.dtype(t) for t in _KERNEL_DTYPES]:
    return f"the kernel needs query/key/value of one dtype among float32/bfloat16/float16; got {dtypes}"
  if backend == "tpu" and jnp.dtype(query.dtype) == jnp.float16:
    return "float16 is not a TPU matmul type (use bfloat16)"
  d, dv = query.shape[-1], value.shape[-1]
  if backend == "gpu" and max(d, dv) > 256:
    return f"head_dim {d} / value_dim {dv} above 256 does not fit the Triton kernel's registers"
  if backend == "tpu" and max(d, dv) > 512:
    return f"head_dim {d} / value_dim {dv} above 512 does not fit the TPU kernel's VMEM tiles"
  return None


def flash_attention(query, key, value, *, bias=None, mask=None, is_causal: bool = False, scale: float | None = None,
                    block_sizes: BlockSizes | None = None, backend: str = "gpu", interpret: Any = False,
                    debug: bool = False, q_segment_ids=None, kv_segment_ids=None):
  """The Pallas kernel for one lowering; shapes and semantics as in the module docstring.

  Args:
    q_segment_ids, kv_segment_ids: int ``[batch, q_length]`` / ``[batch, kv_length]`` (kv defaults to q's): see
      :func:`attention`. The ids travel to the kernels as per-tile int arrays; tile pairs without a common id are
      skipped (:mod:`zoo.kernels.attention_segments`).
    backend: ``'gpu'`` (Triton) or ``'tpu'`` (Mosaic TPU): which kernel is built.
    block_sizes: tiles; default :meth:`BlockSizes.get_default` for ``backend``.
    interpret: run the kernel in the Pallas interpreter (CPU, for tests and debugging). ``True`` uses the generic
      interpreter; for the TPU kernel a ``pltpu.InterpretParams()`` uses the TPU simulator.
    debug: print the kernels' jaxprs and lowered IR, as ``pallas_call(debug=True)``.

  Differentiable in query, key, value and bias (custom_vjp with Pallas backward kernels).
  """
  _check(query, key, value)
  q_ids, kv_ids = _segments.check(q_segment_ids, kv_segment_ids, query.shape[0], query.shape[1], key.shape[1],
                                  "flash_attention")
  if backend not in ("gpu", "tpu"):
    raise ValueError(f"flash_attention: `backend` must be 'gpu' or 'tpu'; got {backend!r}.")
  reason = kernel_unsupported_reason(query, key, value, bias=bias, mask=mask, scale=scale, backend=backend)
  if reason is not None:
    raise ValueError(f"flash_attention: {reason}; use attention(..., impl='xla') for these inputs.")
  b, tq, h, d = query.shape
  tk, hk, dv = key.shape[1], key.shape[2], value.shape[-1]
  static_scale = _static_scale(scale, d)
  if static_scale is None:  # a traced scale (a learned inverse temperature): scale the queries, not the kernel
    query = (query.astype(jnp.float32) * scale).astype(query.dtype)
    static_scale = 1.0
  scale = static_scale
  bs = BlockSizes.get_default(backend, max(d, dv)) if block_sizes is None else block_sizes
  bias4 = _additive_bias(bias, mask, b, h, tq, tk)

  bq, bk = _block_pair(backend, bs.block_q, bs.block_k, tq, tk, ("block_q", "block_k"))
  bq_dkv, bk_dkv = _block_pair(backend, bs.block_q_dkv, bs.block_k_dkv, tq, tk, ("block_q_dkv", "block_k_dkv"))
  bq_dq, bk_dq = _block_pair(backend, bs.block_q_dq, bs.block_k_dq, tq, tk, ("block_q_dq", "block_k_dq"))
  # One padded length serves every kernel: a multiple of all the tiles (they are powers of two on GPU; on TPU
  # multiples of 16/128, so their lcm stays small).
  tq_p = _round_up(tq, math.lcm(bq, bq_dkv, bq_dq))
  tk_p = _round_up(tk, math.lcm(bk, bk_dkv, bk_dq))
  if backend == "gpu":  # Triton tiles are powers of two >= 16
    d_p, dv_p = _pow2_at_least(d, 16), _pow2_at_least(dv, 16)
  else:  # the MXU contracts 128 at a time, so padding 32/64 to 128 costs no extra matmul passes
    d_p, dv_p = _round_up(d, _LANES), _round_up(dv, _LANES)

  plan = _Plan(backend=backend, scale=scale, causal=bool(is_causal), q_len=tq, kv_len=tk, kv_len_padded=tk_p,
               heads=h, kv_heads=hk,
               bias_bcast=None if bias4 is None else tuple(n == 1 for n in bias4.shape[:3]),
               segmented=q_ids is not None,
               block_q=bq, block_k=bk, block_q_dkv=bq_dkv, block_k_dkv=bk_dkv, block_q_dq=bq_dq, block_k_dq=bk_dq,
               num_warps=bs.num_warps, num_stages=bs.num_stages, interpret=interpret, debug=bool(debug))

  def pad(x, length, dim):
    widths = [(0, 0), (0, length - x.shape[1]), (0, 0), (0, dim - x.shape[3])]
    return jnp.pad(x, widths) if any(w for _, w in widths) else x

  q, k, v = pad(query, tq_p, d_p), pad(key, tk_p, d_p), pad(value, tk_p, dv_p)
  if bias4 is not None:
    widths = [(0, 0), (0, 0), (0, 0 if bias4.shape[2] == 1 else tq_p - tq), (0, tk_p - tk)]
    bias4 = jnp.pad(bias4, widths) if any(w for _, w in widths) else bias4
  segs = None if q_ids is None else _segments.prepare(q_ids, kv_ids, tq_p, tk_p)
  if backend == "tpu":
    q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
  out, lse = _flash(plan, q, k, v, bias4, segs)
  if backend == "tpu":
    out = out.transpose(0, 2, 1, 3)
  out = out[:, :tq, :, :dv]
  lse = lse[:, :, :tq]

  if bias4 is not None or plan.segmented or (plan.causal and tq > tk):
    # Rows with no allowed key attend uniformly to all keys (as `reference` and jax.nn.dot_product_attention).
    mean_v = jnp.mean(value.astype(jnp.float32), axis=1)  # [b, hk, dv]
    mean_v = jnp.repeat(mean_v, h // hk, axis=1)[:, None].astype(out.dtype)  # [b, 1, h, dv]
    empty = (lax.stop_gradient(lse) < _FULLY_MASKED).transpose(0, 2, 1)[..., None]  # [b, tq, h, 1]
    out = jnp.where(empty, mean_v, out)
  return out


_flash_attention_jit = jax.jit(flash_attention, static_argnames=("is_causal", "scale", "block_sizes", "backend",
                                                                 "interpret", "debug"))


# ----------------------------------------------------------------------------------------------------------------
# Sharding: a pallas_call is opaque to XLA's partitioner, which would gather a sharded batch onto every device and
# compute all of it there. Under a mesh (``jax.set_mesh``, as the zoo's trainer does), the kernel runs per shard in
# a ``shard_map`` over the batch and head axes; lengths and feature dims stay whole on each device.
# ----------------------------------------------------------------------------------------------------------------


def _axes_tuple(entry) -> tuple[str, ...]:
  if entry is None:
    return ()
  return (entry,) if isinstance(entry, str) else tuple(entry)


def _mesh_split(query, key):
  """(mesh, batch axes, head axes) to run the kernel per shard, or None when there is nothing to split.

  With explicit mesh axes the query's own sharding of the batch and head dimensions is kept. With automatic axes
  (the sharding of an activation is not known while tracing) every mesh axis of size > 1 goes to the batch while
  their product divides it, the remaining ones to the heads while they divide the key/value heads; a mesh axis
  that divides neither is left out (the computation is replicated along it).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1 or mesh.manual_axes:
    return None
  b, hk = query.shape[0], key.shape[2]
  sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
  if mesh.explicit_axes:
    spec = tuple(jax.typeof(query).sharding.spec) + (None,) * 4
    batch_axes, head_axes = _axes_tuple(spec[0]), _axes_tuple(spec[2])
    if hk % math.prod(sizes[a] for a in head_axes):
      head_axes = ()
  else:
    batch_axes, head_axes, nb, nh = [], [], 1, 1
    for name in mesh.axis_names:
      n = sizes[name]
      if n == 1:
        continue
      if b % (nb * n) == 0:
        batch_axes.append(name)
        nb *= n
      elif hk % (nh * n) == 0:
        head_axes.append(name)
        nh *= n
    batch_axes, head_axes = tuple(batch_axes), tuple(head_axes)
  if not batch_axes and not head_axes:
    return None
  return mesh, batch_axes, head_axes


def _per_shard(fn, query, key, value, bias, mask, q_ids=None, kv_ids=None):
  """``fn(query, key, value, bias, mask, q_ids, kv_ids)`` run per batch/head shard of the current mesh (see
  `_mesh_split`)."""
  split = _mesh_split(query, key)
  if split is None:
    return fn(query, key, value, bias, mask, q_ids, kv_ids)
  mesh, batch_axes, head_axes = split
  b, tq, h, _ = query.shape
  tk = key.shape[1]
  bspec, hspec = batch_axes or None, head_axes or None
  qspec = jax.sharding.PartitionSpec(bspec, None, hspec, None)
  args, specs = [query, key, value], [qspec, qspec, qspec]
  names = []
  for name, x in (("bias", bias), ("mask", mask)):
    if x is not None:
      x = _bias4(x, name, b, h, tq, tk)
      args.append(x)
      specs.append(jax.sharding.PartitionSpec(bspec if x.shape[0] == b else None, hspec if x.shape[1] == h else None))
      names.append(name)
  for name, x in (("q_ids", q_ids), ("kv_ids", kv_ids)):
    if x is not None:
      args.append(x)
      specs.append(_segments.shard_spec(bspec))
      names.append(name)
  if mesh.explicit_axes:
    args = [jax.sharding.reshard(x, s) for x, s in zip(args, specs)]

  def local(q, k, v, *extra):
    kw = dict(zip(names, extra))
    return fn(q, k, v, kw.get("bias"), kw.get("mask"), kw.get("q_ids"), kw.get("kv_ids"))
  return jax.shard_map(local, mesh=mesh, in_specs=tuple(specs), out_specs=qspec, check_vma=False)(*args)


# ----------------------------------------------------------------------------------------------------------------
# Public function
# ----------------------------------------------------------------------------------------------------------------


def attention(query, key, value, *, bias=None, mask=None, is_causal: bool = False, scale: float | None = None,
              dropout_rate: float = 0.0, dropout_rng=None, impl: str = "auto",
              block_sizes: BlockSizes | dict[str, BlockSizes] | None = None, interpret: bool | None = None,
              debug: bool = False, q_segment_ids=None, kv_segment_ids=None):
  """Scaled dot-product attention; shapes as in the module docstring.

  Args:
    q_segment_ids, kv_segment_ids: int ``[batch, q_length]`` / ``[batch, kv_length]`` (``kv_segment_ids``
      defaults to ``q_segment_ids``, which needs equal lengths): query ``i`` attends to key ``j`` only when
      ``q_segment_ids[i] == kv_segment_ids[j] >= 0`` (packed sequences; a negative id is padding), "and"-ed with
      ``mask``, ``bias`` and ``is_causal``. A query with no allowed key (e.g. a negative id) is a fully masked row:
      it attends uniformly to every key, as any fully masked row here. The kernels compute this mask per tile
      from the ids (no ``[q, k]`` mask is built) and skip the tile pairs without a common id.
    impl: ``'xla'`` runs :func:`reference`. ``'pallas'`` forces the kernel: Triton on CUDA GPUs, Mosaic on TPUs,
      the Triton kernel in the Pallas interpreter elsewhere (CPU). ``'auto'``: the kernel on CUDA GPUs and TPUs
      when it supports the inputs (logging the reason when it does not), :func:`reference` elsewhere.
      The platform is chosen when the function is lowered (``jax.lax.platform_dependent``), so one jitted
      function serves, and exports to, every platform.
    block_sizes: kernel tiles, one :class:`BlockSizes` for every backend or ``{'gpu': ..., 'tpu': ...}`` (the
      interpreted kernel off GPU/TPU uses ``'gpu'``); default (or a backend missing from the dict):
      :meth:`BlockSizes.get_default` of each backend.
    interpret: ``True`` runs every kernel branch in the Pallas interpreter (debugging); default: interpret only
      where there is no compiler (off GPU/TPU).
    debug: print the kernels' jaxprs and lowered IR.
  """
  if impl not in ("auto", "pallas", "xla"):
    raise ValueError(f"attention: `impl` must be 'auto', 'pallas' or 'xla'; got {impl!r}.")
  _check(query, key, value, bias, mask, dropout_rate)
  q_ids, kv_ids = _segments.check(q_segment_ids, kv_segment_ids, query.shape[0], query.shape[1], key.shape[1])
  ref = functools.partial(reference, bias=bias, mask=mask, is_causal=is_causal, scale=scale,
                          dropout_rate=dropout_rate, dropout_rng=dropout_rng, q_segment_ids=q_ids,
                          kv_segment_ids=kv_ids)
  if impl == "xla":
    return ref(query, key, value)

  def kernel(backend, interp):
    bs = block_sizes.get(backend) if isinstance(block_sizes, dict) else block_sizes
    reason = kernel_unsupported_reason(query, key, value, bias=bias, mask=mask, scale=scale,
                                       dropout_rate=dropout_rate, backend=backend)
    if reason is not None:
      if impl == "pallas":
        raise ValueError(f"attention: impl='pallas' cannot run these inputs: {reason}. Use impl='auto' or 'xla'.")
      _log.info("attention: the %s Pallas kernel does not apply (%s); using the XLA reference there.",
                backend.upper(), reason)
      return ref
    static = dict(is_causal=is_causal, block_sizes=bs, backend=backend,
                  interpret=interp if interpret is None else interpret, debug=debug)
    if isinstance(scale, (int, float)) or scale is None:
      # Tracing a kernel costs ~0.1 s of Python (both lowerings are traced wherever the function is lowered, by
      # platform_dependent); through one module-level jit a model's repeated calls with the same shapes, and every
      # later trace of them (init, train step, evaluation), reuse the first trace.
      run = functools.partial(_flash_attention_jit, scale=scale, **static)
    else:  # a traced scale (a learned inverse temperature) is an operand, not part of the cache key
      run = functools.partial(flash_attention, scale=scale, **static)
    return lambda q, k, v: _per_shard(
        lambda *a: run(*a[:3], bias=a[3], mask=a[4], q_segment_ids=a[5], kv_segment_ids=a[6]), q, k, v, bias, mask,
        q_ids, kv_ids)

  default = kernel("gpu", True) if impl == "pallas" else ref
  return lax.platform_dependent(query, key, value, cuda=kernel("gpu", False), tpu=kernel("tpu", False),
                                default=default)


# ----------------------------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------------------------


def _check(query, key, value, bias=None, mask=None, dropout_rate=0.0):
  for name, x in (("query", query), ("key", key), ("value", value)):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
      raise TypeError(f"attention: `{name}` must be an array [batch, length, heads, head_dim]; got "
                      f"{type(x).__name__}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):  # integer logits would truncate the softmax to zeros
      raise TypeError(f"attention: `{name}` must have a floating dtype; got {x.dtype} (shape {x.shape}). "
                      "Cast it first, e.g. `x.astype(jnp.float32)`.")
  if query.ndim != 4 or key.ndim != 4 or value.ndim != 4:
    raise ValueError(
        "attention: `query`, `key`, `value` must have shape [batch, length, heads, head_dim] (rank 4); got "
        f"query {query.shape}, key {key.shape}, value {value.shape}.")
  b, _, h, d = query.shape
  bk, tk, hk, dk = key.shape
  if value.shape[:3] != (bk, tk, hk):
    raise ValueError(f"attention: `value` must have shape [batch, kv_length, kv_heads, value_dim] = "
                     f"[{bk}, {tk}, {hk}, value_dim] like `key`; got {value.shape}.")
  if bk != b or dk != d:
    raise ValueError(f"attention: `key` must have shape [batch={b}, kv_length, kv_heads, head_dim={d}] to match "
                     f"`query` {query.shape}; got {key.shape}.")
  if h % hk:
    raise ValueError(f"attention: the key/value heads ({hk}) must divide the query heads ({h}).")
  full = (b, h, query.shape[1], tk)
  for name, x in (("bias", bias), ("mask", mask)):
    if x is not None and (jnp.ndim(x) > 4 or any(n not in (1, f) for n, f in zip(jnp.shape(x)[::-1], full[::-1]))):
      raise ValueError(f"attention: `{name}` must be broadcastable to [batch, heads, q_length, kv_length] = "
                       f"{list(full)}; got shape {jnp.shape(x)}.")
  if isinstance(dropout_rate, (int, float)) and not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"attention: `dropout_rate` must be in [0, 1); got {dropout_rate!r}.")


def reference(query, key, value, *, bias=None, mask=None, is_causal: bool = False, scale: float | None = None,
              dropout_rate: float = 0.0, dropout_rng=None, q_segment_ids=None, kv_segment_ids=None):
  """Plain ``jnp`` attention; shapes as in the module docstring. Softmax in float32 (float64 for float64 inputs),
  output in query's dtype.

  ``dropout_rate``/``dropout_rng`` drop entries of the attention weights (inverted dropout), as the Hopfield layers
  do on their association matrix. Fully masked rows attend uniformly, as in ``jax.nn.dot_product_attention``.
  Segment ids (see :func:`attention`) become the dense ``[batch, 1, q_length, kv_length]`` mask here.
  """
  _check(query, key, value, bias, mask, dropout_rate)
  b, tq, h, d = query.shape
  tk, hk = key.shape[1], key.shape[2]
  q_ids, kv_ids = _segments.check(q_segment_ids, kv_segment_ids, b, tq, tk, "reference")
  if q_ids is not None:
    same = _segments.dense_mask(q_ids, kv_ids)
    mask = same if mask is None else jnp.logical_and(mask, same)
  scale = d ** -0.5 if scale is None else scale
  # float32 accumulation for 16/32-bit inputs; float64 inputs (under jax_enable_x64) get float64 arithmetic.
  acc = jnp.promote_types(jnp.result_type(query, key, value), jnp.float32)
  q = query.reshape(b, tq, hk, h // hk, d)  # grouped-query: query heads grouped under their key/value head
  logits = jnp.einsum("bqhgd,bkhd->bhgqk", q, key, preferred_element_type=acc) * scale
  logits = logits.reshape(b, h, tq, tk)
  if bias is not None:
    logits = logits + bias.astype(acc)
  if is_causal:
    causal = jnp.tril(jnp.ones((tq, tk), bool), k=tk - tq)  # bottom-right aligned, as jax.nn when tq != tk
    mask = causal if mask is None else jnp.logical_and(mask, causal)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(acc).min)
  weights = jax.nn.softmax(logits, axis=-1)
  if dropout_rate > 0.0:
    if dropout_rng is None:
      raise ValueError("attention: `dropout_rng` is required when `dropout_rate` > 0.")
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  weights = weights.reshape(b, hk, h // hk, tq, tk).astype(value.dtype)
  out = jnp.einsum("bhgqk,bkhd->bqhgd", weights, value, preferred_element_type=acc)
  return out.reshape(b, tq, h, value.shape[-1]).astype(query.dtype)
