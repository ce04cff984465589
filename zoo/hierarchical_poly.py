"""Hierarchical polynomial targets ``h = g(p(x))`` and the three-layer network that learns them layer-wise.

Paper: "Learning Hierarchical Polynomials with Three-Layer Neural Networks", Wang, Nichani and Lee, ICLR 2024
(arXiv 2311.13774). The training procedure (one GD step on the middle layer, then ridge on the outer layer) is
``zoo.recipes.procedures.hier_poly``; this module holds the model and the target.

* :func:`hierarchical_target` ``(rng, n, d) -> {'x' [n, d], 'y' [n], 'p' [n]}``: ``x ~ N(0, I_d)``, the quadratic
  feature ``p(x) = (x^T A x - tr A) / (sqrt(2) |A|_F)`` (``E p = 0``, ``E p^2 = 1``), ``y = g(p)`` with
  ``g(z) = z^3`` (``'cube'``, default) or ``He_3(z) = z^3 - 3z`` (``'he3'``). ``A = Q diag(+-1) Q^T`` with ``Q``
  Haar-random and balanced signs by default (``tr A = 0``; the flat spectrum keeps ``p`` close to Gaussian at small
  ``d``, which the paper's analysis needs: its degree-``k`` projection of ``g(p)`` is ``~ E[g'(z)] p``).
* :class:`ThreeLayerNet` ``(x [b, d]) -> [b]``: ``f(x) = a^T sigma_1(W phi(x) + b) + c`` with frozen random inner
  features ``phi(x) = sigma_2(V x)`` (``V [m2, d]`` rows on the unit sphere, in the ``'random_features'``
  collection), trainable ``W [m1, m2]``, ``b [m1]``, ``a [m1]``, ``c``. ``sigma_1 = ReLU``. ``sigma_2`` is
  ``'he2'`` (``He_2(z) / sqrt(2)``: ``phi`` spans exactly the degree-2 polynomials, the inner kernel of the paper's
  analysis for ``k = 2``; default) or ``'relu'``. Methods ``inner(x) -> [b, m2]``, ``preactivations(x) -> [b, m1]``
  (``W phi(x) + b``), ``hidden(x) -> [b, m1]`` (``sigma_1`` of them).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers

__all__ = ["INNER_ACTIVATIONS", "OUTER_FUNCTIONS", "ThreeLayerNet", "hierarchical_target", "quadratic_feature_matrix"]

Array = jax.Array

OUTER_FUNCTIONS = {"cube": lambda z: z ** 3, "he3": lambda z: z ** 3 - 3 * z}
"""The outer link ``g`` of the target."""

INNER_ACTIVATIONS = ("he2", "relu")


def quadratic_feature_matrix(rng: np.random.Generator, d: int, spectrum: str = "balanced") -> np.ndarray:
  """``A [d, d]`` symmetric: ``'balanced'`` = ``Q diag(+-1) Q^T`` (half +1, half -1, Haar ``Q``), or ``'goe'``
  (``(G + G^T) / 2``, Gaussian ``G``)."""
  if d < 2:
    raise ValueError(f"quadratic_feature_matrix: `d` must be >= 2; got {d}.")
  if spectrum == "goe":
    g = rng.standard_normal((d, d))
    return (g + g.T) / 2
  if spectrum != "balanced":
    raise ValueError(f"quadratic_feature_matrix: `spectrum` must be 'balanced' or 'goe'; got {spectrum!r}.")
  q, r = np.linalg.qr(rng.standard_normal((d, d)))
  q = q * np.sign(np.diag(r))
  signs = np.r_[np.ones(d // 2), -np.ones(d - d // 2)]
  return (q * signs) @ q.T


def hierarchical_target(rng: np.random.Generator, n: int, d: int, *, g: str = "cube",
                        A: np.ndarray | None = None) -> dict[str, np.ndarray]:  # pylint: disable=invalid-name
  """``n`` samples of ``y = g(p(x))`` (module docstring): ``{'x' [n, d] float32, 'y' [n], 'p' [n]}``."""
  if n < 1:
    raise ValueError(f"hierarchical_target: `n` must be >= 1; got {n}.")
  if g not in OUTER_FUNCTIONS:
    raise ValueError(f"hierarchical_target: `g` must be one of {sorted(OUTER_FUNCTIONS)}; got {g!r}.")
  if A is None:
    raise ValueError("hierarchical_target: pass `A` (quadratic_feature_matrix(rng, d)), shared by every split.")
  A = np.asarray(A, np.float64)  # pylint: disable=invalid-name
  if A.shape != (d, d) or not np.allclose(A, A.T):
    raise ValueError(f"hierarchical_target: `A` must be a symmetric [{d}, {d}] matrix; got shape {A.shape}.")
  x = rng.standard_normal((n, d))
  p = (np.einsum("ni,ij,nj->n", x, A, x) - np.trace(A)) / (np.sqrt(2.0) * np.linalg.norm(A))
  y = OUTER_FUNCTIONS[g](p)
  return {"x": x.astype(np.float32), "y": y.astype(np.float32), "p": p.astype(np.float32)}


class ThreeLayerNet(nn.Module):
  """``a^T ReLU(W sigma_2(V x) + b) + c`` with frozen ``V`` (module docstring).

  Attributes:
    width: ``m1`` (middle / outer width).
    inner_width: ``m2`` (random inner features).
    inner_activation: ``'he2'`` (default) or ``'relu'``.
    init_scale: standard deviation of ``W``'s entries times ``sqrt(m2)`` at init (small: stage 1 starts near 0).
  """
  width: int = 500
  inner_width: int = 300
  inner_activation: str = "he2"
  init_scale: float = 1e-3
  param_dtype: Any = jnp.float32

  def _check(self, x):
    where = type(self).__name__
    layers.check_shape(x, "x", "batch d", where=where, dtype="floating")
    if self.inner_activation not in INNER_ACTIVATIONS:
      raise ValueError(f"{where}: `inner_activation` must be one of {INNER_ACTIVATIONS}; got "
                       f"{self.inner_activation!r}.")
    if self.width < 1 or self.inner_width < 1:
      raise ValueError(f"{where}: `width` and `inner_width` must be >= 1; got {self.width}, {self.inner_width}.")

  def _phi(self, x, v):
    z = x.astype(jnp.float32) @ v.T
    return (z * z - 1.0) / jnp.sqrt(2.0) if self.inner_activation == "he2" else jax.nn.relu(z)

  def _inner_weights(self, d: int):
    def init():
      v = jax.random.normal(self.make_rng("params"), (self.inner_width, d), jnp.float32)
      return layers.partitioned(lambda *_: v / jnp.linalg.norm(v, axis=-1, keepdims=True), ("mlp", None))(None)

    v = nn.unbox(self.variable("random_features", "inner", init).value)
    if v.shape[1] != d:
      raise ValueError(f"{type(self).__name__}: the inner features were drawn for d = {v.shape[1]}; got `x` with "
                       f"d = {d}.")
    return v

  def setup_params(self, d: int):
    v = self._inner_weights(d)
    w = self.param("W", layers.partitioned(nn.initializers.normal(self.init_scale / np.sqrt(self.inner_width)),
                                           ("mlp", None)), (self.width, self.inner_width), self.param_dtype)
    b = self.param("b", layers.partitioned(nn.initializers.ones_init(), ("mlp",)), (self.width,), self.param_dtype)
    # Outer weights +-1/m1 (random signs): with b = 1 every neuron is active at init, so one GD step on W moves each
    # row along a_i E[y phi(x)] (the paper's stage 1).
    a = self.param("a", layers.partitioned(
        lambda k, s, dt: (jnp.where(jax.random.bernoulli(k, 0.5, s), 1.0, -1.0) / s[0]).astype(dt), ("mlp",)),
        (self.width,), self.param_dtype)
    c = self.param("c", nn.initializers.zeros_init(), (), self.param_dtype)
    return v, w, b, a, c

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [batch, d]`` -> ``[batch]``."""
    self._check(x)
    v, w, b, a, c = self.setup_params(x.shape[1])
    return jax.nn.relu(self._phi(x, v) @ w.T + b) @ a + c

  def _frozen(self):
    v = self.get_variable("random_features", "inner")
    if v is None:
      raise ValueError(f"{type(self).__name__}: needs initialised variables (run `init` first).")
    return nn.unbox(v)

  def inner(self, x: Array) -> Array:
    """``phi(x) [batch, m2]``; ``apply(variables, x, method='inner')``."""
    self._check(x)
    return self._phi(x, self._frozen())

  def preactivations(self, x: Array) -> Array:
    """``W phi(x) + b`` ``[batch, m1]``."""
    self._check(x)
    params = nn.unbox(self.variables["params"])
    return self._phi(x, self._frozen()) @ params["W"].T + params["b"]

  def hidden(self, x: Array) -> Array:
    """``ReLU(W phi(x) + b)`` ``[batch, m1]`` (the outer layer's features)."""
    return jax.nn.relu(self.preactivations(x))
