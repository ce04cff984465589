"""Multigrid operators on 1D and 2D grids: restriction, prolongation, smoothing, and a V-cycle.

The building blocks of MgNO's V-cycle (He, Liu and Xu, "MgNO: Efficient Parameterization of Linear Operators via
Multigrid", ICLR 2024, arXiv:2310.19809) and of classic geometric multigrid (Briggs, Henson and McCormick, "A
Multigrid Tutorial", 2nd ed., 2000). Arrays are channels-last with a batch axis::

  x: [batch, length, channels]            (1D)
  x: [batch, height, width, channels]     (2D)

Every operator is a three-tap-per-axis stencil (3 taps in 1D, 3x3 in 2D), either *fixed* (a given stencil applied
to every channel on its own: full weighting, linear interpolation, a discrete operator such as the 5-point
Laplacian) or *learned* (a convolution weight ``[3, (3,) c_in, c_out]`` mixing channels, flax's HWIO layout, used
as a correlation like ``flax.linen.Conv``).

Grids and boundaries. The arrays hold the unknowns; the boundary condition says what lies one node outside
(``boundary``):

* ``'dirichlet'``: zero (the homogeneous Dirichlet boundary). The grid holds interior nodes; the coarse grid keeps
  every other node starting from the second, so ``n = 2m + 1 -> m`` (vertex-centred: 31 -> 15 -> 7 -> 3 -> 1), and
  ``n = 2m -> m`` (MgNO's 64 -> 32 -> ... -> 4).
* ``'neumann'``: the mirror image (``jnp.pad(mode='reflect')``, torch's ``padding_mode='reflect'``), a zero normal
  derivative ("Neumann-like"). The grid includes the boundary nodes; the coarse grid keeps every other node starting
  from the first: ``n -> ceil(n / 2)`` (33 -> 17 -> 9).
* ``'periodic'``: wrap-around (``n`` even, ``n -> n / 2``).

:func:`coarse_shape` and :func:`fine_shape` give the sizes. Public operators:

=========================  ==========================================================================================
:func:`restrict`           fine -> coarse. ``weight=None``: full weighting ([1, 2, 1] / 4 per axis); else a learned
                           stride-2 convolution ``[3, (3,) c_in, c_out]``.
:func:`prolong`            coarse -> fine (``shape=``). ``weight=None``: (bi)linear interpolation; else a learned
                           stride-2 transposed convolution ``[3, (3,) c_in, c_out]``.
:func:`conv`               a learned stride-1 convolution with the boundary's padding, ``add + scale * (w * x)``.
:func:`residual`           ``f - A u`` for a fixed stencil ``A`` (depthwise) or a learned weight ``A``.
:func:`jacobi`             weighted Jacobi ``u + omega / A_center (f - A u)`` with a given stencil, ``iterations``
                           sweeps.
:func:`smooth`             MgNet/MgNO smoothing ``u + S (f - A u)`` with learned ``A`` (u -> f channels) and ``S``
                           (f -> u channels); ``u=None`` means a zero initial guess, i.e. ``S f``.
:func:`v_cycle`            one classic V-cycle for ``A u = f`` with a fixed stencil (full weighting, linear
                           interpolation, damped Jacobi, re-discretised coarse operators).
``*_reference``            the same operators written with ``lax.conv_general_dilated``: the source of truth, the
                           fallback, and the test oracle.
=========================  ==========================================================================================

Implementations (``impl=``): ``'xla'`` runs the ``lax.conv`` reference. ``'pallas'`` and ``'auto'`` choose with
``jax.lax.platform_dependent`` at lowering time: the Triton kernel on ``cuda``, the Mosaic TPU kernel on ``tpu``,
and the reference elsewhere (``'pallas'`` logs that fallback; so does either when a kernel does not apply, e.g. to
float64). One jitted function therefore carries every path and exports for any platform. ``backend='triton' |
'mosaic'`` forces one kernel, and ``interpret=True`` runs it in the Pallas interpreter (on CPU: the tests).

How the kernels work. Every operator is reduced, by cheap XLA glue (boundary padding, even/odd phase split,
interleaving), to one primitive: ``out = sum_e c_e extra_e + scale * sum_t x[phase_t][i + dy_t, j + dx_t] @ W_t``,
a sum of shifted matrix products (or scalar multiples, for fixed stencils) over contiguous windows. A stride-2
restriction reads the four even/odd phases of its padded input; a transposed convolution computes each of the four
output phases as a stride-1 stencil and interleaves them. The primitive has a ``jax.custom_vjp`` whose backward
pass is two more kernels: the input gradient is the same primitive with flipped taps and transposed weights, the
weight gradient a reduction kernel ``sum x^T g``. The Triton kernel tiles (pixels x output channels) and gathers
the taps with masked pointer loads; the Mosaic kernel tiles rows, reading each row block with its halo through
``pl.Element`` windows, and loops over the rows with one MXU matmul per tap. The kernel bodies, their tiles
(:class:`BlockSizes`, re-exported here) and the primitive's static description live in
:mod:`zoo.kernels.multigrid_pallas`; the custom_vjp, the glue and the dispatch here.

Scope and limits, said plainly: numbers are checked in interpret mode on CPU and the lowerings with
``jax.export`` for ``cuda`` and ``tpu`` (the Mosaic compiler's own layout checks and real-device speed were not
available here). Under GSPMD ``jit`` a Pallas call is an opaque custom call: to shard the batch over devices, call
the model inside ``jax.shard_map``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zoo.kernels.multigrid_pallas import BlockSizes, _Spec, _mosaic_stencil, _mosaic_weight_grad, _triton_stencil
from zoo.kernels.multigrid_pallas import _precision, _triton_weight_grad

__all__ = [
    "BOUNDARIES", "BlockSizes", "coarse_shape", "conv", "conv_reference", "fine_shape", "jacobi", "prolong",
    "prolong_reference", "residual", "restrict", "restrict_reference", "smooth", "stencil_reference", "v_cycle",
    "FULL_WEIGHTING", "LAPLACIAN_1D", "LAPLACIAN_2D", "LINEAR_INTERPOLATION",
]

_log = logging.getLogger(__name__)

BOUNDARIES = ("dirichlet", "neumann", "periodic")
_PAD_MODE = {"dirichlet": "constant", "neumann": "reflect", "periodic": "wrap"}
_IMPLS = ("auto", "pallas", "xla")
_BACKENDS = ("triton", "mosaic", "jnp")
_KERNEL_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)

# Fixed stencils, per axis. Full weighting is [1, 2, 1] / 4 and linear interpolation [1/2, 1, 1/2] per axis;
# in 2D both are tensor products (the 3x3 full-weighting stencil is [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16).
FULL_WEIGHTING = np.array([0.25, 0.5, 0.25])
LINEAR_INTERPOLATION = np.array([0.5, 1.0, 0.5])
LAPLACIAN_1D = np.array([-1.0, 2.0, -1.0])                                  # -u'' * h^2
LAPLACIAN_2D = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])  # 5-point -Laplacian * h^2


# ---------------------------------------------------------------------------------------------------- geometry


def _check_boundary(boundary: str, where: str) -> None:
  if boundary not in BOUNDARIES:
    raise ValueError(f"{where}: `boundary` must be one of {BOUNDARIES}; got {boundary!r}.")


def _offset(boundary: str) -> int:
  # Dirichlet grids hold interior nodes: the coarse nodes are the odd fine nodes (1, 3, ...). Neumann grids
  # include the boundary nodes and periodic grids wrap: the coarse nodes are the even ones (0, 2, ...).
  return 1 if boundary == "dirichlet" else 0


def coarse_shape(shape: Sequence[int], boundary: str = "dirichlet") -> tuple[int, ...]:
  """Spatial shape of the coarse grid of a fine grid of spatial ``shape`` (see the module docstring)."""
  _check_boundary(boundary, "coarse_shape")
  out = []
  for n in shape:
    if boundary == "periodic" and n % 2:
      raise ValueError(f"coarse_shape: a periodic grid must have an even size to be coarsened; got {tuple(shape)}.")
    nc = n // 2 if boundary == "dirichlet" else (n + 1) // 2
    if nc < 1 or n < 2:
      raise ValueError(f"coarse_shape: a grid of spatial shape {tuple(shape)} is too small to coarsen.")
    out.append(nc)
  return tuple(out)


def fine_shape(shape: Sequence[int], boundary: str = "dirichlet") -> tuple[int, ...]:
  """The usual fine grid of a coarse grid: ``2m+1`` (Dirichlet), ``2m-1`` (Neumann), ``2m`` (periodic)."""
  _check_boundary(boundary, "fine_shape")
  extra = {"dirichlet": 1, "neumann": -1, "periodic": 0}[boundary]
  return tuple(2 * m + extra for m in shape)


def _pad(x, boundary: str, width: int = 1):
  d = x.ndim - 2
  return jnp.pad(x, [(0, 0)] + [(width, width)] * d + [(0, 0)], mode=_PAD_MODE[boundary])


def _dims(d: int):
  return ("NWC", "WIO", "NWC") if d == 1 else ("NHWC", "HWIO", "NHWC")


def _depthwise(stencil, channels: int, dtype):
  """A fixed stencil ``[3, (3,)]`` as a depthwise ``lax.conv`` weight ``[3, (3,) 1, channels]``."""
  s = jnp.asarray(stencil, dtype)
  return jnp.broadcast_to(s[..., None, None], s.shape + (1, channels))


# -------------------------------------------------------------------------------------------------- references


def stencil_reference(x, stencil, *, boundary: str = "dirichlet"):
  """``A x`` for a fixed stencil ``[3, (3,)]`` applied to every channel (a correlation, like ``lax.conv``)."""
  d = x.ndim - 2
  return jax.lax.conv_general_dilated(
      _pad(x, boundary), _depthwise(stencil, x.shape[-1], x.dtype), (1,) * d, "VALID",
      dimension_numbers=_dims(d), feature_group_count=x.shape[-1], precision=_precision(x.dtype))


def conv_reference(x, weight, *, boundary: str = "dirichlet"):
  """Stride-1 convolution ``[3, (3,) c_in, c_out]`` with the boundary's padding; output spatial shape = input's."""
  d = x.ndim - 2
  return jax.lax.conv_general_dilated(_pad(x, boundary), weight.astype(x.dtype), (1,) * d, "VALID",
                                      dimension_numbers=_dims(d), precision=_precision(x.dtype))


def restrict_reference(x, weight=None, *, boundary: str = "dirichlet"):
  """Restriction with ``lax.conv``: full weighting (``weight=None``) or a learned stride-2 convolution."""
  d = x.ndim - 2
  s = _offset(boundary)
  nc = coarse_shape(x.shape[1:-1], boundary)
  xp = _pad(x, boundary)
  xp = xp[(slice(None),) + (slice(s, None),) * d]
  if weight is None:
    w, groups = _depthwise(_tensor(FULL_WEIGHTING, d), x.shape[-1], x.dtype), x.shape[-1]
  else:
    w, groups = weight.astype(x.dtype), 1
  y = jax.lax.conv_general_dilated(xp, w, (2,) * d, "VALID", dimension_numbers=_dims(d),
                                   feature_group_count=groups, precision=_precision(x.dtype))
  return y[(slice(None),) + tuple(slice(0, n) for n in nc)]


def prolong_reference(x, weight=None, *, shape=None, boundary: str = "dirichlet"):
  """Prolongation with ``lax.conv``: (bi)linear interpolation (``weight=None``) or a learned transposed conv.

  ``out[j] = sum_i sum_k w[k] x[i] [j = 2 i + s - 1 + k]`` over the coarse nodes ``i`` and the boundary's ghost
  nodes ``i = -1, m`` (``s`` = 1 for Dirichlet, 0 otherwise): the transpose of the stride-2 correlation with the
  same weight, as ``torch.nn.ConvTranspose`` with ``padding=1``.
  """
  d = x.ndim - 2
  s = _offset(boundary)
  shape = _fine_target(x.shape[1:-1], shape, boundary, "prolong_reference")
  cp = _pad(x, boundary)
  if weight is None:
    w, groups = _depthwise(_tensor(LINEAR_INTERPOLATION, d), x.shape[-1], x.dtype), x.shape[-1]
  else:
    w, groups = weight.astype(x.dtype), 1
  w = w[(slice(None, None, -1),) * d]
  y = jax.lax.conv_general_dilated(cp, w, (1,) * d, [(0, 0)] * d, lhs_dilation=(2,) * d, dimension_numbers=_dims(d),
                                   feature_group_count=groups, precision=_precision(x.dtype))
  return y[(slice(None),) + tuple(slice(1 - s, 1 - s + n) for n in shape)]


def _tensor(taps1d, d: int):
  return taps1d if d == 1 else np.outer(taps1d, taps1d)


def _fine_target(coarse, shape, boundary, where):
  if shape is None:
    return fine_shape(coarse, boundary)
  shape = tuple(int(n) for n in shape)
  if len(shape) != len(coarse):
    raise ValueError(f"{where}: `shape` must have {len(coarse)} spatial sizes; got {shape}.")
  if coarse_shape(shape, boundary) != tuple(coarse):
    raise ValueError(f"{where}: a fine grid of shape {shape} coarsens to {coarse_shape(shape, boundary)} with "
                     f"boundary={boundary!r}, not to the input's spatial shape {tuple(coarse)}.")
  return shape


# ------------------------------------------------------------------------------------------ the stencil primitive


def _stencil_impl(xs, w, extras, spec: _Spec, backend: str, interpret: bool, bs: BlockSizes):
  if backend == "triton":
    return _triton_stencil(xs, w, extras, spec, interpret, bs)
  if backend == "mosaic":
    return _mosaic_stencil(xs, w, extras, spec, interpret, bs)
  return _jnp_stencil(xs, w, extras, spec)


def _jnp_stencil(xs, w, extras, spec: _Spec):
  """The primitive in plain jnp (backend 'jnp'): what both kernels compute, used to test the glue quickly."""
  ho, wo = spec.out_hw
  acc = 0.0
  for t, (ph, dy, dx) in enumerate(spec.taps):
    x = xs[ph, :, dy:dy + ho, dx:dx + wo, :]
    if spec.coefs is None:
      acc = acc + jnp.einsum("bhwi,io->bhwo", x, w[t].astype(x.dtype), preferred_element_type=jnp.float32,
                             precision=_precision(x.dtype))
    else:
      acc = acc + spec.coefs[t] * x.astype(jnp.float32)
  acc = acc * spec.scale
  for e, c in zip(extras, spec.extra_coefs):
    acc = acc + c * e.astype(jnp.float32)
  return acc.astype(xs.dtype)


def _jnp_weight_grad(xs, g, spec: _Spec):
  ho, wo = spec.out_hw
  return jnp.stack([jnp.einsum("bhwi,bhwo->io", xs[ph, :, dy:dy + ho, dx:dx + wo, :], g,
                               preferred_element_type=jnp.float32, precision=_precision(xs.dtype))
                    for ph, dy, dx in spec.taps])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _stencil(xs, w, extras, spec: _Spec, backend: str, interpret: bool, bs: BlockSizes):
  """The primitive. xs: [phases, B, Hq, Wq, c_in]; w: [taps, c_in, c_out] or None; extras: [B, Ho, Wo, c_out]."""
  return _stencil_impl(xs, w, extras, spec, backend, interpret, bs)


def _stencil_fwd(xs, w, extras, spec, backend, interpret, bs):
  out = _stencil_impl(xs, w, extras, spec, backend, interpret, bs)
  return out, (xs, w)


def _stencil_bwd(spec, backend, interpret, bs, res, g):
  xs, w = res
  n_phase, _, hq, wq, _ = xs.shape
  ho, wo = spec.out_hw
  hy, hx = spec.halo
  d_extras = tuple((c * g.astype(jnp.float32)).astype(g.dtype) for c in spec.extra_coefs)  # extras have g's dtype
  # Input gradient: the same primitive on the zero-padded cotangent with flipped taps and transposed weights.
  gp = jnp.pad(g, ((0, 0), (hy, max(hq - ho, 0)), (hx, max(wq - wo, 0)), (0, 0)))[None]
  dxs = []
  for p in range(n_phase):
    idx = [t for t, tap in enumerate(spec.taps) if tap[0] == p]
    if not idx:
      dxs.append(jnp.zeros(xs.shape[1:], xs.dtype))
      continue
    taps = tuple((0, hy - spec.taps[t][1], hx - spec.taps[t][2]) for t in idx)
    if spec.coefs is None:
      spec_b = _Spec(taps, None, spec.scale, (), (hq, wq))
      wb = jnp.swapaxes(w[np.asarray(idx)], 1, 2)
    else:
      spec_b = _Spec(taps, tuple(spec.coefs[t] for t in idx), spec.scale, (), (hq, wq))
      wb = None
    dxs.append(_stencil(gp.astype(xs.dtype), wb, (), spec_b, backend, interpret, bs))
  dxs = jnp.stack(dxs)
  dw = None
  if w is not None:
    dw = _weight_grad(xs, g, spec, backend, interpret, bs)
    dw = (spec.scale * dw).astype(w.dtype)
  return dxs, dw, d_extras


_stencil.defvjp(_stencil_fwd, _stencil_bwd)


def _weight_grad(xs, g, spec, backend, interpret, bs):
  if backend == "triton":
    return _triton_weight_grad(xs, g, spec, interpret, bs)
  if backend == "mosaic":
    return _mosaic_weight_grad(xs, g, spec, interpret, bs)
  return _jnp_weight_grad(xs, g, spec)


# ------------------------------------------------------------------------------------- XLA glue around the kernel


def _as_2d(x):
  """[B, L, C] -> [B, 1, L, C]; 2D arrays unchanged."""
  return x[:, None] if x.ndim == 3 else x


def _from_2d(y, d: int):
  return y[:, 0] if d == 1 else y


def _taps_stride1(d: int):
  """Taps of a stride-1 3-point stencil on the padded input (one phase); order = weight.reshape(-1, ...)."""
  if d == 1:
    return tuple((0, 0, k) for k in range(3))
  return tuple((0, ky, kx) for ky in range(3) for kx in range(3))


def _flat_weight(weight, d: int):
  return weight.reshape((3 ** d,) + weight.shape[-2:])


def _flat_stencil(stencil, d: int):
  return tuple(float(v) for v in np.asarray(stencil, np.float64).reshape(-1))


def _nonzero(taps, coefs):
  keep = [t for t, c in enumerate(coefs) if c != 0.0]
  return tuple(taps[t] for t in keep), tuple(coefs[t] for t in keep)


def _kernel_conv(x, weight, stencil, extras, extra_coefs, scale, boundary, backend, interpret, bs):
  """``sum c_e extra_e + scale * (A x)``, stride 1, A a learned weight or a fixed stencil."""
  d = x.ndim - 2
  xs = _as_2d(_pad(x, boundary))[None]
  taps = _taps_stride1(d)
  out_hw = _as_2d(x).shape[1:3]
  if weight is None:
    taps, coefs = _nonzero(taps, _flat_stencil(stencil, d))
    spec, w = _Spec(taps, coefs, float(scale), tuple(extra_coefs), out_hw), None
  else:
    spec, w = _Spec(taps, None, float(scale), tuple(extra_coefs), out_hw), _flat_weight(weight, d)
  y = _stencil(xs, w, tuple(_as_2d(e).astype(x.dtype) for e in extras), spec, backend, interpret, bs)
  return _from_2d(y, d)


def _kernel_restrict(x, weight, boundary, backend, interpret, bs):
  d = x.ndim - 2
  s = _offset(boundary)
  nc = coarse_shape(x.shape[1:-1], boundary)
  xp = _pad(x, boundary)
  # Even/odd phases of the padded input along each spatial axis; the stride-2 stencil becomes a stride-1 one.
  if d == 1:
    phases = [xp[:, q::2] for q in (0, 1)]
    tap_of = lambda k: ((s + k[0]) % 2, 0, (s + k[0]) // 2)
    kidx = [(k,) for k in range(3)]
  else:
    phases = [xp[:, qy::2, qx::2] for qy in (0, 1) for qx in (0, 1)]
    tap_of = lambda k: (2 * ((s + k[0]) % 2) + (s + k[1]) % 2, (s + k[0]) // 2, (s + k[1]) // 2)
    kidx = [(ky, kx) for ky in range(3) for kx in range(3)]
  size = [max(p.shape[a] for p in phases) for a in range(1, d + 1)]
  phases = [jnp.pad(p, [(0, 0)] + [(0, n - m) for n, m in zip(size, p.shape[1:-1])] + [(0, 0)]) for p in phases]
  xs = jnp.stack([_as_2d(p) for p in phases])
  taps = tuple(tap_of(k) for k in kidx)
  out_hw = (1, nc[0]) if d == 1 else nc
  if weight is None:
    taps, coefs = _nonzero(taps, _flat_stencil(_tensor(FULL_WEIGHTING, d), d))
    spec, w = _Spec(taps, coefs, 1.0, (), out_hw), None
  else:
    spec, w = _Spec(taps, None, 1.0, (), out_hw), _flat_weight(weight, d)
  return _from_2d(_stencil(xs, w, (), spec, backend, interpret, bs), d)


def _kernel_prolong(x, weight, shape, boundary, backend, interpret, bs):
  d = x.ndim - 2
  s = _offset(boundary)
  cp = _as_2d(_pad(x, boundary))[None]
  if weight is None:
    coefs_all = _flat_stencil(_tensor(LINEAR_INTERPOLATION, d), d)
    w_all = None
  else:
    w_all = _flat_weight(weight, d)
  cout = x.shape[-1] if weight is None else weight.shape[-1]

  # Output phase q (fine node j = 2 m + q) receives tap k from coarse node m + (q - s + 3 - k) / 2 of the padded
  # coarse grid whenever that is an integer.
  def taps_1d(q):
    return [(k, (q - s + 3 - k) // 2) for k in range(3) if (q - s + 3 - k) % 2 == 0]

  half = [(n + 1) // 2 for n in shape]
  outs = {}
  for qs in ([(q,) for q in (0, 1)] if d == 1 else [(qy, qx) for qy in (0, 1) for qx in (0, 1)]):
    lens = [(n - q + 1) // 2 for n, q in zip(shape, qs)]
    if min(lens) == 0:
      outs[qs] = jnp.zeros((x.shape[0], *half, cout), x.dtype)
      continue
    if d == 1:
      picks = [((k,), (0, 0, sh)) for k, sh in taps_1d(qs[0])]
      flat = lambda k: k[0]
      out_hw = (1, lens[0])
    else:
      picks = [((ky, kx), (0, shy, shx)) for ky, shy in taps_1d(qs[0]) for kx, shx in taps_1d(qs[1])]
      flat = lambda k: 3 * k[0] + k[1]
      out_hw = tuple(lens)
    taps = tuple(tap for _, tap in picks)
    idx = [flat(k) for k, _ in picks]
    if w_all is None:
      taps, coefs = _nonzero(taps, tuple(coefs_all[i] for i in idx))
      spec, w = _Spec(taps, coefs, 1.0, (), out_hw), None
    else:
      spec, w = _Spec(taps, None, 1.0, (), out_hw), w_all[np.asarray(idx)]
    y = _from_2d(_stencil(cp, w, (), spec, backend, interpret, bs), d)
    outs[qs] = jnp.pad(y, [(0, 0)] + [(0, h - n) for h, n in zip(half, y.shape[1:-1])] + [(0, 0)])
  batch = x.shape[0]
  if d == 1:
    y = jnp.stack([outs[(0,)], outs[(1,)]], axis=2).reshape(batch, 2 * half[0], cout)
    return y[:, :shape[0]]
  rows = [jnp.stack([outs[(qy, 0)], outs[(qy, 1)]], axis=3) for qy in (0, 1)]  # [B, hy, hx, 2, C]
  y = jnp.stack(rows, axis=2).reshape(batch, 2 * half[0], 2 * half[1], cout)
  return y[:, :shape[0], :shape[1]]


# ----------------------------------------------------------------------------------------------------- dispatch


def _unsupported(arrays, backend) -> str | None:
  """Why the kernels do not apply to these operands (None if they do)."""
  for a in arrays:
    if a is not None and jnp.dtype(a.dtype) not in [jnp.dtype(t) for t in _KERNEL_DTYPES]:
      return f"dtype {jnp.dtype(a.dtype)} (the kernels take float32, bfloat16 and float16)"
  return None


def _dispatch(name: str, impl: str, backend: str | None, interpret: bool, arrays, kernel, reference):
  """Runs ``kernel(backend)`` or ``reference()``: by the platform at lowering time, or as forced."""
  if impl not in _IMPLS:
    raise ValueError(f"{name}: `impl` must be one of {_IMPLS}; got {impl!r}.")
  if backend is not None and backend not in _BACKENDS:
    raise ValueError(f"{name}: `backend` must be one of {_BACKENDS} or None; got {backend!r}.")
  if impl == "xla":
    return reference()
  reason = _unsupported(arrays, backend)
  if reason is not None:
    _log.info("multigrid.%s: using the lax.conv reference: the Pallas kernels do not apply to %s.", name, reason)
    return reference()
  if backend is not None or interpret:
    return kernel(backend or "triton")
  if impl == "pallas" and jax.default_backend() not in ("gpu", "tpu"):
    _log.info("multigrid.%s: impl='pallas' on %s: no Pallas lowering for this platform, so the lax.conv reference "
              "runs here (the cuda/tpu paths are still in the function; pass interpret=True to run a kernel in "
              "the Pallas interpreter).", name, jax.default_backend())
  dummy = jnp.zeros((), jnp.int32)
  return jax.lax.platform_dependent(
      dummy, cuda=lambda _: kernel("triton"), tpu=lambda _: kernel("mosaic"), default=lambda _: reference())


def _check_field(x, name: str, where: str):
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    raise TypeError(f"{where}: `{name}` must be an array of shape [batch, *spatial, channels]; got {type(x).__name__}.")
  if x.ndim not in (3, 4):
    raise ValueError(f"{where}: `{name}` must have shape [batch, length, channels] (1D) or [batch, height, width, "
                     f"channels] (2D); got shape {tuple(x.shape)}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{where}: `{name}` must have a floating dtype; got {jnp.dtype(x.dtype)} "
                    f"(shape {tuple(x.shape)}).")


def _check_weight(w, name: str, d: int, cin: int | None, where: str, cout: int | None = None):
  expected = "[" + ", ".join(["3"] * d + [f"c_in={cin}" if cin else "c_in", f"c_out={cout}" if cout else "c_out"]) + "]"
  if not hasattr(w, "shape"):
    raise TypeError(f"{where}: `{name}` must be an array of shape {expected}; got {type(w).__name__}.")
  shape = tuple(w.shape)
  if (len(shape) != d + 2 or shape[:d] != (3,) * d or (cin is not None and shape[d] != cin)
      or (cout is not None and shape[d + 1] != cout)):
    raise ValueError(f"{where}: `{name}` must have shape {expected}; got {shape}.")


def _check_stencil(stencil, d: int, where: str):
  try:
    s = np.asarray(stencil, np.float64)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    raise TypeError(f"{where}: `stencil` must be a fixed (numpy) array of shape {(3,) * d}, not a traced value; use "
                    "a learned weight [3, (3,) c_in, c_out] for trainable operators.") from None
  if s.shape != (3,) * d:
    raise ValueError(f"{where}: `stencil` must have shape {(3,) * d} for a {d}D grid; got {s.shape}.")
  return s


def _opts(impl, backend, interpret, block_sizes):
  return dict(impl=impl, backend=backend, interpret=interpret,
              block_sizes=BlockSizes.get_default() if block_sizes is None else block_sizes)


# -------------------------------------------------------------------------------------------- public operators


def conv(x, weight, *, boundary: str = "dirichlet", add=None, scale: float = 1.0, impl: str = "auto",
         backend: str | None = None, interpret: bool = False, block_sizes: BlockSizes | None = None):
  """``add + scale * (weight * x)``: a learned stride-1 convolution with the boundary's padding.

  Args:
    x: ``[batch, *spatial, c_in]``.
    weight: ``[3, (3,) c_in, c_out]``.
    add: optional ``[batch, *spatial, c_out]`` added to the result (fused into the kernel).
  Returns:
    ``[batch, *spatial, c_out]`` in ``x``'s dtype.
  """
  _check_field(x, "x", "multigrid.conv")
  _check_boundary(boundary, "multigrid.conv")
  d = x.ndim - 2
  _check_weight(weight, "weight", d, x.shape[-1], "multigrid.conv")
  if add is not None and tuple(add.shape) != tuple(x.shape[:-1]) + (weight.shape[-1],):
    raise ValueError(f"multigrid.conv: `add` must have shape {tuple(x.shape[:-1]) + (weight.shape[-1],)}; got "
                     f"{tuple(add.shape)}.")
  o = _opts(impl, backend, interpret, block_sizes)
  extras = () if add is None else (add.astype(x.dtype),)

  def reference():
    y = scale * conv_reference(x, weight, boundary=boundary)
    return (y if add is None else add.astype(x.dtype) + y).astype(x.dtype)

  def kernel(be):
    return _kernel_conv(x, weight, None, extras, (1.0,) * len(extras), scale, boundary, be, o["interpret"],
                        o["block_sizes"])

  return _dispatch("conv", o["impl"], o["backend"], o["interpret"], (x, weight), kernel, reference)


def restrict(x, weight=None, *, boundary: str = "dirichlet", impl: str = "auto", backend: str | None = None,
             interpret: bool = False, block_sizes: BlockSizes | None = None):
  """Fine -> coarse grid: full weighting (``weight=None``) or a learned stride-2 convolution.

  Args:
    x: ``[batch, *spatial, c_in]``.
    weight: None, or ``[3, (3,) c_in, c_out]``.
  Returns:
    ``[batch, *coarse_shape(spatial, boundary), c_out]`` (``c_out = c_in`` for full weighting).
  """
  _check_field(x, "x", "multigrid.restrict")
  _check_boundary(boundary, "multigrid.restrict")
  d = x.ndim - 2
  coarse_shape(x.shape[1:-1], boundary)
  if weight is not None:
    _check_weight(weight, "weight", d, x.shape[-1], "multigrid.restrict")
  o = _opts(impl, backend, interpret, block_sizes)
  return _dispatch("restrict", o["impl"], o["backend"], o["interpret"], (x, weight),
                   lambda be: _kernel_restrict(x, weight, boundary, be, o["interpret"], o["block_sizes"]),
                   lambda: restrict_reference(x, weight, boundary=boundary))


def prolong(x, weight=None, *, shape: Sequence[int] | None = None, boundary: str = "dirichlet", impl: str = "auto",
            backend: str | None = None, interpret: bool = False, block_sizes: BlockSizes | None = None):
  """Coarse -> fine grid: (bi)linear interpolation (``weight=None``) or a learned stride-2 transposed convolution.

  Args:
    x: ``[batch, *coarse, c_in]``.
    weight: None, or ``[3, (3,) c_in, c_out]`` (the transpose of a stride-2 restriction with this weight).
    shape: the fine spatial shape (default :func:`fine_shape`); it must coarsen to ``coarse``.
  Returns:
    ``[batch, *shape, c_out]``.
  """
  _check_field(x, "x", "multigrid.prolong")
  _check_boundary(boundary, "multigrid.prolong")
  d = x.ndim - 2
  if weight is not None:
    _check_weight(weight, "weight", d, x.shape[-1], "multigrid.prolong")
  shape = _fine_target(x.shape[1:-1], shape, boundary, "multigrid.prolong")
  o = _opts(impl, backend, interpret, block_sizes)
  return _dispatch("prolong", o["impl"], o["backend"], o["interpret"], (x, weight),
                   lambda be: _kernel_prolong(x, weight, shape, boundary, be, o["interpret"], o["block_sizes"]),
                   lambda: prolong_reference(x, weight, shape=shape, boundary=boundary))


def residual(u, f, operator, *, boundary: str = "dirichlet", impl: str = "auto", backend: str | None = None,
             interpret: bool = False, block_sizes: BlockSizes | None = None):
  """``f - A u``.

  Args:
    u: ``[batch, *spatial, c_u]``.
    f: ``[batch, *spatial, c_f]``.
    operator: a fixed stencil ``[3, (3,)]`` applied to every channel (then ``c_f = c_u``), or a learned weight
      ``[3, (3,) c_u, c_f]``.
  """
  where = "multigrid.residual"
  _check_field(u, "u", where)
  _check_field(f, "f", where)
  _check_boundary(boundary, where)
  d = u.ndim - 2
  learned = hasattr(operator, "ndim") and operator.ndim == d + 2
  if learned:
    _check_weight(operator, "operator", d, u.shape[-1], where, f.shape[-1])
    stencil = None
  else:
    stencil = _check_stencil(operator, d, where)
  if tuple(f.shape[:-1]) != tuple(u.shape[:-1]) or (not learned and f.shape[-1] != u.shape[-1]):
    raise ValueError(f"{where}: `f` must have shape {tuple(u.shape[:-1])} + (c_f,) matching `u` {tuple(u.shape)}; "
                     f"got {tuple(f.shape)}.")
  o = _opts(impl, backend, interpret, block_sizes)
  weight = operator if learned else None

  def reference():
    au = conv_reference(u, weight, boundary=boundary) if learned else stencil_reference(u, stencil, boundary=boundary)
    return (f.astype(u.dtype) - au).astype(u.dtype)

  def kernel(be):
    return _kernel_conv(u, weight, stencil, (f.astype(u.dtype),), (1.0,), -1.0, boundary, be, o["interpret"],
                        o["block_sizes"])

  return _dispatch("residual", o["impl"], o["backend"], o["interpret"], (u, f, weight), kernel, reference)


def jacobi(u, f, stencil, *, omega: float = 0.8, iterations: int = 1, boundary: str = "dirichlet",
           impl: str = "auto", backend: str | None = None, interpret: bool = False,
           block_sizes: BlockSizes | None = None):
  """Weighted Jacobi sweeps ``u <- u + omega / A_center (f - A u)`` for a fixed stencil ``A`` on every channel.

  Args:
    u: ``[batch, *spatial, c]`` initial guess, or None for zero.
    f: ``[batch, *spatial, c]``.
    stencil: ``[3, (3,)]`` with a nonzero centre (e.g. :data:`LAPLACIAN_2D`).
  """
  where = "multigrid.jacobi"
  _check_field(f, "f", where)
  _check_boundary(boundary, where)
  d = f.ndim - 2
  s = _check_stencil(stencil, d, where)
  center = s[(1,) * d]
  if center == 0:
    raise ValueError(f"{where}: the stencil's centre must be nonzero for Jacobi; got stencil {s.tolist()}.")
  if iterations < 0:
    raise ValueError(f"{where}: `iterations` must be >= 0; got {iterations}.")
  if u is not None:
    _check_field(u, "u", where)
    if tuple(u.shape) != tuple(f.shape):
      raise ValueError(f"{where}: `u` must have the shape of `f` {tuple(f.shape)}; got {tuple(u.shape)}.")
  o = _opts(impl, backend, interpret, block_sizes)
  w = float(omega) / float(center)

  def sweep(u):
    def reference():
      return (u + w * (f - stencil_reference(u, s, boundary=boundary))).astype(f.dtype)

    def kernel(be):
      return _kernel_conv(u, None, s, (u, f), (1.0, w), -w, boundary, be, o["interpret"], o["block_sizes"])

    return _dispatch("jacobi", o["impl"], o["backend"], o["interpret"], (u, f), kernel, reference)

  if u is None:
    if iterations == 0:
      return jnp.zeros_like(f)
    u = (w * f).astype(f.dtype)  # the first sweep from zero
    iterations -= 1
  if iterations <= 4:
    for _ in range(iterations):
      u = sweep(u)
    return u
  return jax.lax.fori_loop(0, iterations, lambda _, v: sweep(v), u)


def smooth(u, f, operator, smoother, *, boundary: str = "dirichlet", impl: str = "auto", backend: str | None = None,
           interpret: bool = False, block_sizes: BlockSizes | None = None):
  """One learned smoothing step ``u + S (f - A u)`` (MgNet, MgNO); ``u=None`` gives ``S f`` (zero initial guess).

  Args:
    u: ``[batch, *spatial, c_u]`` or None.
    f: ``[batch, *spatial, c_f]``.
    operator: ``A``, ``[3, (3,) c_u, c_f]`` (ignored when ``u`` is None).
    smoother: ``S``, ``[3, (3,) c_f, c_u]``.
  Returns:
    ``[batch, *spatial, c_u]``.
  """
  where = "multigrid.smooth"
  _check_field(f, "f", where)
  d = f.ndim - 2
  _check_weight(smoother, "smoother", d, f.shape[-1], where)
  kw = dict(boundary=boundary, impl=impl, backend=backend, interpret=interpret, block_sizes=block_sizes)
  if u is None:
    return conv(f, smoother, **kw)
  _check_field(u, "u", where)
  _check_weight(operator, "operator", d, u.shape[-1], where, f.shape[-1])
  if smoother.shape[-1] != u.shape[-1]:
    raise ValueError(f"{where}: `smoother` must map c_f={f.shape[-1]} to c_u={u.shape[-1]} channels; got shape "
                     f"{tuple(smoother.shape)}.")
  r = residual(u, f, operator, **kw)
  return conv(r, smoother, add=u, **kw)


def v_cycle(f, u=None, *, stencil, levels: int | None = None, pre_smooth: int = 2, post_smooth: int = 2,
            omega: float = 0.8, coarse_sweeps: int = 32, coarse_scale: float = 0.25, boundary: str = "dirichlet",
            impl: str = "auto", backend: str | None = None, interpret: bool = False,
            block_sizes: BlockSizes | None = None):
  """One classic V-cycle for ``A u = f`` (geometric multigrid).

  Pre-smoothing by damped Jacobi, full-weighting restriction of the residual, a recursive coarse-grid correction
  with the re-discretised operator ``coarse_scale * A`` (1/4 for second-order operators: the stencil is in grid
  units, ``A = stencil / h^2``, and h doubles), (bi)linear prolongation, post-smoothing; ``coarse_sweeps`` Jacobi
  sweeps solve the coarsest grid.

  Args:
    f: ``[batch, *spatial, c]`` right-hand side (in the stencil's units, e.g. ``h^2 f`` for :data:`LAPLACIAN_2D`).
    u: initial guess (default zero).
    stencil: ``[3, (3,)]``, applied to every channel.
    levels: number of grids (default: coarsen while every side stays > 2, i.e. to 1-3 points).
  Returns:
    The improved ``u``, shape of ``f``.
  """
  where = "multigrid.v_cycle"
  _check_field(f, "f", where)
  _check_boundary(boundary, where)
  d = f.ndim - 2
  s = _check_stencil(stencil, d, where)
  if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or levels < 1):
    raise ValueError(f"{where}: `levels` must be an int >= 1 (1 = the fine grid only) or None; got {levels!r}.")
  for name, n in (("pre_smooth", pre_smooth), ("post_smooth", post_smooth), ("coarse_sweeps", coarse_sweeps)):
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
      raise ValueError(f"{where}: `{name}` must be an int >= 0; got {n!r}.")
  shapes = [tuple(f.shape[1:-1])]
  while (levels is None and min(shapes[-1]) > 2) or (levels is not None and len(shapes) < levels):
    try:
      shapes.append(coarse_shape(shapes[-1], boundary))
    except ValueError as e:
      raise ValueError(f"{where}: cannot make {levels} levels from spatial shape {shapes[0]}: {e}") from None
  kw = dict(boundary=boundary, impl=impl, backend=backend, interpret=interpret, block_sizes=block_sizes)

  def cycle(u, f, level):
    a = s * coarse_scale ** level
    if level == len(shapes) - 1:
      return jacobi(u, f, a, omega=omega, iterations=coarse_sweeps, **kw)
    u = jacobi(u, f, a, omega=omega, iterations=pre_smooth, **kw)
    r = residual(u, f, a, **kw) if u is not None else f
    e = cycle(None, restrict(r, **kw), level + 1)
    correction = prolong(e, shape=shapes[level], **kw)
    u = correction if u is None else u + correction
    return jacobi(u, f, a, omega=omega, iterations=post_smooth, **kw)

  return cycle(u, f, 0)
