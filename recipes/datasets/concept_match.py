"""Synthetic late-interaction retrieval where relevance needs a non-linear token match (ColBERT projection variants).

``concept_match``: a vocabulary of ``vocab_size - 1`` tokens (id 0 is padding) split at random into ``concepts``
groups of equal size (the concept of a token is not a linear function of a random token embedding once there are
more tokens than embedding dims). A query is ``query_length`` tokens of distinct concepts. Its positive document
holds, for every query concept, a *different* token of that concept ("synonyms"), among filler tokens of other
concepts. A hard negative holds the query's *own* tokens for half of its concepts (exact matches) and filler: a
model that matches tokens by identity ranks it above the positive; one that matches concepts does not. Documents
are ragged (``min_doc_length .. doc_length`` tokens, right-padded).

Both splits hold ``query [q]``, ``doc [d]`` (the positive), ``negative [d]`` (one hard negative) for contrastive
training with in-batch and hard negatives, and a reranking list ``candidates [n, d]`` with ``labels [n]``: ``n``
documents per query, the positive (at a random position, label 1), ``hard`` hard negatives and random documents
(label 0); ``concept [q]`` are the query's concepts. The metadata has ``concept_of [vocab_size]`` (-1 for padding).
Deterministic by ``seed``.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["concept_match"]


def _docs(rng, required, exclude, *, concept_tokens, doc_length, min_doc_length):
  """``[n, doc_length]`` documents: each holds its row of ``required`` tokens ``[n, r]`` and filler tokens of
  distinct concepts outside its row of ``exclude`` ``[n, e]`` (concept ids), shuffled, ragged, right-padded."""
  n, r = required.shape
  concepts, per = concept_tokens.shape
  keys = rng.random((n, concepts))
  np.put_along_axis(keys, exclude, np.inf, axis=1)
  fill = np.argsort(keys, axis=1)[:, :doc_length - r]  # distinct allowed concepts
  fill = concept_tokens[fill, rng.integers(per, size=fill.shape)]
  tokens = np.concatenate([required, fill], axis=1)
  lengths = rng.integers(min_doc_length, doc_length + 1, size=(n, 1))
  pos = np.arange(doc_length)[None]
  order = np.argsort(np.where(pos < lengths, rng.random((n, doc_length)), np.inf), axis=1)  # shuffle the real part
  tokens = np.take_along_axis(tokens, order, axis=1)
  return np.where(pos < lengths, tokens, 0).astype(np.int32)


@data.register("concept_match", version="1.0.0")
def concept_match(vocab_size: int = 513, concepts: int = 64, query_length: int = 4, doc_length: int = 16,
                  min_doc_length: int = 10, train_size: int = 2000, test_size: int = 200, candidates: int = 50,
                  hard: int = 9, seed: int = 0) -> data.Generated:
  """Concept-matching retrieval (module docstring)."""
  per = (vocab_size - 1) // concepts
  if per < 2 or (vocab_size - 1) % concepts:
    raise ValueError(f"concept_match: `vocab_size - 1` ({vocab_size - 1}) must be a multiple of `concepts` "
                     f"({concepts}) with at least 2 tokens per concept.")
  if not query_length <= min_doc_length <= doc_length or doc_length + query_length > concepts:
    raise ValueError(f"concept_match: need query_length <= min_doc_length <= doc_length and doc_length + "
                     f"query_length <= concepts; got {query_length}, {min_doc_length}, {doc_length}, {concepts}.")
  if not 0 <= hard < candidates - 1:
    raise ValueError(f"concept_match: need 0 <= hard < candidates - 1; got hard={hard}, candidates={candidates}.")
  rng = np.random.default_rng(seed)
  concept_tokens = rng.permutation(np.arange(1, vocab_size)).reshape(concepts, per)  # [concepts, per]
  concept_of = np.full(vocab_size, -1, np.int32)
  concept_of[concept_tokens] = np.arange(concepts)[:, None]
  docs = lambda req, exc: _docs(rng, req, exc, concept_tokens=concept_tokens, doc_length=doc_length,
                                min_doc_length=min_doc_length)

  def split(n):
    cats = np.argsort(rng.random((n, concepts)), axis=1)[:, :query_length]  # distinct concepts per query
    which = rng.integers(per, size=cats.shape)
    query = concept_tokens[cats, which]
    synonyms = concept_tokens[cats, (which + rng.integers(1, per, size=cats.shape)) % per]  # another token
    positive = docs(synonyms, cats)

    def hard_negative():  # the query's own tokens for half of its concepts
      keep = np.argsort(rng.random(cats.shape), axis=1)[:, :query_length // 2]
      return docs(np.take_along_axis(query, keep, axis=1), cats)
    negative = hard_negative()
    lists = [positive] + [hard_negative() for _ in range(hard)]
    empty = np.zeros((n, 0), np.int64)
    lists += [docs(empty, empty) for _ in range(candidates - 1 - hard)]  # random documents
    lists = np.stack(lists, axis=1)  # [n, candidates, d]; the positive first
    order = np.argsort(rng.random((n, candidates)), axis=1)
    return {"query": query.astype(np.int32), "doc": positive, "negative": negative,
            "candidates": np.take_along_axis(lists, order[..., None], axis=1),
            "labels": (order == 0).astype(np.int32), "concept": cats.astype(np.int32)}

  return data.Generated({"train": split(train_size), "test": split(test_size)},
                        metadata={"vocab_size": vocab_size, "pad": 0, "concept_of": concept_of.tolist()})
