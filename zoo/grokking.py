"""Group-arithmetic networks whose hidden nodes learn Fourier features (grokking), after "Provable Scaling Laws of
Feature Emergence from Learning Dynamics of Grokking" (Yuandong Tian, 2025, arXiv 2509.21519; "Li_2").

Task: ``(a, b) -> (a + b) mod M``; input ``x = [onehot(a); onehot(b)]`` ``[2M]``. Network: ``h = sigma(W x)`` with
``K`` hidden nodes (``sigma`` = square by default, ``'relu'``/``'silu'`` optional), output ``V h`` ``[M]``, trained
on the MSE to ``onehot((a + b) mod M)`` with weight decay (the paper's defaults: Adam 1e-3, wd 1e-4). The paper's
claim: hidden nodes climb an energy whose local maxima are Fourier (irreducible-representation) features, which
emerge, and the net generalises, once the number of training pairs ``n`` exceeds ``c M log M`` (reference code
``c = 2.7482``).

Public names:

* ``GroupArithmeticNet(modulus, hidden, activation)``: ``x: [batch, 2 M]`` -> ``[batch, M]``.
* ``modular_addition_data(modulus, train_fraction, seed)``: ``{'x_train', 'y_train', 'c_train', 'x_test', ...}``
  (``y`` one-hot float32 ``[n, M]``, ``c`` int labels), a random split of all ``M^2`` pairs.
* ``critical_train_fraction(modulus, c=2.7482)``: ``c log M / M``.
* ``train_group_net(data, hidden, steps, learning_rate, weight_decay, activation, seed)``: full-batch Adam with L2
  weight decay (``optax.add_decayed_weights`` before Adam, as torch's ``Adam(weight_decay=)``), one ``lax.scan``;
  returns ``(params, metrics)`` with train/test accuracy.
* ``fourier_concentration(w_a, active=0.2)``: per hidden node, the share of the power of its ``a``-part weights
  ``[K, M]`` on its strongest nonzero DFT frequency (``k`` and ``M - k`` pooled); returns ``(share [K], active
  [K] bool)``, a node being active when its norm exceeds ``active`` times the largest (weight decay shrinks the
  rest towards 0, where their share is noise).

Not implemented (see the issue notes): the energy ``E(w)``, the three-stage metrics and the ridge / Muon options.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.layers import check_shape, partitioned

__all__ = ["GroupArithmeticNet", "critical_train_fraction", "fourier_concentration", "modular_addition_data",
           "train_group_net"]

ACTIVATIONS = {"square": jnp.square, "relu": jax.nn.relu, "silu": jax.nn.silu}


class GroupArithmeticNet(nn.Module):
  """``V sigma(W x)``; ``W [K, 2M]`` ``~ N(0, 1/(2M))``, ``V [M, K]`` ``~ N(0, 1/K)``.

  Call: ``x: [batch, 2 * modulus]`` float -> ``[batch, modulus]``.
  """
  modulus: int = 23
  hidden: int = 256
  activation: str = "square"

  @nn.compact
  def __call__(self, x):
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"GroupArithmeticNet: `activation` must be one of {sorted(ACTIVATIONS)}; got "
                       f"{self.activation!r}.")
    check_shape(x, "x", "batch inputs", where="GroupArithmeticNet", dtype="floating", inputs=2 * self.modulus)
    w = self.param("W", partitioned(nn.initializers.normal(1 / math.sqrt(2 * self.modulus)), ("mlp", "embed")),
                   (self.hidden, 2 * self.modulus))
    v = self.param("V", partitioned(nn.initializers.normal(1 / math.sqrt(self.hidden)), ("embed", "mlp")),
                   (self.modulus, self.hidden))
    return ACTIVATIONS[self.activation](x @ w.T) @ v.T


def critical_train_fraction(modulus: int, c: float = 2.7482) -> float:
  """The train fraction ``c log M / M`` at which ``n = c M log M`` pairs are seen."""
  return c * math.log(modulus) / modulus


def modular_addition_data(modulus: int = 23, train_fraction: float = 0.75, seed: int = 0) -> dict[str, np.ndarray]:
  """All ``M^2`` pairs ``(a, b)``, split at random into train (``train_fraction``) and test."""
  if modulus < 2 or not 0 < train_fraction < 1:
    raise ValueError(f"modular_addition_data: need modulus >= 2 and 0 < train_fraction < 1; got {modulus}, "
                     f"{train_fraction}.")
  a, b = (g.ravel() for g in np.meshgrid(np.arange(modulus), np.arange(modulus), indexing="ij"))
  c = (a + b) % modulus
  eye = np.eye(modulus, dtype=np.float32)
  x, y = np.concatenate([eye[a], eye[b]], axis=1), eye[c]
  order = np.random.default_rng(seed).permutation(modulus ** 2)
  n = max(1, int(round(train_fraction * modulus ** 2)))
  tr, te = order[:n], order[n:]
  return {"x_train": x[tr], "y_train": y[tr], "c_train": c[tr].astype(np.int32), "x_test": x[te], "y_test": y[te],
          "c_test": c[te].astype(np.int32)}


@functools.partial(jax.jit, static_argnames=("modulus", "hidden", "steps", "activation"))
def _train(x, y, key, modulus, hidden, steps, learning_rate, weight_decay, activation):
  model = GroupArithmeticNet(modulus=modulus, hidden=hidden, activation=activation)
  params = nn.unbox(model.init(key, x))["params"]
  opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))

  def loss(p):
    return jnp.mean(jnp.sum((model.apply({"params": p}, x) - y) ** 2, axis=1))

  def step(carry, _):
    p, s = carry
    value, g = jax.value_and_grad(loss)(p)
    u, s = opt.update(g, s, p)
    return (optax.apply_updates(p, u), s), value

  (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
  return params, losses


def train_group_net(data: dict, *, hidden: int = 256, steps: int = 3000, learning_rate: float = 1e-3,
                    weight_decay: float = 1e-4, activation: str = "square", seed: int = 0):
  """Full-batch training on ``data`` from :func:`modular_addition_data`; returns ``(params, metrics)``."""
  modulus = data["y_train"].shape[1]
  if steps < 1 or not learning_rate > 0 or weight_decay < 0:
    raise ValueError(f"train_group_net: need steps >= 1, learning_rate > 0, weight_decay >= 0; got {steps}, "
                     f"{learning_rate}, {weight_decay}.")
  params, losses = _train(jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"]), jax.random.key(seed), modulus,
                          hidden, steps, learning_rate, weight_decay, activation)
  model = GroupArithmeticNet(modulus=modulus, hidden=hidden, activation=activation)
  acc = {split: float(jnp.mean(jnp.argmax(model.apply({"params": params}, jnp.asarray(data[f"x_{split}"])), 1)
                               == data[f"c_{split}"])) for split in ("train", "test")}
  return params, {"train_accuracy": acc["train"], "test_accuracy": acc["test"], "final_loss": float(losses[-1])}


def fourier_concentration(w_a, active: float = 0.2):
  """``(share [K], active [K])`` for the ``a``-part weights ``w_a [K, M]`` (module docstring)."""
  w = np.asarray(w_a, np.float64)
  if w.ndim != 2 or w.shape[1] < 3 or w.shape[0] == 0:
    raise ValueError(f"fourier_concentration: `w_a` must be [K, M] with K >= 1, M >= 3; got {w.shape}.")
  m = w.shape[1]
  power = np.abs(np.fft.fft(w, axis=1)) ** 2
  freqs = power[:, 1:m // 2 + 1].copy()  # k = 1 .. M // 2, each pooled with M - k
  pair = np.arange(1, m // 2 + 1)
  freqs += np.where((m - pair) != pair, power[:, m - pair], 0.0)
  share = freqs.max(1) / np.maximum(freqs.sum(1), 1e-300)
  norms = np.linalg.norm(w, axis=1)
  return share, norms > active * norms.max()
