"""Neural collapse in the deep linear unconstrained-features model (UFM), balanced and imbalanced.

Paper: "Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data" (Dang, Tran, Osher, Tran-The,
Ho, Nguyen, ICML 2023, arXiv 2301.00437).

Model: free features ``H [d, N]`` (one column per training sample) and a deep linear classifier
``W_M ... W_1`` (``W_1 [d, d]``, ..., ``W_M [K, d]``), optionally with a last-layer bias ``b [K]``. Loss

  MSE: ``(1/2N) ||W_M ... W_1 H + b 1^T - Y||_F^2 + sum_i lambda_W/2 ||W_i||^2 + lambda_H/2 ||H||^2
  (+ lambda_b/2 ||b||^2)``;  CE: the mean softmax cross-entropy in place of the first term.

Global minima show neural collapse: NC1 (features of a class collapse to their mean), NC2 (class means form a
simplex ETF with a bias, an orthogonal frame without one; for imbalanced bias-free MSE a *General Orthogonal Frame*:
orthogonal means whose norms depend on the class sizes), NC3 (classifier rows align with the class means). For the
plain UFM (``M = 1``), bias-free MSE and class sizes ``n_k``, each class decouples and AM-GM gives
``||w_k||^2 = max(0, sqrt(n_k lambda_H / lambda_W) - N lambda_H)``, ``||h_k||^2 = ||w_k||^2 lambda_W /
(n_k lambda_H)``: :func:`gof_predicted_norms` (classes below the threshold collapse to 0).

Public names:

* ``DeepLinearUFM(num_classes, num_samples, feature_dim, depth, bias, lambda_W, lambda_H, lambda_b)``: a Linen
  module; call ``idx: [batch]`` int sample ids -> logits ``[batch, K]``; it sows the weight-decay terms into
  ``'losses'`` (so ``zoo.recipes`` trains it with any task). ``ufm_features(params)`` -> ``H^T [N, d]``;
  ``ufm_classifier(params)`` -> the product ``W_M ... W_1 [K, d]``.
* ``ufm_loss(params, labels, *, loss, lambda_W, lambda_H, lambda_b)``: the paper's objective (above).
* ``train_ufm(labels, num_classes, ...)``: full-batch Adam on ``ufm_loss`` in float64 (inside
  ``jax.enable_x64()``, no global flag), one ``lax.scan``; returns numpy float64 ``params`` and the final loss.
* ``nc_metrics(features [N, d], labels [N], classifier [K, d], centered)``: ``nc1`` = ``tr(Sigma_W Sigma_B^+)/K``,
  ``nc2_etf`` (Frobenius distance of the normalised Gram of centred means to the simplex ETF's), ``nc2_of`` (of the
  uncentred means' cosine matrix to the identity), ``max_mean_cos`` (largest ``|cos|`` between two uncentred class
  means), ``nc3`` (mean cosine between classifier row ``k`` and class mean ``k``, centred if ``centered``),
  ``mean_norms`` ``[K]`` (squared norms of the class means) and ``classifier_norms`` ``[K]``.
* ``gof_predicted_norms(class_sizes, lambda_W, lambda_H)`` -> ``(w_sq [K], h_sq [K])``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.layers import check_shape, partitioned

__all__ = ["DeepLinearUFM", "gof_predicted_norms", "nc_metrics", "train_ufm", "ufm_classifier", "ufm_features",
           "ufm_loss"]

LOSSES = ("mse", "ce")


class DeepLinearUFM(nn.Module):
  """The deep linear unconstrained-features model (module docstring).

  Attributes:
    num_classes: ``K``. num_samples: ``N`` (columns of ``H``). feature_dim: ``d`` (also the hidden widths).
    depth: ``M >= 1`` linear layers. bias: a last-layer bias ``b [K]``.
    lambda_W, lambda_H, lambda_b: weight decay of each ``W_i``, of ``H`` and of ``b`` (sown into ``'losses'``;
      ``H``'s term scaled by ``batch / N`` so a full pass adds the paper's ``lambda_H/2 ||H||^2``).
    init_scale: standard deviation of the Gaussian init.
  Call: ``idx: [batch]`` int in ``[0, N)`` -> logits ``[batch, K]``.
  """
  num_classes: int
  num_samples: int
  feature_dim: int = 16
  depth: int = 1
  bias: bool = False
  lambda_W: float = 1e-3
  lambda_H: float = 1e-3
  lambda_b: float = 0.0
  init_scale: float = 0.1
  param_dtype: Any = jnp.float32

  def _params(self):
    init = nn.initializers.normal(self.init_scale)
    h = self.param("H", partitioned(init, ("embed", None)), (self.feature_dim, self.num_samples), self.param_dtype)
    ws = [self.param(f"W_{i + 1}", partitioned(init, (None, "embed")),
                     (self.num_classes if i == self.depth - 1 else self.feature_dim, self.feature_dim),
                     self.param_dtype) for i in range(self.depth)]
    b = (self.param("b", nn.initializers.zeros, (self.num_classes,), self.param_dtype) if self.bias else None)
    return h, ws, b

  @nn.compact
  def __call__(self, idx):
    if self.depth < 1 or self.num_classes < 2 or self.num_samples < 1 or self.feature_dim < 1:
      raise ValueError(f"DeepLinearUFM: need depth >= 1, num_classes >= 2, num_samples >= 1, feature_dim >= 1; got "
                       f"{self.depth}, {self.num_classes}, {self.num_samples}, {self.feature_dim}.")
    check_shape(idx, "idx", "batch", where="DeepLinearUFM", dtype="integer")
    if not isinstance(idx, jax.core.Tracer) and idx.size and (int(jnp.min(idx)) < 0 or
                                                              int(jnp.max(idx)) >= self.num_samples):
      raise ValueError(f"DeepLinearUFM: `idx` must be sample ids in [0, {self.num_samples}); got values in "
                       f"[{int(jnp.min(idx))}, {int(jnp.max(idx))}].")
    h, ws, b = self._params()
    z = h[:, idx]
    for w in ws:
      z = w @ z
    logits = z.T + (b if b is not None else 0.0)
    penalty = (sum(self.lambda_W / 2 * jnp.sum(w ** 2) for w in ws)
               + self.lambda_H / 2 * jnp.sum(h[:, idx] ** 2) * self.num_samples / max(idx.shape[0], 1)
               + (self.lambda_b / 2 * jnp.sum(b ** 2) if b is not None else 0.0))
    self.sow("losses", "weight_decay", penalty)
    return logits


def _product(params, depth: int):
  w = params["W_1"]
  for i in range(2, depth + 1):
    w = params[f"W_{i}"] @ w
  return w


def _depth(params) -> int:
  return sum(1 for k in params if k.startswith("W_"))


def ufm_features(params) -> np.ndarray:
  """The free features as rows, ``H^T [N, d]``."""
  return np.asarray(params["H"]).T


def ufm_classifier(params) -> np.ndarray:
  """The product of the linear layers ``W_M ... W_1`` ``[K, d]``."""
  return np.asarray(_product(params, _depth(params)))


def ufm_loss(params, labels: jax.Array, *, loss: str = "mse", lambda_W: float = 1e-3, lambda_H: float = 1e-3,
             lambda_b: float = 0.0) -> jax.Array:
  """The paper's regularised objective for ``params`` ``{'H' [d, N], 'W_1'.., 'b'?}`` and ``labels [N]``."""
  if loss not in LOSSES:
    raise ValueError(f"ufm_loss: `loss` must be one of {LOSSES}; got {loss!r}.")
  h = params["H"]
  depth = _depth(params)
  w = _product(params, depth)
  logits = (w @ h).T + params.get("b", 0.0)
  n, k = logits.shape
  y = jax.nn.one_hot(labels, k, dtype=logits.dtype)
  fit = (0.5 * jnp.sum((logits - y) ** 2) / n if loss == "mse"
         else jnp.mean(optax.softmax_cross_entropy(logits, y)))
  reg = sum(lambda_W / 2 * jnp.sum(params[f"W_{i}"] ** 2) for i in range(1, depth + 1)) + lambda_H / 2 * jnp.sum(h ** 2)
  if "b" in params:
    reg = reg + lambda_b / 2 * jnp.sum(params["b"] ** 2)
  return fit + reg


