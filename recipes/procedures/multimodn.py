"""MultiModN's multi-task loss with its state-change penalty, as a task any procedure (backprop by default) trains.

Paper: "MultiModN - Multimodal, Multi-Task, Interpretable Modular Networks" (Swamy et al., 2023, arXiv 2309.14118).
The model is ``zoo.multimodn.MultiModN`` (or the ``PFusion`` baseline); both return ``{'logits': (per task
[batch, steps, classes]), 'states': [batch, steps, state_dim]}``. A config names the task
``task.name = 'multimodn.MultiModNTask'``.

:class:`MultiModNTask` fields: ``input_key`` (``'x'``), ``target_keys`` (one integer label key per task, in the
model's task order), ``err_penalty`` (1.0), ``state_change_penalty`` (1.0). Per example:

  loss = err_penalty * mean_{steps, tasks} CE(dec_j(s_i), y_j) + 0.01 * state_change_penalty * mean_i ||s_i - s_{i-1}||^2

Metrics (per example): ``loss``; ``accuracy`` (first task, last step); ``accuracy_<key>`` (each task, last step);
``step<i>_accuracy`` (first task after ``i`` encoder steps, ``i = 0 .. E``): the prediction trajectory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo.recipes import tasks as tasks_lib

__all__ = ["MultiModNTask"]


@dataclasses.dataclass(frozen=True)
class MultiModNTask:
  """MultiModN's loss and per-step metrics (see the module docstring)."""
  input_key: str = "x"
  target_keys: Sequence[str] = ("label", "parity")
  err_penalty: float = 1.0
  state_change_penalty: float = 1.0

  @property
  def target_key(self) -> str:
    return tuple(self.target_keys)[0]

  def inputs(self, batch):
    return tasks_lib._get(batch, self.input_key, "MultiModNTask")  # pylint: disable=protected-access

  def _errors(self, outputs, batch):
    logits = outputs["logits"]
    keys = tuple(self.target_keys)
    if len(logits) != len(keys):
      raise ValueError(f"MultiModNTask: the model predicts {len(logits)} tasks but target_keys names {len(keys)}: "
                       f"{keys}.")
    errors = []
    for key, lg in zip(keys, logits):
      labels = tasks_lib._get(batch, key, "MultiModNTask")  # pylint: disable=protected-access
      tasks_lib._check_int_labels(labels, lg[:, 0], key, "MultiModNTask")  # pylint: disable=protected-access
      per_step = jnp.broadcast_to(labels[:, None], lg.shape[:2])
      errors.append(optax.softmax_cross_entropy_with_integer_labels(lg.astype(jnp.float32), per_step))
    return jnp.stack(errors, -1)  # [b, steps, tasks]

  def loss(self, outputs, batch):
    err = jnp.mean(self._errors(outputs, batch), axis=(1, 2))
    states = outputs["states"].astype(jnp.float32)
    change = jnp.zeros_like(err)
    if states.shape[1] > 1:
      change = jnp.mean(jnp.sum(jnp.diff(states, axis=1) ** 2, -1), -1)
    return self.err_penalty * err + 0.01 * self.state_change_penalty * change

  def metrics(self, outputs, batch):
    out = {"loss": self.loss(outputs, batch)}
    for j, (key, lg) in enumerate(zip(tuple(self.target_keys), outputs["logits"])):
      labels = batch[key]
      correct = (jnp.argmax(lg, -1) == labels[:, None]).astype(jnp.float32)  # [b, steps]
      out[f"accuracy_{key}"] = correct[:, -1]
      if j == 0:
        out["accuracy"] = correct[:, -1]
        for i in range(lg.shape[1]):
          out[f"step{i}_accuracy"] = correct[:, i]
    return out

  def check_data(self, arrays, *, num_classes=None, where: str = "") -> None:
    del num_classes
    for key in self.target_keys:
      if key in arrays and not np.issubdtype(np.asarray(arrays[key]).dtype, np.integer):
        raise tasks_lib.LabelError(f"MultiModNTask: batch key {key!r}{where} must hold integer labels.")
