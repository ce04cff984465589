"""Ensembles of wide two-layer networks that learn a permutation exactly from the k standard basis vectors.

Paper: "Exact Learning of Permutations for Nonzero Binary Inputs with Logarithmic Training Size and Quadratic
Ensemble Complexity" (Giapitzakis, Back de Luca, Fountoulakis, 2025, arXiv 2502.16763).

Task: a fixed permutation matrix ``P`` of size ``k``. Train only on ``e_i -> P e_i`` (``i = 1..k``); test on all
``2^k - 1`` nonzero binary inputs ``x -> P x``. A two-layer ReLU net in NTK parameterisation trained by gradient
descent on the MSE converges (infinite width) to a Gaussian process whose mean is the NTK regressor
``mu(x) = Theta(x, E) Theta(E, E)^{-1} P`` (``E`` the basis). For the two-layer ReLU NTK ``mu_j(x)`` takes one value
``hi(s) > 0`` on the ``s = ||x||_1`` coordinates where ``Px`` is 1 and one value ``lo(s) <= 0`` elsewhere (the
"sign-based features"), so averaging ``M`` independently trained nets and rounding recovers ``Px``; ``M = O(k log k)``
nets suffice for one input and ``O(k^2)`` for all inputs at once.

Public names:

* ``TwoLayerNTKNet(width, outputs)``: ``f(x) = a^T relu(W x) / sqrt(width)``, ``W, a ~ N(0, 1)`` (NTK
  parameterisation, both layers trained). ``x: [batch, k]`` -> ``[batch, outputs]``.
* ``two_layer_ntk(x1, x2)``: its closed-form NTK ``[n1, n2]`` (the arc-cosine kernels of ``zoo.ntk``):
  ``Theta = |x||x'| xi(rho) / 2 + x^T x' xi'(rho) / 2``.
* ``permutation_task(k, seed)``: ``{'perm' [k], 'x_train' [k, k], 'y_train', 'x_test' [2^k - 1, k], 'y_test'}``.
* ``train_ensemble(x, y, num_models, width, steps, learning_rate, seed)``: ``num_models`` nets, each its own init,
  trained by full-batch GD, all under one ``jit`` (``vmap`` over seeds, ``lax.scan`` over steps). Returns stacked
  params and the per-model final training MSE ``[num_models]``.
* ``ensemble_outputs(params, x, width)``: ``[num_models, n, outputs]``.
* ``infinite_ensemble_mean(x_train, y_train, x_test)``: ``mu(x_test)`` ``[n_test, outputs]``.
* ``rounding_levels(k)``: ``(hi, lo)`` ``[k]`` each, the mean's two values for ``s = 1..k``.
* ``round_prediction(y, x, rule)``: binary ``[n, k]``. ``rule='midpoint'`` (default): an entry is 1 iff it exceeds
  ``(hi(s) + lo(s)) / 2`` with ``s = ||x||_1``, the threshold halfway between the two values the infinite ensemble
  takes; ``'topk'``: the ``s`` largest entries (the cross-check); ``'half'``: plain rounding at 1/2.
* ``exact_match(pred, target)``: ``[n]`` bool, whole rows equal.
"""

from __future__ import annotations

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo import ntk
from zoo.layers import check_shape, partitioned

__all__ = ["TwoLayerNTKNet", "ensemble_outputs", "exact_match", "infinite_ensemble_mean", "permutation_task",
           "round_prediction", "rounding_levels", "train_ensemble", "two_layer_ntk"]

ROUNDING_RULES = ("midpoint", "topk", "half")


class TwoLayerNTKNet(nn.Module):
  """``f(x) = a^T relu(W x) / sqrt(width)`` with ``W [k, width]``, ``a [width, outputs]`` ``~ N(0, 1)``.

  Attributes: width (hidden units), outputs.
  Call: ``x: [batch, k]`` float -> ``[batch, outputs]``.
  """
  width: int = 4096
  outputs: int = 6
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    check_shape(x, "x", "batch features", where="TwoLayerNTKNet", dtype="floating")
    if self.width < 1 or self.outputs < 1:
      raise ValueError(f"TwoLayerNTKNet: `width` and `outputs` must be >= 1; got {self.width}, {self.outputs}.")
    w = self.param("w", partitioned(nn.initializers.normal(1.0), ("embed", "mlp")), (x.shape[-1], self.width),
                   self.param_dtype)
    a = self.param("a", partitioned(nn.initializers.normal(1.0), ("mlp", "embed")), (self.width, self.outputs),
                   self.param_dtype)
    return jax.nn.relu(x @ w.astype(x.dtype)) @ a.astype(x.dtype) / jnp.sqrt(self.width).astype(x.dtype)


