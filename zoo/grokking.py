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
* ``train_group_net(data, hidden, steps, learning_rate, weight_decay, activation, seed, record_every)``: full-batch
  Adam with L2 weight decay (``optax.add_decayed_weights`` before Adam, as torch's ``Adam(weight_decay=)``), one
  ``lax.scan``; returns ``(params, metrics)`` with train/test accuracy (and, with ``record_every``, the trajectory
  of :func:`stage_metrics`).
* ``fourier_concentration(w_a, active=0.2)``: per hidden node, the share of the power of its ``a``-part weights
  ``[K, M]`` on its strongest nonzero DFT frequency (``k`` and ``M - k`` pooled); returns ``(share [K], active
  [K] bool)``, a node being active when its norm exceeds ``active`` times the largest (weight decay shrinks the
  rest towards 0, where their share is noise).
* ``energy_E(w, x, y, activation)``: the Li_2 energy of hidden nodes ``w [K, 2M]`` (or ``[2M]``) on the data
  ``x [n, 2M]``, ``y [n, M]``::

      E(w) = 1/2 || Ytilde^T P_1 sigma(X w) ||^2,   Ytilde = P_1 Y,   P_1 = I_n - 1 1^T / n

  (``P_1`` centres over the ``n`` samples). Stage II of the paper: once the top layer has fitted lazily under
  weight decay ``eta`` (``V ~ (F~^T F~ + eta I)^-1 F~^T Y~``), the backpropagated gradient is ``G_F ~ eta^-1 Y~ Y~^T
  F~`` and every node does gradient ascent on ``E`` independently (``-dL/dw_j ~ eta^-1 grad E(w_j)``); its local
  maxima on the sphere are the Fourier features (for all ``M^2`` pairs a unit Fourier node has ``E = M / 4``).
  ``E`` is derived here from that stage-II form of ``G_F`` (ridge ``V``, large ``eta``), dropping the constant ``1 /
  eta``; tests/test_grokking.py checks the identity ``-dL/dw_j = grad E(w_j) / eta`` numerically. ``energy_grad`` is
  ``grad E`` per node; ``stage_metrics`` gives the per-step diagnostics of the three stages
  (``recipes/procedures/grokking.py`` logs them from the CLI).
* ``fourier_share(w_a)``: the share of :func:`fourier_concentration` in ``jnp`` (jit-able).
* ``train_fraction_sweep(moduli, multipliers, ...)`` / ``minimal_fractions(records)``: train at ``n = c M log M``
  pairs for each ``c`` and find, per ``M``, the smallest ``n`` whose mean test accuracy passes a threshold.

Not implemented: the ridge-solved top layer (``set_weight_reg``) and the Muon option of the reference code.
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

__all__ = ["GroupArithmeticNet", "critical_train_fraction", "energy_E", "energy_grad", "fourier_concentration",
           "fourier_share", "minimal_fractions", "modular_addition_data", "stage_metrics", "train_fraction_sweep",
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


@functools.partial(jax.jit, static_argnames=("modulus", "hidden", "steps", "activation", "record_every"))
def _train(x, y, x_test, y_test, key, modulus, hidden, steps, learning_rate, weight_decay, activation, record_every):
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

  def chunk(carry, _):
    carry, losses = jax.lax.scan(step, carry, None, length=record_every)
    p = carry[0]
    out = model.apply({"params": p}, x_test)
    record = {**stage_metrics(p, x, y, activation), "train_loss": losses[-1],
              "test_loss": jnp.mean(jnp.sum((out - y_test) ** 2, axis=1)),
              "test_accuracy": jnp.mean(jnp.argmax(out, 1) == jnp.argmax(y_test, 1))}
    return carry, (losses, record)

  carry = (params, opt.init(params))
  if record_every:
    (params, _), (losses, history) = jax.lax.scan(chunk, carry, None, length=steps // record_every)
    return params, losses.reshape(-1), history
  (params, _), losses = jax.lax.scan(step, carry, None, length=steps)
  return params, losses, {}


def train_group_net(data: dict, *, hidden: int = 256, steps: int = 3000, learning_rate: float = 1e-3,
                    weight_decay: float = 1e-4, activation: str = "square", seed: int = 0, record_every: int = 0):
  """Full-batch training on ``data`` from :func:`modular_addition_data`; returns ``(params, metrics)``.

  ``record_every > 0`` (a divisor of ``steps``) adds ``metrics['history']``: ``{name: [steps // record_every]}``
  with :func:`stage_metrics` on the training set and ``train_loss``, ``test_loss``, ``test_accuracy`` after every
  ``record_every`` steps (``metrics['history_steps']`` the step numbers); the loss here is the reference's summed
  MSE, ``M`` times the per-entry one of :func:`stage_metrics`' ``gf_norm``.
  """
  modulus = data["y_train"].shape[1]
  if steps < 1 or not learning_rate > 0 or weight_decay < 0:
    raise ValueError(f"train_group_net: need steps >= 1, learning_rate > 0, weight_decay >= 0; got {steps}, "
                     f"{learning_rate}, {weight_decay}.")
  if record_every < 0 or (record_every and steps % record_every):
    raise ValueError(f"train_group_net: `record_every` must be 0 or a divisor of steps={steps}; got {record_every}.")
  params, losses, history = _train(jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"]),
                                   jnp.asarray(data["x_test"]), jnp.asarray(data["y_test"]), jax.random.key(seed),
                                   modulus, hidden, steps, learning_rate, weight_decay, activation, record_every)
  model = GroupArithmeticNet(modulus=modulus, hidden=hidden, activation=activation)
  acc = {split: float(jnp.mean(jnp.argmax(model.apply({"params": params}, jnp.asarray(data[f"x_{split}"])), 1)
                               == data[f"c_{split}"])) for split in ("train", "test")}
  metrics = {"train_accuracy": acc["train"], "test_accuracy": acc["test"], "final_loss": float(losses[-1])}
  if record_every:
    metrics["history"] = {k: np.asarray(v) for k, v in history.items()}
    metrics["history_steps"] = np.arange(1, steps // record_every + 1) * record_every
  return params, metrics


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


def _centre(a):
  return a - jnp.mean(a, axis=0, keepdims=True)


def energy_E(w, x, y, activation: str = "square"):
  """``E(w) = 1/2 ||(P_1 Y)^T P_1 sigma(X w)||^2`` per node (module docstring).

  Args:
    w: ``[2M]`` one node or ``[K, 2M]`` nodes (rows of ``W``).
    x: ``[n, 2M]`` inputs; y: ``[n, M]`` one-hot targets (any targets: they are centred over the samples).
    activation: a key of ``ACTIVATIONS``.
  Returns: ``[]`` or ``[K]``.
  """
  if activation not in ACTIVATIONS:
    raise ValueError(f"energy_E: `activation` must be one of {sorted(ACTIVATIONS)}; got {activation!r}.")
  w = jnp.asarray(w)
  x, y = jnp.asarray(x, w.dtype), jnp.asarray(y, w.dtype)
  if w.shape[-1] != x.shape[-1] or x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or w.ndim > 2:
    raise ValueError(f"energy_E: need w [K, d] or [d], x [n, d], y [n, M]; got {w.shape}, {x.shape}, {y.shape}.")
  f = _centre(ACTIVATIONS[activation](x @ jnp.atleast_2d(w).T))  # [n, K]
  e = 0.5 * jnp.sum((_centre(y).T @ f) ** 2, axis=0)
  return e[0] if w.ndim == 1 else e


def energy_grad(w, x, y, activation: str = "square"):
  """``grad_w E`` for each row of ``w [K, 2M]`` (the nodes are independent in ``E``)."""
  return jax.grad(lambda v: jnp.sum(energy_E(v, x, y, activation)))(jnp.asarray(w, jnp.float32))


def fourier_share(w_a):
  """:func:`fourier_concentration`'s share in ``jnp``: ``[K]`` for ``w_a [K, M]``."""
  m = w_a.shape[1]
  power = jnp.abs(jnp.fft.fft(w_a, axis=1)) ** 2
  pair = np.arange(1, m // 2 + 1)
  freqs = power[:, pair] + jnp.where(jnp.asarray((m - pair) != pair), power[:, m - pair], 0.0)
  return jnp.max(freqs, 1) / jnp.maximum(jnp.sum(freqs, 1), 1e-30)


def _cos(a, b, axis=None):
  return jnp.sum(a * b, axis) / jnp.maximum(jnp.linalg.norm(a, axis=axis) * jnp.linalg.norm(b, axis=axis), 1e-30)


def stage_metrics(params, x, y, activation: str = "square", active: float = 0.2):
  """Diagnostics of the three Li_2 stages for ``params = {'W': [K, 2M], 'V': [M, K]}`` on ``(x, y)``.

  The loss is the per-entry MSE ``mean((F V^T - y)^2)`` (the zoo ``regression`` task), ``F = sigma(X W^T)``.

  * ``gf_norm``: ``||G_F||``, ``G_F = -dL/dF`` the backpropagated gradient (the reference's ``dF_norm``);
  * ``gf_label_alignment``: ``cos(G_F, Y~ Y~^T F~)``, how close ``G_F`` is to its stage-II form (label-carrying,
    each column depending on its own node only); random in stage I, high in stage II, falling in stage III when
    ``G_F`` focuses on the missing features;
  * ``grad_energy_cosine``: mean over active nodes of ``cos(-dL/dw_j, grad E(w_j))`` (independent ascent on ``E``);
  * ``energy``: mean over nodes of ``E(w_j / |w_j|)`` (the scale-free energy; rises as features emerge);
  * ``fourier_share``: mean over active nodes of the ``a``-part DFT share; ``fourier_nodes``: share of active
    nodes with ``fourier_share > 0.6``; ``active_nodes``: their number (norm > ``active`` x the largest);
  * ``accuracy``: argmax accuracy on ``(x, y)``.
  """
  w, v = params["W"], params["V"]
  m = y.shape[1]
  sigma = ACTIVATIONS[activation]
  f = sigma(x @ w.T)

  def loss_of_f(f_):
    return jnp.mean((f_ @ v.T - y) ** 2)

  def loss_of_w(w_):
    return loss_of_f(sigma(x @ w_.T))

  g_f = -jax.grad(loss_of_f)(f)
  yc, fc = _centre(y), _centre(f)
  predicted = yc @ (yc.T @ fc)
  g_w = -jax.grad(loss_of_w)(w)
  g_e = energy_grad(w, x, y, activation)
  norms = jnp.linalg.norm(w, axis=1)
  is_active = norms > active * jnp.max(norms)
  count = jnp.maximum(jnp.sum(is_active), 1)
  share = fourier_share(w[:, :m])
  unit = w / jnp.maximum(norms[:, None], 1e-30)
  return {"gf_norm": jnp.linalg.norm(g_f), "gf_label_alignment": _cos(g_f, predicted),
          "grad_energy_cosine": jnp.sum(jnp.where(is_active, _cos(g_w, g_e, axis=1), 0.0)) / count,
          "energy": jnp.mean(energy_E(unit, x, y, activation)),
          "fourier_share": jnp.sum(jnp.where(is_active, share, 0.0)) / count,
          "fourier_nodes": jnp.sum(is_active & (share > 0.6)) / count, "active_nodes": jnp.sum(is_active),
          "accuracy": jnp.mean(jnp.argmax(f @ v.T, 1) == jnp.argmax(y, 1))}


def train_fraction_sweep(moduli=(11, 17, 23), multipliers=(1, 1.5, 2, 2.5, 3, 4, 5, 6), *, seeds=(0, 1, 2),
                         hidden: int = 256, steps: int = 3000, **train_kw) -> list[dict]:
  """Trains at ``n = round(c M log M)`` training pairs for every ``M``, ``c``, seed (``n < M^2``; larger ``c`` are
  skipped); returns one record per run: ``{'modulus', 'c', 'n', 'train_fraction', 'seed', 'test_accuracy'}``."""
  records = []
  for m in moduli:
    for c in multipliers:
      n = int(round(c * m * math.log(m)))
      if n >= m * m:
        continue
      for seed in seeds:
        data = modular_addition_data(m, n / m ** 2, seed=seed)
        _, metrics = train_group_net(data, hidden=hidden, steps=steps, seed=seed, **train_kw)
        records.append({"modulus": m, "c": c, "n": n, "train_fraction": n / m ** 2, "seed": seed,
                        "test_accuracy": metrics["test_accuracy"]})
  return records


def minimal_fractions(records, threshold: float = 0.9) -> dict[int, dict]:
  """Per modulus, the smallest ``n`` of :func:`train_fraction_sweep`'s grid whose mean test accuracy over seeds is
  ``>= threshold`` and stays so at every larger ``n``: ``{M: {'n', 'train_fraction', 'c'}}`` (``None`` if none)."""
  out = {}
  for m in sorted({r["modulus"] for r in records}):
    grid = sorted({r["n"] for r in records if r["modulus"] == m})
    acc = {n: np.mean([r["test_accuracy"] for r in records if r["modulus"] == m and r["n"] == n]) for n in grid}
    best = None
    for n in reversed(grid):
      if acc[n] < threshold:
        break
      best = n
    out[m] = None if best is None else {"n": best, "train_fraction": best / m ** 2, "c": best / (m * math.log(m))}
  return out
