"""MaxSim late interaction: the score of ColBERT, fused so that no [query tokens, document tokens] matrix is written.

ColBERT (Khattab and Zaharia, "ColBERT: Efficient and Effective Passage Search via Contextualized Late Interaction
over BERT", SIGIR 2020, arXiv:2004.12832) scores a query against a document by

  s(q, d) = sum_i max_j  q_i . d_j        (i over query tokens, j over the document's valid tokens)

Shapes (``b`` batch, ``n`` documents per query, ``lq``/``ld`` query/document tokens, ``k`` embedding dim)::

  maxsim(query [b, lq, k], docs [b, n, ld, k], query_mask [b, lq], doc_mask [b, n, ld]) -> scores [b, n]   float32
  maxsim_pairwise(query [nq, lq, k], docs [nd, ld, k], ...) -> scores [nq, nd]   every query against every document
  token_maxsim(...) -> (maxima [b, n, lq] float32, argmax [b, n, lq] int32)   the kernel entry point

``doc_mask`` (True: a real token) handles ragged documents; a document with no valid token scores 0 and gets no
gradient. ``query_mask`` drops query tokens from the sum (ColBERT itself keeps its [MASK]-padded query tokens: pass
None). ``maxsim_pairwise`` is the in-batch form of contrastive training: the queries are flattened into one
``[1, nq * lq, k]`` query and the kernel runs once over all ``nd`` documents.

The Pallas kernel: one program per (query-token tile, batch, document) on GPU (Triton), which streams the
document's tokens in tiles of ``block_d``, keeping a running max and its argmax per query token in registers; on TPU
(Mosaic) the grid is (batch, document, query tile, document tile) with the last axis a reduction carried in VMEM
scratch. Only the per-token maxima and argmaxes ``[b, n, lq]`` leave the kernel: memory O(b n lq), never
O(b n lq ld) as the einsum + max of :func:`reference`.

The backward pass (``jax.custom_vjp``) uses the saved argmax: the gradient of ``max_j q_i . d_j`` is ``d_{j*}`` for
``q_i`` and ``q_i`` for ``d_{j*}`` only, so each query token's gradient goes to exactly one document token (the
sparse routing that "Simple Projection Variants Improve ColBERT Performance", 2025, blames for the poor updates of a
linear projection). It is a
gather (``dq``) and a scatter-add (``dd``) in XLA, O(b n lq k) memory: there is no matmul to fuse, so a Pallas
backward kernel would only re-implement the gather. Ties pick the first maximal token (``jnp.max``'s gradient
would split it among them; with real-valued embeddings ties have probability zero).

Parts, in the order of DESIGN.md "Kernels": :class:`BlockSizes`; the kernel bodies (``_gpu_*``, ``_tpu_*``);
:func:`token_maxsim` with its ``custom_vjp``; the public :func:`maxsim` / :func:`maxsim_pairwise` with
``impl='auto' | 'pallas' | 'xla'`` dispatched by ``jax.lax.platform_dependent`` at lowering time; :func:`reference`.

Limits: query/document dtypes must match and be float32/bfloat16 (float16 too on GPU); embedding dims above 512
use the reference under ``impl='auto'`` (logged) and raise under ``impl='pallas'``. Accumulation is float32.
The GPU kernel pads the embedding dim to a power of two >= 16 and lengths to the tiles; the TPU kernel pads the
embedding dim to a multiple of 128, query tiles to 16 and document tiles to 128. ``jax.export`` lowers one platform
at a time (as zoo.kernels.attention). Verified here: interpret mode on CPU against :func:`reference`, and the Triton
and Mosaic lowerings by ``jax.export``; no GPU/TPU was available to this build, so the default tiles are untuned.
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
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltr

__all__ = ["BlockSizes", "kernel_unsupported_reason", "maxsim", "maxsim_pairwise", "reference", "reference_tokens",
           "token_maxsim"]

_log = logging.getLogger(__name__)

_MASK = float(np.finfo(np.float32).min)  # the similarity of a masked document token
_EMPTY = 0.5 * _MASK  # a running max below this saw no valid token
_BIG = float(2 ** 24)  # larger than any token index, exact in float32
_LANES = 128
_MAX_DIM = 512


# ----------------------------------------------------------------------------------------------------------------
# Block sizes
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Tile sizes: they change speed, never the result.

  Attributes:
    block_q: query tokens per program.
    block_d: document tokens per step of the streaming max.
    num_warps, num_stages: Triton launch parameters (GPU only); ``None``: 4 warps, 2 stages.

  GPU tiles must be powers of two >= 16 (Triton's dot); TPU ``block_q`` a multiple of 16 and ``block_d`` of 128.
  A tile larger than the padded sequence is shrunk to it.
  """
  block_q: int
  block_d: int
  num_warps: int | None = None
  num_stages: int | None = None

  def __post_init__(self):
    for f in ("block_q", "block_d"):
      v = getattr(self, f)
      if not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"BlockSizes: `{f}` must be a positive int; got {v!r}.")

  @classmethod
  def get_default(cls, backend: str = "gpu") -> BlockSizes:
    """GPU: 32 query tokens (ColBERT's query length) x 64 document tokens; TPU: 128 x 128 (the MXU tile).
    Not tuned on hardware (none was available; see benchmarks/maxsim.py)."""
    if backend == "gpu":
      return cls(block_q=32, block_d=64)
    if backend == "tpu":
      return cls(block_q=128, block_d=128)
    raise ValueError(f"BlockSizes.get_default: `backend` must be 'gpu' or 'tpu'; got {backend!r}.")


