"""ONNX-Net training of a text surrogate: MSE on standardised accuracy plus a pairwise ranking loss.

Paper: "ONNX-Net: Towards Universal Representations and Instant Performance Prediction for Neural Architectures",
Qin et al., 2025 (arXiv 2510.04938). The encoder reads the chain_slim text of a network (``zoo.archtext``) and
regresses its accuracy; the paper's loss is MSE, and PAPERS.md allows an added pairwise ranking term, here
``rax.pairwise_logistic_loss`` over the batch (the metric is Kendall tau, a ranking measure).

* :class:`SurrogateRegression`: the task for the trainer (``task.name = 'onnxnet.SurrogateRegression'``):
  ``tokens [b, l]`` -> prediction ``[b]`` against ``(y - center) / scale``; per-example loss = squared error +
  ``pairwise_weight`` x the batch's pairwise logistic loss (a batch-level scalar, the same for every example).
* :func:`train_surrogates`: the effect test's and the notebook's trainer: ``V`` surrogates (one per token variant,
  e.g. the full text and an ablated text, padded to the same length) trained in one jitted, vmapped ``lax.scan``
  with Adam; :func:`predict` scores them; :func:`kendall_tau` is ``scipy.stats.kendalltau``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import rax
import scipy.stats

__all__ = ["SurrogateRegression", "kendall_tau", "predict", "train_surrogates"]


def _pairwise(pred, y):
  return rax.pairwise_logistic_loss(pred, y)


@dataclasses.dataclass(frozen=True)
class SurrogateRegression:
  """Squared error on standardised accuracy + ``pairwise_weight`` x ``rax.pairwise_logistic_loss``."""
  input_key: str = "tokens"
  target_key: str = "y"
  center: float = 0.8
  scale: float = 0.2
  pairwise_weight: float = 1.0

  def inputs(self, batch):
    return batch[self.input_key]

  def _target(self, pred, batch):
    y = batch[self.target_key]
    if tuple(y.shape) != tuple(pred.shape):
      raise ValueError(f"SurrogateRegression: batch key {self.target_key!r} must have shape {tuple(pred.shape)} "
                       f"(one accuracy per network); got {tuple(y.shape)}.")
    return (y.astype(jnp.float32) - self.center) / self.scale

  def loss(self, pred, batch):
    t = self._target(pred, batch)
    mse = (pred - t) ** 2
    if self.pairwise_weight:
      mse = mse + self.pairwise_weight * _pairwise(pred, t)
    return mse

  def metrics(self, pred, batch):
    t = self._target(pred, batch)
    return {"loss": self.loss(pred, batch), "mse": (pred - t) ** 2}


def train_surrogates(model, tokens, y, *, steps: int = 300, batch_size: int = 64, learning_rate: float = 1e-3,
                     pairwise_weight: float = 1.0, seed: int = 0):
  """Trains one surrogate per variant: ``tokens [V, n, l]`` int, ``y [n]`` accuracies -> params (leading ``V``).

  Every variant starts from the same initial parameters and sees the same batches, so the variants differ only in
  their text. Targets are standardised with the training set's mean and standard deviation.
  """
  tokens = np.asarray(tokens)
  y = np.asarray(y, np.float32)
  if tokens.ndim != 3 or tokens.shape[1] != y.shape[0]:
    raise ValueError(f"train_surrogates: `tokens` must be [variants, n, length] with n = len(y) = {y.shape[0]}; got "
                     f"{tokens.shape}.")
  task = SurrogateRegression(center=float(y.mean()), scale=float(y.std() + 1e-6), pairwise_weight=pairwise_weight)
  order = np.random.default_rng(seed).integers(0, y.shape[0], (steps, batch_size))
  return _fit(model, task, jnp.asarray(tokens), jnp.asarray(y), jnp.asarray(order), learning_rate, seed)


@functools.partial(jax.jit, static_argnums=(0, 1, 5, 6))
def _fit(model, task, tokens, y, order, learning_rate, seed):
  opt = optax.adam(learning_rate)
  params = model.init(jax.random.PRNGKey(seed), tokens[0, :2])["params"]

  def one(tok):
    def loss(p, idx):
      pred = model.apply({"params": p}, tok[idx])
      return task.loss(pred, {"y": y[idx]}).mean()

    def step(carry, idx):
      p, s = carry
      g = jax.grad(loss)(p, idx)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), order)
    return p

  return jax.vmap(one)(tokens)


@functools.partial(jax.jit, static_argnums=0)
def _predict(model, params, tokens):
  return jax.vmap(lambda p, t: model.apply({"params": p}, t))(params, tokens)


def predict(model, params, tokens) -> np.ndarray:
  """Scores ``tokens [V, m, l]`` with the ``V`` surrogates -> ``[V, m]``."""
  return np.asarray(_predict(model, params, jnp.asarray(tokens)))


def kendall_tau(pred, y) -> float:
  """Kendall's tau-b between predicted and true accuracies (``scipy.stats.kendalltau``)."""
  return float(scipy.stats.kendalltau(np.asarray(pred), np.asarray(y)).statistic)
