"""Tasks: what a model's outputs are scored against. A task names the batch keys and gives per-example losses.

A task is a small frozen dataclass with:

* ``inputs(batch)``: what the model is called on;
* ``loss(outputs, batch) -> [batch]``: the per-example training loss;
* ``metrics(outputs, batch) -> {name: [batch]}``: per-example evaluation metrics (the loop averages them over the
  real examples of the split, so padded examples never count).

The config picks one by ``task.name`` (a key of :data:`TASKS`, or ``'module.Class'`` relative to ``zoo.recipes``)
and passes the other ``task`` fields as keyword arguments.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["Classification", "LabelError", "Multilabel", "Reconstruction", "Regression", "TASKS", "check_data",
           "observe_outputs"]


class LabelError(ValueError):
  """Targets that the task cannot score: wrong rank, dtype or range (the message names the batch key)."""


# What the tasks saw while a procedure was traced (``observe_outputs``): {target key: number of classes}.
_OBSERVED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("zoo_task_outputs", default=None)


@contextlib.contextmanager
def observe_outputs():
  """Records, while a procedure is traced inside it, the number of classes each classification task scores
  (``{target_key: classes}``); the trainer checks label values against it on the host once."""
  seen: dict[str, int] = {}
  token = _OBSERVED.set(seen)
  try:
    yield seen
  finally:
    _OBSERVED.reset(token)


def _check_int_labels(labels, logits, key: str, task: str) -> None:
  """Trace-time checks (shapes and dtypes are static): integer labels, one per row of logits."""
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise LabelError(f"{task}: batch key {key!r} must hold integer class indices; got dtype {labels.dtype}"
                     + (" (one-hot or probability targets? pass labels.argmax(-1))" if labels.ndim == logits.ndim
                        else "") + ".")
  if tuple(labels.shape) != tuple(logits.shape[:-1]):
    hint = ""
    if labels.ndim == logits.ndim and labels.shape[-1] == 1:
      hint = " (drop the trailing axis of size 1: labels[..., 0])"
    raise LabelError(f"{task}: batch key {key!r} must have shape {tuple(logits.shape[:-1])} (one class index per "
                     f"row of the logits {tuple(logits.shape)}); got {tuple(labels.shape)}{hint}.")
  seen = _OBSERVED.get()
  if seen is not None:
    seen[key] = int(logits.shape[-1])


def check_data(task, arrays: Mapping[str, np.ndarray], *, num_classes: int | None = None, where: str = "") -> None:
  """Host-side check of a split's (or a batch's) targets by ``task.check_data``, if the task has one."""
  fn = getattr(task, "check_data", None)
  if fn is not None:
    fn(arrays, num_classes=num_classes, where=where)


def _get(batch, key: str, task: str):
  if key not in batch:
    raise KeyError(f"{task}: the batch has no key {key!r}; it has {sorted(batch)}. Set task.input_key / "
                   "task.target_key to the dataset's keys.")
  return batch[key]


@dataclasses.dataclass(frozen=True)
class Classification:
  """Softmax cross-entropy on integer labels. outputs: logits ``[batch, classes]``; labels ``[batch]``."""
  input_key: str = "image"
  target_key: str = "label"
  label_smoothing: float = 0.0

  def inputs(self, batch):
    return _get(batch, self.input_key, "Classification")

  def loss(self, logits, batch):
    labels = _get(batch, self.target_key, "Classification")
    _check_int_labels(labels, logits, self.target_key, "Classification")
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), self.label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

  def metrics(self, logits, batch):
    labels = _get(batch, self.target_key, "Classification")
    return {"loss": self.loss(logits, batch),
            "accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}

  def check_data(self, arrays, *, num_classes: int | None = None, where: str = "") -> None:
    """Labels on the host: integers in ``[0, num_classes)`` (``num_classes``: the model's logits width)."""
    if self.target_key not in arrays:
      return  # the loss names the missing key
    labels = np.asarray(arrays[self.target_key])
    key = f"{self.target_key!r}{where}"
    if not np.issubdtype(labels.dtype, np.integer):
      raise LabelError(f"Classification: batch key {key} must hold integer class indices; got dtype {labels.dtype}"
                       + (" (one-hot or probability targets? pass labels.argmax(-1))" if labels.ndim > 1 else "")
                       + ".")
    if labels.ndim == 0:
      raise LabelError(f"Classification: batch key {key} must hold one class index per example; got a scalar.")
    if labels.size == 0:
      return
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
      raise LabelError(f"Classification: batch key {key} holds negative labels (min {low}); class indices must be "
                       f"0 <= label < num_classes.")
    if num_classes is not None and high >= num_classes:
      raise LabelError(f"Classification: batch key {key} holds label {high}, but the model scores {num_classes} "
                       f"classes (0 <= label < {num_classes}); widen the model's output or fix the labels.")


@dataclasses.dataclass(frozen=True)
class Multilabel:
  """Sigmoid binary cross-entropy. outputs: logits ``[batch, labels]``; targets in {0, 1}, same shape."""
  input_key: str = "x"
  target_key: str = "y"

  def inputs(self, batch):
    return _get(batch, self.input_key, "Multilabel")

  def loss(self, logits, batch):
    targets = _get(batch, self.target_key, "Multilabel").astype(jnp.float32)
    return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets).mean(-1)

  def metrics(self, logits, batch):
    targets = _get(batch, self.target_key, "Multilabel")
    return {"loss": self.loss(logits, batch),
            "accuracy": ((logits > 0) == (targets > 0.5)).astype(jnp.float32).mean(-1)}


def _flat(x):
  return x.reshape(x.shape[0], -1).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Regression:
  """Mean squared error; also reports the relative L2 error ``|pred - y| / |y|`` per example (operator learning)."""
  input_key: str = "x"
  target_key: str = "y"

  def inputs(self, batch):
    return _get(batch, self.input_key, "Regression")

  def loss(self, outputs, batch):
    y = _get(batch, self.target_key, "Regression")
    return jnp.mean((_flat(outputs) - _flat(y)) ** 2, axis=-1)

  def metrics(self, outputs, batch):
    # ``loss`` is always this task's training loss (a subclass changing ``loss`` reports the same quantity in
    # train/ and eval/); ``mse`` and ``relative_l2`` are reported whatever the loss.
    y = _flat(_get(batch, self.target_key, "Regression"))
    err = _flat(outputs) - y
    return {"loss": self.loss(outputs, batch), "mse": jnp.mean(err ** 2, axis=-1),
            "relative_l2": jnp.linalg.norm(err, axis=-1) / jnp.maximum(jnp.linalg.norm(y, axis=-1), 1e-12)}


@dataclasses.dataclass(frozen=True)
class Reconstruction:
  """Autoencoding: mean squared error between the model's output and its own input."""
  input_key: str = "image"

  def inputs(self, batch):
    return _get(batch, self.input_key, "Reconstruction")

  def loss(self, outputs, batch):
    x = self.inputs(batch)
    return jnp.mean((_flat(outputs) - _flat(x)) ** 2, axis=-1)

  def metrics(self, outputs, batch):
    return {"loss": self.loss(outputs, batch)}


TASKS = {
    "classification": Classification,
    "multilabel": Multilabel,
    "reconstruction": Reconstruction,
    "regression": Regression,
}
