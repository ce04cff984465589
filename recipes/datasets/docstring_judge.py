"""Pairwise judging of stdlib docstrings: given a function name, which of two docstrings is its own?

For "Wider and Deeper LLM Networks are Fairer LLM Evaluators" (WideDeep, Zhang et al., 2023, arXiv 2308.01862),
scaled down: the "LLM" is a small transformer fine-tuned on these sequences into a noisy pairwise judge, and the
evaluator network's neurons are that judge with different *roles*: a role is a role token plus an aspect view of the
pair (which part of the name, which window of each docstring's words).

Texts: :func:`zoo.recipes.datasets.text.docstring_pairs` (name, first sentence, rest); words by
:func:`text.words`, hashed into ``num_buckets`` ids (crc32, so a name part and the same word in a docstring share an
id). The functions are split at random into train and test functions; a pair is a function's own docstring and
another function's docstring of the same split.

Token layout of one judge query (:func:`zoo.llm_eval_net.judge_tokens`, length :data:`LENGTH`)::

  [ROLE_r] name (4) [SEP] first doc (8) [SEP] second doc (8) [HINT] verdicts (6, PAD if none) [ASK]

and the answer is the next token, :data:`A` (the first doc is the function's) or :data:`B`. Roles (:data:`ROLES`):
``(name view, docstring window)``; name views ``'all'`` (every part) or ``'last'`` (the last dotted part), windows
of 8 words of first sentence + rest.

Keys per pair (``R = len(ROLES)``): ``name [R, 4]``, ``doc_a [R, 8]``, ``doc_b [R, 8]`` (word ids per role view),
``label []`` int32 (1: ``doc_a`` is the function's own, 0: ``doc_b`` is).
"""

from __future__ import annotations

import zlib

import numpy as np

from zoo import llm_eval_net as ev
from zoo.recipes import data
from zoo.recipes.datasets import text

__all__ = ["A", "ASK", "B", "HINT", "LENGTH", "MAX_HINTS", "NAME_LEN", "DOC_LEN", "PAD", "ROLES", "SEP",
           "docstring_judge", "judge_tokens", "pair_views", "split_functions", "training_queries", "vocab_size"]

PAD, SEP, HINT, ASK, A, B = ev.PAD, ev.SEP, ev.HINT, ev.ASK, ev.A, ev.B
NAME_LEN, DOC_LEN, MAX_HINTS, LENGTH = ev.NAME_LEN, ev.DOC_LEN, ev.MAX_HINTS, ev.LENGTH
judge_tokens = ev.judge_tokens
ROLES = (("all", 0), ("all", 1), ("last", 0), ("all", 2), ("last", 1), ("last", 2))
"""``(name view, window index)`` of each role; window ``k`` = words ``8k .. 8k + 7`` of the docstring."""
_WORD0 = ev.ROLE0 + ev.MAX_ROLES


def vocab_size(num_buckets: int) -> int:
  return _WORD0 + num_buckets


def _ids(ws, num_buckets, length):
  out = np.zeros(length, np.int32)
  ids = [_WORD0 + zlib.crc32(w.encode()) % num_buckets for w in ws if w.isalnum()][:length]
  out[:len(ids)] = ids
  return out


def _views(name: str, doc: str, num_buckets: int):
  parts = [p for p in name.replace("_", ".").lower().split(".") if p]
  last = [p for p in name.split(".")[-1].replace("_", ".").lower().split(".") if p]
  words = [w for w in text.words(doc) if w.isalnum()]
  names = {"all": _ids(parts[-NAME_LEN:], num_buckets, NAME_LEN), "last": _ids(last, num_buckets, NAME_LEN)}
  return (np.stack([names[v] for v, _ in ROLES]),
          np.stack([_ids(words[DOC_LEN * k:DOC_LEN * (k + 1)], num_buckets, DOC_LEN) for _, k in ROLES]))


def pair_views(n: int, functions: list[tuple[str, str]], num_buckets: int, rng: np.random.Generator):
  """``n`` pairs over ``functions`` ``[(name, docstring)]``: ``{name, doc_a, doc_b [n, R, .], label [n]}``."""
  views = [_views(nm, d, num_buckets) for nm, d in functions]
  own = rng.integers(len(functions), size=n)
  other = (own + rng.integers(1, len(functions), size=n)) % len(functions)
  label = rng.integers(0, 2, size=n).astype(np.int32)
  first = np.where(label == 1, own, other)
  second = np.where(label == 1, other, own)
  return {"name": np.stack([views[i][0] for i in own]), "doc_a": np.stack([views[i][1] for i in first]),
          "doc_b": np.stack([views[i][1] for i in second]), "label": label}


def split_functions(seed: int = 0, test_fraction: float = 0.3):
  """The stdlib functions ``[(name, first sentence + rest)]`` split at random into train / test."""
  funcs = [(nm, f"{q} {rest}") for nm, q, rest in text.docstring_pairs()]
  perm = np.random.default_rng(seed).permutation(len(funcs))
  cut = int(round(test_fraction * len(funcs)))
  return [funcs[i] for i in perm[cut:]], [funcs[i] for i in perm[:cut]]


def training_queries(n: int, functions, num_buckets: int, rng: np.random.Generator, hint_fraction: float = 0.5):
  """Judge fine-tuning rows ``{tokens [n, LENGTH], label [n]}`` (label: :data:`A` or :data:`B`): a random role,
  and for ``hint_fraction`` of the rows 1-6 noisy verdict hints (each right with a random probability in [0.5, 0.9])
  so that the judge learns to read earlier verdicts (layer 2 of the network)."""
  p = pair_views(n, functions, num_buckets, rng)
  role = rng.integers(len(ROLES), size=n)
  r = np.arange(n)
  k = np.where(rng.random(n) < hint_fraction, rng.integers(1, MAX_HINTS + 1, size=n), 0)
  acc = rng.uniform(0.5, 0.9, size=(n, 1))
  truth = np.where(p["label"] == 1, A, B)[:, None]
  right = rng.random((n, MAX_HINTS)) < acc
  hints = np.where(right, truth, A + B - truth)
  hints = np.where(np.arange(MAX_HINTS)[None] < k[:, None], hints, PAD)
  tokens = judge_tokens(role, p["name"][r, role], p["doc_a"][r, role], p["doc_b"][r, role], hints)
  return {"tokens": tokens, "label": np.where(p["label"] == 1, A, B).astype(np.int32)}


@data.register("docstring_judge", version="1.0.0")
def docstring_judge(num_buckets: int = 1024, train_size: int = 25600, test_size: int = 500,
                    seed: int = 0) -> data.Generated:
  """Judge fine-tuning queries (``train``) on train functions, and queries without hints on test functions
  (``test``); ``label`` is the answer token id (:data:`A` = 4 or :data:`B` = 5)."""
  rng = np.random.default_rng(seed)
  train_f, test_f = split_functions(seed)
  return data.Generated({"train": training_queries(train_size, train_f, num_buckets, rng),
                         "test": training_queries(test_size, test_f, num_buckets, rng, hint_fraction=0.0)},
                        metadata={"vocab_size": vocab_size(num_buckets), "num_classes": vocab_size(num_buckets)})
