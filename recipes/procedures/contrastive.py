"""Contrastive training of embedding models: the InfoNCE task, a next-token task, and LM pretraining followed by
contrastive fine-tuning as one procedure.

For "Pooling And Attention: What Are Effective Designs For LLM-Based Embedding Models?" (Tang and Yang, 2024, arXiv
2409.02727), whose recipe is: a pretrained causal LM, fine-tuned with InfoNCE over in-batch (and hard) negatives,
cosine similarity scaled by 20 (temperature 0.05), as in the reference code's ``HardNegativeNLLLoss``.

* :class:`InfoNCE` (``task.name = 'contrastive.InfoNCE'``): the batch holds token arrays ``query [b, lq]`` and
  ``doc [b, ld]`` (and optionally hard negatives ``[b, ln]``); the model is called *once* on all of them, right-padded
  to one length and stacked ``[2b (+ b), l]``, and must return one embedding per row. Loss: cross-entropy of
  ``cos(q_i, d_j) / temperature`` over the documents (and negatives), the positive on the diagonal. Metrics: the
  loss, in-batch ``recall_at_1`` and ``mrr`` (rax's metrics; tied scores keep their order).
* :class:`NextToken`: causal LM cross-entropy of a model's logits ``[b, l, vocab]`` on ``tokens [b, l]`` (padding
  ignored), for models that *are* language models.
* :class:`PretrainThenContrast` (``procedure.name = 'contrastive.PretrainThenContrast'``): backprop whose first
  ``pretrain_steps`` steps train the model's ``language_model`` method on the batch's token arrays (next-token loss)
  and whose later steps train the InfoNCE task; ``initial_params`` (Python use only) starts from given parameters,
  e.g. a pretrained backbone shared by several fine-tuning runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
import rax

from zoo.recipes.procedures import backprop

__all__ = ["InfoNCE", "NextToken", "PretrainThenContrast", "next_token_loss", "retrieval_metrics"]


def _pad_to(tokens: jax.Array, length: int, pad_id: int) -> jax.Array:
  return jnp.pad(tokens, ((0, 0), (0, length - tokens.shape[1])), constant_values=pad_id)


def _positive_ranks(scores: jax.Array, key: jax.Array | None) -> jax.Array:
  """1-based rank of the positive ``scores[i, i]`` in row ``i`` (rax: ties keep their order, or random with ``key``)."""
  n = scores.shape[0]
  return rax.utils.ranks(scores, key=key)[jnp.arange(n), jnp.arange(n)]


def _rank_metrics(scores: jax.Array, k: int, key: jax.Array | None) -> dict[str, jax.Array]:
  n = scores.shape[0]
  labels = (jnp.arange(scores.shape[1])[None, :] == jnp.arange(n)[:, None]).astype(jnp.float32)
  per_query = dict(key=key, reduce_fn=None)
  return {"recall_at_1": rax.recall_metric(scores, labels, topn=1, **per_query),
          "recall_at_k": rax.recall_metric(scores, labels, topn=k, **per_query),
          "mrr": rax.mrr_metric(scores, labels, **per_query),
          "mrr_at_k": rax.mrr_metric(scores, labels, topn=k, **per_query),
          "rank": _positive_ranks(scores, key).astype(jnp.float32)}


def retrieval_metrics(queries: jax.Array, docs: jax.Array, *, k: int = 10,
                      key: jax.Array | None = None) -> dict[str, jax.Array]:
  """Per-query retrieval of ``docs[i]`` for ``queries[i]`` among all docs by cosine similarity (rax metrics).

  Args:
    queries: ``[n, features]``; docs: ``[m >= n, features]`` (row ``i`` is the positive of query ``i``).
    k: cut-off of ``mrr_at_k`` and ``recall_at_k``.
    key: tie-breaking. None (default): rax's rule, tied documents keep their order (so a collapsed embedding that
      scores every document alike ranks query ``i``'s positive ``i + 1``-th, not first); a PRNG key: ties broken at
      random.

  Returns:
    ``{'recall_at_1', 'recall_at_k', 'mrr', 'mrr_at_k', 'rank'}``, each ``[n]`` (``rank`` is 1-based).
  """
  if queries.ndim != 2 or docs.ndim != 2 or docs.shape[0] < queries.shape[0] or docs.shape[1] != queries.shape[1]:
    raise ValueError(f"retrieval_metrics: `queries` must be [n, features] and `docs` [m >= n, features]; got "
                     f"{tuple(queries.shape)} and {tuple(docs.shape)}.")
  q = queries / jnp.maximum(jnp.linalg.norm(queries, axis=-1, keepdims=True), 1e-12)
  d = docs / jnp.maximum(jnp.linalg.norm(docs, axis=-1, keepdims=True), 1e-12)
  return _rank_metrics(q.astype(jnp.float32) @ d.astype(jnp.float32).T, k, key)


@dataclasses.dataclass(frozen=True)
class InfoNCE:
  """InfoNCE over in-batch (and optional hard) negatives; see the module docstring.

  Attributes:
    query_key, doc_key: batch keys of the token arrays.
    negative_key: batch key of hard negatives (one per query), or None.
    temperature: cosine similarities are divided by it (0.05: the reference code's scale 20).
    pad_id: padding token used to bring the arrays to one length.
  """
  query_key: str = "query"
  doc_key: str = "doc"
  negative_key: str | None = None
  temperature: float = 0.05
  pad_id: int = 0

  def _keys(self):
    return (self.query_key, self.doc_key) + ((self.negative_key,) if self.negative_key else ())

  def inputs(self, batch):
    for key in self._keys():
      if key not in batch:
        raise KeyError(f"InfoNCE: the batch has no key {key!r}; it has {sorted(batch)}.")
    arrays = [batch[k] for k in self._keys()]
    length = max(a.shape[1] for a in arrays)
    return jnp.concatenate([_pad_to(a, length, self.pad_id) for a in arrays], axis=0)

  def _split(self, outputs, batch):
    b = batch[self.query_key].shape[0]
    if outputs.shape[0] != b * len(self._keys()):
      raise ValueError(f"InfoNCE: the model must return one embedding per input row ({b * len(self._keys())}); got "
                       f"shape {outputs.shape}.")
    return outputs[:b], outputs[b:]

  def _logits(self, outputs, batch):
    q, d = self._split(outputs, batch)
    q = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    d = d / jnp.maximum(jnp.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
    return (q.astype(jnp.float32) @ d.astype(jnp.float32).T) / self.temperature  # [b, b (+ b)]

  def loss(self, outputs, batch):
    logits = self._logits(outputs, batch)
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(logits.shape[0]))

  def metrics(self, outputs, batch):
    logits = self._logits(outputs, batch)
    ranked = _rank_metrics(logits, 1, None)
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(logits.shape[0])),
            "recall_at_1": ranked["recall_at_1"], "mrr": ranked["mrr"]}


def next_token_loss(logits: jax.Array, tokens: jax.Array, pad_id: int = 0) -> jax.Array:
  """Per-sequence mean cross-entropy of ``logits[:, t]`` predicting ``tokens[:, t + 1]`` over real targets ``[b]``."""
  targets = tokens[:, 1:]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1].astype(jnp.float32), targets)
  real = (targets != pad_id).astype(jnp.float32)
  return jnp.sum(ce * real, axis=1) / jnp.maximum(jnp.sum(real, axis=1), 1.0)


@dataclasses.dataclass(frozen=True)
class NextToken:
  """Causal LM task: ``outputs`` are logits ``[b, l, vocab]`` of ``batch[input_key]`` (``[b, l]`` tokens)."""
  input_key: str = "tokens"
  pad_id: int = 0

  def inputs(self, batch):
    if self.input_key not in batch:
      raise KeyError(f"NextToken: the batch has no key {self.input_key!r}; it has {sorted(batch)}.")
    return batch[self.input_key]

  def loss(self, logits, batch):
    return next_token_loss(logits, self.inputs(batch), self.pad_id)

  def metrics(self, logits, batch):
    loss = self.loss(logits, batch)
    return {"loss": loss, "perplexity": jnp.exp(loss)}


def _overlay(fresh, given):
  """``fresh`` with every leaf that ``given`` also has (same path) replaced by ``given``'s."""
  flat_given = flax.traverse_util.flatten_dict(flax.core.unfreeze(given))
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(fresh))
  missing = [k for k in flat_given if k not in flat]
  if missing:
    raise ValueError(f"PretrainThenContrast: `initial_params` has paths the model does not: {missing[:4]}.")
  for key, value in flat_given.items():
    old = flat[key]
    old_shape = getattr(getattr(old, "value", old), "shape", None)
    new_value = getattr(value, "value", value)
    if old_shape != new_value.shape:
      raise ValueError(f"PretrainThenContrast: `initial_params` {'/'.join(key)} has shape {new_value.shape}; the model's "
                       f"is {old_shape}.")
    flat[key] = old.replace_boxed(new_value) if hasattr(old, "replace_boxed") else new_value
  return flax.traverse_util.unflatten_dict(flat)


