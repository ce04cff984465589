r"""Fused KAN basis evaluation and contraction: the one KAN layer computation every KAN model in the zoo calls.

A Kolmogorov-Arnold layer puts a learnable univariate function on every edge ``i -> o``, written in a fixed basis
``B_k``. The *dense* form (KAN, ReLU-KAN, S-KAN, S-ConvKAN, KArAt) is::

  y[b, o] = sum_i ( base_weight[i, o] * silu(x[b, i]) + sum_k coef[k, i, o] * B_k(x[b, i]) )

and the *depthwise* form (one function per input, used by AF-KAN's per-input reduction of the basis axis) is::

  y[b, i] = base_weight[i] * silu(x[b, i]) + sum_k coef[k, i] * B_k(x[b, i])

Shapes::

  x:           [..., in]
  coef:        [num_basis, in, out] (dense) or [num_basis, in] (depthwise)
  grid:        [in, num_knots]   per-input knots / centres (a possibly non-uniform grid per input); None when the
               basis needs none (Fourier, Chebyshev)
  base_weight: [in, out] / [in], or None for no ``silu`` branch
  out:         [..., out] (dense) or [..., in] (depthwise)

The naive computation (:func:`reference`) writes the ``[batch, in, num_basis]`` basis tensor to memory and contracts
it. The Pallas kernels evaluate the basis of a ``[block_batch, block_in]`` tile of ``x`` in registers (GPU, Triton)
or VMEM (TPU, Mosaic) and feed it straight into the matmul with the matching coefficient tile, so that tensor never
exists in memory. The backward pass is fused the same way: ``dcoef`` and ``dbase_weight`` recompute the basis per
tile and contract it with ``dy``; ``dx`` contracts ``dy`` with the coefficients and multiplies by the basis
derivatives, which the kernel gets by forward-mode differentiation (``jax.jvp``) of the same basis code at trace
time, so there is one definition of every basis.

Bases (:class:`Basis`; a tuple of them is concatenated along the basis axis, which is how S-KAN evaluates all its
candidate spaces in one pass):

============  ==========================================================================  =====================
kind          B_k(x)                                                                      knots per input
============  ==========================================================================  =====================
bspline       order-``order`` B-splines on knots t_0..t_{K+order} (Cox-de Boor recursion)  K + order + 1
relu          ReLU-KAN: [relu(e_k - x) relu(x - s_k)]^2 * 16 / (e_k - s_k)^4,              K + order + 1
              s_k = t_k, e_k = t_{k+order+1}
af            AF-KAN: f(a(x - s_k), a(e_k - x)), f in quad1/quad2/sum/prod/sum_prod/       K + order + 1
              cubic1/cubic2, a an activation (silu, gelu, selu, relu, ...)
rbf           Gaussian exp(-((x - c_k) / h)^2), h = (c_last - c_0) / (K - 1)               K
wavelet       Mexican hat (Ricker) psi((x - c_k) / h), h as for rbf                        K
fourier       cos(j w x), sin(j w x), j = 1..K/2 (w = ``frequency``, default 1)                0
chebyshev     T_k(tanh x), k = 0..K-1                                                      0
============  ==========================================================================  =====================

Grids are constants for differentiation (as efficient-kan's buffers): :func:`kan` stops their gradient on every
path, so the kernel and the reference agree. ReLU-KAN's optionally trainable phases are therefore fixed here;
``zoo.kan.AFKANLayer`` trains AF-KAN's phases outside the kernel (with this module's ``ACTIVATIONS``/``AF_FUNCS``).

Parts, as every kernel in zoo (DESIGN.md, "Kernels"), in three files so none passes ~800 lines: the bases
(:class:`Basis`, :func:`make_grid`, the one evaluator) in :mod:`zoo.kernels.kan_bases`; :class:`BlockSizes` with
``get_default()`` and the kernel bodies (GPU: grid over output tiles with an in-kernel loop over the contracted axis;
TPU: the contracted axis is the last, "arbitrary" grid axis with a VMEM accumulator) in
:mod:`zoo.kernels.kan_basis_pallas`; here, re-exporting both modules' public names: :func:`kan`, the public entry point with ``impl='auto' | 'pallas' |
'xla'`` that picks the backend with ``jax.lax.platform_dependent`` and wires the fused backward with
``jax.custom_vjp``; and :func:`reference`, plain ``jnp``, the test oracle and the fallback. Also public:
:func:`basis_values` (the ``[..., in, num_basis]`` tensor, for grid updates and analysis), :func:`bspline_basis`
(the textbook B-spline basis, equal to ``scipy.interpolate.BSpline.design_matrix``) and :func:`make_grid`.

Block sizes: the defaults are reasoned, not tuned (no GPU or TPU was available when this was written); pass
``block_sizes=`` to tune. The first KAN paper: Liu et al., "KAN: Kolmogorov-Arnold Networks", 2024, arXiv
2404.19756; ReLU-KAN: Qiu et al., 2024, arXiv 2406.02075; AF-KAN: Ta & Tran, 2025, arXiv 2503.06112.
"""