@functools.partial(jax.jit, static_argnames=("num_classes", "feature_dim", "depth", "bias", "loss", "steps"))
def _train(labels, key, num_classes, feature_dim, depth, bias, loss, steps, lambda_W, lambda_H, lambda_b,
           learning_rate, init_scale):
  model = DeepLinearUFM(num_classes=num_classes, num_samples=labels.shape[0], feature_dim=feature_dim, depth=depth,
                        bias=bias, init_scale=init_scale, param_dtype=jnp.float64)
  params = nn.unbox(model.init(key, jnp.arange(labels.shape[0])))["params"]
  opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  objective = functools.partial(ufm_loss, labels=labels, loss=loss, lambda_W=lambda_W, lambda_H=lambda_H,
                                lambda_b=lambda_b)

  def step(carry, _):
    p, s = carry
    grads = jax.grad(objective)(p)
    updates, s = opt.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
  return params, objective(params)


def train_ufm(labels, num_classes: int, *, feature_dim: int = 16, depth: int = 1, bias: bool = False,
              loss: str = "mse", lambda_W: float = 1e-3, lambda_H: float = 1e-3, lambda_b: float = 0.0,
              steps: int = 20_000, learning_rate: float = 1e-2, init_scale: float = 0.1, seed: int = 0):
  """Full-batch Adam (cosine-decayed) on :func:`ufm_loss`, float64 end to end; returns ``(params, loss)`` numpy."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"train_ufm: `labels` must be a non-empty 1-D integer array; got {labels.dtype} {labels.shape}.")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"train_ufm: labels must be in [0, {num_classes}); got [{labels.min()}, {labels.max()}].")
  if loss not in LOSSES or steps < 1 or min(lambda_W, lambda_H, lambda_b) < 0:
    raise ValueError(f"train_ufm: need loss in {LOSSES}, steps >= 1, lambdas >= 0; got {loss!r}, {steps}, "
                     f"{(lambda_W, lambda_H, lambda_b)}.")
  with jax.enable_x64():
    params, value = _train(jnp.asarray(labels, jnp.int64), jax.random.key(seed), num_classes, feature_dim, depth,
                           bias, loss, steps, lambda_W, lambda_H, lambda_b, learning_rate, init_scale)
    return jax.tree.map(np.asarray, params), float(value)


def nc_metrics(features, labels, classifier=None, *, centered: bool = True) -> dict[str, Any]:
  """Neural-collapse metrics (module docstring) in float64 numpy.

  Args: ``features [N, d]`` (``H^T``), ``labels [N]`` in ``[0, K)`` with every class present, ``classifier
  [K, d]`` (optional; NC3 and its row norms), ``centered``: centre class means by the global mean for NC3.
  """
  h = np.asarray(features, np.float64)
  y = np.asarray(labels)
  if h.ndim != 2 or y.shape != (h.shape[0],) or h.shape[0] == 0:
    raise ValueError(f"nc_metrics: `features` must be [N, d] and `labels` [N]; got {h.shape}, {y.shape}.")
  if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
    raise ValueError("nc_metrics: `labels` must be non-negative integer class ids.")
  k = int(y.max()) + 1 if classifier is None else np.asarray(classifier).shape[0]
  counts = np.bincount(y, minlength=k)
  if np.any(counts == 0) or y.max() >= k:
    raise ValueError(f"nc_metrics: every class in [0, {k}) needs a sample; class sizes {counts.tolist()}.")
  means = np.stack([h[y == c].mean(0) for c in range(k)])            # [K, d]
  global_mean = means.mean(0)
  within = h - means[y]
  sigma_w = within.T @ within / h.shape[0]
  centred = means - global_mean
  sigma_b = centred.T @ centred / k
  nc1 = float(np.trace(sigma_w @ np.linalg.pinv(sigma_b)) / k)

  def unit(m):
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-300)

  gram_c = centred @ centred.T
  etf = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
  nc2_etf = float(np.linalg.norm(gram_c / np.linalg.norm(gram_c) - etf))
  cos = unit(means) @ unit(means).T
  nc2_of = float(np.linalg.norm(cos - np.eye(k)))
  out = {"nc1": nc1, "nc2_etf": nc2_etf, "nc2_of": nc2_of,
         "max_mean_cos": float(np.max(np.abs(cos - np.diag(np.diag(cos))))),
         "mean_norms": np.sum(means ** 2, axis=1)}
  if classifier is not None:
    w = np.asarray(classifier, np.float64)
    if w.shape != (k, h.shape[1]):
      raise ValueError(f"nc_metrics: `classifier` must be [K, d] = [{k}, {h.shape[1]}]; got {w.shape}.")
    ref = centred if centered else means
    out["nc3"] = float(np.mean(np.sum(unit(w) * unit(ref), axis=1)))
    out["classifier_norms"] = np.sum(w ** 2, axis=1)
  return out


def gof_predicted_norms(class_sizes: Sequence[int], lambda_W: float, lambda_H: float):
  """Closed-form ``(||w_k||^2, ||h_k||^2)`` ``[K]`` at the bias-free MSE optimum of the plain UFM (``M = 1``)."""
  n_k = np.asarray(class_sizes, np.float64)
  if n_k.ndim != 1 or n_k.size < 2 or np.any(n_k < 1) or not (lambda_W > 0 and lambda_H > 0):
    raise ValueError(f"gof_predicted_norms: need >= 2 class sizes >= 1 and lambdas > 0; got {n_k.tolist()}, "
                     f"{lambda_W}, {lambda_H}.")
  w_sq = np.maximum(0.0, np.sqrt(n_k * lambda_H / lambda_W) - n_k.sum() * lambda_H)
  return w_sq, w_sq * lambda_W / (n_k * lambda_H)
