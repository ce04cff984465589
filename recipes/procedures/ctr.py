"""The binary click-through task for ``zoo.ctr``'s models: sigmoid cross-entropy of a logit per impression.

``task.name = 'ctr.Click'`` (resolved here, beside the procedures). The model is called on ``batch[input_key]``
when ``input_key`` is set (FinalMLP's ``ids [b, F]``), otherwise on the dict of every batch key except the
target (DIN's ``item``, ``cate``, ``hist_*`` ...). Training uses the default ``backprop`` procedure, which also adds
what a model sows into ``'losses'`` (DIN's mini-batch-aware L2).

Metrics are per-example, as the loop averages them: ``loss`` (= logloss) and ``accuracy`` at threshold 0.5. AUC,
GAUC and RelaImpr rank whole splits and are not per-example: compute them from the model's logits with
``zoo.ctr.auc`` / ``gauc`` / ``rela_impr`` (the tests and the notebook do).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax

from zoo.recipes.tasks import LabelError

__all__ = ["Click"]


@dataclasses.dataclass(frozen=True)
class Click:
  """Binary CTR: ``logits [b]`` against ``batch[target_key]`` clicks in {0, 1}."""
  input_key: str | None = None
  target_key: str = "click"
  drop_keys: tuple[str, ...] = ("logit",)  # data-only keys the model must not see (the planted true logit)

  def inputs(self, batch):
    if self.input_key is not None:
      if self.input_key not in batch:
        raise KeyError(f"Click: the batch has no key {self.input_key!r}; it has {sorted(batch)}.")
      return batch[self.input_key]
    return {k: v for k, v in batch.items() if k != self.target_key and k not in self.drop_keys}

  def _target(self, logits, batch):
    if self.target_key not in batch:
      raise KeyError(f"Click: the batch has no key {self.target_key!r}; it has {sorted(batch)}.")
    y = batch[self.target_key]
    if tuple(y.shape) != tuple(logits.shape):
      raise LabelError(f"Click: batch key {self.target_key!r} must have shape {tuple(logits.shape)} (one click per "
                       f"logit); got {tuple(y.shape)}.")
    return y.astype(jnp.float32)

  def loss(self, logits, batch):
    return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), self._target(logits, batch))

  def metrics(self, logits, batch):
    y = self._target(logits, batch)
    return {"loss": self.loss(logits, batch), "accuracy": ((logits > 0) == (y > 0.5)).astype(jnp.float32)}

  def check_data(self, arrays, *, num_classes=None, where: str = "") -> None:
    if self.target_key not in arrays:
      return
    y = np.asarray(arrays[self.target_key])
    if y.size and not np.isin(y, (0, 1)).all():
      raise LabelError(f"Click: batch key {self.target_key!r}{where} must hold 0/1 clicks; got values "
                       f"{np.unique(y)[:5].tolist()}.")
