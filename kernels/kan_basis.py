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

Parts, as every kernel in zoo (DESIGN.md, "Kernels"): :class:`BlockSizes` with ``get_default()``; the kernel bodies
(GPU: grid over output tiles with an in-kernel loop over the contracted axis; TPU: the contracted axis is the last,
"arbitrary" grid axis with a VMEM accumulator); :func:`kan`, the public entry point with ``impl='auto' | 'pallas' |
'xla'`` that picks the backend with ``jax.lax.platform_dependent`` and wires the fused backward with
``jax.custom_vjp``; and :func:`reference`, plain ``jnp``, the test oracle and the fallback. Also public:
:func:`basis_values` (the ``[..., in, num_basis]`` tensor, for grid updates and analysis), :func:`bspline_basis`
(the textbook B-spline basis, equal to ``scipy.interpolate.BSpline.design_matrix``) and :func:`make_grid`.

Block sizes: the defaults are reasoned, not tuned (no GPU or TPU was available when this was written); pass
``block_sizes=`` to tune. The first KAN paper: Liu et al., "KAN: Kolmogorov-Arnold Networks", 2024, arXiv
2404.19756; ReLU-KAN: Qiu et al., 2024, arXiv 2406.02075; AF-KAN: Ta & Tran, 2025, arXiv 2503.06112.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltr

__all__ = ["ACTIVATIONS", "AF_FUNCS", "Basis", "BlockSizes", "basis_values", "bspline_basis", "check_grid_range",
           "kan", "make_grid", "num_basis", "num_knots", "reference"]

_log = logging.getLogger(__name__)

_F32 = jnp.float32


# ---------------------------------------------------------------------------------------------------- bases


def _silu(x):
  return x / (1.0 + jnp.exp(-x))


_SQRT1_2 = 1.0 / math.sqrt(2.0)


def _erf(x):
  # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): Triton's Pallas lowering has no erf primitive, and one formula on
  # every path keeps the kernel and the reference equal.
  a = jnp.abs(x)
  t = 1.0 / (1.0 + 0.3275911 * a)
  poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
  r = 1.0 - poly * jnp.exp(-a * a)
  return jnp.where(x < 0, -r, r)

_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# Written with elementary ops only, so the same code lowers through Triton, Mosaic and XLA.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": _silu,
    "relu": lambda x: jnp.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x * _SQRT1_2)),
    "selu": lambda x: _SELU_SCALE * jnp.where(x > 0, x, _SELU_ALPHA * (jnp.exp(jnp.minimum(x, 0.0)) - 1.0)),
    "elu": lambda x: jnp.where(x > 0, x, jnp.exp(jnp.minimum(x, 0.0)) - 1.0),
    "leaky_relu": lambda x: jnp.where(x > 0, x, 0.01 * x),
    "softplus": lambda x: jnp.maximum(x, 0.0) + jnp.log(1.0 + jnp.exp(-jnp.abs(x))),
    "sigmoid": lambda x: 1.0 / (1.0 + jnp.exp(-x)),
    "tanh": jnp.tanh,
}

# AF-KAN's function types of x1 = a(x - s), x2 = a(e - x) (Ta & Tran 2025, Sec. 3).
AF_FUNCS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "quad1": lambda a, b: (a * b) * (a * b),
    "quad2": lambda a, b: a * b + a * a + b * b,
    "sum": lambda a, b: a + b,
    "prod": lambda a, b: a * b,
    "sum_prod": lambda a, b: a + b + a * b,
    "cubic1": lambda a, b: (a + b) * (a * a + b * b),
    "cubic2": lambda a, b: (a * b) * (a * b) * (a * b),
}

_KINDS = ("bspline", "relu", "af", "rbf", "wavelet", "fourier", "chebyshev")