def two_layer_ntk(x1: jax.Array, x2: jax.Array) -> jax.Array:
  """The infinite-width NTK of :class:`TwoLayerNTKNet` ``[n1, n2]`` (inputs nonzero, any norm)."""
  check_shape(x1, "x1", "n1 features", where="two_layer_ntk", dtype="floating")
  check_shape(x2, "x2", "n2 features", where="two_layer_ntk", dtype="floating", features=x1.shape[1])
  n1 = jnp.linalg.norm(x1, axis=1)
  n2 = jnp.linalg.norm(x2, axis=1)
  if not isinstance(n1, jax.core.Tracer) and (bool(jnp.any(n1 == 0)) or bool(jnp.any(n2 == 0))):
    raise ValueError("two_layer_ntk: inputs must be nonzero (the kernel uses their directions).")
  dual = ntk.dual_activation("relu")
  dot = x1 @ x2.T
  norms = n1[:, None] * n2[None, :]
  rho = jnp.clip(dot / norms, -1.0, 1.0)
  # E[relu(w.x) relu(w.x')] = |x||x'| xi(rho) / 2 and E[relu'(w.x) relu'(w.x')] = xi'(rho) / 2, xi the normalised
  # arc-cosine dual of zoo.ntk
  return norms * dual.xi(rho) / 2 + dot * dual.dxi(rho) / 2