@dataclasses.dataclass(frozen=True)
class PretrainThenContrast(backprop.Backprop):
  """Backprop with a language-model phase, then the (contrastive) task.

  Attributes:
    model, task, optimizer: as :class:`zoo.recipes.procedures.backprop.Backprop`; the model needs a ``language_model`` method
      (``zoo.embedding_pooling.EmbeddingModel`` has one) for ``pretrain_steps > 0``.
    pretrain_steps: steps of next-token training on the batch's ``lm_keys`` token arrays (0: none).
    lm_keys: batch keys whose token arrays the LM phase trains on (each is one set of sequences).
    pad_id: padding token of those arrays.
    initial_params: parameters to start from (overlaid on the fresh initialisation by path, e.g.
      ``{'backbone': pretrained}``); Python use only.
  """
  pretrain_steps: int = 0
  lm_keys: Sequence[str] = ("query", "doc")
  pad_id: int = 0
  initial_params: Any = None

  def init(self, rng, batch):
    state = super().init(rng, batch)
    if self.initial_params is None:
      return state
    params = _overlay(state.params, self.initial_params)
    return state.replace(params=params, opt_state=self.optimizer.init(params))

  def lm_loss(self, params, model_state, batch, rng):
    """Mean next-token loss over the ``lm_keys`` arrays, and ``(model_state, {'loss': ...})``."""
    losses = []
    for key in self.lm_keys:
      logits = self.model.apply({"params": params, **model_state}, batch[key], train=True,
                                rngs={"dropout": jax.random.fold_in(rng, len(losses))},
                                method=self.model.language_model)
      losses.append(jnp.mean(next_token_loss(logits, batch[key], self.pad_id)))
    loss = sum(losses) / len(losses)
    return loss, (model_state, {"loss": loss})

  def step(self, state, batch):
    if self.pretrain_steps <= 0:
      state, metrics = super().step(state, batch)
      return state, {**metrics, "lm_phase": jnp.zeros((), jnp.float32)}
    rng = jax.random.fold_in(state.rng, state.step)

    def grads_of(loss_fn):
      def run(_):
        (total, (model_state, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.model_state, batch, rng)
        return total, model_state, metrics["loss"], grads  # both phases report the same metrics
      return run

    lm_phase = state.step < self.pretrain_steps
    total, model_state, loss, grads = jax.lax.cond(lm_phase, grads_of(self.lm_loss), grads_of(self.loss), None)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "total_loss": total, "grad_norm": optax.global_norm(grads),
               "lm_phase": lm_phase.astype(jnp.float32)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state), metrics
