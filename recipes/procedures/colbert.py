"""Contrastive training of multi-vector (ColBERT) retrievers with in-batch and hard negatives, as in PyLate.

For "Simple Projection Variants Improve ColBERT Performance" (2025) and ColBERT (Khattab and Zaharia, 2020, arXiv
2004.12832). The model (``zoo.colbert.ColBERT``) is called once on ``{'query', 'doc', 'negative'}`` and returns the
in-batch MaxSim scores ``[b, b (1 + m)]`` (query ``i``'s positive in column ``i``); the default ``backprop``
procedure trains it.

* :class:`Contrastive` (``task.name = 'colbert.Contrastive'``): loss = softmax cross-entropy of ``scores /
  temperature`` with the positive as target (PyLate's ``Contrastive`` loss: in-batch negatives, the other queries'
  positives and every hard negative; temperature 1 by default, the scores being sums of cosines). Per-query
  metrics from ``rax``: ``mrr`` and ``recall_at_1`` of the positive among all the batch's documents.
* :func:`rerank_metrics`: NDCG@k, MRR and AP of candidate lists with graded labels (``rax.ndcg_metric`` ...),
  per query, for the reranking evaluations of the tests and the config docstrings.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import rax

__all__ = ["Contrastive", "rerank_metrics"]


def rerank_metrics(scores, labels, *, topn: int = 10, where=None) -> dict[str, jax.Array]:
  """``scores [q, n]`` against ``labels [q, n]`` (relevance >= 0) -> per-query ``ndcg_at_{topn}``, ``mrr``, ``ap``
  (``[q]`` each, from ``rax``); ``where [q, n]`` masks out padded candidates."""
  scores, labels = jnp.asarray(scores, jnp.float32), jnp.asarray(labels, jnp.float32)
  if scores.ndim != 2 or scores.shape != labels.shape:
    raise ValueError(f"rerank_metrics: `scores` and `labels` must both be [queries, candidates]; got "
                     f"{scores.shape} and {labels.shape}.")
  kw = {"where": where, "reduce_fn": None}
  return {f"ndcg_at_{topn}": rax.ndcg_metric(scores, labels, topn=topn, **kw),
          "mrr": rax.mrr_metric(scores, labels, **kw), "ap": rax.ap_metric(scores, labels, **kw)}


@dataclasses.dataclass(frozen=True)
class Contrastive:
  """In-batch + hard-negative contrastive loss on a model's ``[b, b (1 + m)]`` score matrix (module docstring).

  Attributes:
    query_key, doc_key, negative_key: batch keys (``negative_key=None`` or absent from the batch: in-batch only).
    temperature: the scores are divided by it.
  """
  query_key: str = "query"
  doc_key: str = "doc"
  negative_key: str | None = "negative"
  temperature: float = 1.0

  def inputs(self, batch):
    for key in (self.query_key, self.doc_key):
      if key not in batch:
        raise KeyError(f"colbert.Contrastive: the batch has no key {key!r}; it has {sorted(batch)}.")
    out = {"query": batch[self.query_key], "doc": batch[self.doc_key]}
    if self.negative_key and self.negative_key in batch:
      out["negative"] = batch[self.negative_key]
    return out

  def _logits(self, scores, batch):
    b = batch[self.query_key].shape[0]
    if scores.ndim != 2 or scores.shape[0] != b or scores.shape[1] < b or scores.shape[1] % b:
      raise ValueError(f"colbert.Contrastive: the model must return in-batch scores [batch={b}, {b} * (1 + "
                       f"negatives)]; got shape {scores.shape}.")
    return scores.astype(jnp.float32) / self.temperature

  def loss(self, scores, batch):
    logits = self._logits(scores, batch)
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(logits.shape[0]))

  def metrics(self, scores, batch):
    logits = self._logits(scores, batch)
    labels = jax.nn.one_hot(jnp.arange(logits.shape[0]), logits.shape[1])
    return {"loss": self.loss(scores, batch), "mrr": rax.mrr_metric(logits, labels, reduce_fn=None),
            "recall_at_1": rax.recall_metric(logits, labels, topn=1, reduce_fn=None)}

  def check_data(self, arrays, *, num_classes=None, where: str = "") -> None:
    del num_classes
    for key in (self.query_key, self.doc_key):
      if key in arrays and not np.issubdtype(np.asarray(arrays[key]).dtype, np.integer):
        raise TypeError(f"colbert.Contrastive: batch key {key!r}{where} must hold integer token ids; got "
                        f"{np.asarray(arrays[key]).dtype}.")
