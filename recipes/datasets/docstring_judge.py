"""Planted pairwise judging: given a function's name, which of two docstrings is its own? (one view per role)

For "Wider and Deeper LLM Networks are Fairer LLM Evaluators" (WideDeep, Zhang et al., 2023, arXiv 2308.01862),
scaled down: the "LLM" is a small transformer fine-tuned on these queries into a noisy pairwise judge, and the
evaluator network's neurons are that judge playing different *roles*. Real stdlib docstrings gave a judge that
stayed at chance after a few hundred steps (see docs/papers.md), so the functions here are planted, with the
evidence spread over the roles:

* a function's name has one part per role, ``n_r`` (a word id); its docstring has one slice of
  :data:`DOC_LEN` words per role;
* role ``r`` sees the name part ``n_r`` and slice ``r`` of both docstrings. A slice is *informative* with
  probability ``1 - ambiguity``: then exactly one of the two slices mentions ``n_r``, the function's own with
  probability ``reliability`` (otherwise the other function's slice does: a misleading view). An ambiguous slice
  pair mentions ``n_r`` in neither. The other words of a slice are fillers, drawn uniformly from their own
  ``num_fillers`` ids (so a filler never mentions a name part). The roles' views of a pair are independent, so
  the judge's errors are independent across roles (width helps), and one role alone is right with probability
  ``(1 - ambiguity) reliability + ambiguity / 2`` at best (0.68 by default);
* position bias: the fine-tuning pairs put the own docstring first with probability ``first_bias`` (0.6), so the
  judge learns a prior for answer :data:`A`; the test pairs are balanced (both answer orders cancel the prior).

Token layout of one judge query (:func:`zoo.llm_eval_net.judge_tokens`, length :data:`LENGTH` = 20)::

  [ROLE_r] n_r [SEP] first slice (4) [SEP] second slice (4) [HINT] verdicts (6, PAD if none) [ASK]

and the answer is the next token, :data:`A` (the first docstring is the function's) or :data:`B`. Half of the
fine-tuning queries carry ``k`` in 1..6 verdict hints: the evidence verdicts of roles ``0 .. k-1`` of the same pair
(``A`` where that role's first slice mentions its name part, ``B`` where the second does, random where neither),
so the judge learns to read earlier verdicts (layer 2 of the network reads layer 1's verdicts in that order).

Word ids: name parts ``WORD0 .. WORD0 + num_words - 1``, fillers the next ``num_fillers`` ids
(:func:`vocab_size`). Keys of :func:`pair_views` (``R = MAX_ROLES`` = 6): ``name [n, R, 1]``, ``doc_a [n, R, 4]``,
``doc_b [n, R, 4]`` word ids, ``label [n]`` int32 (1: ``doc_a`` is the function's own, 0: ``doc_b`` is),
``evidence [n, R]``. The registered dataset ``docstring_judge``: ``train`` = fine-tuning queries
``{tokens [n, 20], label [n]}`` (``label`` = the answer token id, :data:`A` or :data:`B`), ``test`` = held-out
balanced pairs with one hint-free query each; both splits also hold each row's pair views ``name``, ``doc_a``,
``doc_b`` (what the evaluator networks judge; the procedure ``llm_eval.JudgeThenNetworks`` evaluates them).

Deviation from PAPERS.md ("which of two stdlib docstrings is its own"): the docstrings are planted word ids, not
the standard library's (an earlier version on real stdlib docstrings, hashed words, gave a judge at chance).
"""

from __future__ import annotations

import numpy as np

from zoo import llm_eval_net as ev
from zoo.recipes import data

__all__ = ["A", "ASK", "B", "DOC_LEN", "HINT", "LENGTH", "MAX_HINTS", "NAME_LEN", "PAD", "SEP", "WORD0",
           "docstring_judge", "judge_tokens", "pair_views", "training_queries", "vocab_size"]

PAD, SEP, HINT, ASK, A, B = ev.PAD, ev.SEP, ev.HINT, ev.ASK, ev.A, ev.B
NAME_LEN, DOC_LEN, MAX_HINTS, LENGTH = ev.NAME_LEN, ev.DOC_LEN, ev.MAX_HINTS, ev.LENGTH
judge_tokens = ev.judge_tokens
WORD0 = ev.ROLE0 + ev.MAX_ROLES
"""The first word id (0-5 special tokens, 6-11 role tokens)."""


def vocab_size(num_words: int, num_fillers: int) -> int:
  """The judge's vocabulary: special and role tokens, name-part words, filler words."""
  return WORD0 + num_words + num_fillers