def permutation_task(k: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A random permutation of length ``k``; training set the basis vectors, test set every nonzero binary input."""
  if not 2 <= k <= 16:
    raise ValueError(f"permutation_task: `k` must be in [2, 16] (the test set has 2^k - 1 inputs); got {k}.")
  perm = np.random.default_rng(seed).permutation(k)
  p = np.eye(k, dtype=np.float32)[perm]  # (P x)_i = x_{perm[i]}
  x_test = np.array(list(itertools.product([0, 1], repeat=k))[1:], np.float32)
  x_train = np.eye(k, dtype=np.float32)
  return {"perm": perm, "x_train": x_train, "y_train": x_train @ p.T, "x_test": x_test, "y_test": x_test @ p.T}


@functools.partial(jax.jit, static_argnames=("num_models", "width", "steps"))
def _train(x, y, key, num_models: int, width: int, steps: int, learning_rate):
  model = TwoLayerNTKNet(width=width, outputs=y.shape[1], param_dtype=x.dtype)
  opt = optax.sgd(learning_rate)

  def loss_fn(params):
    return 0.5 * jnp.mean(jnp.sum((model.apply({"params": params}, x) - y) ** 2, axis=1))

  def one(k):
    params = nn.unbox(model.init(k, x))["params"]

    def step(carry, _):
      params, state = carry
      grads = jax.grad(loss_fn)(params)
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, 2 * loss_fn(params) / y.shape[1]  # mean squared error per entry

  return jax.vmap(one)(jax.random.split(key, num_models))


def train_ensemble(x: jax.Array, y: jax.Array, *, num_models: int = 64, width: int = 4096, steps: int = 400,
                   learning_rate: float = 1.0, seed: int = 0):
  """Trains ``num_models`` independent :class:`TwoLayerNTKNet` by full-batch GD on ``0.5 mean_n ||f - y||^2``.

  Args: ``x [n, k]``, ``y [n, outputs]`` float; ``num_models``, ``width``, ``steps``, ``learning_rate``, ``seed``.
  Returns: ``(params, mse)``: params stacked over a leading ``[num_models]`` axis, final training MSE per entry.
  """
  check_shape(x, "x", "n features", where="train_ensemble", dtype="floating")
  check_shape(y, "y", "n outputs", where="train_ensemble", dtype="floating", n=x.shape[0])
  if x.shape[0] == 0 or num_models < 1 or steps < 0 or not learning_rate > 0:
    raise ValueError(f"train_ensemble: need n >= 1, num_models >= 1, steps >= 0, learning_rate > 0; got "
                     f"{x.shape[0]}, {num_models}, {steps}, {learning_rate}.")
  return _train(jnp.asarray(x), jnp.asarray(y), jax.random.key(seed), num_models, width, steps, learning_rate)


def ensemble_outputs(params, x: jax.Array, width: int | None = None) -> jax.Array:
  """Each model's outputs ``[num_models, n, outputs]`` for stacked ``params`` from :func:`train_ensemble`."""
  check_shape(x, "x", "n features", where="ensemble_outputs", dtype="floating")
  width = params["w"].shape[-1] if width is None else width
  model = TwoLayerNTKNet(width=width, outputs=params["a"].shape[-1])
  return jax.vmap(lambda p: model.apply({"params": p}, x))(params)


def infinite_ensemble_mean(x_train: jax.Array, y_train: jax.Array, x_test: jax.Array) -> jax.Array:
  """The infinite-width, infinite-ensemble output ``Theta(x_test, X) Theta(X, X)^{-1} Y`` ``[n_test, outputs]``."""
  check_shape(y_train, "y_train", "n outputs", where="infinite_ensemble_mean", n=x_train.shape[0])
  return two_layer_ntk(x_test, x_train) @ jnp.linalg.solve(two_layer_ntk(x_train, x_train), y_train)


@functools.lru_cache(maxsize=None)
def _levels(k: int):
  # constants of k alone: evaluated eagerly even when called under a trace (a jitted evaluation step)
  with jax.ensure_compile_time_eval(), jax.enable_x64():
    eye = jnp.eye(k, dtype=jnp.float64)
    x = jnp.tril(jnp.ones((k, k), jnp.float64))  # row s-1 has its first s entries set
    mean = np.asarray(infinite_ensemble_mean(eye, eye, x))
  hi = mean[:, 0]
  lo = np.where(np.arange(k) < k - 1, mean[:, -1], -np.inf)  # s = k: every entry is a 1
  return hi, lo


def rounding_levels(k: int) -> tuple[np.ndarray, np.ndarray]:
  """``(hi, lo)`` ``[k]``: the infinite ensemble's output on the ``s`` ones of ``Px`` and elsewhere, ``s = 1..k``
  (``lo[k-1] = -inf``: no zeros). Closed form (float64) from :func:`infinite_ensemble_mean` on the identity."""
  if not 2 <= k <= 64:
    raise ValueError(f"rounding_levels: `k` must be in [2, 64]; got {k}.")
  return _levels(int(k))


def round_prediction(y: jax.Array, x: jax.Array, rule: str = "midpoint") -> jax.Array:
  """Rounds ensemble outputs ``y [n, k]`` for binary inputs ``x [n, k]`` to binary predictions ``[n, k]`` int32.

  ``rule``: ``'midpoint'`` (threshold ``(hi(s) + lo(s)) / 2``, ``s = ||x||_1``), ``'topk'`` (the ``s`` largest
  entries) or ``'half'`` (threshold 1/2); see the module docstring.
  """
  check_shape(x, "x", "n k", where="round_prediction")
  check_shape(y, "y", "n k", where="round_prediction", dtype="floating", n=x.shape[0], k=x.shape[1])
  if rule not in ROUNDING_RULES:
    raise ValueError(f"round_prediction: `rule` must be one of {ROUNDING_RULES}; got {rule!r}.")
  s = jnp.sum(x, axis=1).astype(jnp.int32)
  if not isinstance(s, jax.core.Tracer) and (bool(jnp.any(s < 1)) or bool(jnp.any((x != 0) & (x != 1)))):
    raise ValueError("round_prediction: `x` must be nonzero binary vectors.")
  if rule == "half":
    return (y > 0.5).astype(jnp.int32)
  if rule == "topk":
    ranks = jnp.argsort(jnp.argsort(-y, axis=1), axis=1)
    return (ranks < s[:, None]).astype(jnp.int32)
  hi, lo = rounding_levels(x.shape[1])
  mid = jnp.where(jnp.isfinite(jnp.asarray(lo)), (jnp.asarray(hi) + jnp.asarray(lo)) / 2, -jnp.inf)
  return (y > mid[s - 1][:, None].astype(y.dtype)).astype(jnp.int32)


def exact_match(pred: jax.Array, target: jax.Array) -> jax.Array:
  """``[n]`` bool: the whole predicted row equals the target row."""
  check_shape(pred, "pred", "n k", where="exact_match")
  check_shape(target, "target", "n k", where="exact_match", n=pred.shape[0], k=pred.shape[1])
  return jnp.all(pred == jnp.asarray(target).astype(pred.dtype), axis=1)