@dataclasses.dataclass(frozen=True)
class Basis:
  """One family of univariate basis functions (see the table in the module docstring).

  Build with the class methods (``Basis.bspline(grid_size=5, order=3)`` ...). Hashable: it is a static argument.

  Attributes:
    kind: one of ``bspline``, ``relu``, ``af``, ``rbf``, ``wavelet``, ``fourier``, ``chebyshev``.
    size: K, the number of basis functions.
    order: the spline order (bspline, relu, af).
    activation: AF-KAN's activation (a key of :data:`ACTIVATIONS`).
    func: AF-KAN's function type (a key of :data:`AF_FUNCS`).
    frequency: the Fourier basis's fundamental frequency w: cos(j w x), sin(j w x).
  """
  kind: str
  size: int
  order: int = 0
  activation: str = "silu"
  func: str = "quad1"
  frequency: float = 1.0

  def __post_init__(self):
    if self.kind not in _KINDS:
      raise ValueError(f"Basis: `kind` must be one of {_KINDS}; got {self.kind!r}.")
    if self.size < 1:
      raise ValueError(f"Basis: `size` must be >= 1; got {self.size}.")
    if self.order < 0:
      raise ValueError(f"Basis: `order` must be >= 0; got {self.order}.")
    if self.kind == "fourier" and self.size % 2:
      raise ValueError(f"Basis: a Fourier basis has 2 * grid_size functions (cos and sin); got size {self.size}.")
    if self.kind in ("bspline", "relu", "af") and self.size - self.order < 1:
      raise ValueError(f"Basis: a {self.kind} basis needs grid_size >= 1 (size K = grid_size + order); got size "
                       f"{self.size} with order {self.order}, i.e. grid_size {self.size - self.order}.")
    if self.kind in ("rbf", "wavelet") and self.size < 2:
      raise ValueError(f"Basis: {self.kind} needs at least 2 centres; got size {self.size}.")
    if self.kind == "af":
      if self.activation not in ACTIVATIONS:
        raise ValueError(f"Basis: `activation` must be one of {sorted(ACTIVATIONS)}; got {self.activation!r}.")
      if self.func not in AF_FUNCS:
        raise ValueError(f"Basis: `func` must be one of {sorted(AF_FUNCS)}; got {self.func!r}.")

  @classmethod
  def bspline(cls, grid_size: int = 5, order: int = 3) -> Basis:
    """B-splines of ``order`` on ``grid_size`` intervals (K = grid_size + order), as in the original KAN."""
    return cls("bspline", grid_size + order, order)

  @classmethod
  def relu(cls, grid_size: int = 5, order: int = 3) -> Basis:
    """ReLU-KAN's basis (K = grid_size + order)."""
    return cls("relu", grid_size + order, order)

  @classmethod
  def af(cls, grid_size: int = 5, order: int = 3, activation: str = "silu", func: str = "quad1") -> Basis:
    """AF-KAN's activation-function basis (K = grid_size + order), before its normalisation."""
    return cls("af", grid_size + order, order, activation, func)

  @classmethod
  def rbf(cls, num_centers: int = 8) -> Basis:
    """Gaussian radial basis functions (FastKAN's form)."""
    return cls("rbf", num_centers)

  @classmethod
  def wavelet(cls, num_centers: int = 8) -> Basis:
    """Mexican-hat wavelets at fixed translations (a wavelet frame; see ``zoo.kan`` for how this relates to Wav-KAN)."""
    return cls("wavelet", num_centers)

  @classmethod
  def fourier(cls, grid_size: int = 5, frequency: float = 1.0) -> Basis:
    """cos(j w x), sin(j w x) for j = 1..grid_size (FourierKAN and Fourier-KArAt use w = 1); K = 2 * grid_size."""
    return cls("fourier", 2 * grid_size, frequency=float(frequency))

  @classmethod
  def chebyshev(cls, degree: int = 4) -> Basis:
    """Chebyshev polynomials T_0..T_degree of tanh(x) (ChebyKAN); K = degree + 1."""
    return cls("chebyshev", degree + 1)

  @property
  def num_knots(self) -> int:
    """Grid columns this basis reads per input."""
    if self.kind in ("bspline", "relu", "af"):
      return self.size + self.order + 1
    if self.kind in ("rbf", "wavelet"):
      return self.size
    return 0


BasisLike = Basis | Sequence[Basis]


def _as_tuple(basis: BasisLike) -> tuple[Basis, ...]:
  if isinstance(basis, Basis):
    return (basis,)
  basis = tuple(basis)
  if not basis or not all(isinstance(b, Basis) for b in basis):
    raise TypeError(f"kan: `basis` must be a Basis or a non-empty sequence of Basis; got {basis!r}.")
  return basis


def num_basis(basis: BasisLike) -> int:
  """K, the length of the basis axis (summed over a tuple of bases)."""
  return sum(b.size for b in _as_tuple(basis))


def num_knots(basis: BasisLike) -> int:
  """Grid columns per input (summed over a tuple of bases, in order)."""
  return sum(b.num_knots for b in _as_tuple(basis))


def check_grid_range(lo: float, hi: float, *, where: str = "make_grid") -> None:
  """Raises unless ``lo < hi`` are finite numbers (an empty or reversed range zeroes every spline basis function)."""
  try:
    lo_f, hi_f = float(lo), float(hi)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return  # traced bounds: checked where they are concrete
  if not (np.isfinite(lo_f) and np.isfinite(hi_f) and lo_f < hi_f):
    raise ValueError(f"{where}: `grid_range` must be (lo, hi) with finite lo < hi; got ({lo!r}, {hi!r}).")


