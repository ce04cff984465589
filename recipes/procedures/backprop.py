"""The default procedure: end-to-end backpropagation of the task loss with an optax optimizer.

A *procedure* owns the update rule, not the loop (DESIGN.md, "Core contracts"). It is built with the model, the
task and the optimizer, and provides three pure functions that the one loop in ``zoo.recipes.train`` jits over the
mesh:

* ``init(rng, batch) -> state``: a pytree; parameters may carry logical axis names (the loop reads them to shard
  the state, then unboxes it);
* ``step(state, batch) -> (state, metrics)``: one update; ``metrics`` is a dict of scalars;
* ``evaluate(state, batch) -> {name: [batch]}``: per-example metrics on held-out data;
* ``variables(state) -> variables``: what ``model.apply`` needs, for export and inference.

Models are called as ``model.apply(variables, inputs, train=...)`` when their ``__call__`` takes ``train``. Losses
that a model adds itself (a sparsity penalty, an auxiliary loss) are ``self.sow('losses', name, value)`` scalars:
the procedure adds their sum to the task loss.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

__all__ = ["Backprop", "TrainState", "call_model"]


class TrainState(flax.struct.PyTreeNode):
  """What a backprop run carries from step to step.

  Attributes:
    step: int32 scalar, updates done so far.
    params: the model's ``'params'`` collection.
    opt_state: the optimizer's state.
    model_state: the model's other collections (``'batch_stats'`` ...), possibly empty.
    rng: a PRNG key; the key of step ``t`` is ``fold_in(rng, t)``, so a resumed run draws the same numbers.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  rng: jax.Array


@functools.lru_cache(maxsize=None)
def _takes_train(cls) -> bool:
  return "train" in inspect.signature(cls.__call__).parameters


def call_model(model: nn.Module, variables, inputs, *, train: bool, rngs=None, mutable=False):
  """``model.apply`` with ``train=`` passed only to models whose ``__call__`` accepts it."""
  kwargs = {"train": train} if _takes_train(type(model)) else {}
  return model.apply(variables, inputs, rngs=rngs, mutable=mutable, **kwargs)


def sown_losses(collections) -> jax.Array:
  """Sum of every value a model sowed into its ``'losses'`` collection (0 if none)."""
  leaves = jax.tree.leaves(collections.get("losses", {}))
  return sum((jnp.sum(leaf) for leaf in leaves), jnp.zeros((), jnp.float32))


@dataclasses.dataclass(frozen=True)
class Backprop:
  """End-to-end gradient descent on ``mean(task.loss) + sown losses``.

  Attributes:
    model: any Linen module the task can score.
    task: a task from ``zoo.recipes.tasks``.
    optimizer: an optax transformation.
  """
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation

  def init(self, rng, batch) -> TrainState:
    params_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    variables = dict(self.model.init({"params": params_rng, "dropout": dropout_rng, "noise": dropout_rng},
                                     self.task.inputs(batch), **self._train_kw(False)))
    params = variables.pop("params")
    variables.pop("losses", None)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params),
                      model_state=variables, rng=state_rng)

  def _train_kw(self, train: bool):
    return {"train": train} if _takes_train(type(self.model)) else {}

  def loss(self, params, model_state, batch, rng):
    """Mean task loss + sown losses, and ``(new model_state, metrics)``."""
    dropout_rng, noise_rng = jax.random.split(rng)
    mutable = [*model_state.keys(), "losses"]
    outputs, collections = call_model(self.model, {"params": params, **model_state}, self.task.inputs(batch),
                                      train=True, rngs={"dropout": dropout_rng, "noise": noise_rng}, mutable=mutable)
    task_loss = jnp.mean(self.task.loss(outputs, batch))
    new_state = {k: v for k, v in collections.items() if k != "losses"}
    if not jax.tree.leaves(collections.get("losses", {})):
      return task_loss, (new_state, {"loss": task_loss})
    extra = sown_losses(collections)
    return task_loss + extra, (new_state, {"loss": task_loss, "aux_loss": extra, "total_loss": task_loss + extra})

  def step(self, state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(self.loss, has_aux=True)
    (_, (model_state, metrics)), grads = grad_fn(state.params, state.model_state, batch, rng)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics

  def variables(self, state: TrainState):
    return {"params": state.params, **state.model_state}

  def evaluate(self, state: TrainState, batch):
    outputs = call_model(self.model, self.variables(state), self.task.inputs(batch), train=False)
    return self.task.metrics(outputs, batch)
