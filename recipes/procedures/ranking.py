"""Learning-to-rank tasks for ``zoo.ranking``'s models: ``rax`` losses and metrics over candidate lists.

For "A Deep Look into Neural Ranking Models for Information Retrieval" (Guo et al., 2019, arXiv 1903.06902), whose
models are trained pointwise, pairwise or listwise. ``task.name = 'ranking.ListRanking'``: the model is called on
the batch's candidate lists (``query*`` keys and ``docs*`` keys cut to the first ``list_size`` candidates) and returns
``scores [b, n]``; ``labels [b, n]`` are relevance grades. Losses (``loss``):

* ``'softmax'``: ``rax.softmax_loss`` (listwise; DSSM's softmax over candidates);
* ``'pairwise_hinge'``: ``rax.pairwise_hinge_loss`` (margin 1; K-NRM's and DRMM's loss);
* ``'pointwise_sigmoid'``: ``rax.pointwise_sigmoid_loss``.

Metrics per query (the loop averages them): ``loss``, ``ndcg_at_10``, ``mrr``, ``ap`` (``rax.ndcg_metric`` ...).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import rax

from zoo.recipes.procedures.colbert import rerank_metrics

__all__ = ["LOSSES", "ListRanking"]

LOSSES = {"softmax": rax.softmax_loss, "pairwise_hinge": rax.pairwise_hinge_loss,
          "pointwise_sigmoid": rax.pointwise_sigmoid_loss}


@dataclasses.dataclass(frozen=True)
class ListRanking:
  """Candidate-list ranking with a ``rax`` loss (module docstring).

  Attributes:
    loss_name: a key of :data:`LOSSES`.
    list_size: candidates per query used (the first ones), None for all.
    label_key: the relevance labels' batch key.
    topn: NDCG cut-off of the metrics.
  """
  loss_name: str = "softmax"
  list_size: int | None = None
  label_key: str = "labels"
  topn: int = 10

  def __post_init__(self):
    if self.loss_name not in LOSSES:
      raise ValueError(f"ranking.ListRanking: `loss_name` must be one of {sorted(LOSSES)}; got {self.loss_name!r}.")

  def _cut(self, x):
    return x if self.list_size is None else x[:, :self.list_size]

  def inputs(self, batch):
    if "docs" not in batch and "docs_tri" not in batch:
      raise KeyError(f"ranking.ListRanking: the batch needs 'docs' and/or 'docs_tri'; it has {sorted(batch)}.")
    return {k: (self._cut(v) if k.startswith("docs") else v) for k, v in batch.items()
            if k.startswith(("query", "docs"))}

  def _labels(self, scores, batch):
    if self.label_key not in batch:
      raise KeyError(f"ranking.ListRanking: the batch has no key {self.label_key!r}; it has {sorted(batch)}.")
    labels = self._cut(batch[self.label_key]).astype(jnp.float32)
    if labels.shape != scores.shape:
      raise ValueError(f"ranking.ListRanking: the model must return scores [batch, candidates] = {labels.shape}; "
                       f"got {scores.shape}.")
    return labels

  def loss(self, scores, batch):
    labels = self._labels(scores, batch)
    fn = LOSSES[self.loss_name]
    # rax losses reduce over lists; a per-query loss is the loss of each list alone (vmap over lists)
    return jax.vmap(lambda s, y: fn(s[None], y[None]))(scores.astype(jnp.float32), labels)

  def metrics(self, scores, batch):
    labels = self._labels(scores, batch)
    return {"loss": self.loss(scores, batch), **rerank_metrics(scores, labels, topn=self.topn)}
