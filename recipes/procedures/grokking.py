"""Backprop that logs the three Li_2 stages of grokking (Tian, 2025, arXiv 2509.21519) for
``zoo.grokking.GroupArithmeticNet``.

``Li2Backprop`` is :class:`~zoo.recipes.procedures.backprop.Backprop` (same update, same state) whose ``step`` also
returns :func:`zoo.grokking.stage_metrics` on the step's batch (full batch in the grokking configs, i.e. the whole
training set): ``gf_norm``, ``gf_label_alignment``, ``grad_energy_cosine``, ``energy``, ``fourier_share``,
``fourier_nodes``, ``active_nodes``, ``accuracy``; the loop writes them as ``train/<name>`` to ``metrics.jsonl``
every ``log_every`` steps (their mean over those steps). ``evaluate`` adds the argmax ``accuracy`` (the batch's
``label``) to the task's metrics, so ``eval_every`` traces test loss and accuracy through the run.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from zoo import grokking
from zoo.recipes.procedures.backprop import Backprop, call_model

__all__ = ["Li2Backprop"]


@dataclasses.dataclass(frozen=True)
class Li2Backprop(Backprop):
  """Backprop + the Li_2 stage metrics. Attributes (besides Backprop's): ``label_key`` (int labels in the batch)."""
  label_key: str = "label"

  def step(self, state, batch):
    new_state, metrics = super().step(state, batch)
    x, y = self.task.inputs(batch), batch[self.task.target_key]
    stages = grokking.stage_metrics(state.params, x, y, getattr(self.model, "activation", "square"))
    return new_state, {**metrics, **stages}

  @staticmethod
  def evaluate_variables(model, task, variables, batch):
    outputs = call_model(model, variables, task.inputs(batch), train=False)
    return {**task.metrics(outputs, batch),
            "accuracy": (jnp.argmax(outputs, -1) == batch["label"]).astype(jnp.float32)}

  def evaluate(self, state, batch):
    outputs = call_model(self.model, self.variables(state), self.task.inputs(batch), train=False)
    return {**self.task.metrics(outputs, batch),
            "accuracy": (jnp.argmax(outputs, -1) == batch[self.label_key]).astype(jnp.float32)}
