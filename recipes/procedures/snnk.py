"""The fully bundled SNNK network fitted in closed form, inside the one training loop (no backprop).

"Scalable Neural Network Kernels" (Sehanobish et al., ICLR 2024, arXiv 2310.13225): a network bundled into one
model linear in the random features ``Phi(x)`` (``zoo.snnk.SNNKClassifier``) has MSE-optimal parameters in closed
form. Each step adds a batch's ``Phi^T Phi`` and ``Phi^T Y`` (``Y`` the one-hot labels of a classification task,
or the targets of a regression task) and re-solves ``(Phi^T Phi / n + l2 I) W = Phi^T Y / n``; after one pass the
parameters are the exact ridge solution on everything seen (``zoo.snnk.bundle_closed_form`` on the whole set).

Config: ``procedure.name = 'snnk.BundledRidge'``, ``procedure.l2``; the model must have a ``features_of`` method and
a single ``'params'`` leaf ``snnk/psi`` (``SNNKClassifier``). The optimizer is not used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo.recipes import tasks as tasks_lib

__all__ = ["BundledRidge", "BundledState"]


class BundledState(flax.struct.PyTreeNode):
  """``params`` (the current solution), the frozen ``model_state``, and the sufficient statistics."""
  step: jax.Array
  params: Any
  model_state: Any
  gram: jax.Array      # [m, m]
  moment: jax.Array    # [m, k]
  count: jax.Array


@dataclasses.dataclass(frozen=True)
class BundledRidge:
  """Closed-form ridge fit of ``SNNKClassifier``'s ``psi`` (module docstring)."""
  model: Any
  task: Any
  optimizer: optax.GradientTransformation | None = None
  l2: float = 1e-4

  def __post_init__(self):
    if not self.l2 > 0:
      raise ValueError(f"BundledRidge: `l2` must be > 0; got {self.l2}.")
    if not hasattr(self.model, "features_of"):
      raise TypeError(f"BundledRidge: the model must have a `features_of` method (zoo.snnk.SNNKClassifier); got "
                      f"{type(self.model).__name__}.")

  def _targets(self, batch, k: int):
    y = batch[self.task.target_key]
    if isinstance(self.task, tasks_lib.Classification):
      return jax.nn.one_hot(y, k, dtype=jnp.float32)
    return y.reshape(y.shape[0], -1).astype(jnp.float32)

  def init(self, rng, batch) -> BundledState:
    variables = dict(nn.unbox(self.model.init({"params": rng}, self.task.inputs(batch))))
    params = variables.pop("params")
    m, k = params["snnk"]["psi"].shape
    return BundledState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                        gram=jnp.zeros((m, m), jnp.float32), moment=jnp.zeros((m, k), jnp.float32),
                        count=jnp.zeros((), jnp.float32))

  def step(self, state: BundledState, batch):
    phi = self.model.apply(self.variables(state), self.task.inputs(batch), method="features_of")
    y = self._targets(batch, state.moment.shape[1])
    gram, moment, count = state.gram + phi.T @ phi, state.moment + phi.T @ y, state.count + y.shape[0]
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
    psi = jax.scipy.linalg.solve(gram / count + self.l2 * eye, moment / count, assume_a="pos")
    params = {**state.params, "snnk": {**state.params["snnk"], "psi": psi}}
    return (state.replace(step=state.step + 1, params=params, gram=gram, moment=moment, count=count),
            {"loss": jnp.mean((phi @ psi - y) ** 2)})

  def variables(self, state: BundledState):
    return {"params": state.params, **state.model_state}

  def evaluate(self, state: BundledState, batch):
    return self.task.metrics(self.model.apply(self.variables(state), self.task.inputs(batch)), batch)
