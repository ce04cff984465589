"""The Pallas kernels behind :mod:`zoo.kernels.multigrid`: one stencil primitive, in Triton (GPU) and Mosaic (TPU).

:mod:`zoo.kernels.multigrid` builds every operator (convolution, restriction, prolongation, smoothing) from one
primitive, ``out = sum_e extra_coefs[e] * extras[e] + scale * sum_t x[phase_t][i + dy_t, j + dx_t] (@ w_t | * c_t)``
on phase-split inputs, described by the static :class:`_Spec`; this module holds its kernels (forward and weight
gradient, per backend) and :class:`BlockSizes` (re-exported there), which sets their tiles. The custom_vjp, the
``jnp`` path and the XLA glue stay in :mod:`zoo.kernels.multigrid`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltr

__all__ = ["BlockSizes"]


def _precision(dtype):
  """Full float32 matmul precision for float32 inputs (the kernels and the references agree to rounding)."""
  return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else None


# ------------------------------------------------------------------------------------------------ block sizes


@dataclasses.dataclass(frozen=True)
class BlockSizes:
  """Tile sizes of the kernels (each is clipped to the problem's size).

  Attributes:
    block_pixels: Triton: output pixels per program (power of 2, >= 16).
    block_cin: Triton: input channels per matmul chunk (power of 2, >= 16).
    block_cout: Triton: output channels per program (power of 2, >= 16).
    num_warps: Triton warps per program.
    block_rows: Mosaic TPU: output rows per program (lowered until a block and its halo fit ``vmem_budget``).
    vmem_budget: Mosaic TPU: bytes of VMEM a program's input and output blocks may take (double-buffered).
  """
  block_pixels: int = 64
  block_cin: int = 32
  block_cout: int = 32
  num_warps: int = 4
  block_rows: int = 8
  vmem_budget: int = 12 * 2**20

  def __post_init__(self):
    for name in ("block_pixels", "block_cin", "block_cout"):
      v = getattr(self, name)
      if v < 16 or v & (v - 1):
        raise ValueError(f"BlockSizes.{name} must be a power of 2 >= 16 (Triton tiles); got {v}.")
    if self.block_rows < 1 or self.num_warps < 1 or self.vmem_budget < 1:
      raise ValueError(f"BlockSizes: block_rows, num_warps and vmem_budget must be positive; got {self}.")

  @classmethod
  def get_default(cls) -> BlockSizes:
    """Defaults for the zoo's shapes (16-64 channels, grids 32^2 - 1024^2)."""
    return cls()



# -------------------------------------------------------------------------------- the primitive's static description


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Static description of one primitive call (hashable: it keys the custom_vjp and the kernels).

  ``out = sum_e extra_coefs[e] * extras[e] + scale * sum_t x[taps[t].phase][i + dy, j + dx] (@ w[t] | * coefs[t])``
  """
  taps: tuple[tuple[int, int, int], ...]  # (phase, dy, dx)
  coefs: tuple[float, ...] | None          # fixed (depthwise) stencil values, or None: matrices w[t]
  scale: float
  extra_coefs: tuple[float, ...]
  out_hw: tuple[int, int]

  @property
  def halo(self) -> tuple[int, int]:
    return max(t[1] for t in self.taps), max(t[2] for t in self.taps)


# ------------------------------------------------------------------------------------------------ Triton (GPU)


def _pow2(n: int, lo: int, hi: int) -> int:
  return int(min(max(pl.next_power_of_2(max(int(n), 1)), lo), hi))


def _tap_table(spec: _Spec, wq: int):
  """int32 [taps, 2]: each tap's phase and its flat offset ``dy * wq + dx`` into the phase's rows."""
  return jnp.asarray([[ph, dy * wq + dx] for ph, dy, dx in spec.taps], jnp.int32)


def _triton_stencil_kernel(*refs, spec: _Spec, n_extra: int, cin: int, cout: int, wq: int, bp: int, bci: int,
                           bco: int, precision):
  # refs: tap table, x [phases, B, Hq*Wq, c_in], w [taps, c_in, c_out] (or coefs [taps]), extras, out [B, Ho*Wo, c_out]
  matrix = spec.coefs is None
  tab_ref, x_ref, w_ref = refs[:3]
  extra_refs, o_ref = refs[3:3 + n_extra], refs[-1]
  ho, wo = spec.out_hw
  b, pb, cb = pl.program_id(0), pl.program_id(1), pl.program_id(2)
  p = pb * bp + jnp.arange(bp)
  p_mask = p < ho * wo
  base = (p // wo) * wq + p % wo  # the tap (0, 0) of each output pixel, as a row of the flattened phase
  co = cb * bco + jnp.arange(bco)
  co_mask = co < cout
  mask = p_mask[:, None] & co_mask[None, :]
  n_ci = pl.cdiv(cin, bci)

  # The taps are a loop over a table (not unrolled), which keeps the Triton program and its lowering small.
  def tap(t, acc):
    phase, rows = tab_ref[t, 0], base + tab_ref[t, 1]
    if not matrix:
      x = pltr.load(x_ref.at[phase, b, rows[:, None], co[None, :]], mask=mask, other=0.0)
      return acc + w_ref[t] * x.astype(jnp.float32)

    def chunk(k, acc):
      ci = k * bci + jnp.arange(bci)
      ci_mask = ci < cin
      x = pltr.load(x_ref.at[phase, b, rows[:, None], ci[None, :]], mask=p_mask[:, None] & ci_mask[None, :],
                    other=0.0)
      w = pltr.load(w_ref.at[t, ci[:, None], co[None, :]], mask=ci_mask[:, None] & co_mask[None, :], other=0.0)
      return acc + jnp.dot(x, w, preferred_element_type=jnp.float32, precision=precision)

    return chunk(0, acc) if n_ci == 1 else jax.lax.fori_loop(0, n_ci, chunk, acc)

  acc = jax.lax.fori_loop(0, len(spec.taps), tap, jnp.zeros((bp, bco), jnp.float32))
  acc = acc * spec.scale
  for e_ref, c in zip(extra_refs, spec.extra_coefs):
    acc = acc + c * pltr.load(e_ref.at[b, p[:, None], co[None, :]], mask=mask, other=0.0).astype(jnp.float32)
  pltr.store(o_ref.at[b, p[:, None], co[None, :]], acc.astype(o_ref.dtype), mask=mask)


def _triton_stencil(xs, w, extras, spec: _Spec, interpret: bool, bs: BlockSizes):
  n_phase, batch, hq, wq, cin = xs.shape
  ho, wo = spec.out_hw
  cout = cin if w is None else w.shape[-1]
  call = _triton_stencil_call(spec, n_phase, batch, hq, wq, cin, cout, jnp.dtype(xs.dtype), len(extras), interpret,
                              bs)
  taps = w.astype(xs.dtype) if w is not None else jnp.asarray(spec.coefs, jnp.float32)
  args = [_tap_table(spec, wq), xs.reshape(n_phase, batch, hq * wq, cin), taps]
  args += [e.reshape(batch, ho * wo, cout) for e in extras]
  return call(*args).reshape(batch, ho, wo, cout)


# The pallas_calls are built once per static configuration and wrapped in jax.jit, so a model that calls the same
# kernel many times (every layer of an MgNO) traces each kernel body once, not once per call.
@functools.lru_cache(maxsize=None)
def _triton_stencil_call(spec, n_phase, batch, hq, wq, cin, cout, dtype, n_extra, interpret, bs):
  ho, wo = spec.out_hw
  bp = _pow2(ho * wo, 16, bs.block_pixels)
  bco = _pow2(cout, 16, bs.block_cout)
  bci = _pow2(cin, 16, bs.block_cin)
  kernel = functools.partial(_triton_stencil_kernel, spec=spec, n_extra=n_extra, cin=cin, cout=cout, wq=wq,
                             bp=bp, bci=bci, bco=bco, precision=_precision(dtype))
  return jax.jit(pl.pallas_call(
      kernel, grid=(batch, pl.cdiv(ho * wo, bp), pl.cdiv(cout, bco)),
      out_shape=jax.ShapeDtypeStruct((batch, ho * wo, cout), dtype),
      compiler_params=pltr.CompilerParams(num_warps=bs.num_warps), interpret=interpret,
      name="multigrid_stencil"))


_TN = (((0,), (0,)), ((), ()))  # contract the leading (pixel) axes: x^T g


def _triton_weight_grad_kernel(tab_ref, x_ref, g_ref, o_ref, *, spec: _Spec, cin: int, cout: int, wq: int, bp: int,
                               bci: int, bco: int, n_co: int, precision):
  ho, wo = spec.out_hw
  b, t, cc = pl.program_id(0), pl.program_id(1), pl.program_id(2)
  ci = (cc // n_co) * bci + jnp.arange(bci)
  co = (cc % n_co) * bco + jnp.arange(bco)
  ci_mask, co_mask = ci < cin, co < cout
  phase, offset = tab_ref[t, 0], tab_ref[t, 1]

  def body(k, acc):
    p = k * bp + jnp.arange(bp)
    p_mask = p < ho * wo
    rows = (p // wo) * wq + p % wo + offset
    x = pltr.load(x_ref.at[phase, b, rows[:, None], ci[None, :]], mask=p_mask[:, None] & ci_mask[None, :], other=0.0)
    g = pltr.load(g_ref.at[b, p[:, None], co[None, :]], mask=p_mask[:, None] & co_mask[None, :], other=0.0)
    return acc + jax.lax.dot_general(x, g, _TN, preferred_element_type=jnp.float32, precision=precision)

  acc = jax.lax.fori_loop(0, pl.cdiv(ho * wo, bp), body, jnp.zeros((bci, bco), jnp.float32))
  pltr.store(o_ref.at[b, t, ci[:, None], co[None, :]], acc, mask=ci_mask[:, None] & co_mask[None, :])


def _triton_weight_grad(xs, g, spec: _Spec, interpret: bool, bs: BlockSizes):
  n_phase, batch, hq, wq, cin = xs.shape
  ho, wo = spec.out_hw
  cout = g.shape[-1]
  call = _triton_weight_grad_call(spec, n_phase, batch, wq, cin, cout, jnp.dtype(xs.dtype), interpret, bs)
  # One partial sum per batch element (parallel programs), reduced by XLA.
  return call(_tap_table(spec, wq), xs.reshape(n_phase, batch, hq * wq, cin), g.reshape(batch, ho * wo, cout)).sum(0)


@functools.lru_cache(maxsize=None)
def _triton_weight_grad_call(spec, n_phase, batch, wq, cin, cout, dtype, interpret, bs):
  ho, wo = spec.out_hw
  bp = _pow2(ho * wo, 16, bs.block_pixels)
  bci, bco = _pow2(cin, 16, bs.block_cin), _pow2(cout, 16, bs.block_cout)
  n_ci, n_co = pl.cdiv(cin, bci), pl.cdiv(cout, bco)
  kernel = functools.partial(_triton_weight_grad_kernel, spec=spec, cin=cin, cout=cout, wq=wq, bp=bp, bci=bci,
                             bco=bco, n_co=n_co, precision=_precision(dtype))
  return jax.jit(pl.pallas_call(
      kernel, grid=(batch, len(spec.taps), n_ci * n_co),
      out_shape=jax.ShapeDtypeStruct((batch, len(spec.taps), cin, cout), jnp.float32),
      compiler_params=pltr.CompilerParams(num_warps=bs.num_warps), interpret=interpret,
      name="multigrid_stencil_weight_grad"))


# ----------------------------------------------------------------------------------------------- Mosaic (TPU)


def _mosaic_rows(spec: _Spec, wq: int, cin: int, cout: int, n_phase: int, itemsize: int, n_extra: int,
                 bs: BlockSizes) -> int:
  """Output rows per program: at most ``block_rows``, lowered until the blocks fit the VMEM budget."""
  ho, wo = spec.out_hw
  lanes = lambda c: -(-c // 128) * 128  # VMEM tiles pad the minor (channel) dimension to 128 lanes
  hy, _ = spec.halo
  rows = max(1, min(bs.block_rows, ho))
  while rows > 1:
    need = 2 * itemsize * (n_phase * (rows + hy) * wq * lanes(cin) + (1 + n_extra) * rows * wo * lanes(cout))
    if need <= bs.vmem_budget:
      break
    rows //= 2
  return rows


def _mosaic_interpret(interpret: bool):
  return pltpu.InterpretParams() if interpret else False


def _mosaic_stencil_kernel(*refs, spec: _Spec, n_extra: int, rows: int):
  matrix = spec.coefs is None
  x_ref = refs[0]
  w_ref = refs[1] if matrix else None
  extra_refs = refs[1 + matrix:1 + matrix + n_extra]
  o_ref = refs[-1]
  _, wo = spec.out_hw
  cout = o_ref.shape[-1]

  def row(r, carry):
    acc = jnp.zeros((wo, cout), jnp.float32)
    for t, (ph, dy, dx) in enumerate(spec.taps):
      x = x_ref[ph, r + dy, pl.ds(dx, wo), :]
      if matrix:
        acc = acc + jnp.dot(x, w_ref[t], preferred_element_type=jnp.float32, precision=_precision(x.dtype))
      else:
        acc = acc + spec.coefs[t] * x.astype(jnp.float32)
    acc = acc * spec.scale
    for e_ref, c in zip(extra_refs, spec.extra_coefs):
      acc = acc + c * e_ref[r].astype(jnp.float32)
    o_ref[r] = acc.astype(o_ref.dtype)
    return carry

  jax.lax.fori_loop(0, rows, row, 0)


def _mosaic_layout(xs, spec: _Spec, rows: int):
  """Pads the rows so every block and its halo are in bounds; the padded rows' outputs are cropped."""
  ho, _ = spec.out_hw
  hy, _ = spec.halo
  ho_pad = -(-ho // rows) * rows
  need = ho_pad + hy
  if xs.shape[2] < need:
    xs = jnp.pad(xs, ((0, 0), (0, 0), (0, need - xs.shape[2]), (0, 0), (0, 0)))
  return xs, ho_pad


def _x_spec(xs_shape, spec: _Spec, rows: int):
  n_phase, _, _, wq, cin = xs_shape
  hy, _ = spec.halo
  # Element windows overlap (each block reads its halo rows); every dimension must then be an Element.
  return pl.BlockSpec((pl.Element(n_phase), None, pl.Element(rows + hy), pl.Element(wq), pl.Element(cin)),
                      lambda b, r: (0, b, r * rows, 0, 0))


def _mosaic_stencil(xs, w, extras, spec: _Spec, interpret: bool, bs: BlockSizes):
  n_phase, batch, _, wq, cin = xs.shape
  ho, _ = spec.out_hw
  cout = cin if w is None else w.shape[-1]
  rows = _mosaic_rows(spec, wq, cin, cout, n_phase, xs.dtype.itemsize, len(extras), bs)
  xs, ho_pad = _mosaic_layout(xs, spec, rows)
  call = _mosaic_stencil_call(spec, xs.shape, jnp.dtype(xs.dtype), cout, rows, len(extras), w is not None, interpret)
  args = [xs] + ([] if w is None else [w.astype(xs.dtype)])
  args += [jnp.pad(e, ((0, 0), (0, ho_pad - ho), (0, 0), (0, 0))) for e in extras]
  return call(*args)[:, :ho]


@functools.lru_cache(maxsize=None)
def _mosaic_stencil_call(spec, xs_shape, dtype, cout, rows, n_extra, matrix, interpret):
  n_phase, batch, hq, wq, cin = xs_shape
  ho, wo = spec.out_hw
  ho_pad = -(-ho // rows) * rows
  row_spec = pl.BlockSpec((None, rows, wo, cout), lambda b, r: (b, r, 0, 0))
  in_specs = [_x_spec(xs_shape, spec, rows)]
  if matrix:
    in_specs.append(pl.BlockSpec((len(spec.taps), cin, cout), lambda b, r: (0, 0, 0)))
  in_specs += [row_spec] * n_extra
  return jax.jit(pl.pallas_call(
      functools.partial(_mosaic_stencil_kernel, spec=spec, n_extra=n_extra, rows=rows),
      grid=(batch, ho_pad // rows), in_specs=in_specs, out_specs=row_spec,
      out_shape=jax.ShapeDtypeStruct((batch, ho_pad, wo, cout), dtype),
      compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel")),
      interpret=_mosaic_interpret(interpret), name="multigrid_stencil"))


def _mosaic_weight_grad_kernel(x_ref, g_ref, o_ref, *, spec: _Spec, rows: int):
  _, wo = spec.out_hw

  @pl.when(pl.program_id(1) == 0)
  def _():
    o_ref[...] = jnp.zeros(o_ref.shape, o_ref.dtype)

  def row(r, carry):
    g = g_ref[r]
    for t, (ph, dy, dx) in enumerate(spec.taps):
      x = x_ref[ph, r + dy, pl.ds(dx, wo), :]
      o_ref[t] += jax.lax.dot_general(x, g, _TN, preferred_element_type=jnp.float32, precision=_precision(x.dtype))
    return carry

  jax.lax.fori_loop(0, rows, row, 0)


def _mosaic_weight_grad(xs, g, spec: _Spec, interpret: bool, bs: BlockSizes):
  n_phase, batch, _, wq, cin = xs.shape
  ho, _ = spec.out_hw
  cout = g.shape[-1]
  rows = _mosaic_rows(spec, wq, cin, cout, n_phase, xs.dtype.itemsize, 1, bs)
  xs, ho_pad = _mosaic_layout(xs, spec, rows)
  g = jnp.pad(g, ((0, 0), (0, ho_pad - ho), (0, 0), (0, 0)))  # zero rows add nothing to x^T g
  return _mosaic_weight_grad_call(spec, xs.shape, cout, rows, interpret)(xs, g).sum(0)


@functools.lru_cache(maxsize=None)
def _mosaic_weight_grad_call(spec, xs_shape, cout, rows, interpret):
  n_phase, batch, hq, wq, cin = xs_shape
  ho, wo = spec.out_hw
  ho_pad = -(-ho // rows) * rows
  n_taps = len(spec.taps)
  return jax.jit(pl.pallas_call(
      functools.partial(_mosaic_weight_grad_kernel, spec=spec, rows=rows),
      grid=(batch, ho_pad // rows),
      in_specs=[_x_spec(xs_shape, spec, rows), pl.BlockSpec((None, rows, wo, cout), lambda b, r: (b, r, 0, 0))],
      out_specs=pl.BlockSpec((None, n_taps, cin, cout), lambda b, r: (b, 0, 0, 0)),
      out_shape=jax.ShapeDtypeStruct((batch, n_taps, cin, cout), jnp.float32),
      compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
      interpret=_mosaic_interpret(interpret), name="multigrid_stencil_weight_grad"))


