"""Joint completion and classification training of a monotone DBM ("Monotone deep Boltzmann machines", Feng,
Winston, Kolter, 2023, arXiv 2307.04990, §5).

Each step hides a random half of every image's (binarised) pixels, clamps the observed ones, solves the mean-field
fixed point (``zoo.dbm.MonotoneDBM``, implicit-differentiation backward) and descends the cross-entropy of the
label's marginal (the task loss; ``MonotoneDBM`` returns the label log-marginals as logits) plus the mean
cross-entropy of the hidden pixels' marginals (sown by the model as ``losses/completion``, which ``Backprop`` adds).

* :class:`JointCompletion`: ``Backprop`` whose ``evaluate`` also reports ``completion_accuracy [batch]``, the
  fraction of hidden pixels whose marginal's argmax is the true binarised pixel (the model's fixed eval mask);
  ``JointCompletion.evaluate_variables(model, task, variables, batch)`` is the same evaluation from a shipped
  model's variables (``zoo.checkpoints.evaluate``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from zoo.recipes.procedures.backprop import Backprop, call_model

__all__ = ["JointCompletion"]


@dataclasses.dataclass(frozen=True)
class JointCompletion(Backprop):
  """``Backprop`` on label CE + hidden-pixel CE; evaluation adds the completion accuracy."""

  def evaluate(self, state, batch):
    return self.evaluate_variables(self.model, self.task, self.variables(state), batch)

  @staticmethod
  def evaluate_variables(model, task, variables, batch):
    """:meth:`evaluate` from the variables alone (``zoo.checkpoints.evaluate`` of a shipped model): the task's
    metrics of the label marginals and ``completion_accuracy`` under the model's fixed eval mask."""
    metrics = task.metrics(call_model(model, variables, task.inputs(batch), train=False), batch)
    image = task.inputs(batch)
    n = image.shape[0]
    observed = jax.random.uniform(jax.random.key(model.mask_seed), (n, model.num_pixels)) >= model.hide_fraction
    q_pix, _ = model.apply(variables, image, observed, method=type(model).marginals)
    on = image.reshape(n, -1) > 0.5
    hit = ((q_pix[..., 1] > 0.5) == on).astype(jnp.float32)
    hidden = 1.0 - observed.astype(jnp.float32)
    return {**metrics, "completion_accuracy": jnp.sum(hit * hidden, 1) / jnp.maximum(hidden.sum(1), 1.0)}
