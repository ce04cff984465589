"""Cyclical Curriculum Learning (Kesgin & Amasyali, IEEE TNNLS 2023, arXiv 2202.05531): a batch sampler.

CCL trains epoch ``t`` on a subset of ``n_t * N`` of the ``N`` training examples, drawn **without replacement with
probability proportional to a score** (the score favours easy examples: a reference model's probability of the true
class). The fractions ``n_t`` follow a cycle: they start at ``sp``, are multiplied by ``1 / alpha`` until they
reach ``ep`` (1: the whole set, i.e. one vanilla epoch), then by ``alpha`` back down to ``sp``, and so on (the
official ``get_cycle_sizes``). So CCL alternates curriculum epochs (small, easy subsets) with vanilla ones.

This module is not a training loop: :class:`CyclicalCurriculum` is an *index sampler*, ``sampler(step) ->
indices [batch_size]``, that the data layer takes (``zoo.recipes.data.Batches(..., sampler=...)``,
``zoo.recipes.train.fit(..., sampler=...)`` and the config block ``data.sampler``), so it composes with any model,
task and procedure of the one trainer. Its batches are a pure function of ``(seed, step)``: a resumed run sees the
batches an uninterrupted one would.

Public names:

* :func:`cyclical_sizes` ``(sp, ep, alpha, total, direction) -> [fractions]``: the official schedule, summing to at
  least ``total`` full-data epochs; ``direction='lower_to_bigger'`` (the official code: start at ``sp``) or
  ``'bigger_to_lower'`` (start at ``ep`` and shrink first).
* :func:`score_samples` ``(losses [N], kind, lamda) -> scores [N] > 0``: the official mapping of a reference
  model's per-example losses to sampling weights: ``'easy'`` (``lamda * exp(-lamda * loss)``; with ``lamda=1`` the
  probability of the true class; ``lamda=None``: ``1 / loss``, the official script's default), ``'hard'``
  (``loss``), ``'random'`` (uniform: the ablation of the score).
* :func:`reference_losses` ``(x [N, ...], labels [N]) -> losses [N]``: per-example cross-entropy of a scikit-learn
  logistic regression fitted on the training set (the reference model of the effect test and the configs).
* :func:`sample_subset` ``(scores [N], size, seed, epoch) -> indices [size]``: the score-proportional draw without
  replacement, shuffled, deterministic by ``(seed, epoch)``.
* :class:`CyclicalCurriculum`: the sampler; ``cyclical=False`` keeps every epoch at ``ep`` (score sampling without
  the cycle), ``kind='random'`` keeps the cycle with uniform scores: the two ablations of the mechanism.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["CyclicalCurriculum", "cyclical_sizes", "make_sampler", "reference_losses", "sample_subset",
           "score_samples"]

DIRECTIONS = ("lower_to_bigger", "bigger_to_lower")
KINDS = ("easy", "hard", "random")


def _check_schedule(sp, ep, alpha, direction):
  if not 0 < sp <= ep <= 1:
    raise ValueError(f"cyclical curriculum: need 0 < sp <= ep <= 1; got sp={sp!r}, ep={ep!r}.")
  if not 0 < alpha < 1:
    raise ValueError(f"cyclical curriculum: alpha must be in (0, 1) (the fraction is multiplied by 1/alpha going "
                     f"up and by alpha going down); got {alpha!r}.")
  if direction not in DIRECTIONS:
    raise ValueError(f"cyclical curriculum: direction must be one of {DIRECTIONS}; got {direction!r}.")


def _fractions(sp: float, ep: float, alpha: float, direction: str):
  """The infinite schedule (a generator), by the official rule."""
  _check_schedule(sp, ep, alpha, direction)
  if direction == "lower_to_bigger":
    # get_cycle_sizes: grow while at sp or while growing and below ep; else shrink (clamped to [sp, ep]).
    s = [sp]
    yield sp
    while True:
      n = s[-1]
      growing = len(s) < 2 or s[-2] < s[-1]
      n = min(n / alpha, ep) if (n == sp or (growing and n != ep)) else max(n * alpha, sp)
      s = [s[-1], n]
      yield n
  else:
    # The mirror image: shrink while at ep or while shrinking and above sp; else grow.
    s = [ep]
    yield ep
    while True:
      n = s[-1]
      shrinking = len(s) < 2 or s[-2] > s[-1]
      n = max(n * alpha, sp) if (n == ep or (shrinking and n != sp)) else min(n / alpha, ep)
      s = [s[-1], n]
      yield n


def cyclical_sizes(sp: float = 0.25, ep: float = 1.0, alpha: float = 0.5, total: float = 10.0,
                   direction: str = "lower_to_bigger") -> list[float]:
  """The per-epoch data fractions, appended until they sum to at least ``total`` (official ``get_cycle_sizes``).

  ``sp``/``ep``: the smallest and largest fraction; ``alpha``: the ratio between consecutive fractions;
  ``total``: the training length in full-data epochs. The official defaults: ``sp=0.25``, ``ep=1``,
  ``alpha=0.5`` (``[0.25, 0.5, 1, 0.5, 0.25, 0.5, 1, ...]``).
  """
  if not total > 0:
    raise ValueError(f"cyclical_sizes: total must be > 0 full-data epochs; got {total!r}.")
  sizes, gen = [], _fractions(sp, ep, alpha, direction)
  while sum(sizes) < total:
    sizes.append(next(gen))
  return sizes


def score_samples(losses, *, kind: str = "easy", lamda: float | None = 1.0) -> np.ndarray:
  """Reference-model losses ``[N]`` -> positive sampling weights ``[N]`` (see the module docstring)."""
  losses = np.asarray(losses, dtype=np.float64)
  if losses.ndim != 1 or not len(losses):
    raise ValueError(f"score_samples: losses must be a non-empty vector [N]; got shape {losses.shape}.")
  if not np.all(np.isfinite(losses)) or np.any(losses < 0):
    raise ValueError("score_samples: losses must be finite and >= 0 (per-example cross-entropies).")
  if kind not in KINDS:
    raise ValueError(f"score_samples: kind must be one of {KINDS}; got {kind!r}.")
  if kind == "random":
    return np.ones_like(losses)
  if kind == "hard":
    scores = losses.copy()
  elif lamda is None:
    scores = 1.0 / np.maximum(losses, 1e-12)
  else:
    if not lamda > 0:
      raise ValueError(f"score_samples: lamda must be > 0 (or None for 1 / loss); got {lamda!r}.")
    scores = lamda * np.exp(-lamda * losses)
  # As the official code: a zero weight is replaced by the smallest positive one, so every example can be drawn.
  positive = scores[scores > 0]
  if not len(positive):
    return np.ones_like(scores)
  return np.where(scores > 0, scores, positive.min())


def reference_losses(x, labels, *, c: float = 1.0, max_iter: int = 500, seed: int = 0) -> np.ndarray:
  """Per-example cross-entropy ``[N]`` of a logistic regression fitted on ``(x [N, ...], labels [N])``."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(x),):
    raise ValueError(f"reference_losses: labels must be integers [N={len(x)}]; got {labels.dtype} {labels.shape}.")
  clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed).fit(x, labels)
  probs = clf.predict_proba(x)
  column = np.searchsorted(clf.classes_, labels)
  return -np.log(np.clip(probs[np.arange(len(x)), column], 1e-12, None))


