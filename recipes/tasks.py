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

import dataclasses

import jax
import jax.numpy as jnp
import optax

__all__ = ["Classification", "Multilabel", "Reconstruction", "Regression", "TASKS"]


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
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), self.label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

  def metrics(self, logits, batch):
    labels = _get(batch, self.target_key, "Classification")
    return {"loss": self.loss(logits, batch),
            "accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}


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
    y = _flat(_get(batch, self.target_key, "Regression"))
    err = _flat(outputs) - y
    return {"loss": jnp.mean(err ** 2, axis=-1),
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
