"""Infinitely wide and deep networks as kernels: dual activations, the NNGP/NTK depth recursion, kernel classifiers.

Paper: "Wide and Deep Neural Networks Achieve Consistency for Classification" (Radhakrishnan, Belkin, Uhler, PNAS
2023, arXiv 2204.14126; first titled "Wide and Deep Neural Networks Achieve Optimality for Classification").
Reference code: github.com/uhlerlab/inf_depth_ntks (read, not copied).

Inputs lie on the unit sphere. An activation ``phi`` normalised so that ``E[phi(z)^2] = 1`` (``z ~ N(0, 1)``) has
the *normalised dual activation* ``xi(rho) = E[phi(u) phi(v)]`` for unit-variance Gaussians ``u, v`` with
correlation ``rho``; ``xi(1) = 1``. An infinitely wide network with ``L`` hidden layers has

  NNGP  ``Sigma^0 = x^T x'``,  ``Sigma^{l+1} = xi(Sigma^l)``                         (the kernel at init)
  NTK   ``K^0 = Sigma^0``,     ``K^{l+1} = Sigma^{l+1} + K^l xi'(Sigma^l)``             (the kernel of training)

and the ridgeless kernel classifier ``sign(y^T K^{-1} k(x))``. As ``L -> infinity`` that classifier tends to the
majority vote, to 1-NN, or to a singular kernel classifier, depending on ``xi``: ReLU (``xi(rho) > rho``) sends every
kernel entry to the same constant, so the ReLU NTK becomes the majority vote; the paper constructs activations
whose infinite-depth NNGP is the Bayes-consistent Devroye/Hilbert kernel ``sum_i y_i / ||x - x_i||^d`` on data of
intrinsic dimension ``d`` (``'2d_opt'``: ``xi = rho^7 / 2 + rho / 2`` for data on the circle ``S^1``). With
``xi(0) = 0`` and ``xi'(0) = b < 1`` the NNGP entries off the diagonal shrink like ``b^L`` (``2^-2000`` underflows
even float64), so :func:`deep_nngp` can run the recursion on ``log|Sigma|`` (``log_space=True``) and
:func:`kernel_classify` takes such log kernels.

Public names (``x1: [n1, features]``, ``x2: [n2, features]`` unit vectors; kernels ``[n1, n2]``):

* ``DualActivation`` / ``dual_activation(name_or_coefficients)``: ``xi`` and ``xi'`` for ``'relu'`` (normalised
  arc-cosine), ``'erf'``, ``'sine_<a>'`` (``sinh(a rho)/sinh(a)``), the paper's constructed ``'2d_opt'``,
  ``'3d_opt'``, ``'5d_opt'``, ``'9d_opt'``, or any polynomial ``xi = sum_k a_k rho^k`` (``a_k >= 0``, normalised to
  ``sum a_k = 1``) given by its coefficients ``[a_0, a_1, ...]``.
* ``hermite_activation(coefficients)``: the activation ``phi(z) = sum_k sqrt(a_k / k!) He_k(z)`` whose dual is that
  polynomial (for finite-width Monte-Carlo checks); ``normalized_relu(z) = sqrt(2) relu(z)`` is ReLU's.
* ``deep_nngp(x1, x2, depth, activation, log_space=False)``: ``Sigma^depth`` (or ``(sign, log|Sigma^depth|)``).
* ``deep_ntk(x1, x2, depth, activation, normalize=False)``: ``K^depth`` (``/ (depth + 1)`` if ``normalize``: the
  ReLU NTK's diagonal is ``depth + 1``).
* ``kernel_regress(k_train, y_train, k_test, ridge=0.)``: ``k_test^T (K + ridge I)^{-1} y`` ``[n_test, ...]``.
* ``kernel_classify(k_train, y_train, k_test, ridge=0.)``: ``sign`` of that for ``y`` in {-1, +1} ``[n_test]``; the
  kernels may be ``(sign, log|K|)`` pairs from ``deep_nngp(..., log_space=True)``.
* Baselines: ``majority_vote(y_train, n_test)``, ``one_nn(x_train, y_train, x_test)``,
  ``hilbert_classifier(x_train, y_train, x_test, dim=None)`` (Devroye's ``sum_i y_i / ||x - x_i||^dim``, ``dim``
  the intrinsic dimension, default ``features - 1`` for data on the sphere).
* ``NTKMLP``: a finite-width MLP in NTK parameterisation (weights ``N(0, 1)``, each layer scaled by
  ``1/sqrt(fan_in)``, no biases) with a normalised activation; ``empirical_ntk(model, variables, x1, x2)`` its
  finite-width NTK. For large width the output covariance over inits tends to ``deep_nngp`` and ``empirical_ntk``
  to ``deep_ntk`` (checked in tests/test_ntk.py: neural-tangents is not a dependency).

Every function is jit-able (``depth`` and ``activation`` static); the recursion is one ``lax.fori_loop``, so depth
``5 * 10^4`` compiles once and runs in seconds. Compute dtype follows the inputs: pass float64 arrays inside
``jax.enable_x64()`` for deep ReLU NTKs, whose entries approach each other to ~``1/depth^2``.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo.layers import check_shape, partitioned

__all__ = ["DualActivation", "NTKMLP", "deep_nngp", "deep_ntk", "dual_activation", "empirical_ntk",
           "hermite_activation", "hilbert_classifier", "kernel_classify", "kernel_regress", "majority_vote",
           "normalized_relu", "one_nn"]


class DualActivation(NamedTuple):
  """A normalised dual activation: ``xi(rho)``, its derivative ``dxi(rho)``, ``xi(0)`` (``xi0``), and where known
  the complement ``cxi(t) = 1 - xi(1 - t)`` computed without cancellation (for correlations near 1)."""
  name: str
  xi: Callable[[jax.Array], jax.Array]
  dxi: Callable[[jax.Array], jax.Array]
  xi0: float
  cxi: Callable[[jax.Array], jax.Array] | None = None


def _relu_xi(rho):
  rho = jnp.clip(rho, -1.0, 1.0)
  return (jnp.sqrt(jnp.maximum(1.0 - rho ** 2, 0.0)) + (jnp.pi - jnp.arccos(rho)) * rho) / jnp.pi


def _relu_dxi(rho):
  return (jnp.pi - jnp.arccos(jnp.clip(rho, -1.0, 1.0))) / jnp.pi


def _polynomial(coefficients: Sequence[float], name: str) -> DualActivation:
  coeffs = np.asarray(coefficients, np.float64)
  if coeffs.ndim != 1 or coeffs.size == 0:
    raise ValueError(f"dual_activation: polynomial coefficients must be a non-empty 1-D sequence; got shape "
                     f"{coeffs.shape}.")
  if not np.all(np.isfinite(coeffs)) or np.any(coeffs < 0) or coeffs.sum() <= 0:
    raise ValueError("dual_activation: a dual activation's Hermite coefficients a_k must be finite, >= 0 and not all "
                     f"zero (xi(rho) = sum a_k rho^k is a covariance); got {coeffs.tolist()}.")
  coeffs = coeffs / coeffs.sum()
  powers = [(k, float(a)) for k, a in enumerate(coeffs) if a > 0]

  def xi(rho):
    return sum(a * rho ** k for k, a in powers)

  def dxi(rho):
    return sum(a * k * rho ** (k - 1) for k, a in powers if k > 0) + 0.0 * rho

  def cxi(t):  # sum_k a_k (1 - (1 - t)^k), each term without cancellation for small t
    return sum(-a * jnp.expm1(k * jnp.log1p(-t)) for k, a in powers if k > 0) + 0.0 * t

  return DualActivation(name, xi, dxi, float(coeffs[0]), cxi)


# The paper's constructed activations (official code, models.py): infinite-depth NNGP = Devroye kernel for data of
# intrinsic dimension 2 -> '2d_opt' is for the circle S^1 (ambient dimension 2), and so on.
_CONSTRUCTED = {
    "2d_opt": [0, 0.5, 0, 0, 0, 0, 0, 0.5],
    "3d_opt": [0, 0.5, 0, 0.5],
    "5d_opt": [0, 0.25, 0.5, 0.25],
    "9d_opt": [0, 1 / 16, 7 / 8, 1 / 16],
}


@functools.lru_cache(maxsize=None)
def _named(name: str) -> DualActivation:
  if name == "relu":
    return DualActivation("relu", _relu_xi, _relu_dxi, 1.0 / math.pi)
  if name == "erf":
    c = 1.0 / math.asin(2.0 / 3.0)
    return DualActivation("erf", lambda r: c * jnp.arcsin(2.0 * r / 3.0),
                          lambda r: c * (2.0 / 3.0) / jnp.sqrt(1.0 - 4.0 * r ** 2 / 9.0), 0.0)
  match = re.fullmatch(r"sine_([0-9.]+)", name)
  if match:
    a = float(match.group(1))
    if not a > 0:
      raise ValueError(f"dual_activation: 'sine_<a>' needs a > 0; got {name!r}.")
    # 1 - sinh(a (1 - t)) / sinh(a) = 2 cosh(a (1 - t/2)) sinh(a t / 2) / sinh(a)
    return DualActivation(name, lambda r: jnp.sinh(a * r) / math.sinh(a), lambda r: a * jnp.cosh(a * r) / math.sinh(a),
                          0.0, lambda t: 2 * jnp.cosh(a * (1 - t / 2)) * jnp.sinh(a * t / 2) / math.sinh(a))
  if name in _CONSTRUCTED:
    return _polynomial(_CONSTRUCTED[name], name)
  raise ValueError(f"dual_activation: unknown activation {name!r}; use 'relu', 'erf', 'sine_<a>', "
                   f"{', '.join(repr(k) for k in _CONSTRUCTED)} or a list of polynomial coefficients [a_0, a_1, ...].")


def dual_activation(activation: str | Sequence[float] | DualActivation) -> DualActivation:
  """The normalised dual activation ``xi`` (with ``xi'``) for a name or polynomial coefficients (module docstring)."""
  if isinstance(activation, DualActivation):
    return activation
  if isinstance(activation, str):
    return _named(activation)
  coeffs = tuple(float(a) for a in np.ravel(np.asarray(activation, np.float64)))
  if np.ndim(activation) != 1:
    raise ValueError(f"dual_activation: polynomial coefficients must be a 1-D sequence; got {activation!r}.")
  return _cached_polynomial(coeffs)


@functools.lru_cache(maxsize=None)
def _cached_polynomial(coeffs: tuple[float, ...]) -> DualActivation:
  # one DualActivation object per coefficient tuple, so jit (which keys on it statically) compiles once
  return _polynomial(coeffs, "poly" + str(list(coeffs)))


def normalized_relu(z: jax.Array) -> jax.Array:
  """``sqrt(2) relu(z)``: ``E[phi(z)^2] = 1``; its dual activation is ``dual_activation('relu')``."""
  return jnp.sqrt(2.0).astype(z.dtype) * jax.nn.relu(z)


def hermite_activation(coefficients: Sequence[float]) -> Callable[[jax.Array], jax.Array]:
  """``phi(z) = sum_k sqrt(a_k / k!) He_k(z)`` (``a`` normalised to sum 1): its dual is ``sum_k a_k rho^k``.

  Probabilists' Hermite polynomials satisfy ``E[He_j(u) He_k(v)] = k! rho^k [j = k]``, hence the dual.
  """
  dual = dual_activation(coefficients)  # validates and normalises
  coeffs = np.asarray(coefficients, np.float64)
  coeffs = coeffs / coeffs.sum()
  del dual
  weights = np.array([math.sqrt(a / math.factorial(k)) for k, a in enumerate(coeffs)])
  # He_k as a power series (numpy's HermiteE basis -> monomials), highest degree first for polyval.
  power = np.polynomial.hermite_e.herme2poly(weights)[::-1]

  def phi(z):
    return jnp.polyval(jnp.asarray(power, z.dtype), z)

  return phi


def _check_pair(x1, x2, where: str):
  check_shape(x1, "x1", "n1 features", where=where, dtype="floating")
  check_shape(x2, "x2", "n2 features", where=where, dtype="floating", features=x1.shape[1])
  if x1.shape[0] == 0 or x2.shape[0] == 0:
    raise ValueError(f"{where}: `x1` and `x2` must hold at least one point each; got shapes {x1.shape}, {x2.shape}.")


def _check_depth(depth, where: str) -> int:
  if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
    raise ValueError(f"{where}: `depth` must be an integer >= 0; got {depth!r}.")
  return int(depth)


def _gram(x1, x2):
  dtype = jnp.promote_types(x1.dtype, x2.dtype)
  rho = jnp.clip(x1.astype(dtype) @ x2.astype(dtype).T, -1.0, 1.0)
  # A point's inner product with itself is 1 only up to rounding; rho = 1 is a repelling fixed point of the
  # paper's constructed xi (xi'(1) > 1), which would amplify that rounding by xi'(1)^depth. Pairs within a few ulps
  # of +-1 are therefore the same point (or its antipode), as they are in exact arithmetic.
  snap = 1.0 - 16 * jnp.finfo(dtype).eps
  return jnp.where(rho >= snap, 1.0, jnp.where(rho <= -snap, -1.0, rho))


@functools.partial(jax.jit, static_argnames=("depth", "dual"))
def _nngp(rho, depth: int, dual: DualActivation):
  return jax.lax.fori_loop(0, depth, lambda _, s: jnp.clip(dual.xi(s), -1.0, 1.0), rho)


@functools.partial(jax.jit, static_argnames=("depth", "dual"))
def _nngp_log(rho, gap, depth: int, dual: DualActivation):
  # Two representations of Sigma per entry. Near 1 (the paper's xi repels from 1: xi'(1) > 1), the gap
  # t = 1 - Sigma, updated by t <- cxi(t) = 1 - xi(1 - t) without cancellation, so neighbours closer than float
  # resolution of rho stay distinct. Elsewhere sign and log|Sigma|: Sigma' = Sigma r(Sigma), r = xi(Sigma) / Sigma
  # (xi(0) = 0), r -> xi'(0) as Sigma -> 0, so log|Sigma'| = log|Sigma| + log|r| stays finite long after Sigma
  # underflows. Once every entry is at a fixed point (t = 0 or |Sigma| = 1) or below float resolution (where r is
  # exactly xi'(0)), each further layer adds the same log|r|: those layers are added in closed form.
  tiny = jnp.finfo(rho.dtype).eps
  use_gap = dual.cxi is not None

  def ratio(sign, logabs):
    sigma = sign * jnp.exp(logabs)
    small = jnp.abs(sigma) <= tiny
    safe = jnp.where(small, 1.0, sigma)
    return jnp.where(small, dual.dxi(jnp.zeros_like(sigma)), dual.xi(safe) / safe)

  def moving(carry):
    _, near, t, sign, logabs = carry
    a = jnp.abs(sign * jnp.exp(logabs))
    return jnp.where(near, t > 0, (a > tiny) & (a < 1.0))

  def cond(carry):
    return (carry[0] < depth) & jnp.any(moving(carry))

  def body(carry):
    layer, near, t, sign, logabs = carry
    r = ratio(sign, logabs)
    far_sign, far_log = sign * jnp.sign(r), logabs + jnp.log(jnp.abs(r))
    if not use_gap:
      return layer + 1, near, t, far_sign, far_log
    t_new = dual.cxi(jnp.where(near, t, 0.0))
    still = near & (t_new < 0.5)
    leaving = near & ~still
    sign = jnp.where(leaving, jnp.sign(1 - t_new), far_sign)
    logabs = jnp.where(leaving, jnp.log(jnp.abs(1 - t_new)), far_log)
    return layer + 1, still, jnp.where(still, t_new, 0.0), sign, logabs

  near = (gap < 0.5) if use_gap else jnp.zeros(rho.shape, bool)
  init = (jnp.zeros((), jnp.int32), near, jnp.where(near, gap, 0.0), jnp.where(near, 1.0, jnp.sign(rho)),
          jnp.where(near, 0.0, jnp.log(jnp.abs(rho))))
  layer, near, t, sign, logabs = jax.lax.while_loop(cond, body, init)
  # entries still near 1 here are fixed points (t = 0): Sigma = 1 for the remaining layers
  r = jnp.where(near, 1.0, ratio(sign, logabs))
  rest = (depth - layer).astype(rho.dtype)
  flips = jnp.where((r < 0) & (jnp.mod(depth - layer, 2) == 1), -1.0, 1.0)
  sign = jnp.where(near, 1.0, sign * flips)
  return sign, jnp.where(near, jnp.log1p(-t), logabs + rest * jnp.log(jnp.abs(r)))


@functools.partial(jax.jit, static_argnames=("depth", "dual"))
def _ntk(rho, depth: int, dual: DualActivation):
  def body(_, carry):
    sigma, k = carry
    new = jnp.clip(dual.xi(sigma), -1.0, 1.0)
    return new, new + k * dual.dxi(sigma)

  return jax.lax.fori_loop(0, depth, body, (rho, rho))[1]


def deep_nngp(x1: jax.Array, x2: jax.Array, depth: int, activation: Any = "relu", *, log_space: bool = False):
  """The NNGP kernel ``Sigma^depth(x1, x2)`` ``[n1, n2]`` of a network with ``depth`` hidden layers.

  Args:
    x1: ``[n1, features]`` unit vectors. x2: ``[n2, features]`` unit vectors.
    depth: the number of hidden layers ``L >= 0`` (0 gives ``x1 x2^T``).
    activation: a name or polynomial coefficients (see :func:`dual_activation`).
    log_space: return ``(sign, log|Sigma|)`` (each ``[n1, n2]``), computed without underflow; needs ``xi(0) = 0``.
  """
  _check_pair(x1, x2, "deep_nngp")
  depth = _check_depth(depth, "deep_nngp")
  dual = dual_activation(activation)
  rho = _gram(x1, x2)
  if not log_space:
    return _nngp(rho, depth, dual)
  if dual.xi0 != 0.0:
    raise ValueError(f"deep_nngp: log_space needs xi(0) = 0 (entries then shrink geometrically); {dual.name!r} has "
                     f"xi(0) = {dual.xi0:.4g}, whose kernel does not underflow: use log_space=False.")
  # the gap 1 - rho = ||x1 - x2||^2 / 2 from differences: exact for close points, where 1 - x1.x2 cancels
  dtype = rho.dtype
  gap = 0.5 * jnp.sum((x1.astype(dtype)[:, None, :] - x2.astype(dtype)[None, :, :]) ** 2, axis=-1)
  return _nngp_log(rho, gap, depth, dual)


def deep_ntk(x1: jax.Array, x2: jax.Array, depth: int, activation: Any = "relu", *, normalize: bool = False):
  """The NTK ``K^depth(x1, x2)`` ``[n1, n2]`` of a network with ``depth`` hidden layers (module docstring).

  ``normalize=True`` divides by ``depth + 1`` (the ReLU NTK's value on the diagonal), which changes no classifier.
  """
  _check_pair(x1, x2, "deep_ntk")
  depth = _check_depth(depth, "deep_ntk")
  k = _ntk(_gram(x1, x2), depth, dual_activation(activation))
  return k / (depth + 1) if normalize else k


def _as_kernel(k, name: str, where: str, rows: int | None = None):
  """A kernel ``[a, b]`` or a ``(sign, log|k|)`` pair -> (sign, logabs) or (k, None)."""
  if isinstance(k, tuple):
    if len(k) != 2:
      raise ValueError(f"{where}: `{name}` as a log kernel must be a (sign, log|k|) pair; got {len(k)} arrays.")
    check_shape(k[0], f"{name}[0]", "a b", where=where, dtype="number", a=rows)
    check_shape(k[1], f"{name}[1]", "a b", where=where, dtype="floating", a=rows, b=k[0].shape[1])
    return k
  check_shape(k, name, "a b", where=where, dtype="floating", a=rows)
  return k, None


def kernel_regress(k_train, y_train: jax.Array, k_test, ridge: float = 0.0) -> jax.Array:
  """Kernel (ridge/ridgeless) regression ``k_test^T (K + ridge I)^{-1} y``.

  Args:
    k_train: ``[n, n]`` train Gram matrix, or a ``(sign, log|K|)`` pair.
    y_train: ``[n]`` or ``[n, outputs]`` targets.
    k_test: ``[n, n_test]`` kernel between train and test points (train first, as ``deep_*(x_train, x_test)``
      returns it), or a ``(sign, log|k|)`` pair.
    ridge: ``>= 0``; 0 is the paper's ridgeless (interpolating) solution.

  Returns: ``[n_test]`` or ``[n_test, outputs]``. With log kernels the prediction is returned up to a positive
  per-test-point factor ``exp(-max_i log|k_i|)`` (signs and ratios exact): what a classifier needs.
  """
  where = "kernel_regress"
  if not ridge >= 0:
    raise ValueError(f"{where}: `ridge` must be >= 0; got {ridge}.")
  y = jnp.asarray(y_train)
  if y.ndim not in (1, 2) or y.shape[0] == 0:
    raise ValueError(f"{where}: `y_train` must have shape [n] or [n, outputs] with n >= 1; got {y.shape}.")
  n = y.shape[0]
  train_sign, train_log = _as_kernel(k_train, "k_train", where, rows=n)
  if train_sign.shape != (n, n):
    raise ValueError(f"{where}: `k_train` must be [n, n] = [{n}, {n}]; got {train_sign.shape}.")
  test_sign, test_log = _as_kernel(k_test, "k_test", where, rows=n)
  gram = train_sign if train_log is None else train_sign * jnp.exp(train_log)
  gram = gram + ridge * jnp.eye(n, dtype=gram.dtype)
  alpha = jnp.linalg.solve(gram, y.astype(gram.dtype))
  if test_log is None:
    return test_sign.T @ alpha
  scaled = test_sign * jnp.exp(test_log - jnp.max(test_log, axis=0, keepdims=True))  # exact up to a column factor
  return scaled.T.astype(alpha.dtype) @ alpha


def _check_labels(y, where: str):
  y = jnp.asarray(y)
  if y.ndim != 1 or y.shape[0] == 0:
    raise ValueError(f"{where}: `y_train` must be [n] labels in {{-1, +1}} with n >= 1; got shape {y.shape}.")
  if not isinstance(y, jax.core.Tracer) and not bool(jnp.all(jnp.abs(y) == 1)):
    raise ValueError(f"{where}: `y_train` must hold labels -1 or +1; got values {np.unique(np.asarray(y))[:5]}.")
  return y


def kernel_classify(k_train, y_train: jax.Array, k_test, ridge: float = 0.0) -> jax.Array:
  """The paper's classifier ``sign(y^T (K + ridge I)^{-1} k(x))`` ``[n_test]`` in {-1, +1} (ties -> +1).

  ``y_train``: ``[n]`` in {-1, +1}; kernels as in :func:`kernel_regress`.
  """
  y = _check_labels(y_train, "kernel_classify")
  return jnp.where(kernel_regress(k_train, y, k_test, ridge) < 0, -1, 1)


def majority_vote(y_train: jax.Array, n_test: int) -> jax.Array:
  """The majority label of ``y_train`` ``[n]`` (in {-1, +1}, ties -> +1), repeated ``[n_test]`` times."""
  y = _check_labels(y_train, "majority_vote")
  return jnp.full((n_test,), jnp.where(jnp.sum(y) < 0, -1, 1))


def one_nn(x_train: jax.Array, y_train: jax.Array, x_test: jax.Array) -> jax.Array:
  """1-nearest-neighbour labels ``[n_test]`` (Euclidean distance)."""
  check_shape(x_train, "x_train", "n features", where="one_nn", dtype="floating")
  check_shape(x_test, "x_test", "m features", where="one_nn", dtype="floating", features=x_train.shape[1])
  y = jnp.asarray(y_train)
  if y.shape[:1] != x_train.shape[:1] or x_train.shape[0] == 0:
    raise ValueError(f"one_nn: `y_train` must have one label per training point ({x_train.shape[0]} >= 1); got "
                     f"shape {y.shape}.")
  dist = jnp.sum(x_test ** 2, 1)[:, None] - 2 * x_test @ x_train.T + jnp.sum(x_train ** 2, 1)[None]
  return y[jnp.argmin(dist, axis=1)]


def hilbert_classifier(x_train: jax.Array, y_train: jax.Array, x_test: jax.Array, dim: int | None = None) -> jax.Array:
  """Devroye's Hilbert-kernel classifier ``sign(sum_i y_i / ||x - x_i||^dim)`` ``[n_test]``.

  ``dim``: the data's intrinsic dimension (default ``features - 1``, the sphere's), which makes the kernel
  Bayes-consistent (Devroye, Gyorfi, Krzyzak 1998). A test point equal to a training point takes that point's label.
  """
  check_shape(x_train, "x_train", "n features", where="hilbert_classifier", dtype="floating")
  check_shape(x_test, "x_test", "m features", where="hilbert_classifier", dtype="floating",
              features=x_train.shape[1])
  y = _check_labels(y_train, "hilbert_classifier")
  if y.shape[0] != x_train.shape[0]:
    raise ValueError(f"hilbert_classifier: `y_train` must be [{x_train.shape[0]}]; got {y.shape}.")
  dim = x_train.shape[1] - 1 if dim is None else dim
  if not dim > 0:
    raise ValueError(f"hilbert_classifier: `dim` must be > 0; got {dim}.")
  sq = jnp.maximum(jnp.sum(x_test ** 2, 1)[:, None] - 2 * x_test @ x_train.T + jnp.sum(x_train ** 2, 1)[None], 0.0)
  # log-domain weights 1/||x - x_i||^dim, shifted per test point, so close points neither overflow nor vanish
  logw = -0.5 * dim * jnp.log(jnp.maximum(sq, jnp.finfo(sq.dtype).tiny))
  w = jnp.exp(logw - jnp.max(logw, axis=1, keepdims=True))
  return jnp.where(w @ y.astype(w.dtype) < 0, -1, 1)


class NTKMLP(nn.Module):
  """A finite-width MLP in NTK parameterisation, whose infinite-width kernels are :func:`deep_nngp`/:func:`deep_ntk`.

  ``h^1 = W^1 x / sqrt(d)``, ``h^{l+1} = W^{l+1} phi(h^l) / sqrt(width)``, output ``W^{L+1} phi(h^L) /
  sqrt(width)``; all ``W ~ N(0, 1)``, no biases, ``phi`` normalised (``E phi(z)^2 = 1``). Inputs on the unit sphere
  are multiplied by ``sqrt(d)`` so that ``Sigma^0 = x^T x'`` as in the recursion.

  Attributes:
    depth: hidden layers ``L >= 1``. width: hidden width. outputs: output units.
    activation: ``'relu'`` (normalised), a constructed polynomial (``'2d_opt'`` ...) or polynomial dual
      coefficients (see :func:`hermite_activation`); the same value names its dual for :func:`deep_nngp`.

  Call: ``x: [batch, features]`` -> ``[batch, outputs]``.
  """
  depth: int = 3
  width: int = 512
  outputs: int = 1
  activation: Any = "relu"
  param_dtype: Any = jnp.float32

  def _phi(self):
    if isinstance(self.activation, str):
      if self.activation in _CONSTRUCTED:
        return hermite_activation(_CONSTRUCTED[self.activation])
      if self.activation != "relu":
        raise ValueError(f"NTKMLP: `activation` must be 'relu', one of {sorted(_CONSTRUCTED)} or polynomial dual "
                         f"coefficients; got {self.activation!r}.")
      return normalized_relu
    return hermite_activation(tuple(self.activation))

  @nn.compact
  def __call__(self, x):
    if self.depth < 1 or self.width < 1 or self.outputs < 1:
      raise ValueError(f"NTKMLP: `depth`, `width`, `outputs` must be >= 1; got {self.depth}, {self.width}, "
                       f"{self.outputs}.")
    check_shape(x, "x", "batch features", where="NTKMLP", dtype="floating")
    phi = self._phi()
    h = x * jnp.sqrt(x.shape[-1]).astype(x.dtype)
    widths = [self.width] * self.depth + [self.outputs]
    for i, out in enumerate(widths):
      w = self.param(f"w_{i}", partitioned(nn.initializers.normal(1.0), ("embed", "mlp") if i % 2 == 0
                                           else ("mlp", "embed")), (h.shape[-1], out), self.param_dtype)
      h = (phi(h) if i else h) @ w.astype(h.dtype) / jnp.sqrt(h.shape[-1]).astype(h.dtype)
    return h


def empirical_ntk(model: nn.Module, variables, x1: jax.Array, x2: jax.Array) -> jax.Array:
  """The finite-width NTK ``sum_theta df(x1)/dtheta df(x2)/dtheta`` ``[n1, n2]`` of a scalar-output model."""
  params = variables["params"]
  rest = {k: v for k, v in variables.items() if k != "params"}

  def f(p, x):
    out = model.apply({"params": p, **rest}, x)
    if out.ndim != 2 or out.shape[1] != 1:
      raise ValueError(f"empirical_ntk: the model must output [batch, 1]; got {out.shape}.")
    return out[:, 0]

  j1 = jax.tree.leaves(jax.jacobian(f)(params, x1))
  j2 = jax.tree.leaves(jax.jacobian(f)(params, x2))
  return sum(a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T for a, b in zip(j1, j2))
