"""sklearn digits with planted symmetric label noise on the training split (the test split stays clean).

For "Cyclical Curriculum Learning" (Kesgin & Amasyali, 2022, arXiv 2202.05531): a score-proportional curriculum
that favours easy examples should draw the mislabelled ones less often and so beat vanilla training on clean test
accuracy.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data
from zoo.recipes.datasets import sklearn_sets


@data.register("digits_noisy_labels", version="1.0.0")
def digits_noisy_labels(noise: float = 0.3, seed: int = 0, test_fraction: float = 0.25) -> data.Generated:
  """Digits (``image`` [8, 8, 1], ``label``); a fraction ``noise`` of the training labels is replaced by a uniformly
  drawn *different* class (symmetric noise). ``clean_label`` keeps the true training labels, ``noisy`` marks the
  flipped rows."""
  if not 0 <= noise < 0.9:
    raise ValueError(f"digits_noisy_labels: noise must be in [0, 0.9); got {noise!r}.")
  gen = sklearn_sets.digits(seed=seed, test_fraction=test_fraction)
  train = gen.splits["train"]
  rng = np.random.default_rng([seed, 0x4e4f49])
  clean = train["label"].copy()
  flip = rng.random(len(clean)) < noise
  shift = rng.integers(1, 10, size=len(clean))
  train["label"] = np.where(flip, (clean + shift) % 10, clean).astype(np.int64)
  train["clean_label"] = clean
  train["noisy"] = flip.astype(np.int64)
  test = gen.splits["test"]
  test["clean_label"] = test["label"].copy()
  test["noisy"] = np.zeros(len(test["label"]), np.int64)
  return gen