from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp

from zoo.kernels.kan_bases import ACTIVATIONS, AF_FUNCS, Basis, BasisLike, _as_tuple, _evaluate, _silu
from zoo.kernels.kan_bases import _silu_and_derivative, _values_and_derivatives, check_grid_range, make_grid
from zoo.kernels.kan_bases import num_basis, num_knots
from zoo.kernels.kan_basis_pallas import BlockSizes, _Config, _fused

__all__ = ["ACTIVATIONS", "AF_FUNCS", "Basis", "BlockSizes", "basis_values", "bspline_basis", "check_grid_range",
           "kan", "make_grid", "num_basis", "num_knots", "reference"]

_log = logging.getLogger(__name__)

_F32 = jnp.float32


# ----------------------------------------------------------------------------------------------- reference


def basis_values(x: jax.Array, grid: jax.Array | None, basis: BasisLike) -> jax.Array:
  """All basis functions of ``x``: ``x [..., in]``, ``grid [in, num_knots]`` -> ``[..., in, num_basis]``, float32
  (float64 for float64 ``x``, under ``jax_enable_x64``)."""
  basis = _as_tuple(basis)
  x = jnp.asarray(x)
  dt = jnp.promote_types(x.dtype, _F32)
  lead, n_in = x.shape[:-1], x.shape[-1]
  x2 = x.reshape(-1, n_in).astype(dt)
  g = None if grid is None else jnp.asarray(grid, dt)
  vals = _evaluate(x2, lambda j: g[None, :, j], basis)
  return jnp.stack(vals, axis=-1).reshape(*lead, n_in, len(vals))


def bspline_basis(x: jax.Array, grid: jax.Array, order: int) -> jax.Array:
  """The textbook B-spline basis on per-input knots (Cox-de Boor).

  Args:
    x: ``[..., in]``.
    grid: ``[in, n_knots]`` non-decreasing knots per input (repeated knots allowed, 0/0 := 0).
    order: the spline order (degree) k.

  Returns:
    ``[..., in, n_knots - order - 1]``: ``B_{j,k}(x)``, equal to ``scipy.interpolate.BSpline.design_matrix(x, t, k)``
    on each input's knots ``t`` for ``x`` in ``[t_k, t_{n-k-1})``.
  """
  grid = jnp.asarray(grid)
  if grid.ndim != 2 or grid.shape[0] != jnp.shape(x)[-1]:
    raise ValueError(f"bspline_basis: `grid` must have shape [in={jnp.shape(x)[-1]}, n_knots]; got {grid.shape}.")
  n = grid.shape[1] - order - 1
  if n < 1:
    raise ValueError(f"bspline_basis: order {order} needs at least {order + 2} knots; got {grid.shape[1]}.")
  return basis_values(x, grid, Basis("bspline", n, order))