def pair_views(n: int, rng: np.random.Generator, *, num_words: int = 4, num_fillers: int = 4,
               reliability: float = 0.8, ambiguity: float = 0.4, first_bias: float = 0.5):
  """``n`` planted pairs (module docstring): ``{name [n, R, 1], doc_a/doc_b [n, R, DOC_LEN], label [n],
  evidence [n, R]}`` (``evidence``: +1 where role ``r``'s first slice mentions ``n_r``, -1 the second, 0 neither).
  ``first_bias`` is the probability that ``doc_a`` is the own docstring (``label == 1``)."""
  if num_words < 1 or num_fillers < 1:
    raise ValueError(f"pair_views: `num_words` and `num_fillers` must be >= 1; got {num_words}, {num_fillers}.")
  for arg, v in (("reliability", reliability), ("ambiguity", ambiguity), ("first_bias", first_bias)):
    if not 0.0 <= v <= 1.0:
      raise ValueError(f"pair_views: `{arg}` must be in [0, 1]; got {v}.")
  r = ev.MAX_ROLES
  label = (rng.random(n) < first_bias).astype(np.int32)
  part = rng.integers(num_words, size=(n, r))
  # filler words from their own vocabulary (ids num_words ..): [n, R, 2 (own, other), DOC_LEN]
  slices = num_words + rng.integers(num_fillers, size=(n, r, 2, DOC_LEN))
  informative = rng.random((n, r)) >= ambiguity
  own_mentions = rng.random((n, r)) < reliability
  where = rng.integers(DOC_LEN, size=(n, r))
  for k, mentions in ((0, informative & own_mentions), (1, informative & ~own_mentions)):
    i, j = np.nonzero(mentions)
    slices[i, j, k, where[i, j]] = part[i, j]
  own, other = slices[:, :, 0], slices[:, :, 1]
  first = np.where(label[:, None, None] == 1, own, other)
  second = np.where(label[:, None, None] == 1, other, own)
  mention = np.where(informative, np.where(own_mentions, 1, -1), 0)  # +1: the own slice mentions n_r
  evidence = np.where(label[:, None] == 1, mention, -mention)
  return {"name": (WORD0 + part[..., None]).astype(np.int32), "doc_a": (WORD0 + first).astype(np.int32),
          "doc_b": (WORD0 + second).astype(np.int32), "label": label, "evidence": evidence.astype(np.int32)}


def training_queries(n: int, rng: np.random.Generator, *, hint_fraction: float = 0.5, with_pairs: bool = False,
                     abstain: bool = False, **views):
  """Judge fine-tuning rows ``{tokens [n, LENGTH], label [n]}`` (label: :data:`A` or :data:`B`): a random role of
  a planted pair (``views``: :func:`pair_views` keywords) and, for ``hint_fraction`` of the rows, the verdicts of
  roles ``0 .. k-1`` (k in 1..6) as hints. ``with_pairs``: also the pair's views ``name [n, R, 1]``,
  ``doc_a/doc_b [n, R, DOC_LEN]`` (the label is then also the pair's: :data:`A` where ``doc_a`` is the own).
  ``abstain``: the hint of a role whose view mentions its name part in neither slice is :data:`PAD` (the role
  abstains) instead of a random A/B (for ``WideDeepEvaluator(abstain_margin=...)``)."""
  p = pair_views(n, rng, **views)
  role = rng.integers(ev.MAX_ROLES, size=n)
  rows = np.arange(n)
  k = np.where(rng.random(n) < hint_fraction, rng.integers(1, MAX_HINTS + 1, size=n), 0)
  coin = np.where(rng.random((n, MAX_HINTS)) < 0.5, A, B)
  verdict = np.where(p["evidence"] > 0, A, np.where(p["evidence"] < 0, B, PAD if abstain else coin))
  hints = np.where(np.arange(MAX_HINTS)[None] < k[:, None], verdict, PAD).astype(np.int32)
  tokens = judge_tokens(role, p["name"][rows, role], p["doc_a"][rows, role], p["doc_b"][rows, role], hints)
  out = {"tokens": tokens, "label": np.where(p["label"] == 1, A, B).astype(np.int32)}
  if with_pairs:
    out.update(name=p["name"], doc_a=p["doc_a"], doc_b=p["doc_b"])
  return out


@data.register("docstring_judge", version="2.1.0")
def docstring_judge(num_words: int = 4, num_fillers: int = 4, reliability: float = 0.8, ambiguity: float = 0.4,
                    first_bias: float = 0.6, train_size: int = 25600, test_size: int = 500,
                    seed: int = 0) -> data.Generated:
  """Judge fine-tuning queries (``train``: own docstring first with probability ``first_bias``, half with hints)
  and held-out balanced pairs (``test``: one hint-free query each), both with the pairs' views
  (``training_queries(with_pairs=True)`` keys; ``label`` = the answer token, :data:`A` where ``doc_a`` is the own)."""
  rng = np.random.default_rng(seed)
  views = dict(num_words=num_words, num_fillers=num_fillers, reliability=reliability, ambiguity=ambiguity)
  test = training_queries(test_size, rng, hint_fraction=0.0, first_bias=0.5, with_pairs=True, **views)
  train = training_queries(train_size, rng, first_bias=first_bias, with_pairs=True, **views)
  vocab = vocab_size(num_words, num_fillers)
  return data.Generated({"train": train, "test": test}, metadata={"vocab_size": vocab, "num_classes": vocab})
