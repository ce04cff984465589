"""Ad-hoc retrieval over the standard library's docstrings, with test queries made of words never seen in training.

At most ``max_queries`` queries per split (source documents drawn at random).

``docstring_ranking`` (for "A Deep Look into Neural Ranking Models for Information Retrieval", Guo et al., 2019,
arXiv 1903.06902): the documents are the docstrings of :func:`zoo.recipes.datasets.text.docstring_pairs` (first
sentence + rest), lower-cased words (:func:`text.words`, alphabetic words only), the first ``doc_length`` kept.
*Rare* words are alphabetic words of at least ``min_chars`` letters in at most ``max_df`` documents. They are split
at random into training words and test words; a training query is ``2..query_length`` rare *training* words of one
document, a test query the same with *test* words, so no test query word occurs in any training query. Each query
ranks ``candidates`` documents: its source document (label 1) and random others (label 0; a random document that
happens to contain a query word keeps label 0).

Keys per example: ``query [q]`` and ``docs [n, d]`` word ids (0 = padding; the vocabulary is every word of the
corpus, ids by frequency), ``query_tri [q, T]`` and ``docs_tri [n, d, T]`` hashed letter trigrams
(:func:`zoo.ranking.letter_trigrams`, ``num_buckets``), ``query_idf [q]`` (``log(N / df)``), ``labels [n]``.
Deterministic by ``seed`` (the texts depend on the Python version, recorded in the metadata). Nothing is downloaded.
"""

from __future__ import annotations

import sys

import numpy as np

from zoo import ranking
from zoo.recipes import data
from zoo.recipes.datasets import text

__all__ = ["docstring_ranking"]


@data.register("docstring_ranking", version="1.0.0")
def docstring_ranking(query_length: int = 3, doc_length: int = 32, candidates: int = 50, train_candidates: int = 8,
                      max_df: int = 2, min_chars: int = 5, num_buckets: int = 4096, max_trigrams: int = 8,
                      test_fraction: float = 0.5, max_queries: int = 300, seed: int = 0) -> data.Generated:
  """Docstring retrieval with unseen-word test queries (module docstring). Both splits have ``candidates``
  candidates per query (``train_candidates`` is the number of them used by training losses, the first ones: the
  source document is among them)."""
  if num_buckets > 2 ** 15:
    raise ValueError(f"docstring_ranking: `num_buckets` must be <= 32768 (stored as int16); got {num_buckets}.")
  if not 2 <= query_length <= doc_length or not 2 <= train_candidates <= candidates:
    raise ValueError(f"docstring_ranking: need 2 <= query_length <= doc_length and 2 <= train_candidates <= "
                     f"candidates; got {query_length}, {doc_length}, {train_candidates}, {candidates}.")
  rng = np.random.default_rng(seed)
  docs = [[w for w in text.words(f"{q} {rest}") if w.isalpha()][:doc_length] for _, q, rest in text.docstring_pairs()]
  docs = [d for d in docs if d]
  df: dict[str, int] = {}
  for d in docs:
    for w in set(d):
      df[w] = df.get(w, 0) + 1
  vocab = {w: i + 1 for i, w in enumerate(sorted(df, key=lambda w: (-df[w], w)))}
  rare = sorted(w for w, c in df.items() if c <= max_df and len(w) >= min_chars)
  test_words = set(rng.permutation(rare)[:int(round(test_fraction * len(rare)))].tolist())
  n_docs = len(docs)
  tokens = np.zeros((n_docs, doc_length), np.int32)
  tri = np.zeros((n_docs, doc_length, max_trigrams), np.int32)
  table = {w: ranking.letter_trigrams(w, num_buckets, max_trigrams) for w in vocab}
  for i, d in enumerate(docs):
    tokens[i, :len(d)] = [vocab[w] for w in d]
    tri[i, :len(d)] = [table[w] for w in d]
  idf = {w: float(np.log(n_docs / c)) for w, c in df.items()}

  splits = {}
  for split, want_test in (("train", False), ("test", True)):
    rows = {k: [] for k in ("query", "query_tri", "query_idf", "docs", "docs_tri", "labels")}
    for i in rng.permutation(n_docs):
      if len(rows["query"]) >= max_queries:
        break
      d = docs[i]
      pool = sorted({w for w in d if w in df and df[w] <= max_df and len(w) >= min_chars
                     and (w in test_words) == want_test})
      if len(pool) < 2:
        continue
      k = int(rng.integers(2, min(query_length, len(pool)) + 1))
      words = rng.choice(pool, size=k, replace=False).tolist()
      q = np.zeros(query_length, np.int32)
      q[:k] = [vocab[w] for w in words]
      qt = np.zeros((query_length, max_trigrams), np.int32)
      qt[:k] = [table[w] for w in words]
      qi = np.zeros(query_length, np.float32)
      qi[:k] = [idf[w] for w in words]
      others = rng.choice(np.setdiff1d(np.arange(n_docs), [i]), size=candidates - 1, replace=False)
      # the source document among the first `train_candidates` (training lists), at a random place
      cand = np.concatenate([others[:train_candidates - 1], [i], others[train_candidates - 1:]])
      head = rng.permutation(train_candidates)
      cand[:train_candidates] = cand[:train_candidates][head]
      rows["query"].append(q)
      rows["query_tri"].append(qt)
      rows["query_idf"].append(qi)
      rows["docs"].append(tokens[cand])
      rows["docs_tri"].append(tri[cand])
      rows["labels"].append((cand == i).astype(np.int32))
    out = {k: np.stack(v) for k, v in rows.items()}
    for k in ("query_tri", "docs_tri"):  # bucket ids < 2^15: int16 halves the stored arrays
      out[k] = out[k].astype(np.int16)
    splits[split] = out
  return data.Generated(splits, metadata={"vocab_size": len(vocab) + 1, "num_buckets": num_buckets,
                                          "num_docs": n_docs, "rare_words": len(rare), "test_words": len(test_words),
                                          "train_candidates": train_candidates, "python": sys.version.split()[0]})