def _pow2_at_least(n: int, lo: int) -> int:
  return max(lo, pl.next_power_of_2(max(int(n), 1)))


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Static description of one kernel call (the custom_vjp's non-differentiable argument)."""
  backend: str
  block_q: int
  block_d: int
  num_warps: int | None
  num_stages: int | None
  interpret: Any
  debug: bool


def _tiles(backend: str, bs: BlockSizes, lq: int, ld: int) -> tuple[int, int]:
  if backend == "gpu":
    for n, v in (("block_q", bs.block_q), ("block_d", bs.block_d)):
      if v < 16 or v & (v - 1):
        raise ValueError(f"token_maxsim: GPU (Triton) tiles must be powers of two >= 16; got {n}={v}.")
    return min(bs.block_q, _pow2_at_least(lq, 16)), min(bs.block_d, _pow2_at_least(ld, 16))
  if bs.block_q % 16:
    raise ValueError(f"token_maxsim: TPU query tiles must be multiples of 16; got block_q={bs.block_q}.")
  if bs.block_d % _LANES:
    raise ValueError(f"token_maxsim: TPU document tiles must be multiples of {_LANES}; got block_d={bs.block_d}.")
  return min(bs.block_q, _round_up(lq, 16)), min(bs.block_d, _round_up(ld, _LANES))


def _tile_max(s, cols):
  """Row max of a similarity tile ``[bq, bd]`` and the first column reaching it (float32 positions ``cols``)."""
  m = jnp.max(s, axis=1)
  arg = jnp.min(jnp.where(s == m[:, None], cols, _BIG), axis=1)
  return m, arg


# ----------------------------------------------------------------------------------------------------------------
# GPU (Triton): grid (query tile, batch, document); the document's tokens streamed in tiles of block_d
# ----------------------------------------------------------------------------------------------------------------


def _gpu_kernel(q_ref, d_ref, valid_ref, max_ref, arg_ref, *, plan: _Plan, num_d_blocks: int):
  bd = plan.block_d
  q = q_ref[...]  # [bq, k]

  def body(j, carry):
    best, arg = carry
    start = j * bd
    d = d_ref[pl.ds(start, bd), :]  # [bd, k]
    s = pltr.dot(q, d, trans_b=True)  # [bq, bd] float32
    s = jnp.where(valid_ref[pl.ds(start, bd)][None, :] > 0, s, _MASK)
    cols = (start + jnp.arange(bd)).astype(jnp.float32)[None, :]
    m, a = _tile_max(s, cols)
    better = m > best  # strict: an earlier tile keeps a tie
    return jnp.where(better, m, best), jnp.where(better, a, arg)

  bq = q.shape[0]
  best = jnp.full((bq,), _MASK, jnp.float32)
  arg = jnp.zeros((bq,), jnp.float32)
  best, arg = lax.fori_loop(0, num_d_blocks, body, (best, arg))
  max_ref[...] = best
  arg_ref[...] = arg.astype(jnp.int32)


def _gpu_call(plan: _Plan, q, d, valid):
  """q [b, lq_p, k_p], d [b, n, ld_p, k_p], valid [b, n, ld_p] -> maxima, argmax [b, n, lq_p]."""
  b, lq, k = q.shape
  n, ld = d.shape[1], d.shape[2]
  bq = plan.block_q
  return pl.pallas_call(
      functools.partial(_gpu_kernel, plan=plan, num_d_blocks=ld // plan.block_d),
      grid=(lq // bq, b, n),
      in_specs=[pl.BlockSpec((None, bq, k), lambda i, bi, ni: (bi, i, 0)),
                pl.BlockSpec((None, None, ld, k), lambda i, bi, ni: (bi, ni, 0, 0)),
                pl.BlockSpec((None, None, ld), lambda i, bi, ni: (bi, ni, 0))],
      out_specs=[pl.BlockSpec((None, None, bq), lambda i, bi, ni: (bi, ni, i)),
                 pl.BlockSpec((None, None, bq), lambda i, bi, ni: (bi, ni, i))],
      out_shape=[jax.ShapeDtypeStruct((b, n, lq), jnp.float32), jax.ShapeDtypeStruct((b, n, lq), jnp.int32)],
      compiler_params=pltr.CompilerParams(num_warps=plan.num_warps or 4, num_stages=plan.num_stages or 2),
      interpret=plan.interpret, debug=plan.debug, name="zoo_maxsim",
  )(q, d, valid)


# ----------------------------------------------------------------------------------------------------------------
# TPU (Mosaic): grid (batch, document, query tile, document tile); the last axis reduces into VMEM scratch.
# Row statistics are kept broadcast over 128 lanes (Mosaic's native tile), as zoo.kernels.attention does.
# ----------------------------------------------------------------------------------------------------------------

_TRANS_B = (((1,), (1,)), ((), ()))


def _tpu_kernel(q_ref, d_ref, valid_ref, max_ref, arg_ref, best_sc, arg_sc, *, plan: _Plan, num_d_blocks: int):
  bd = plan.block_d
  j = pl.program_id(3)

  @pl.when(j == 0)
  def _init():
    best_sc[...] = jnp.full(best_sc.shape, _MASK, jnp.float32)
    arg_sc[...] = jnp.zeros(arg_sc.shape, jnp.float32)

  s = lax.dot_general(q_ref[...], d_ref[...], _TRANS_B, preferred_element_type=jnp.float32)  # [bq, bd]
  s = jnp.where(valid_ref[...] > 0, s, _MASK)  # valid: [1, bd]
  cols = (j * bd + lax.broadcasted_iota(jnp.int32, s.shape, 1)).astype(jnp.float32)
  m = jnp.max(s, axis=1, keepdims=True)  # [bq, 1]
  a = jnp.min(jnp.where(s == m, cols, _BIG), axis=1, keepdims=True)
  best = best_sc[...]
  better = m > best  # [bq, 128]
  best_sc[...] = jnp.where(better, m, best)
  arg_sc[...] = jnp.where(better, a, arg_sc[...])

  @pl.when(j == num_d_blocks - 1)
  def _finish():
    max_ref[...] = best_sc[...]
    arg_ref[...] = arg_sc[...].astype(jnp.int32)


def _tpu_call(plan: _Plan, q, d, valid):
  """As `_gpu_call`; ``valid`` is [b, n, 1, ld_p]; outputs come back [b, n, lq_p, 128] and are reduced to lane 0."""
  b, lq, k = q.shape
  n, ld = d.shape[1], d.shape[2]
  bq, bd = plan.block_q, plan.block_d
  nd = ld // bd
  best, arg = pl.pallas_call(
      functools.partial(_tpu_kernel, plan=plan, num_d_blocks=nd),
      grid=(b, n, lq // bq, nd),
      in_specs=[pl.BlockSpec((None, bq, k), lambda bi, ni, i, j: (bi, i, 0)),
                pl.BlockSpec((None, None, bd, k), lambda bi, ni, i, j: (bi, ni, j, 0)),
                pl.BlockSpec((None, None, 1, bd), lambda bi, ni, i, j: (bi, ni, 0, j))],
      out_specs=[pl.BlockSpec((None, None, bq, _LANES), lambda bi, ni, i, j: (bi, ni, i, 0)),
                 pl.BlockSpec((None, None, bq, _LANES), lambda bi, ni, i, j: (bi, ni, i, 0))],
      out_shape=[jax.ShapeDtypeStruct((b, n, lq, _LANES), jnp.float32),
                 jax.ShapeDtypeStruct((b, n, lq, _LANES), jnp.int32)],
      scratch_shapes=[pltpu.VMEM((bq, _LANES), jnp.float32), pltpu.VMEM((bq, _LANES), jnp.float32)],
      compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")),
      interpret=plan.interpret, debug=plan.debug, name="zoo_maxsim",
  )(q, d, valid[:, :, None, :])
  return best[..., 0], arg[..., 0]


# ----------------------------------------------------------------------------------------------------------------
# custom_vjp: the forward saves the argmax; the backward routes each query token's gradient to that one token
# ----------------------------------------------------------------------------------------------------------------


def _forward(plan: _Plan, q, d, valid):
  return (_gpu_call if plan.backend == "gpu" else _tpu_call)(plan, q, d, valid)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _maxsim_tokens(plan: _Plan, q, d, valid):
  best, arg = _forward(plan, q, d, valid)
  return jnp.where(best < _EMPTY, 0.0, best), arg


def _maxsim_tokens_fwd(plan: _Plan, q, d, valid):
  out = _maxsim_tokens(plan, q, d, valid)
  return out, (q, d, valid, out[0], out[1])


def _maxsim_tokens_bwd(plan: _Plan, res, cts):
  del plan
  q, d, valid, best, arg = res
  g = cts[0].astype(jnp.float32)  # [b, n, lq]; the argmax's cotangent is float0
  b, n, lq = g.shape
  ld = d.shape[2]
  # A document with no valid token scored a constant 0: no gradient.
  has_token = jnp.any(valid > 0, axis=-1, keepdims=True)  # [b, n, 1]
  g = jnp.where(has_token, g, 0.0)
  # dq_i = sum_n g_ni d_n,arg(n,i): gather the one winning token per (document, query token).
  won = jnp.take_along_axis(d, arg[..., None], axis=2)  # [b, n, lq, k]
  dq = jnp.einsum("bnq,bnqk->bqk", g, won, preferred_element_type=jnp.float32)
  # dd_n,j = sum_{i: arg(n,i) = j} g_ni q_i: a scatter-add of the query tokens onto their winning tokens.
  rows = (g[..., None] * q[:, None].astype(jnp.float32))  # [b, n, lq, k]
  bi = jnp.arange(b)[:, None, None]
  ni = jnp.arange(n)[None, :, None]
  dd = jnp.zeros((b, n, ld, d.shape[-1]), jnp.float32).at[bi, ni, arg].add(rows)
  return dq.astype(q.dtype), dd.astype(d.dtype), jnp.zeros_like(valid)


_maxsim_tokens.defvjp(_maxsim_tokens_fwd, _maxsim_tokens_bwd)


# ----------------------------------------------------------------------------------------------------------------
# Kernel entry point
# ----------------------------------------------------------------------------------------------------------------


def kernel_unsupported_reason(query, docs, *, backend: str = "gpu") -> str | None:
  """Why the Pallas kernel does not apply to these inputs on ``backend`` (None when it does)."""
  dtypes = sorted({jnp.dtype(query.dtype).name, jnp.dtype(docs.dtype).name})
  allowed = ("float32", "bfloat16", "float16") if backend == "gpu" else ("float32", "bfloat16")
  if len(dtypes) != 1 or dtypes[0] not in allowed:
    return f"the {backend.upper()} kernel needs query and docs of one dtype among {'/'.join(allowed)}; got {dtypes}"
  if query.shape[-1] > _MAX_DIM:
    return f"embedding dim {query.shape[-1]} above {_MAX_DIM} does not fit the kernel's tiles"
  return None


def token_maxsim(query, docs, *, doc_mask=None, block_sizes: BlockSizes | None = None, backend: str = "gpu",
                 interpret: Any = False, debug: bool = False):
  """The Pallas kernel for one lowering: per query token, the max over each document's valid tokens.

  Args:
    query: ``[b, lq, k]``; docs: ``[b, n, ld, k]``; doc_mask: ``[b, n, ld]`` (True: a real token) or None.
    backend: ``'gpu'`` (Triton) or ``'tpu'`` (Mosaic TPU).
    interpret: run in the Pallas interpreter (CPU tests); a ``pltpu.InterpretParams()`` for the TPU simulator.

  Returns:
    ``(maxima [b, n, lq] float32, argmax [b, n, lq] int32)``; a document without valid tokens gives maxima 0.
    Differentiable in query and docs (custom_vjp through the argmax).
  """
  _check(query, docs, None, doc_mask, where="token_maxsim")
  if backend not in ("gpu", "tpu"):
    raise ValueError(f"token_maxsim: `backend` must be 'gpu' or 'tpu'; got {backend!r}.")
  reason = kernel_unsupported_reason(query, docs, backend=backend)
  if reason is not None:
    raise ValueError(f"token_maxsim: {reason}; use maxsim(..., impl='xla') for these inputs.")
  b, lq, k = query.shape
  n, ld = docs.shape[1], docs.shape[2]
  bs = BlockSizes.get_default(backend) if block_sizes is None else block_sizes
  bq, bd = _tiles(backend, bs, lq, ld)
  lq_p, ld_p = _round_up(lq, bq), _round_up(ld, bd)
  k_p = _pow2_at_least(k, 16) if backend == "gpu" else _round_up(k, _LANES)
  valid = jnp.ones((b, n, ld), jnp.float32) if doc_mask is None else (doc_mask != 0).astype(jnp.float32)
  q = jnp.pad(query, ((0, 0), (0, lq_p - lq), (0, k_p - k)))
  d = jnp.pad(docs, ((0, 0), (0, 0), (0, ld_p - ld), (0, k_p - k)))
  valid = jnp.pad(valid, ((0, 0), (0, 0), (0, ld_p - ld)))  # padded tokens are never a maximum
  plan = _Plan(backend=backend, block_q=bq, block_d=bd, num_warps=bs.num_warps, num_stages=bs.num_stages,
               interpret=interpret, debug=bool(debug))
  best, arg = _maxsim_tokens(plan, q, d, valid)
  return best[..., :lq], arg[..., :lq]


def _dispatch(query, docs, query_mask, doc_mask, impl, block_sizes, interpret, debug, where):
  """Masked per-token maxima ``[b, n, lq]`` (masked query tokens 0) by the kernel or the reference."""
  if impl not in ("auto", "pallas", "xla"):
    raise ValueError(f"{where}: `impl` must be 'auto', 'pallas' or 'xla'; got {impl!r}.")
  _check(query, docs, query_mask, doc_mask, where=where)
  if query_mask is None:
    mask_q = lambda m: m
  else:
    mask_q = lambda m: jnp.where((query_mask != 0)[:, None, :], m, 0.0)
  ref = lambda q, d: mask_q(reference_tokens(q, d, doc_mask=doc_mask))
  if impl == "xla":
    return ref(query, docs)

  def kernel(backend, interp):
    reason = kernel_unsupported_reason(query, docs, backend=backend)
    if reason is not None:
      if impl == "pallas":
        raise ValueError(f"{where}: impl='pallas' cannot run these inputs: {reason}. Use impl='auto' or 'xla'.")
      _log.info("%s: the %s Pallas kernel does not apply (%s); using the XLA reference there.", where,
                backend.upper(), reason)
      return ref
    bs = block_sizes.get(backend) if isinstance(block_sizes, dict) else block_sizes
    return lambda q, d: mask_q(token_maxsim(q, d, doc_mask=doc_mask, block_sizes=bs, backend=backend,
                                            interpret=interp if interpret is None else interpret, debug=debug)[0])

  default = kernel("gpu", True) if impl == "pallas" else ref
  return lax.platform_dependent(query, docs, cuda=kernel("gpu", False), tpu=kernel("tpu", False), default=default)


# ----------------------------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------------------------


def maxsim(query, docs, *, query_mask=None, doc_mask=None, impl: str = "auto",
           block_sizes: BlockSizes | dict[str, BlockSizes] | None = None, interpret: bool | None = None,
           debug: bool = False):
  """ColBERT scores ``[b, n]`` float32 of ``query [b, lq, k]`` against its ``docs [b, n, ld, k]``.

  Args:
    query_mask: ``[b, lq]``, True for query tokens that count (None: all).
    doc_mask: ``[b, n, ld]``, True for real document tokens (None: all).
    impl: ``'xla'``: :func:`reference`. ``'pallas'``: the kernel (Triton on CUDA, Mosaic on TPU, the Triton kernel
      interpreted elsewhere). ``'auto'``: the kernel on CUDA GPUs and TPUs where it applies (the reason logged
      where not), the reference elsewhere. Chosen at lowering time with ``jax.lax.platform_dependent``, so one
      jitted function carries every path.
    block_sizes: one :class:`BlockSizes` or ``{'gpu': ..., 'tpu': ...}``; default per backend.
    interpret: force the Pallas interpreter on every kernel branch (debugging).
  """
  per_token = _dispatch(query, docs, query_mask, doc_mask, impl, block_sizes, interpret, debug, "maxsim")
  return jnp.sum(per_token, axis=-1)


def maxsim_pairwise(query, docs, *, query_mask=None, doc_mask=None, impl: str = "auto",
                    block_sizes: BlockSizes | dict[str, BlockSizes] | None = None, interpret: bool | None = None,
                    debug: bool = False):
  """Every query against every document: ``query [nq, lq, k]``, ``docs [nd, ld, k]`` -> scores ``[nq, nd]``.

  ``query_mask [nq, lq]``, ``doc_mask [nd, ld]``; other arguments as :func:`maxsim`. The queries are flattened into
  one ``[1, nq * lq, k]`` query, so the kernel streams each document once for all queries (in-batch negatives).
  """
  where = "maxsim_pairwise"
  _check_array(query, "query", "[num_queries, q_length, dim]", 3, where)
  _check_array(docs, "docs", "[num_docs, d_length, dim]", 3, where)
  nq, lq, k = query.shape
  nd, ld = docs.shape[0], docs.shape[1]
  if docs.shape[-1] != k:
    raise ValueError(f"{where}: `docs` must have shape [num_docs, d_length, dim={k}] like `query` {query.shape}; got "
                     f"{docs.shape}.")
  _check_mask(query_mask, "query_mask", (nq, lq), where)
  _check_mask(doc_mask, "doc_mask", (nd, ld), where)
  flat_qm = None if query_mask is None else query_mask.reshape(1, nq * lq)
  dm = None if doc_mask is None else doc_mask[None]
  per_token = _dispatch(query.reshape(1, nq * lq, k), docs[None], flat_qm, dm, impl, block_sizes, interpret, debug,
                        where)  # [1, nd, nq * lq]
  return per_token.reshape(nd, nq, lq).sum(-1).T


# ----------------------------------------------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------------------------------------------


def _check_array(x, name, spec, rank, where):
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    raise TypeError(f"{where}: `{name}` must be an array {spec}; got {type(x).__name__}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{where}: `{name}` must have a floating dtype; got {x.dtype} (shape {x.shape}).")
  if x.ndim != rank:
    raise ValueError(f"{where}: `{name}` must have shape {spec} (rank {rank}); got shape {x.shape}.")
  if x.shape[0] == 0:
    raise ValueError(f"{where}: `{name}` is empty (shape {x.shape}).")


def _check_mask(m, name, shape, where):
  if m is None:
    return
  if not hasattr(m, "shape") or tuple(m.shape) != tuple(shape):
    raise ValueError(f"{where}: `{name}` must have shape {list(shape)}; got {getattr(m, 'shape', type(m).__name__)}.")


def _check(query, docs, query_mask, doc_mask, *, where):
  _check_array(query, "query", "[batch, q_length, dim]", 3, where)
  _check_array(docs, "docs", "[batch, num_docs, d_length, dim]", 4, where)
  b, lq, k = query.shape
  if docs.shape[0] != b or docs.shape[-1] != k:
    raise ValueError(f"{where}: `docs` must have shape [batch={b}, num_docs, d_length, dim={k}] to match `query` "
                     f"{query.shape}; got {docs.shape}.")
  _check_mask(query_mask, "query_mask", (b, lq), where)
  _check_mask(doc_mask, "doc_mask", docs.shape[:3], where)


def reference_tokens(query, docs, *, doc_mask=None):
  """Plain ``jnp`` per-token maxima ``[b, n, lq]`` (einsum + max; materialises ``[b, n, lq, ld]``)."""
  s = jnp.einsum("bqk,bnjk->bnqj", query, docs, preferred_element_type=jnp.float32)
  if doc_mask is None:
    return jnp.max(s, axis=-1)
  valid = (doc_mask != 0)[:, :, None, :]
  m = jnp.max(jnp.where(valid, s, _MASK), axis=-1)
  return jnp.where(jnp.any(valid, axis=-1), m, 0.0)


def reference(query, docs, *, query_mask=None, doc_mask=None):
  """Plain ``jnp`` MaxSim scores ``[b, n]`` float32: the source of truth, the test oracle and the fallback."""
  _check(query, docs, query_mask, doc_mask, where="maxsim")
  maxima = reference_tokens(query, docs, doc_mask=doc_mask)
  if query_mask is not None:
    maxima = jnp.where((query_mask != 0)[:, None, :], maxima, 0.0)
  return jnp.sum(maxima, axis=-1)