def reference(x: jax.Array, coef: jax.Array, *, basis: BasisLike, grid: jax.Array | None = None,
              base_weight: jax.Array | None = None) -> jax.Array:
  """Plain ``jnp`` KAN layer (materialises the basis tensor); shapes and semantics as :func:`kan`."""
  basis = _as_tuple(basis)
  _check(x, coef, grid, base_weight, basis)
  lead, n_in = x.shape[:-1], x.shape[-1]
  x2 = x.reshape(-1, n_in)
  vals = basis_values(x2, grid, basis).astype(coef.dtype)                  # [batch, in, K]
  cdt = coef.dtype
  acc = jnp.promote_types(jnp.result_type(x, coef), _F32)  # float32 accumulation; float64 stays float64
  if coef.ndim == 3:
    y = jnp.einsum("bik,kio->bo", vals, coef, preferred_element_type=acc)
    if base_weight is not None:
      y = y + jnp.dot(_silu(x2.astype(acc)).astype(cdt), base_weight.astype(cdt), preferred_element_type=acc)
  else:
    y = jnp.einsum("bik,ki->bi", vals, coef, preferred_element_type=acc)
    if base_weight is not None:
      y = y + _silu(x2.astype(acc)) * base_weight.astype(acc)
  return y.astype(x.dtype).reshape(*lead, y.shape[-1])



# The XLA path of :func:`kan` for dense B-spline layers (what CPUs run). The same function as :func:`reference`,
# arranged for XLA (issue 13): the basis values and their derivatives come out of one pass of the recursion (a
# ``jax.jvp``), and a ``custom_jvp`` states the layer's derivative with them, so reverse mode (the transpose of that
# rule) is two matmuls and one multiply instead of autodiff through Cox-de Boor, whose intermediates XLA otherwise
# recomputes or keeps per level. A ``custom_jvp`` rather than a ``custom_vjp`` so forward mode, ``jacfwd`` and
# higher derivatives (physics-informed losses) keep working. The contraction is one ``[batch, in * K] x [in * K, out]``
# matmul (the basis tensor in its natural row-major layout). Outputs and derivatives equal the reference's up to
# float32 summation order. The grid is a constant here: :func:`kan` stops its gradient.


def _use_xla_dense(basis: tuple[Basis, ...], coef) -> bool:
  return coef.ndim == 3 and all(b.kind == "bspline" for b in basis)


def _xla_dense_parts(x2, coef, grid, wb, basis):
  """The layer output in the accumulation dtype and what its derivative needs: ``v [batch, in * K]`` (basis values),
  ``dv [batch, in, K]`` (their derivatives in x), ``c [in * K, out]`` (coef in the matmul layout), SiLU and SiLU'."""
  acc = jnp.promote_types(jnp.result_type(x2, coef), _F32)
  cdt = coef.dtype
  n, n_in = x2.shape
  xa, g = x2.astype(acc), grid.astype(acc)
  vals, dvals = _values_and_derivatives(xa, lambda j: g[None, :, j], basis)
  k, o = len(vals), coef.shape[-1]
  v = jnp.stack(vals, axis=-1).astype(cdt).reshape(n, n_in * k)
  c = jnp.swapaxes(coef, 0, 1).reshape(n_in * k, o)
  y = jnp.dot(v, c, preferred_element_type=acc)
  s = ds = None
  if wb is not None:
    s, ds = _silu_and_derivative(xa)
    y = y + jnp.dot(s.astype(cdt), wb.astype(cdt), preferred_element_type=acc)
  return y, v, jnp.stack(dvals, axis=-1), c, s, ds


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _xla_dense(x2, coef, grid, wb, basis):
  return _xla_dense_parts(x2, coef, grid, wb, basis)[0].astype(x2.dtype)


