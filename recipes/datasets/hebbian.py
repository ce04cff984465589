"""Diluted patterns and their noisy examples for the multitasking Hebbian network (Agliari et al., 2023, arXiv
2308.04106; ``zoo.hebbian``).

``hebbian_examples``: ``train`` holds the ``K * M`` examples ``eta^{mu,a} = chi xi^mu`` (``x [K*M, N]`` float32
+-1/0, ``label`` = ``mu``); ``test`` holds ``test_repeats`` rows per ground-truth pattern (``x [R, N]`` the pattern
``label``, ``patterns [R, K, N]`` all of them), which the procedure only uses to start the dynamics near a pattern
and read the Mattis magnetisations (each row its own random start).
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data


@data.register("hebbian_examples", version="1.1.0")
def hebbian_examples(seed: int = 0, num_neurons: int = 1000, num_patterns: int = 3, num_examples: int = 60,
                     dilution: float = 0.3, quality: float = 0.8, test_repeats: int = 8) -> data.Generated:
  """K diluted patterns (blank w.p. ``dilution``), M examples each with ``P(chi = +1) = (1 + quality)/2``."""
  for name, value in (("num_neurons", num_neurons), ("num_patterns", num_patterns), ("num_examples", num_examples),
                      ("test_repeats", test_repeats)):
    if not (isinstance(value, (int, np.integer)) and value >= 1):
      raise ValueError(f"hebbian_examples: `{name}` must be an integer >= 1; got {value!r}.")
  if not (0.0 <= dilution < 1.0 and 0.0 <= quality <= 1.0):
    raise ValueError(f"hebbian_examples: `dilution` must be in [0, 1) and `quality` in [0, 1]; got {dilution!r}, "
                     f"{quality!r}.")
  rng = np.random.default_rng(seed)
  xi = np.where(rng.random((num_patterns, num_neurons)) < 0.5, 1.0, -1.0)
  xi = np.where(rng.random(xi.shape) < dilution, 0.0, xi).astype(np.float32)
  chi = np.where(rng.random((num_patterns, num_examples, num_neurons)) < (1 + quality) / 2, 1.0, -1.0)
  eta = (chi * xi[:, None]).reshape(num_patterns * num_examples, num_neurons).astype(np.float32)
  labels = np.repeat(np.arange(num_patterns), num_examples).astype(np.int64)
  test_labels = np.tile(np.arange(num_patterns, dtype=np.int64), test_repeats)
  # Every split has the same keys (TFDS features), so the training rows carry the patterns too (unused there).
  return data.Generated({"train": {"x": eta, "label": labels,
                                   "patterns": np.repeat(xi[None], len(labels), axis=0)},
                         "test": {"x": xi[test_labels], "label": test_labels,
                                  "patterns": np.repeat(xi[None], len(test_labels), axis=0)}},
                        metadata={"num_classes": num_patterns})