def make_grid(basis: BasisLike, in_features: int, lo: float = -1.0, hi: float = 1.0, dtype=_F32) -> jax.Array | None:
  """The default uniform grid ``[in_features, num_knots]`` on ``[lo, hi]`` (None if the basis needs no grid).

  Spline-like bases (bspline, relu, af) get ``grid_size`` intervals on ``[lo, hi]`` extended by ``order`` knots on
  each side (efficient-kan's and ReLU-KAN's convention); rbf/wavelet get ``K`` evenly spaced centres.
  """
  check_grid_range(lo, hi)
  cols = []
  for b in _as_tuple(basis):
    if b.kind in ("bspline", "relu", "af"):
      g = b.size - b.order
      h = (hi - lo) / g
      cols.append(lo + h * jnp.arange(-b.order, g + b.order + 1, dtype=dtype))
    elif b.kind in ("rbf", "wavelet"):
      cols.append(jnp.linspace(lo, hi, b.size, dtype=dtype))
  if not cols:
    return None
  row = jnp.concatenate(cols)
  return jnp.broadcast_to(row, (in_features, row.shape[0])).astype(dtype)


def _inv(d):
  # 0/0 := 0, the textbook convention for repeated knots.
  safe = jnp.where(d != 0, d, 1.0)
  return jnp.where(d != 0, 1.0 / safe, 0.0)


def _bspline(x, knot, n_knots, order):
  t = [knot(j) for j in range(n_knots)]
  b = [jnp.where((x >= t[j]) & (x < t[j + 1]), 1.0, 0.0) for j in range(n_knots - 1)]
  for p in range(1, order + 1):
    b = [(x - t[j]) * _inv(t[j + p] - t[j]) * b[j] + (t[j + p + 1] - x) * _inv(t[j + p + 1] - t[j + 1]) * b[j + 1]
         for j in range(n_knots - 1 - p)]
  return b


def _evaluate(x, knot: Callable[[int], jax.Array], basis: tuple[Basis, ...]) -> list[jax.Array]:
  """The basis functions of ``x`` (float32, any 2-D tile) as a list of K arrays shaped like ``x``.

  ``knot(j)`` returns grid column ``j`` shaped to broadcast against ``x`` (``[1, cols]`` in a kernel tile). This is
  the only definition of the bases: the kernels, the reference and the derivatives (by ``jax.jvp``) all use it.
  """
  out = []
  offset = 0
  for b in basis:
    kn = functools.partial(lambda o, j: knot(o + j), offset)
    if b.kind == "bspline":
      out += _bspline(x, kn, b.num_knots, b.order)
    elif b.kind in ("relu", "af"):
      for k in range(b.size):
        s, e = kn(k), kn(k + b.order + 1)
        if b.kind == "relu":
          r = jnp.maximum(e - x, 0.0) * jnp.maximum(x - s, 0.0)
          w = _inv(e - s)
          w2 = w * w
          out.append(r * r * (16.0 * w2 * w2))
        else:
          act = ACTIVATIONS[b.activation]
          out.append(AF_FUNCS[b.func](act(x - s), act(e - x)))
    elif b.kind in ("rbf", "wavelet"):
      inv_h = _inv((kn(b.size - 1) - kn(0)) * (1.0 / (b.size - 1)))
      for k in range(b.size):
        u = (x - kn(k)) * inv_h
        u2 = u * u
        if b.kind == "rbf":
          out.append(jnp.exp(-u2))
        else:
          out.append((2.0 / (math.sqrt(3.0) * math.pi ** 0.25)) * (1.0 - u2) * jnp.exp(-0.5 * u2))
    elif b.kind == "fourier":
      g = b.size // 2
      w = b.frequency
      out += [jnp.cos((j * w) * x) for j in range(1, g + 1)]
      out += [jnp.sin((j * w) * x) for j in range(1, g + 1)]
    elif b.kind == "chebyshev":
      t = jnp.tanh(x)
      cheb = [jnp.ones_like(x), t]
      while len(cheb) < b.size:
        cheb.append(2.0 * t * cheb[-1] - cheb[-2])
      out += cheb[:b.size]
    offset += b.num_knots
  return out


def _values_and_derivatives(x, knot, basis):
  return jax.jvp(lambda v: _evaluate(v, knot, basis), (x,), (jnp.ones_like(x),))


def _silu_and_derivative(x):
  return jax.jvp(_silu, (x,), (jnp.ones_like(x),))


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