def _xla_dense_jvp(basis, primals, tangents):
  x2, coef, grid, wb = primals
  tx, tcoef, _, twb = tangents  # the grid's tangent is zero: kan() stops its gradient
  y, v, dv, c, s, ds = _xla_dense_parts(x2, coef, grid, wb, basis)
  acc, cdt = y.dtype, coef.dtype
  n, n_in, k = dv.shape
  nonzero = lambda t: t is not None and not isinstance(t, jax.custom_derivatives.SymbolicZero)
  terms = []
  if nonzero(tx):
    ta = tx.astype(acc)
    terms.append(jnp.dot((dv * ta[..., None]).astype(cdt).reshape(n, n_in * k), c, preferred_element_type=acc))
    if wb is not None:
      terms.append(jnp.dot((ds * ta).astype(cdt), wb.astype(cdt), preferred_element_type=acc))
  if nonzero(tcoef):
    tc = jnp.swapaxes(tcoef, 0, 1).reshape(n_in * k, -1).astype(cdt)
    terms.append(jnp.dot(v, tc, preferred_element_type=acc))
  if wb is not None and nonzero(twb):
    terms.append(jnp.dot(s.astype(cdt), twb.astype(cdt), preferred_element_type=acc))
  ty = functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)
  return y.astype(x2.dtype), ty.astype(x2.dtype)


_xla_dense.defjvp(_xla_dense_jvp, symbolic_zeros=True)


def _xla(x, coef, *, basis, grid, base_weight):
  """:func:`reference`'s function through :func:`_xla_dense` where it applies (dense B-splines), else the reference."""
  if not _use_xla_dense(basis, coef):
    return reference(x, coef, basis=basis, grid=grid, base_weight=base_weight)
  lead, n_in = x.shape[:-1], x.shape[-1]
  y = _xla_dense(x.reshape(-1, n_in), coef, grid, base_weight, basis)
  return y.reshape(*lead, y.shape[-1])