def sample_subset(scores, size: int, *, seed: int, epoch: int) -> np.ndarray:
  """``size`` distinct indices drawn with probability ``scores / sum(scores)``, in a random order."""
  scores = np.asarray(scores, dtype=np.float64)
  if not 0 < size <= len(scores):
    raise ValueError(f"sample_subset: size must be in [1, {len(scores)}]; got {size!r}.")
  rng = np.random.default_rng([seed, epoch, 0x43434c])
  picked = rng.choice(len(scores), size, replace=False, p=scores / scores.sum())
  return picked[rng.permutation(size)]


@dataclasses.dataclass
class CyclicalCurriculum:
  """The CCL index sampler: ``sampler(step) -> indices [batch_size]`` into the training split.

  Epoch ``e`` draws ``floor(fraction_e * N)`` examples by :func:`sample_subset` and cuts them into
  ``batch_size`` slices (the remainder is dropped, as ``data.Batches`` does); the epoch of a step is found from the
  cumulative steps of the schedule, so ``sampler(step)`` is a pure function of ``(seed, step)``.

  Attributes:
    scores: positive sampling weights ``[N]`` (:func:`score_samples`).
    batch_size: the global batch size.
    seed: sampling seed.
    sp, ep, alpha, direction: the schedule (:func:`cyclical_sizes`).
    cyclical: False: every epoch uses fraction ``ep`` (the cycle switched off).
  """
  scores: Sequence[float]
  batch_size: int
  seed: int = 0
  sp: float = 0.25
  ep: float = 1.0
  alpha: float = 0.5
  direction: str = "lower_to_bigger"
  cyclical: bool = True

  def __post_init__(self):
    self.scores = np.asarray(self.scores, dtype=np.float64)
    if self.scores.ndim != 1 or not len(self.scores):
      raise ValueError(f"CyclicalCurriculum: scores must be a non-empty vector [N]; got shape {self.scores.shape}.")
    if not np.all(np.isfinite(self.scores)) or np.any(self.scores <= 0):
      raise ValueError("CyclicalCurriculum: scores must be finite and > 0 (see score_samples).")
    if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
        or self.batch_size < 1:
      raise ValueError(f"CyclicalCurriculum: batch_size must be an integer >= 1; got {self.batch_size!r}.")
    _check_schedule(self.sp, self.ep, self.alpha, self.direction)
    n = len(self.scores)
    if math.floor(self.sp * n) < self.batch_size:
      raise ValueError(f"CyclicalCurriculum: the smallest epoch (sp={self.sp} of {n} examples) holds fewer than one "
                       f"batch of {self.batch_size}; raise sp or lower the batch size.")
    self._gen = _fractions(self.sp, self.ep, self.alpha, self.direction) if self.cyclical else None
    self._fractions: list[float] = []
    self._ends: list[int] = []  # cumulative steps at the end of each epoch
    self._epoch, self._perm = None, None

  def __len__(self) -> int:
    return len(self.scores)

  def fraction(self, epoch: int) -> float:
    """The data fraction of epoch ``epoch``."""
    self._extend_to(epoch=epoch)
    return self._fractions[epoch]

  def epoch_of(self, step: int) -> int:
    self._extend_to(step=step)
    return bisect.bisect_right(self._ends, int(step))

  def steps_in(self, epoch: int) -> int:
    return math.floor(self.fraction(epoch) * len(self.scores)) // self.batch_size

  def _extend_to(self, *, epoch: int | None = None, step: int | None = None):
    while (epoch is not None and len(self._fractions) <= epoch) or \
        (step is not None and (not self._ends or self._ends[-1] <= step)):
      f = next(self._gen) if self.cyclical else self.ep
      self._fractions.append(f)
      steps = math.floor(f * len(self.scores)) // self.batch_size
      self._ends.append((self._ends[-1] if self._ends else 0) + steps)

  def __call__(self, step: int) -> np.ndarray:
    if int(step) < 0:
      raise ValueError(f"CyclicalCurriculum: step must be >= 0; got {step}.")
    epoch = self.epoch_of(step)
    if epoch != self._epoch:
      size = math.floor(self._fractions[epoch] * len(self.scores))
      self._perm = sample_subset(self.scores, size, seed=self.seed, epoch=epoch)
      self._epoch = epoch
    i = int(step) - (self._ends[epoch - 1] if epoch else 0)
    return self._perm[i * self.batch_size:(i + 1) * self.batch_size]


