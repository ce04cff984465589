"""The forward-forward algorithm: every layer learns to tell positive from negative data by its own "goodness".

Paper: Geoffrey Hinton, "The Forward-Forward Algorithm: Some Preliminary Investigations" (2022), arXiv:2212.13345.
Used in this zoo as the back-propagation-free baseline of NoProp (``zoo.recipes.procedures.noprop``), which compares against
forward-forward.

The model is ``zoo.local_learning.ForwardForwardMLP``: the label is part of the input (a one-hot appended to the
flattened image; Hinton overwrites the first pixels of an MNIST image with it), and every layer sees the
length-normalised activity of the layer below with the gradient cut, so each layer is trained by its own loss only.
Positive data are the training examples with their true label; negative data the same examples with a random wrong
label (the supervised scheme of the paper's section 3.3). A layer's goodness is the mean squared activity
``g = mean_j h_j^2``, and its loss is the logistic loss of ``g - threshold`` being positive for positive data and
negative for negative data,

    L_l = mean(softplus(threshold - g_pos) + softplus(g_neg - threshold)).

Prediction runs the network once per candidate label and picks the label with the largest accumulated goodness
(over all layers but the first when there are several, as in the paper).

Public names: :class:`ForwardForward`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo.recipes.procedures.backprop import TrainState

__all__ = ["ForwardForward"]


@dataclasses.dataclass(frozen=True)
class ForwardForward:
  """Layer-local forward-forward training of a ``zoo.local_learning.ForwardForwardMLP``.

  Attributes:
    model: a ``ForwardForwardMLP``.
    task: a classification task.
    optimizer: an optax transformation (one update of all layers per step; the layers' losses do not interact).
    threshold: the goodness threshold (2.0 with ``g = mean h^2``, as in common re-implementations).
  """
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation
  threshold: float = 2.0

  def _xy(self, batch):
    return self.task.inputs(batch), batch[self.task.target_key].astype(jnp.int32)

  def init(self, rng, batch) -> TrainState:
    x, labels = self._xy(batch)
    params_rng, state_rng = jax.random.split(rng)
    params = self.model.init(params_rng, x, labels, method="goodness")["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params),
                      model_state={}, rng=state_rng)

  def layer_losses(self, params, batch, rng):
    """``[layers]``: each layer's positive/negative logistic loss."""
    x, labels = self._xy(batch)
    classes = self.model.num_classes
    wrong = (labels + jax.random.randint(rng, labels.shape, 1, classes)) % classes
    g_pos = self.model.apply({"params": params}, x, labels, method="goodness")
    g_neg = self.model.apply({"params": params}, x, wrong, method="goodness")
    return jnp.mean(jax.nn.softplus(self.threshold - g_pos) + jax.nn.softplus(g_neg - self.threshold), axis=-1)

  def step(self, state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    loss_fn = lambda p: jnp.sum(self.layer_losses(p, batch, rng))
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), {
        "loss": loss, "grad_norm": optax.tree.norm(grads)}

  def variables(self, state: TrainState):
    return {"params": state.params}

  def evaluate(self, state: TrainState, batch):
    x, labels = self._xy(batch)
    goodness = self.model.apply(self.variables(state), x)
    return {"accuracy": (jnp.argmax(goodness, -1) == labels).astype(jnp.float32)}
