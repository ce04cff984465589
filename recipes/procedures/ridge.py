"""Closed-form ridge regression as a procedure: for models whose output is linear in their trainable parameters.

Random-feature models (``zoo.random_features``: frozen random first layer or query-key matrices, trainable readout
or values) are fitted in closed form in "What can a Single Attention Layer Learn? A Study Through the Random
Features Lens" (Fu et al., 2023, arXiv 2307.11353). This procedure does that inside the one training loop: each step
adds a batch's sufficient statistics ``Phi^T Phi`` and ``Phi^T y`` (``Phi`` the per-example Jacobian of the
model's output with respect to its flattened parameters, which *is* the feature matrix of a linear model) and
re-solves ``(Phi^T Phi / n + l2 I) theta = Phi^T y / n``. After one pass over the data the parameters are the exact
ridge solution on everything seen; further epochs weigh every example equally again, so the solution stays the same.

Config: ``procedure.name = 'ridge.RidgeRegression'``, ``procedure.l2 = 1e-3``; the task is ``'regression'`` (the
model's output ``[batch]`` or ``[batch, 1]`` against ``target_key``). The optimizer is not used.

The model must be linear in its ``'params'``: every step reports ``linearity_gap = max |f(theta) - Phi theta|``
on its batch, which is float noise for a linear model and large otherwise. Other collections (frozen random
weights) are carried unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from zoo.recipes.procedures import backprop

__all__ = ["RidgeRegression", "RidgeState"]


class RidgeState(flax.struct.PyTreeNode):
  """Ridge sufficient statistics and the current solution.

  Attributes:
    step: int32, batches seen.
    params: the model's ``'params'`` (the current ridge solution).
    model_state: the model's other collections (frozen random weights ...).
    gram: ``sum Phi^T Phi`` ``[P, P]``.
    moment: ``sum Phi^T y`` ``[P]``.
    count: examples seen (float32).
  """
  step: jax.Array
  params: Any
  model_state: Any
  gram: jax.Array
  moment: jax.Array
  count: jax.Array


@dataclasses.dataclass(frozen=True)
class RidgeRegression:
  """Exact ridge regression of a model that is linear in its parameters (see the module docstring).

  Attributes:
    model: a Linen module, linear in ``'params'``, with scalar output per example.
    task: a regression task (``zoo.recipes.tasks.Regression``): ``inputs`` and ``target_key``.
    optimizer: unused (kept for the procedure protocol).
    l2: ridge strength.
  """
  model: Any
  task: Any
  optimizer: optax.GradientTransformation | None = None
  l2: float = 1e-3

  def __post_init__(self):
    if not self.l2 > 0:
      raise ValueError(f"RidgeRegression: `l2` must be > 0; got {self.l2}.")

  def _outputs(self, params, model_state, inputs):
    out = backprop.call_model(self.model, {"params": params, **model_state}, inputs, train=False)
    if out.ndim == 2 and out.shape[1] == 1:
      out = out[:, 0]
    if out.ndim != 1:
      raise ValueError(f"RidgeRegression: the model must output one value per example, [batch] or [batch, 1]; got "
                       f"shape {out.shape}.")
    return out.astype(jnp.float32)

  def _features(self, params, model_state, inputs):
    flat, unravel = ravel_pytree(params)

    def output_one(theta, x):
      return self._outputs(unravel(theta), model_state, jax.tree.map(lambda a: a[None], x))[0]

    return jax.vmap(jax.grad(output_one), in_axes=(None, 0))(flat, inputs)  # [batch, P]

  def _targets(self, batch):
    y = batch[self.task.target_key]
    return y.reshape(y.shape[0], -1)[:, 0].astype(jnp.float32)

  def init(self, rng, batch) -> RidgeState:
    variables = dict(self.model.init({"params": rng}, self.task.inputs(batch),
                                     **({"train": False} if backprop._takes_train(type(self.model)) else {})))  # pylint: disable=protected-access
    params = variables.pop("params")
    variables.pop("losses", None)
    size = ravel_pytree(params)[0].size
    return RidgeState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                      gram=jnp.zeros((size, size), jnp.float32), moment=jnp.zeros((size,), jnp.float32),
                      count=jnp.zeros((), jnp.float32))

  def step(self, state: RidgeState, batch):
    inputs = self.task.inputs(batch)
    phi = self._features(state.params, state.model_state, inputs)
    y = self._targets(batch)
    gram = state.gram + phi.T @ phi
    moment = state.moment + phi.T @ y
    count = state.count + y.shape[0]
    size = gram.shape[0]
    theta = jax.scipy.linalg.solve(gram / count + self.l2 * jnp.eye(size, dtype=gram.dtype), moment / count,
                                   assume_a="pos")
    params = ravel_pytree(state.params)[1](theta)
    residual = phi @ theta - y
    # Linearity check: the model's own output must equal Phi theta (a nonlinear model would silently misfit).
    linearity_gap = jnp.max(jnp.abs(self._outputs(params, state.model_state, inputs) - phi @ theta))
    metrics = {"loss": jnp.mean(residual ** 2), "linearity_gap": linearity_gap}
    return state.replace(step=state.step + 1, params=params, gram=gram, moment=moment, count=count), metrics

  def variables(self, state: RidgeState):
    return {"params": state.params, **state.model_state}

  def evaluate(self, state: RidgeState, batch):
    outputs = backprop.call_model(self.model, self.variables(state), self.task.inputs(batch), train=False)
    return self.task.metrics(outputs, batch)