def _check(x, coef, grid, base_weight, basis):
  k = num_basis(basis)
  if not hasattr(x, "ndim") or x.ndim < 1:
    raise ValueError(f"kan: `x` must be an array of shape [..., in]; got {getattr(x, 'shape', type(x).__name__)}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"kan: `x` must have a floating dtype; got {x.dtype} (shape {x.shape}).")
  n_in = x.shape[-1]
  if coef.ndim not in (2, 3) or coef.shape[:2] != (k, n_in):
    raise ValueError(f"kan: `coef` must have shape [num_basis={k}, in={n_in}, out] (dense) or "
                     f"[num_basis={k}, in={n_in}] (depthwise); got {coef.shape}.")
  if not jnp.issubdtype(coef.dtype, jnp.floating):
    raise TypeError(f"kan: `coef` must have a floating dtype; got {coef.dtype}.")
  p = num_knots(basis)
  if p and (grid is None or tuple(grid.shape) != (n_in, p)):
    raise ValueError(f"kan: `grid` must have shape [in={n_in}, num_knots={p}] for basis {basis}; got "
                     f"{None if grid is None else tuple(grid.shape)}.")
  if base_weight is not None and tuple(base_weight.shape) != tuple(coef.shape[1:]):
    raise ValueError(f"kan: `base_weight` must have shape {list(coef.shape[1:])} (coef's [in, out] / [in]); got "
                     f"{tuple(base_weight.shape)}.")


# ------------------------------------------------------------------------------------------------ entry point


def _unsupported(x, coef, base_weight) -> str | None:
  """Why the kernels cannot take these operands (None if they can)."""
  for name, a in (("x", x), ("coef", coef), ("base_weight", base_weight)):
    if a is not None and a.dtype not in (jnp.float32, jnp.bfloat16, jnp.float16):
      return f"`{name}` has dtype {a.dtype}; the kernels take float32, bfloat16 and float16"
  if x.size == 0:
    return "`x` is empty"
  return None


def kan(x: jax.Array, coef: jax.Array, *, basis: BasisLike, grid: jax.Array | None = None,
        base_weight: jax.Array | None = None, impl: str = "auto", block_sizes: BlockSizes | None = None,
        interpret: bool = False, backend: str | None = None) -> jax.Array:
  """A KAN layer, fused: basis evaluation and contraction in one pass; shapes as in the module docstring.

  Args:
    x: ``[..., in]`` inputs.
    coef: ``[num_basis, in, out]`` (dense) or ``[num_basis, in]`` (depthwise) basis coefficients.
    basis: a :class:`Basis` or a tuple of them (concatenated along the basis axis, in order).
    grid: ``[in, num_knots(basis)]`` knots / centres per input (not differentiated); None for gridless bases.
    base_weight: ``[in, out]`` / ``[in]`` weights of the ``silu`` branch, or None.
    impl: ``'xla'`` runs the XLA path (below); ``'pallas'`` runs the Pallas kernel on GPU (Triton) and TPU (Mosaic)
      and raises if the operands do not suit it; ``'auto'`` does the same but falls back to the reference, with a
      log line saying why, when the operands do not suit the kernel. On other platforms (CPU) both run the
      XLA path, chosen at lowering time by ``jax.lax.platform_dependent``, so one jitted function exports for
      every platform. The XLA path is :func:`reference`'s function; for dense B-spline layers it is arranged as
      :func:`_xla_dense` (values and derivatives in one pass, a ``custom_jvp`` whose transpose is two matmuls).
    block_sizes: tiles; default :meth:`BlockSizes.get_default` of each backend.
    interpret: run the kernel in Pallas interpret mode (on CPU, for tests); picks ``backend`` (default ``'gpu'``).
    backend: ``'gpu'`` or ``'tpu'`` forces that kernel (used with ``interpret`` or for export); None chooses by
      platform.

  Returns:
    ``[..., out]`` (dense) or ``[..., in]`` (depthwise), in ``x``'s dtype.
  """
  basis = _as_tuple(basis)
  if impl not in ("auto", "pallas", "xla"):
    raise ValueError(f"kan: `impl` must be 'auto', 'pallas' or 'xla'; got {impl!r}.")
  if backend not in (None, "gpu", "tpu"):
    raise ValueError(f"kan: `backend` must be None, 'gpu' or 'tpu'; got {backend!r}.")
  x, coef = jnp.asarray(x), jnp.asarray(coef)
  _check(x, coef, grid, base_weight, basis)
  if grid is not None:
    grid = jnp.asarray(grid)
    grid = jax.lax.stop_gradient(grid.astype(jnp.promote_types(grid.dtype, _F32)))  # float64 grids stay float64
  if impl == "xla":
    return _xla(x, coef, basis=basis, grid=grid, base_weight=base_weight)
  reason = _unsupported(x, coef, base_weight)
  if reason is not None:
    if impl == "pallas":
      raise ValueError(f"kan: impl='pallas' cannot run: {reason}. Use impl='auto' or 'xla'.")
    _log.info("kan: falling back to the XLA reference: %s.", reason)
    return _xla(x, coef, basis=basis, grid=grid, base_weight=base_weight)

  lead, n_in = x.shape[:-1], x.shape[-1]
  x2 = x.reshape(-1, n_in)

  def run(which: str):
    cfg = _Config(basis=basis, backend=which, blocks=block_sizes or BlockSizes.get_default(which),
                  interpret=interpret, has_base=base_weight is not None)
    return lambda: _fused(x2, coef, grid, base_weight, cfg)

  if interpret or backend is not None:
    y = run(backend or "gpu")()
  else:
    _log.debug("kan: impl=%r: Pallas kernels for cuda (Triton) and tpu (Mosaic); the XLA reference on other "
               "platforms (chosen at lowering time).", impl)
    y = jax.lax.platform_dependent(
        cuda=run("gpu"), tpu=run("tpu"),
        default=lambda: _xla(x2, coef, basis=basis, grid=grid, base_weight=base_weight))
  return y.reshape(*lead, y.shape[-1])
