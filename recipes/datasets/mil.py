"""A planted multiple-instance learning (MIL) set: is there one witness instance in the bag?

Every bag holds ``bag_size`` instances drawn from N(0, I_features). In a positive bag (label 1, half of the bags)
one instance at a random position is a *witness*: its component along a hidden unit direction ``u`` (fixed by
``seed``) is shifted by ``witness_shift``. The witness is weak: at the default shift of 3 standard deviations it is
only moderately more extreme along ``u`` than the most extreme of the 31 other instances, and it moves the bag
mean by ``witness_shift / bag_size``. A pooling that finds the witness (attention/Hopfield pooling, max pooling)
can classify the bag; averaging the bag dilutes the witness 32-fold.

Used by ``recipes/configs/hopfield_mil.py`` and the effect test of "Hopfield Networks is All You Need" (Ramsauer et
al., 2020, arXiv 2008.02217), where Hopfield pooling is the MIL pooling.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data


def _bags(rng: np.random.Generator, n: int, bag_size: int, direction: np.ndarray, shift: float):
  instances = rng.normal(size=(n, bag_size, direction.size)).astype(np.float32)
  label = np.zeros(n, np.int64)
  label[: n // 2] = 1
  rng.shuffle(label)
  where = rng.integers(0, bag_size, size=n)
  pos = np.flatnonzero(label)
  instances[pos, where[pos]] += (shift * direction).astype(np.float32)
  return {"instances": instances, "label": label}


@data.register("mil", version="1.0.0")
def mil(num_train: int = 2000, num_test: int = 1000, bag_size: int = 32, features: int = 16,
        witness_shift: float = 3.0, seed: int = 0) -> data.Generated:
  """Planted MIL bags: ``instances`` [bag_size, features] float32, ``label`` 1 if the bag holds a witness."""
  if bag_size < 1 or features < 1 or num_train < 2 or num_test < 2:
    raise ValueError(f"mil: need bag_size >= 1, features >= 1 and at least 2 bags per split; got bag_size="
                     f"{bag_size}, features={features}, num_train={num_train}, num_test={num_test}.")
  rng = np.random.default_rng(seed)
  direction = rng.normal(size=features)
  direction /= np.linalg.norm(direction)
  return data.Generated(
      {"train": _bags(rng, num_train, bag_size, direction, witness_shift),
       "test": _bags(rng, num_test, bag_size, direction, witness_shift)},
      metadata={"num_classes": 2, "bag_size": bag_size, "witness_shift": witness_shift})
