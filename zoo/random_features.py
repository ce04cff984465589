"""Random-feature models: a single attention layer with frozen random query-key matrices, and the two-layer
random-feature network it is compared with.

Paper: "What can a Single Attention Layer Learn? A Study Through the Random Features Lens", Fu, Guo, Bai and Mei,
NeurIPS 2023 (arXiv 2307.11353).

Input: a query token ``x_0`` and ``N`` key tokens ``x_1..x_N``, all on the unit sphere ``S^{d-1}``, packed as
``x [batch, N + 1, d]`` (row 0 is the query). Random-feature attention with ``M`` heads:

    f(x) = sum_m sum_i a_{m,i} <v_m, x_i>,   s_{m,i} = x_0^T W_m x_i,
    a_{m,i} = exp(s_{m,i}) / N          (attn='exp', the form of the paper's analysis), or
    a_{m,i} = softmax_i(s_{m,i})        (attn='softmax', a standard attention head; through zoo's attention), or
    a_{m,i} = 1 / N                      (attn='uniform', the ablation: the random query-key attention switched off;
                                          every head then returns the mean key, the exact W_m = 0 limit of 'exp'),

with frozen ``W_m`` whose entries are i.i.d. ``N(0, w_std^2)`` (default ``w_std = 1/sqrt(d)``), optionally shifted by
``mean_scale * I_d`` (the paper's non-zero-mean sampling, which helps targets such as ``<x_0, x_i>^p``), and trainable
values ``v_m in R^d``. ``f`` is linear in ``V``: its features are ``phi_m(x) = sum_i a_{m,i} x_i`` (``M * d`` of them)
and the fit is ridge regression (:func:`fit_ridge`). The model class is permutation-invariant in the keys.

The baseline (:class:`RandomFeatureMLP`) is the standard two-layer random-feature network on the flattened input:
``g(x) = sum_k c_k relu(<w_k, vec(x)>)`` with frozen ``w_k ~ N(0, I / ((N + 1) d))`` and trainable ``c``.

Frozen weights live in the ``'random_features'`` collection (carried, checkpointed and never updated by the
trainer); the trainable ones are ``'params'``. Each model has ``features(x) -> [batch, num_features]`` and
``__call__(x) -> [batch]`` (``features @ params``), so it trains either by gradient descent (any procedure) or in
closed form (``zoo.recipes.procedures.ridge.RidgeRegression``, or :func:`fit_ridge` on ``features``).

Public names: :class:`RandomFeatureAttention`, :class:`RandomFeatureMLP`, :func:`fit_ridge`,
:func:`sphere_inputs`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo.kernels import attention as attention_lib

__all__ = ["RandomFeatureAttention", "RandomFeatureMLP", "fit_ridge", "sphere_inputs"]

Array = jax.Array


def sphere_inputs(rng: np.random.Generator, n: int, tokens: int, d: int) -> np.ndarray:
  """``[n, tokens, d]`` float32 points drawn uniformly on the unit sphere ``S^{d-1}``."""
  x = rng.standard_normal((n, tokens, d))
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def fit_ridge(features: Array, targets: Array, l2) -> Array:
  """Ridge regression ``argmin_w mean((features @ w - targets)^2) + l2 |w|^2``.

  Works in the primal ``(F^T F / n + l2 I) w = F^T y / n`` when ``num_features <= n`` and in the dual
  ``w = F^T (F F^T / n + l2 I)^{-1} y / n`` otherwise (the same solution, a smaller system). A sequence of ``l2``
  values shares one eigendecomposition, so a regularisation path costs about one solve.

  Args:
    features: ``[n, num_features]``.
    targets: ``[n]``.
    l2: ridge strength (> 0), a float or a 1-D sequence of them.

  Returns:
    weights ``[num_features]`` for a float ``l2``; ``[len(l2), num_features]`` for a sequence.
  """
  layers.check_shape(features, "features", "n num_features", where="fit_ridge", dtype="floating")
  layers.check_shape(targets, "targets", "n", where="fit_ridge", n=features.shape[0])
  lams = np.atleast_1d(np.asarray(l2, np.float64))
  if lams.ndim != 1 or not np.all(lams > 0):
    raise ValueError(f"fit_ridge: `l2` must be a positive float or a 1-D sequence of them; got {l2!r}.")
  f = jnp.asarray(features, jnp.float32)
  y = jnp.asarray(targets, jnp.float32)
  n, p = f.shape
  primal = p <= n
  gram = f.T @ f / n if primal else f @ f.T / n
  rhs = f.T @ y / n if primal else y / n
  if np.ndim(l2) == 0:
    w = jax.scipy.linalg.solve(gram + float(l2) * jnp.eye(gram.shape[0], dtype=f.dtype), rhs, assume_a="pos")
    return w if primal else f.T @ w
  evals, evecs = jnp.linalg.eigh(gram)
  proj = evecs.T @ rhs
  w = (proj[None, :] / (evals[None, :] + jnp.asarray(lams, jnp.float32)[:, None])) @ evecs.T  # [k, size]
  return w if primal else w @ f


def _check_x(x, where: str):
  layers.check_shape(x, "x", "batch tokens d", where=where, dtype="floating")
  if x.shape[1] < 2:
    raise ValueError(f"{where}: `x` must hold a query and at least one key, [batch, N + 1 >= 2, d]; got shape "
                     f"{x.shape}.")


class RandomFeatureAttention(nn.Module):
  """``M``-head attention with frozen random query-key matrices and trainable values (see the module docstring).

  Attributes:
    num_heads: ``M``.
    attn: ``'exp'`` (``exp(s)/N``, the paper's analysis; default) or ``'softmax'``; ``'uniform'`` (``1/N``) is the
      ablation with the attention over the random query-key features switched off (same parameters).
    mean_scale: ``mu`` of ``W_m = mu I + G_m`` (0: the zero-mean sampling).
    w_std: standard deviation of the entries of ``G_m``; default ``1/sqrt(d)``.
    impl: attention implementation for ``attn='softmax'``.
  """
  num_heads: int = 256
  attn: str = "exp"
  mean_scale: float = 0.0
  w_std: float | None = None
  impl: str = "auto"
  param_dtype: Any = jnp.float32

  def _weights(self, d: int):
    std = self.w_std if self.w_std is not None else d ** -0.5

    def init(shape):
      rng = self.make_rng("params")
      w = std * jax.random.normal(rng, shape, jnp.float32) + self.mean_scale * jnp.eye(d, dtype=jnp.float32)
      return layers.partitioned(lambda *_: w, ("heads", None, None))(None)

    w = self.variable("random_features", "query_key", init, (self.num_heads, d, d)).value
    _check_frozen(w, 1, d, type(self).__name__, "x.shape[-1]")
    v = self.param("value", layers.partitioned(nn.initializers.zeros_init(), ("heads", None)), (self.num_heads, d),
                   self.param_dtype)
    return w, v

  def _features(self, x: Array, w: Array) -> Array:
    query, keys = x[:, 0].astype(jnp.float32), x[:, 1:].astype(jnp.float32)
    if self.attn == "uniform":  # ablation: no attention, every head averages the keys
      return jnp.broadcast_to(keys.mean(axis=1)[:, None], (keys.shape[0], w.shape[0], keys.shape[2]))
    if self.attn == "exp":
      scores = jnp.einsum("bnd,mde,be->bmn", keys, jnp.swapaxes(w, 1, 2), query)  # x_0^T W_m x_i
      weights = jnp.exp(scores) / keys.shape[1]
      return jnp.einsum("bmn,bnd->bmd", weights, keys)
    # Softmax heads through the one attention function: query head m is W_m^T x_0, so that its dot product with a
    # key x_i is x_0^T W_m x_i; the keys (and values) are shared by all heads (grouped-query with one kv head).
    q = jnp.einsum("mde,bd->bme", w, query)[:, None]  # [b, 1, M, d]
    kv = keys[:, :, None, :]                          # [b, N, 1, d]
    return attention_lib.attention(q, kv, kv, scale=1.0, impl=self.impl)[:, 0]  # [b, M, d]

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [batch, N + 1, d]`` (query first) -> ``[batch]``."""
    where = type(self).__name__
    _check_x(x, where)
    if self.attn not in ("exp", "softmax", "uniform"):
      raise ValueError(f"{where}: `attn` must be 'exp', 'softmax' or 'uniform'; got {self.attn!r}.")
    w, v = self._weights(x.shape[-1])
    return jnp.einsum("bmd,md->b", self._features(x, w), v)

  def features(self, x: Array) -> Array:
    """The random features ``[batch, M * d]`` (``__call__`` is ``features(x) @ value.ravel()``). Call with
    ``model.apply(variables, x, method='features')``."""
    _check_x(x, type(self).__name__)
    w = self.get_variable("random_features", "query_key")
    if w is None:
      raise ValueError(f"{type(self).__name__}.features needs initialised variables (run `init` first).")
    w = nn.unbox(w)
    return self._features(x, w).reshape(x.shape[0], -1)


def _check_frozen(w, axis: int, size: int, where: str, what: str) -> None:
  """At apply time, input sizes that do not match the frozen random weights they were drawn for."""
  if w.shape[axis] != size:
    raise ValueError(f"{where}: the random features were drawn for {what} = {w.shape[axis]} (frozen weights "
                     f"{tuple(w.shape)}); got {size}. Apply the model to inputs of the size it was initialised with.")


class RandomFeatureMLP(nn.Module):
  """Two-layer random-feature network on ``vec(x)``: ``sum_k c_k act(<w_k, vec(x)>)``, frozen ``w_k``.

  Attributes:
    num_features: random ReLU features.
    w_std: standard deviation of the entries of ``w_k``; default ``1/sqrt(input size)``.
    activation: ``'relu'`` (default) or any name of ``zoo.transformer.ACTIVATIONS``.
  """
  num_features: int = 2048
  w_std: float | None = None
  activation: str = "relu"
  param_dtype: Any = jnp.float32

  def _weights(self, fan_in: int):
    std = self.w_std if self.w_std is not None else fan_in ** -0.5

    def init(shape):
      w = std * jax.random.normal(self.make_rng("params"), shape, jnp.float32)
      return layers.partitioned(lambda *_: w, ("embed", "mlp"))(None)

    w = self.variable("random_features", "first_layer", init, (fan_in, self.num_features)).value
    _check_frozen(w, 0, fan_in, type(self).__name__, "tokens * d of `x`")
    c = self.param("readout", layers.partitioned(nn.initializers.zeros_init(), ("mlp",)), (self.num_features,),
                   self.param_dtype)
    return w, c

  def _features(self, x: Array, w: Array) -> Array:
    from zoo.transformer import get_activation  # pylint: disable=g-import-not-at-top
    return get_activation(self.activation)(x.reshape(x.shape[0], -1).astype(jnp.float32) @ w)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [batch, tokens, d]`` -> ``[batch]``."""
    _check_x(x, type(self).__name__)
    w, c = self._weights(x.shape[1] * x.shape[2])
    return self._features(x, w) @ c

  def features(self, x: Array) -> Array:
    """The random features ``[batch, num_features]``; ``model.apply(variables, x, method='features')``."""
    _check_x(x, type(self).__name__)
    w = self.get_variable("random_features", "first_layer")
    if w is None:
      raise ValueError(f"{type(self).__name__}.features needs initialised variables (run `init` first).")
    return self._features(x, nn.unbox(w))
