"""SwinCheX's task: the sum over labels of per-label binary cross-entropy, and the mean AUROC over labels.

Paper: "SwinCheX: Multi-label classification on chest X-ray images with transformers", Taslimi et al., 2022
(arXiv 2206.04246). Each of the 14 heads has its own binary cross-entropy and the training loss is their sum; the
shared ``zoo.recipes.tasks.Multilabel`` averages over labels instead (the same gradient direction, scaled by
1/labels, which changes the effective learning rate of Adam-free optimisers and the reported loss), so the paper's
sum is this module's :class:`SummedMultilabel` (``task.name = 'chexray.SummedMultilabel'``). Training uses the
default ``backprop`` procedure.

* :class:`SummedMultilabel`: ``logits [b, L]`` vs ``batch['label'] [b, L]`` in {0, 1}; per-example metrics
  ``loss`` (the summed BCE) and ``accuracy`` (of the ``L`` decisions at logit 0).
* :func:`mean_auroc` ``(labels [n, L], scores [n, L]) -> (mean, per_label [L])``: ``sklearn.metrics.roc_auc_score``
  per label (a label with one class only in the split is left out of the mean, as it has no AUROC).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import optax

from zoo.recipes.tasks import LabelError

__all__ = ["SummedMultilabel", "mean_auroc"]


@dataclasses.dataclass(frozen=True)
class SummedMultilabel:
  """Sigmoid binary cross-entropy summed over the labels (SwinCheX's loss)."""
  input_key: str = "image"
  target_key: str = "label"

  def inputs(self, batch):
    if self.input_key not in batch:
      raise KeyError(f"SummedMultilabel: the batch has no key {self.input_key!r}; it has {sorted(batch)}.")
    return batch[self.input_key]

  def _targets(self, logits, batch):
    if self.target_key not in batch:
      raise KeyError(f"SummedMultilabel: the batch has no key {self.target_key!r}; it has {sorted(batch)}.")
    y = batch[self.target_key]
    if tuple(y.shape) != tuple(logits.shape):
      raise LabelError(f"SummedMultilabel: batch key {self.target_key!r} must have shape {tuple(logits.shape)} "
                       f"(one 0/1 target per label logit); got {tuple(y.shape)}.")
    return y.astype(jnp.float32)

  def loss(self, logits, batch):
    targets = self._targets(logits, batch)
    return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets).sum(-1)

  def metrics(self, logits, batch):
    targets = self._targets(logits, batch)
    return {"loss": self.loss(logits, batch),
            "accuracy": ((logits > 0) == (targets > 0.5)).astype(jnp.float32).mean(-1)}

  def check_data(self, arrays, *, num_classes=None, where: str = "") -> None:
    if self.target_key not in arrays:
      return
    y = np.asarray(arrays[self.target_key])
    if y.ndim != 2:
      raise LabelError(f"SummedMultilabel: batch key {self.target_key!r}{where} must be multi-hot [examples, "
                       f"labels]; got shape {y.shape}.")
    if y.size and not np.isin(y, (0, 1)).all():
      raise LabelError(f"SummedMultilabel: batch key {self.target_key!r}{where} must hold 0/1 targets; got values "
                       f"{np.unique(y)[:5].tolist()}.")


def mean_auroc(labels, scores) -> tuple[float, np.ndarray]:
  """Mean over labels of the ROC AUC of ``scores[:, l]`` for ``labels[:, l]``; also the per-label AUROCs (NaN where
  a label has one class only)."""
  from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
  labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
  if labels.ndim != 2 or labels.shape != scores.shape:
    raise ValueError(f"mean_auroc: `labels` and `scores` must both be [examples, labels]; got {labels.shape} and "
                     f"{scores.shape}.")
  if not np.isfinite(scores).all():
    raise ValueError("mean_auroc: `scores` holds NaN or infinite values.")
  per = np.array([roc_auc_score(labels[:, i], scores[:, i]) if len(np.unique(labels[:, i])) == 2 else np.nan
                  for i in range(labels.shape[1])])
  if np.isnan(per).all():
    raise ValueError("mean_auroc: no label has both classes in `labels`; the AUROC is undefined.")
  return float(np.nanmean(per)), per
