"""The univariate bases of the KAN layers (:mod:`zoo.kernels.kan_basis` documents them and re-exports the public names).

One evaluator, :func:`_evaluate`, written with elementary ops only, so that the XLA reference, the Triton kernels and
the Mosaic kernels compute the same numbers from the same code: B-splines (Cox-de Boor on per-input knots), ReLU-KAN's
squared-ReLU bumps, AF-KAN's activation-function pairs, Gaussian RBFs, Mexican-hat wavelets, Fourier and Chebyshev
terms; :class:`Basis` describes one, :func:`make_grid` builds its knots.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ACTIVATIONS", "AF_FUNCS", "Basis", "BasisLike", "check_grid_range", "make_grid", "num_basis", "num_knots"]

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