def make_sampler(block, *, source, batch_size: int, seed: int):
  """``data.sampler`` config block -> an index sampler over ``source`` (None for the default shuffling).

  Fields: ``name`` (``''``: none, the other fields are ignored; ``'sequential'``: the split in order, for
  full-batch solvers; ``'cyclical'``: :class:`CyclicalCurriculum`), ``kind``, ``lamda`` (the score,
  :func:`score_samples`), ``input_key``/``target_key`` (the reference model's data: a logistic regression fitted on
  the training split, :func:`reference_losses`), and the schedule fields ``sp``, ``ep``, ``alpha``, ``direction``,
  ``cyclical``.
  """
  cfg = dict(block.to_dict() if hasattr(block, "to_dict") else (block or {}))
  name = cfg.pop("name", "")
  if not name:  # the other fields are kept but unused, so `--config.data.sampler.name=` runs the vanilla baseline
    return None
  if name == "sequential":  # the split in order, batch after batch (full-batch solvers: batch_size = N)
    if cfg:
      raise ValueError(f"data.sampler 'sequential' takes no fields; got {sorted(cfg)}.")
    n = len(source)
    return lambda step: (np.arange(batch_size) + int(step) * batch_size) % n
  if name != "cyclical":
    raise ValueError(f"data.sampler.name must be '' (none), 'cyclical' or 'sequential'; got {name!r}.")
  kind, lamda = cfg.pop("kind", "easy"), cfg.pop("lamda", 1.0)
  input_key, target_key = cfg.pop("input_key", "image"), cfg.pop("target_key", "label")
  fields = {f.name for f in dataclasses.fields(CyclicalCurriculum)} - {"scores", "batch_size", "seed"}
  unknown = set(cfg) - fields
  if unknown:
    raise ValueError(f"data.sampler has no field(s) {sorted(unknown)}; valid: name, kind, lamda, input_key, "
                     f"target_key, {', '.join(sorted(fields))}.")
  arrays = source.__getitems__(np.arange(len(source)))
  if kind == "random":
    losses = np.ones(len(source))
  else:
    losses = reference_losses(arrays[input_key], arrays[target_key], seed=seed)
  return CyclicalCurriculum(score_samples(losses, kind=kind, lamda=lamda), batch_size, seed=seed, **cfg)
