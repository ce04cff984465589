"""Layer-wise training of the three-layer net on a hierarchical polynomial, and the random-features KRR baseline.

Paper: "Learning Hierarchical Polynomials with Three-Layer Neural Networks" (Wang, Nichani, Lee, ICLR 2024, arXiv
2311.13774), model ``zoo.hierarchical_poly.ThreeLayerNet``. The paper's layer-wise algorithm, on two halves
``D1``, ``D2`` of the data:

1. Stage 1 (feature learning): from the small init (``W ~ 0``, ``b = 1``, ``a = +-1/m1``) one GD step on ``W`` alone
   for ``0.5 mean (f(x) - y)^2`` on ``D1`` with learning rate ``stage1_lr`` (default ``m1``). Each row becomes
   ``~ a_i E[y phi(x)]``, so the preactivation is the inner kernel's smoothing of ``y``, i.e. ``~`` its degree-``k``
   projection, ``~ c p(x)``.
2. The preactivations are standardised on ``D1`` (the scale the paper fixes through ``eta_1``; folded into ``W``
   and ``b``) and the biases are re-drawn ``b_i ~ U(-bias_range, bias_range)``.
3. Stage 2: ``W`` frozen, ``(a, c)`` fitted by ridge regression (``l2``) on ``D2``
   (``zoo.random_features.fit_ridge``): a univariate ReLU basis in the learned feature fits ``g``.

``feature_learning=False`` is the ablation: stage 1 skipped, so stage 2 fits on random (standardised) middle
features, a fixed-kernel method.

* :func:`train_layerwise` ``(model, variables, x1, y1, x2, y2, rng, ...) -> variables``.
* :func:`random_features_krr` ``(rng, x_train, y_train, x_test, width, l2) -> predictions [n_test]``: ridge on
  ``width`` random ReLU features ``ReLU(w_k^T x)``, ``w_k ~ N(0, I/d)``, plus an intercept.
* :class:`LayerwiseTraining`: the same as a procedure for the one loop (config ``procedure.name =
  'hier_poly.LayerwiseTraining'``; one step on one batch holding the whole training set, split in halves).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo import layers
from zoo import random_features

__all__ = ["LayerwiseState", "LayerwiseTraining", "random_features_krr", "train_layerwise"]


def _with_intercept(h):
  return jnp.concatenate([h, jnp.ones((h.shape[0], 1), h.dtype)], axis=1)


def train_layerwise(model, variables, x1, y1, x2, y2, rng, *, stage1_lr: float | None = None, l2: float = 1e-3,
                    bias_range: float = 3.0, feature_learning: bool = True):
  """The layer-wise algorithm (module docstring) -> trained ``variables`` of ``model``."""
  where = "train_layerwise"
  layers.check_shape(x1, "x1", "n d", where=where, dtype="floating")
  layers.check_shape(y1, "y1", "n", where=where, n=x1.shape[0])
  layers.check_shape(x2, "x2", "n d", where=where, dtype="floating", d=x1.shape[1])
  layers.check_shape(y2, "y2", "n", where=where, n=x2.shape[0])
  if not bias_range > 0 or not l2 > 0:
    raise ValueError(f"{where}: `bias_range` and `l2` must be > 0; got {bias_range}, {l2}.")
  variables = nn.unbox(variables)
  params, frozen = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  lr = float(model.width) if stage1_lr is None else float(stage1_lr)

  def loss(w):
    out = model.apply({"params": {**params, "W": w}, **frozen}, x1)
    return 0.5 * jnp.mean((out - y1) ** 2)

  w = params["W"]
  if feature_learning:
    w = w - lr * jax.grad(loss)(w)
  phi1 = model.apply(variables, x1, method="inner")
  pre = phi1 @ w.T
  mu, sd = pre.mean(0), pre.std(0) + 1e-12
  b = jax.random.uniform(rng, mu.shape, minval=-bias_range, maxval=bias_range) - mu / sd
  params = {**params, "W": w / sd[:, None], "b": b}
  hidden = model.apply({"params": params, **frozen}, x2, method="hidden")
  # The eigendecomposition path of fit_ridge (a sequence of l2): the learned features are nearly collinear (every
  # neuron carries the same direction), where a float32 Cholesky solve can break down.
  coef = random_features.fit_ridge(_with_intercept(hidden), y2, [l2])[0]
  return {"params": {**params, "a": coef[:-1], "c": coef[-1]}, **frozen}


def random_features_krr(rng, x_train, y_train, x_test, width: int, l2: float = 1e-3):
  """Random-features kernel ridge regression: ``[n_test]`` predictions (module docstring)."""
  layers.check_shape(x_train, "x_train", "n d", where="random_features_krr", dtype="floating")
  layers.check_shape(x_test, "x_test", "m d", where="random_features_krr", d=x_train.shape[1])
  if width < 1:
    raise ValueError(f"random_features_krr: `width` must be >= 1; got {width}.")
  # The two-layer random-feature model of the kernel lower bounds: frozen w_k ~ N(0, I / d), trained readout.
  w = jax.random.normal(rng, (x_train.shape[1], width), jnp.float32) / jnp.sqrt(x_train.shape[1])
  feats = lambda x: _with_intercept(jax.nn.relu(x.astype(jnp.float32) @ w))
  coef = random_features.fit_ridge(feats(x_train), y_train, [l2])[0]
  return feats(x_test) @ coef


class LayerwiseState(flax.struct.PyTreeNode):
  step: jax.Array
  variables: Any
  target_var: jax.Array


@dataclasses.dataclass(frozen=True)
class LayerwiseTraining:
  """:func:`train_layerwise` as a procedure: each step trains from the init on its batch (first half ``D1``,
  second half ``D2``), so a config runs it with one batch = the training set and ``steps = 1``. Evaluation adds
  ``normalised_mse`` (per-example squared error over the training targets' variance)."""
  model: Any
  task: Any
  optimizer: optax.GradientTransformation | None = None
  stage1_lr: float | None = None
  l2: float = 1e-3
  bias_range: float = 3.0
  feature_learning: bool = True

  def init(self, rng, batch) -> LayerwiseState:
    variables = nn.unbox(self.model.init(rng, self.task.inputs(batch)))
    return LayerwiseState(step=jnp.zeros((), jnp.int32), variables=variables, target_var=jnp.ones((), jnp.float32))

  def step(self, state: LayerwiseState, batch):
    x, y = self.task.inputs(batch), batch[self.task.target_key].reshape(-1).astype(jnp.float32)
    half = x.shape[0] // 2
    if half < 1:
      raise ValueError(f"LayerwiseTraining: a batch must hold at least 2 examples (D1 and D2); got {x.shape[0]}.")
    rng = jax.random.fold_in(jax.random.key(0), state.step)
    variables = train_layerwise(self.model, state.variables, x[:half], y[:half], x[half:], y[half:], rng,
                                stage1_lr=self.stage1_lr, l2=self.l2, bias_range=self.bias_range,
                                feature_learning=self.feature_learning)
    mse = jnp.mean((self.model.apply(variables, x[half:]) - y[half:]) ** 2)
    return (state.replace(step=state.step + 1, variables=variables, target_var=jnp.var(y)),
            {"loss": mse, "train_normalised_mse": mse / jnp.var(y)})

  def variables(self, state: LayerwiseState):
    return state.variables

  def evaluate(self, state: LayerwiseState, batch):
    out = self.model.apply(state.variables, self.task.inputs(batch))
    metrics = self.task.metrics(out, batch)
    y = batch[self.task.target_key].reshape(out.shape).astype(jnp.float32)
    return {**metrics, "normalised_mse": (out - y) ** 2 / state.target_var}
