"""The Pallas kernels behind :func:`zoo.kernels.kan_basis.kan`: the fused basis evaluation and contraction.

Triton (GPU) and Mosaic (TPU) lowerings of the forward pass and of the two backward passes (``dx``; ``dcoef`` and the
base weight), tied together by the ``custom_vjp`` :func:`_fused`; :class:`BlockSizes` (re-exported by
:mod:`zoo.kernels.kan_basis`) sets their tiles. The basis tensor ``[batch, in, K]`` is never written to memory: each
tile evaluates its bases in registers / VMEM from :func:`zoo.kernels.kan_bases._evaluate`, the same code the
reference runs.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltr

from zoo.kernels.kan_bases import Basis, _evaluate, _silu, _silu_and_derivative, _values_and_derivatives

__all__ = ["BlockSizes"]

_F32 = jnp.float32


# ---------------------------------------------------------------------------------------------- block sizes


@dataclasses.dataclass(frozen=True, slots=True)
class BlockSizes:
  """Tile sizes of the KAN kernels.

  The forward pass and the ``dx`` pass tile (batch, in, out); the ``dcoef`` pass tiles (in, out) and loops over
  batch. A dimension smaller than its block is padded to a power of two (at least 16) and taken whole.

  Attributes:
    block_batch, block_in, block_out: forward tiles.
    block_batch_dx, block_in_dx, block_out_dx: tiles of the ``dx`` kernel (default: the forward ones).
    block_batch_dc, block_in_dc, block_out_dc: tiles of the ``dcoef`` kernel (default: the forward ones).
  """
  block_batch: int
  block_in: int
  block_out: int
  block_batch_dx: int | None = None
  block_in_dx: int | None = None
  block_out_dx: int | None = None
  block_batch_dc: int | None = None
  block_in_dc: int | None = None
  block_out_dc: int | None = None

  def __post_init__(self):
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if v is not None and (v < 16 or v & (v - 1)):
        raise ValueError(f"BlockSizes: `{f.name}` must be a power of two >= 16; got {v}.")

  @classmethod
  def get_default(cls, backend: str = "gpu") -> BlockSizes:
    """Reasoned defaults (untuned): small tiles on GPU, where the K basis tiles live in registers; MXU-sized on TPU."""
    if backend == "tpu":
      return cls(block_batch=256, block_in=128, block_out=128, block_batch_dc=256, block_in_dc=128,
                 block_out_dc=128)
    if backend == "gpu":
      return cls(block_batch=64, block_in=16, block_out=64, block_batch_dx=64, block_in_dx=32, block_out_dx=64,
                 block_batch_dc=32, block_in_dc=32, block_out_dc=32)
    raise ValueError(f"BlockSizes.get_default: `backend` must be 'gpu' or 'tpu'; got {backend!r}.")

  def fwd(self):
    return self.block_batch, self.block_in, self.block_out

  def dx(self):
    return (self.block_batch_dx or self.block_batch, self.block_in_dx or self.block_in,
            self.block_out_dx or self.block_out)

  def dc(self):
    return (self.block_batch_dc or self.block_batch, self.block_in_dc or self.block_in,
            self.block_out_dc or self.block_out)


def _plan(dim: int, block: int) -> tuple[int, int]:
  """(padded size, block) for one axis: small axes are padded to a power of two >= 16 and taken whole."""
  if dim <= block:
    p = max(16, pl.next_power_of_2(dim))
    return p, p
  return -(-dim // block) * block, block


@dataclasses.dataclass(frozen=True)
class _Config:
  basis: tuple[Basis, ...]
  backend: str            # 'gpu' | 'tpu'
  blocks: BlockSizes
  interpret: bool
  has_base: bool


# ------------------------------------------------------------------------------------------------ GPU (Triton)
# Grid over output tiles; the contracted axis is an in-kernel fori_loop (Triton programs cannot share an
# accumulator across grid steps).


def _gpu_row(ref, sl):
  return lambda j: ref[j, sl][None, :].astype(_F32)


def _gpu_fwd_kernel(x_ref, g_ref, c_ref, *rest, cfg: _Config, bi: int, n_i: int):
  wb_ref, o_ref = rest if cfg.has_base else (None, rest[0])
  cdt = c_ref.dtype

  def body(i, acc):
    sl = pl.ds(i * bi, bi)
    x = x_ref[:, sl].astype(_F32)
    for m, v in enumerate(_evaluate(x, _gpu_row(g_ref, sl), cfg.basis)):
      acc += jnp.dot(v.astype(cdt), c_ref[m, sl, :], preferred_element_type=_F32)
    if wb_ref is not None:
      acc += jnp.dot(_silu(x).astype(cdt), wb_ref[sl, :], preferred_element_type=_F32)
    return acc

  acc = jax.lax.fori_loop(0, n_i, body, jnp.zeros(o_ref.shape, _F32))
  o_ref[...] = acc.astype(o_ref.dtype)


def _gpu_dx_kernel(x_ref, g_ref, c_ref, *rest, cfg: _Config, bo: int, n_o: int):
  wb_ref, dy_ref, dx_ref = rest if cfg.has_base else (None, *rest)
  x = x_ref[...].astype(_F32)
  _, ders = _values_and_derivatives(x, _gpu_row(g_ref, slice(None)), cfg.basis)
  dsilu = _silu_and_derivative(x)[1] if wb_ref is not None else None
  cdt = c_ref.dtype
  nt = (((1,), (1,)), ((), ()))

  def body(o, acc):
    sl = pl.ds(o * bo, bo)
    dy = dy_ref[:, sl].astype(cdt)
    for m, d in enumerate(ders):
      acc += d * jax.lax.dot_general(dy, c_ref[m, :, sl], nt, preferred_element_type=_F32)
    if wb_ref is not None:
      acc += dsilu * jax.lax.dot_general(dy, wb_ref[:, sl], nt, preferred_element_type=_F32)
    return acc

  acc = jax.lax.fori_loop(0, n_o, body, jnp.zeros(dx_ref.shape, _F32))
  dx_ref[...] = acc.astype(dx_ref.dtype)


def _gpu_dc_kernel(x_ref, g_ref, dy_ref, *out_refs, cfg: _Config, bb: int, n_b: int):
  dc_ref = out_refs[0]
  dwb_ref = out_refs[1] if cfg.has_base else None
  k = dc_ref.shape[0]
  shape = dc_ref.shape[1:]

  def body(b, accs):
    sl = pl.ds(b * bb, bb)
    x = x_ref[sl, :].astype(_F32)
    dy = dy_ref[sl, :].astype(_F32)
    vals = _evaluate(x, _gpu_row(g_ref, slice(None)), cfg.basis)
    if dwb_ref is not None:
      vals = vals + [_silu(x)]
    return tuple(a + jnp.dot(v.T, dy, preferred_element_type=_F32) for a, v in zip(accs, vals))

  n_acc = k + (1 if dwb_ref is not None else 0)
  accs = jax.lax.fori_loop(0, n_b, body, tuple(jnp.zeros(shape, _F32) for _ in range(n_acc)))
  for m in range(k):
    dc_ref[m, :, :] = accs[m].astype(dc_ref.dtype)
  if dwb_ref is not None:
    dwb_ref[...] = accs[k].astype(dwb_ref.dtype)


def _gpu_dw_fwd_kernel(x_ref, g_ref, c_ref, *rest, cfg: _Config):
  wb_ref, o_ref = rest if cfg.has_base else (None, rest[0])
  x = x_ref[...].astype(_F32)
  acc = jnp.zeros(x.shape, _F32)
  for m, v in enumerate(_evaluate(x, _gpu_row(g_ref, slice(None)), cfg.basis)):
    acc += v * c_ref[m, :][None, :].astype(_F32)
  if wb_ref is not None:
    acc += _silu(x) * wb_ref[0, :][None, :].astype(_F32)
  o_ref[...] = acc.astype(o_ref.dtype)


def _gpu_dw_dx_kernel(x_ref, g_ref, c_ref, *rest, cfg: _Config):
  wb_ref, dy_ref, dx_ref = rest if cfg.has_base else (None, *rest)
  x = x_ref[...].astype(_F32)
  _, ders = _values_and_derivatives(x, _gpu_row(g_ref, slice(None)), cfg.basis)
  acc = jnp.zeros(x.shape, _F32)
  for m, d in enumerate(ders):
    acc += d * c_ref[m, :][None, :].astype(_F32)
  if wb_ref is not None:
    acc += _silu_and_derivative(x)[1] * wb_ref[0, :][None, :].astype(_F32)
  dx_ref[...] = (acc * dy_ref[...].astype(_F32)).astype(dx_ref.dtype)


def _gpu_dw_dc_kernel(x_ref, g_ref, dy_ref, *out_refs, cfg: _Config, bb: int, n_b: int):
  dc_ref = out_refs[0]
  dwb_ref = out_refs[1] if cfg.has_base else None
  k, cols = dc_ref.shape

  def body(b, accs):
    sl = pl.ds(b * bb, bb)
    x = x_ref[sl, :].astype(_F32)
    dy = dy_ref[sl, :].astype(_F32)
    vals = _evaluate(x, _gpu_row(g_ref, slice(None)), cfg.basis)
    if dwb_ref is not None:
      vals = vals + [_silu(x)]
    return tuple(a + jnp.sum(v * dy, axis=0) for a, v in zip(accs, vals))

  n_acc = k + (1 if dwb_ref is not None else 0)
  accs = jax.lax.fori_loop(0, n_b, body, tuple(jnp.zeros((cols,), _F32) for _ in range(n_acc)))
  for m in range(k):
    dc_ref[m, :] = accs[m].astype(dc_ref.dtype)
  if dwb_ref is not None:
    dwb_ref[0, :] = accs[k].astype(dwb_ref.dtype)


# ------------------------------------------------------------------------------------------- TPU (Mosaic TPU)
# The contracted axis is the last grid axis ("arbitrary"), accumulated in a VMEM scratch buffer.


def _tpu_row(ref):
  return lambda j: ref[pl.ds(j, 1), :].astype(_F32)


def _tpu_fwd_kernel(x_ref, g_ref, c_ref, *rest, cfg: _Config):
  wb_ref, o_ref, acc_ref = rest if cfg.has_base else (None, *rest)
  step = pl.program_id(2)

  @pl.when(step == 0)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  cdt = c_ref.dtype
  x = x_ref[...].astype(_F32)
  acc = acc_ref[...]
  for m, v in enumerate(_evaluate(x, _tpu_row(g_ref), cfg.basis)):
    acc += jnp.dot(v.astype(cdt), c_ref[m], preferred_element_type=_F32)
  if wb_ref is not None:
    acc += jnp.dot(_silu(x).astype(cdt), wb_ref[...], preferred_element_type=_F32)
  acc_ref[...] = acc

  @pl.when(step == pl.num_programs(2) - 1)
  def _():
    o_ref[...] = acc_ref[...].astype(o_ref.dtype)


def _tpu_dx_kernel(x_ref, g_ref, c_ref, *rest, cfg: _Config):
  wb_ref, dy_ref, dx_ref, acc_ref = rest if cfg.has_base else (None, *rest)
  step = pl.program_id(2)

  @pl.when(step == 0)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)

  cdt = c_ref.dtype
  nt = (((1,), (1,)), ((), ()))
  x = x_ref[...].astype(_F32)
  dy = dy_ref[...].astype(cdt)
  _, ders = _values_and_derivatives(x, _tpu_row(g_ref), cfg.basis)
  acc = acc_ref[...]
  for m, d in enumerate(ders):
    acc += d * jax.lax.dot_general(dy, c_ref[m], nt, preferred_element_type=_F32)
  if wb_ref is not None:
    acc += _silu_and_derivative(x)[1] * jax.lax.dot_general(dy, wb_ref[...], nt, preferred_element_type=_F32)
  acc_ref[...] = acc

  @pl.when(step == pl.num_programs(2) - 1)
  def _():
    dx_ref[...] = acc_ref[...].astype(dx_ref.dtype)


def _tpu_dc_kernel(x_ref, g_ref, dy_ref, *rest, cfg: _Config):
  if cfg.has_base:
    dc_ref, dwb_ref, acc_ref, accb_ref = rest
  else:
    (dc_ref, acc_ref), dwb_ref, accb_ref = rest, None, None
  step = pl.program_id(2)

  @pl.when(step == 0)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)
    if accb_ref is not None:
      accb_ref[...] = jnp.zeros_like(accb_ref)

  tn = (((0,), (0,)), ((), ()))
  x = x_ref[...].astype(_F32)
  dy = dy_ref[...].astype(_F32)
  for m, v in enumerate(_evaluate(x, _tpu_row(g_ref), cfg.basis)):
    acc_ref[m] += jax.lax.dot_general(v, dy, tn, preferred_element_type=_F32)
  if accb_ref is not None:
    accb_ref[...] += jax.lax.dot_general(_silu(x), dy, tn, preferred_element_type=_F32)

  @pl.when(step == pl.num_programs(2) - 1)
  def _():
    dc_ref[...] = acc_ref[...].astype(dc_ref.dtype)
    if dwb_ref is not None:
      dwb_ref[...] = accb_ref[...].astype(dwb_ref.dtype)


def _tpu_dw_fwd_kernel(x_ref, g_ref, c_ref, *rest, cfg: _Config):
  wb_ref, o_ref = rest if cfg.has_base else (None, rest[0])
  x = x_ref[...].astype(_F32)
  acc = jnp.zeros(x.shape, _F32)
  for m, v in enumerate(_evaluate(x, _tpu_row(g_ref), cfg.basis)):
    acc += v * c_ref[pl.ds(m, 1), :].astype(_F32)
  if wb_ref is not None:
    acc += _silu(x) * wb_ref[...].astype(_F32)
  o_ref[...] = acc.astype(o_ref.dtype)


def _tpu_dw_dx_kernel(x_ref, g_ref, c_ref, *rest, cfg: _Config):
  wb_ref, dy_ref, dx_ref = rest if cfg.has_base else (None, *rest)
  x = x_ref[...].astype(_F32)
  _, ders = _values_and_derivatives(x, _tpu_row(g_ref), cfg.basis)
  acc = jnp.zeros(x.shape, _F32)
  for m, d in enumerate(ders):
    acc += d * c_ref[pl.ds(m, 1), :].astype(_F32)
  if wb_ref is not None:
    acc += _silu_and_derivative(x)[1] * wb_ref[...].astype(_F32)
  dx_ref[...] = (acc * dy_ref[...].astype(_F32)).astype(dx_ref.dtype)


def _tpu_dw_dc_kernel(x_ref, g_ref, dy_ref, *rest, cfg: _Config):
  if cfg.has_base:
    dc_ref, dwb_ref, acc_ref, accb_ref = rest
  else:
    (dc_ref, acc_ref), dwb_ref, accb_ref = rest, None, None
  step = pl.program_id(1)

  @pl.when(step == 0)
  def _():
    acc_ref[...] = jnp.zeros_like(acc_ref)
    if accb_ref is not None:
      accb_ref[...] = jnp.zeros_like(accb_ref)

  x = x_ref[...].astype(_F32)
  dy = dy_ref[...].astype(_F32)
  for m, v in enumerate(_evaluate(x, _tpu_row(g_ref), cfg.basis)):
    acc_ref[pl.ds(m, 1), :] += jnp.sum(v * dy, axis=0, keepdims=True)
  if accb_ref is not None:
    accb_ref[...] += jnp.sum(_silu(x) * dy, axis=0, keepdims=True)

  @pl.when(step == pl.num_programs(1) - 1)
  def _():
    dc_ref[...] = acc_ref[...].astype(dc_ref.dtype)
    if dwb_ref is not None:
      dwb_ref[...] = accb_ref[...].astype(dwb_ref.dtype)


# ------------------------------------------------------------------------------------------------ pallas calls


def _pad_to(a, shape):
  pads = [(0, s - d) for s, d in zip(shape, a.shape)]
  return jnp.pad(a, pads) if any(p for _, p in pads) else a


def _prepare(x, coef, grid, wb, cfg: _Config, blocks: tuple[int, int, int]):
  """Pads every operand to whole tiles; the grid is transposed to [knots, in] so a knot is a row of lanes."""
  bb, bi, bo = blocks
  n_b, n_i = x.shape
  bp, bb = _plan(n_b, bb)
  ip, bi = _plan(n_i, bi)
  depthwise = coef.ndim == 2
  if depthwise:
    op, bo = ip, bi
  else:
    op, bo = _plan(coef.shape[2], bo)
  xp = _pad_to(x, (bp, ip))
  if grid is None:
    gt = jnp.zeros((1, ip), _F32)
  else:
    # Padded inputs repeat the last input's knots, so their (unused) basis values stay finite.
    gt = jnp.pad(grid.astype(_F32), ((0, ip - n_i), (0, 0)), mode="edge").T
  k = coef.shape[0]
  cp = _pad_to(coef, (k, ip) if depthwise else (k, ip, op))
  wbp = None
  if wb is not None:
    wbp = _pad_to(wb[None, :], (1, ip)) if depthwise else _pad_to(wb, (ip, op))
  return xp, gt, cp, wbp, (bp, ip, op), (bb, bi, bo)


def _compiler_params(cfg: _Config, semantics):
  if cfg.backend == "tpu":
    return pltpu.CompilerParams(dimension_semantics=semantics)
  return pltr.CompilerParams(num_warps=4, num_stages=2)


def _forward(x, coef, grid, wb, cfg: _Config):
  """The fused forward on unpadded operands: [batch, in] -> [batch, out] (or [batch, in] depthwise)."""
  n_b = x.shape[0]
  xp, gt, cp, wbp, (bp, ip, op), (bb, bi, bo) = _prepare(x, coef, grid, wb, cfg, cfg.blocks.fwd())
  k, p = coef.shape[0], gt.shape[0]
  depthwise = coef.ndim == 2
  args = [xp, gt, cp] + ([wbp] if wbp is not None else [])
  out_shape = jax.ShapeDtypeStruct((bp, op), x.dtype)
  if depthwise:
    kernel = _tpu_dw_fwd_kernel if cfg.backend == "tpu" else _gpu_dw_fwd_kernel
    specs = [pl.BlockSpec((bb, bi), lambda b, i: (b, i)), pl.BlockSpec((p, bi), lambda b, i: (0, i)),
             pl.BlockSpec((k, bi), lambda b, i: (0, i))]
    if wbp is not None:
      specs.append(pl.BlockSpec((1, bi), lambda b, i: (0, i)))
    y = pl.pallas_call(functools.partial(kernel, cfg=cfg), grid=(bp // bb, ip // bi), in_specs=specs,
                       out_specs=pl.BlockSpec((bb, bi), lambda b, i: (b, i)), out_shape=out_shape,
                       compiler_params=_compiler_params(cfg, ("parallel", "parallel")), interpret=cfg.interpret,
                       name="kan_depthwise_fwd")(*args)
    return y[:n_b, :x.shape[1]]
  if cfg.backend == "tpu":
    specs = [pl.BlockSpec((bb, bi), lambda b, o, i: (b, i)), pl.BlockSpec((p, bi), lambda b, o, i: (0, i)),
             pl.BlockSpec((k, bi, bo), lambda b, o, i: (0, i, o))]
    if wbp is not None:
      specs.append(pl.BlockSpec((bi, bo), lambda b, o, i: (i, o)))
    y = pl.pallas_call(functools.partial(_tpu_fwd_kernel, cfg=cfg), grid=(bp // bb, op // bo, ip // bi),
                       in_specs=specs, out_specs=pl.BlockSpec((bb, bo), lambda b, o, i: (b, o)),
                       out_shape=out_shape, scratch_shapes=[pltpu.VMEM((bb, bo), _F32)],
                       compiler_params=_compiler_params(cfg, ("parallel", "parallel", "arbitrary")),
                       interpret=cfg.interpret, name="kan_fwd")(*args)
  else:
    specs = [pl.BlockSpec((bb, ip), lambda b, o: (b, 0)), pl.BlockSpec((p, ip), lambda b, o: (0, 0)),
             pl.BlockSpec((k, ip, bo), lambda b, o: (0, 0, o))]
    if wbp is not None:
      specs.append(pl.BlockSpec((ip, bo), lambda b, o: (0, o)))
    y = pl.pallas_call(functools.partial(_gpu_fwd_kernel, cfg=cfg, bi=bi, n_i=ip // bi),
                       grid=(bp // bb, op // bo), in_specs=specs,
                       out_specs=pl.BlockSpec((bb, bo), lambda b, o: (b, o)), out_shape=out_shape,
                       compiler_params=_compiler_params(cfg, None), interpret=cfg.interpret, name="kan_fwd")(*args)
  return y[:n_b, :coef.shape[2]]


def _backward_dx(x, coef, grid, wb, dy, cfg: _Config):
  n_b, n_i = x.shape
  xp, gt, cp, wbp, (bp, ip, op), (bb, bi, bo) = _prepare(x, coef, grid, wb, cfg, cfg.blocks.dx())
  k, p = coef.shape[0], gt.shape[0]
  dyp = _pad_to(dy, (bp, op))
  args = [xp, gt, cp] + ([wbp] if wbp is not None else []) + [dyp]
  out_shape = jax.ShapeDtypeStruct((bp, ip), x.dtype)
  if coef.ndim == 2:
    kernel = _tpu_dw_dx_kernel if cfg.backend == "tpu" else _gpu_dw_dx_kernel
    specs = [pl.BlockSpec((bb, bi), lambda b, i: (b, i)), pl.BlockSpec((p, bi), lambda b, i: (0, i)),
             pl.BlockSpec((k, bi), lambda b, i: (0, i))]
    if wbp is not None:
      specs.append(pl.BlockSpec((1, bi), lambda b, i: (0, i)))
    specs.append(pl.BlockSpec((bb, bi), lambda b, i: (b, i)))
    dx = pl.pallas_call(functools.partial(kernel, cfg=cfg), grid=(bp // bb, ip // bi), in_specs=specs,
                        out_specs=pl.BlockSpec((bb, bi), lambda b, i: (b, i)), out_shape=out_shape,
                        compiler_params=_compiler_params(cfg, ("parallel", "parallel")), interpret=cfg.interpret,
                        name="kan_depthwise_dx")(*args)
  elif cfg.backend == "tpu":
    specs = [pl.BlockSpec((bb, bi), lambda b, i, o: (b, i)), pl.BlockSpec((p, bi), lambda b, i, o: (0, i)),
             pl.BlockSpec((k, bi, bo), lambda b, i, o: (0, i, o))]
    if wbp is not None:
      specs.append(pl.BlockSpec((bi, bo), lambda b, i, o: (i, o)))
    specs.append(pl.BlockSpec((bb, bo), lambda b, i, o: (b, o)))
    dx = pl.pallas_call(functools.partial(_tpu_dx_kernel, cfg=cfg), grid=(bp // bb, ip // bi, op // bo),
                        in_specs=specs, out_specs=pl.BlockSpec((bb, bi), lambda b, i, o: (b, i)),
                        out_shape=out_shape, scratch_shapes=[pltpu.VMEM((bb, bi), _F32)],
                        compiler_params=_compiler_params(cfg, ("parallel", "parallel", "arbitrary")),
                        interpret=cfg.interpret, name="kan_dx")(*args)
  else:
    specs = [pl.BlockSpec((bb, bi), lambda b, i: (b, i)), pl.BlockSpec((p, bi), lambda b, i: (0, i)),
             pl.BlockSpec((k, bi, op), lambda b, i: (0, i, 0))]
    if wbp is not None:
      specs.append(pl.BlockSpec((bi, op), lambda b, i: (i, 0)))
    specs.append(pl.BlockSpec((bb, op), lambda b, i: (b, 0)))
    dx = pl.pallas_call(functools.partial(_gpu_dx_kernel, cfg=cfg, bo=bo, n_o=op // bo),
                        grid=(bp // bb, ip // bi), in_specs=specs,
                        out_specs=pl.BlockSpec((bb, bi), lambda b, i: (b, i)), out_shape=out_shape,
                        compiler_params=_compiler_params(cfg, None), interpret=cfg.interpret, name="kan_dx")(*args)
  return dx[:n_b, :n_i]


def _backward_dc(x, coef, grid, wb, dy, cfg: _Config):
  n_i = x.shape[1]
  xp, gt, _, _, (bp, ip, op), (bb, bi, bo) = _prepare(x, coef, grid, wb, cfg, cfg.blocks.dc())
  k, p = coef.shape[0], gt.shape[0]
  dyp = _pad_to(dy, (bp, op))
  depthwise = coef.ndim == 2
  if depthwise:
    out_shape = [jax.ShapeDtypeStruct((k, ip), coef.dtype)]
    if wb is not None:
      out_shape.append(jax.ShapeDtypeStruct((1, ip), wb.dtype))
    if cfg.backend == "tpu":
      specs = [pl.BlockSpec((bb, bi), lambda i, b: (b, i)), pl.BlockSpec((p, bi), lambda i, b: (0, i)),
               pl.BlockSpec((bb, bi), lambda i, b: (b, i))]
      out_specs = [pl.BlockSpec((k, bi), lambda i, b: (0, i))]
      scratch = [pltpu.VMEM((k, bi), _F32)]
      if wb is not None:
        out_specs.append(pl.BlockSpec((1, bi), lambda i, b: (0, i)))
        scratch.append(pltpu.VMEM((1, bi), _F32))
      outs = pl.pallas_call(functools.partial(_tpu_dw_dc_kernel, cfg=cfg), grid=(ip // bi, bp // bb),
                            in_specs=specs, out_specs=out_specs, out_shape=out_shape, scratch_shapes=scratch,
                            compiler_params=_compiler_params(cfg, ("parallel", "arbitrary")),
                            interpret=cfg.interpret, name="kan_depthwise_dcoef")(xp, gt, dyp)
    else:
      specs = [pl.BlockSpec((bp, bi), lambda i: (0, i)), pl.BlockSpec((p, bi), lambda i: (0, i)),
               pl.BlockSpec((bp, bi), lambda i: (0, i))]
      out_specs = [pl.BlockSpec((k, bi), lambda i: (0, i))]
      if wb is not None:
        out_specs.append(pl.BlockSpec((1, bi), lambda i: (0, i)))
      outs = pl.pallas_call(functools.partial(_gpu_dw_dc_kernel, cfg=cfg, bb=bb, n_b=bp // bb), grid=(ip // bi,),
                            in_specs=specs, out_specs=out_specs, out_shape=out_shape,
                            compiler_params=_compiler_params(cfg, None), interpret=cfg.interpret,
                            name="kan_depthwise_dcoef")(xp, gt, dyp)
    dc = outs[0][:, :n_i]
    dwb = outs[1][0, :n_i] if wb is not None else None
    return dc, dwb
  n_o = coef.shape[2]
  out_shape = [jax.ShapeDtypeStruct((k, ip, op), coef.dtype)]
  if wb is not None:
    out_shape.append(jax.ShapeDtypeStruct((ip, op), wb.dtype))
  if cfg.backend == "tpu":
    specs = [pl.BlockSpec((bb, bi), lambda i, o, b: (b, i)), pl.BlockSpec((p, bi), lambda i, o, b: (0, i)),
             pl.BlockSpec((bb, bo), lambda i, o, b: (b, o))]
    out_specs = [pl.BlockSpec((k, bi, bo), lambda i, o, b: (0, i, o))]
    scratch = [pltpu.VMEM((k, bi, bo), _F32)]
    if wb is not None:
      out_specs.append(pl.BlockSpec((bi, bo), lambda i, o, b: (i, o)))
      scratch.append(pltpu.VMEM((bi, bo), _F32))
    outs = pl.pallas_call(functools.partial(_tpu_dc_kernel, cfg=cfg), grid=(ip // bi, op // bo, bp // bb),
                          in_specs=specs, out_specs=out_specs, out_shape=out_shape, scratch_shapes=scratch,
                          compiler_params=_compiler_params(cfg, ("parallel", "parallel", "arbitrary")),
                          interpret=cfg.interpret, name="kan_dcoef")(xp, gt, dyp)
  else:
    specs = [pl.BlockSpec((bp, bi), lambda i, o: (0, i)), pl.BlockSpec((p, bi), lambda i, o: (0, i)),
             pl.BlockSpec((bp, bo), lambda i, o: (0, o))]
    out_specs = [pl.BlockSpec((k, bi, bo), lambda i, o: (0, i, o))]
    if wb is not None:
      out_specs.append(pl.BlockSpec((bi, bo), lambda i, o: (i, o)))
    outs = pl.pallas_call(functools.partial(_gpu_dc_kernel, cfg=cfg, bb=bb, n_b=bp // bb),
                          grid=(ip // bi, op // bo), in_specs=specs, out_specs=out_specs, out_shape=out_shape,
                          compiler_params=_compiler_params(cfg, None), interpret=cfg.interpret,
                          name="kan_dcoef")(xp, gt, dyp)
  dc = outs[0][:, :n_i, :n_o]
  dwb = outs[1][:n_i, :n_o] if wb is not None else None
  return dc, dwb


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _fused(x, coef, grid, wb, cfg: _Config):
  return _forward(x, coef, grid, wb, cfg)


def _fused_fwd(x, coef, grid, wb, cfg: _Config):
  return _forward(x, coef, grid, wb, cfg), (x, coef, grid, wb)


def _fused_bwd(cfg: _Config, res, dy):
  x, coef, grid, wb = res
  dx = _backward_dx(x, coef, grid, wb, dy, cfg)
  dc, dwb = _backward_dc(x, coef, grid, wb, dy, cfg)
  dgrid = None if grid is None else jnp.zeros_like(grid)  # grids are constants (stopped in `kan`)
  return dx, dc, dgrid, dwb


_fused.defvjp(_fused_fwd, _fused_bwd)


