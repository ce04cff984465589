"""Tasks for hypernetwork models (``zoo.hypernet.HyperModel``): the model sees ``{cond, x}``, the loss the target.

A hypernetwork trains with the default ``backprop`` procedure: the weights it generates are an intermediate of
the model's forward pass, so end-to-end backpropagation through ``apply_target`` trains the hypernetwork. What it
needs is a task that hands the model the condition with the input:

* ``ConditionedRegression(cond_key='task', input_key='x', target_key='y')``: MSE of ``model({cond_key: ..., 'x':
  ...})`` against ``batch[target_key]`` (per example ``[batch]``), as ``zoo.recipes.tasks.Regression``.
* ``ConditionedClassification(cond_key='task', input_key='image', target_key='label')``: softmax cross-entropy.

The model is called on ``{model_cond_key: batch[cond_key], model_x_key: batch[input_key]}`` (``model_cond_key`` /
``model_x_key`` default to ``'task'`` / ``'x'``, the defaults of ``HyperModel``). Continual learning over tasks is
``zoo.recipes.procedures.continual``.
"""

from __future__ import annotations

import dataclasses

from zoo.recipes import tasks as tasks_lib

__all__ = ["ConditionedClassification", "ConditionedRegression"]


def _inputs(task, batch, where: str):
  for key in (task.cond_key, task.input_key):
    if key not in batch:
      raise KeyError(f"{where}: the batch has no key {key!r}; it has {sorted(batch)}.")
  return {task.model_cond_key: batch[task.cond_key], task.model_x_key: batch[task.input_key]}


@dataclasses.dataclass(frozen=True)
class ConditionedRegression(tasks_lib.Regression):
  """Regression of ``batch[target_key]`` from ``{condition, x}`` (``zoo.recipes.tasks.Regression``'s metrics)."""
  cond_key: str = "task"
  model_cond_key: str = "task"
  model_x_key: str = "x"

  def inputs(self, batch):
    return _inputs(self, batch, "ConditionedRegression")


@dataclasses.dataclass(frozen=True)
class ConditionedClassification(tasks_lib.Classification):
  """Classification of ``batch[target_key]`` from ``{condition, image}`` (``Classification``'s metrics)."""
  cond_key: str = "task"
  model_cond_key: str = "task"
  model_x_key: str = "x"

  def inputs(self, batch):
    return _inputs(self, batch, "ConditionedClassification")
