"""Hebbian learning from examples as a procedure: the multitasking network's couplings from batches of examples.

"Parallel Learning by Multitasking Neural Networks" (Agliari, Alessandrelli, Barra, Ricci-Tersenghi, 2023, arXiv
2308.04106); the model is ``zoo.hebbian.HebbianNetwork``. No gradients: each step adds a batch of examples
``{'x': eta [batch, N], 'label': mu [batch]}`` to the Hebbian statistics and re-sets the couplings,

  unsupervised ``J = 1/(N n) sum_examples eta eta^T`` (``n`` the examples per pattern, ``count / K``),
  supervised   ``J = 1/N sum_mu etabar^mu etabar^mu^T`` with the class means ``etabar^mu`` of the examples seen,

with ``J_ii = 0`` (exactly ``zoo.hebbian.hebbian_couplings`` once every example is seen once; further epochs count
every example equally again, so ``J`` stays the same). ``evaluate`` takes rows ``{'x': xi^mu [rows, N], 'label':
mu, 'patterns': all xi [rows, K, N]}`` (the dataset's test split), starts the dynamics near each row's pattern
(its signs, random signs on its blanks) and reports per row the Mattis magnetisations: ``m_self`` (with the
starting pattern), ``m_second`` and ``m_third`` (the next largest ``|m|``, the hierarchical state's lower tiers),
and ``accuracy`` (the starting pattern has the largest ``|m|``).

Config: ``procedure.name = 'hebbian.HebbianLearning'``, ``procedure.mode = 'unsupervised' | 'supervised'``,
``procedure.num_patterns = K``; ``model.name = 'hebbian.HebbianNetwork'``. The optimizer is not used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo import hebbian

__all__ = ["HebbianLearning", "HebbianState"]


class HebbianState(flax.struct.PyTreeNode):
  """Attributes: step; params ``{'couplings': J [N, N]}``; ``outer`` ``sum eta eta^T [N, N]`` (unsupervised);
  ``class_sums [K, N]`` and ``class_counts [K]`` (supervised); rng."""
  step: jax.Array
  params: Any
  outer: jax.Array
  class_sums: jax.Array
  class_counts: jax.Array
  rng: jax.Array


@dataclasses.dataclass(frozen=True)
class HebbianLearning:
  """Hebbian couplings from example batches (module docstring).

  Attributes:
    model: a ``zoo.hebbian.HebbianNetwork``.
    task: unused beyond the trainer's protocol (its ``input_key`` names the examples, default ``'x'``).
    optimizer: unused.
    mode: ``'unsupervised'`` or ``'supervised'``.
    num_patterns: ``K``, the number of labels.
  """
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation | None = None
  mode: str = "unsupervised"
  num_patterns: int = 3

  def __post_init__(self):
    if self.mode not in hebbian.MODES:
      raise ValueError(f"HebbianLearning: `mode` must be one of {hebbian.MODES}; got {self.mode!r}.")
    if not (isinstance(self.num_patterns, int) and self.num_patterns >= 1):
      raise ValueError(f"HebbianLearning: `num_patterns` must be an integer >= 1; got {self.num_patterns!r}.")

  def _key(self):
    return getattr(self.task, "input_key", "x")

  def init(self, rng, batch) -> HebbianState:
    n = self.model.num_neurons
    params = nn.unbox(self.model.init(jax.random.key(0), jnp.zeros((1, n), jnp.float32))["params"])
    return HebbianState(step=jnp.zeros((), jnp.int32), params=params, outer=jnp.zeros((n, n), jnp.float32),
                        class_sums=jnp.zeros((self.num_patterns, n), jnp.float32),
                        class_counts=jnp.zeros((self.num_patterns,), jnp.float32), rng=rng)

  def step(self, state: HebbianState, batch):
    eta = jnp.asarray(batch[self._key()], jnp.float32)
    onehot = jax.nn.one_hot(batch["label"], self.num_patterns, dtype=jnp.float32)  # an out-of-range label adds 0
    outer = state.outer + eta.T @ eta
    sums, counts = state.class_sums + onehot.T @ eta, state.class_counts + onehot.sum(0)
    n = eta.shape[1]
    if self.mode == "unsupervised":
      per_pattern = jnp.maximum(counts.sum() / self.num_patterns, 1.0)
      j = outer / (n * per_pattern)
    else:
      means = sums / jnp.maximum(counts, 1.0)[:, None]
      j = means.T @ means / n
    j = j * (1.0 - jnp.eye(n, dtype=j.dtype))
    metrics = {"coupling_norm": jnp.sqrt(jnp.sum(j ** 2)), "examples_seen": counts.sum()}
    return state.replace(step=state.step + 1, params={"couplings": j}, outer=outer, class_sums=sums,
                         class_counts=counts), metrics

  def variables(self, state: HebbianState):
    return {"params": state.params}

  def evaluate(self, state: HebbianState, batch):
    xi = jnp.asarray(batch[self._key()], jnp.float32)  # [rows, N]: the pattern each row starts near
    patterns = jnp.asarray(batch["patterns"], jnp.float32)  # [rows, K, N]
    keys = jax.random.split(jax.random.fold_in(state.rng, 1), xi.shape[0])
    sigma0 = jax.vmap(hebbian.near_pattern_state)(keys, xi)
    sigma = self.model.apply(self.variables(state), sigma0, rngs={"noise": jax.random.fold_in(state.rng, 2)})
    m = jnp.abs(jnp.einsum("rkn,rn->rk", patterns, sigma) / xi.shape[1])  # [rows, K]
    own = jnp.take_along_axis(m, batch["label"][:, None].astype(jnp.int32), axis=1)[:, 0]
    ranked = jnp.sort(m, axis=1)[:, ::-1]
    zeros = jnp.zeros_like(own)
    return {"m_self": own, "m_second": ranked[:, 1] if m.shape[1] > 1 else zeros,
            "m_third": ranked[:, 2] if m.shape[1] > 2 else zeros,
            "accuracy": (jnp.argmax(m, axis=1) == batch["label"]).astype(jnp.float32)}
