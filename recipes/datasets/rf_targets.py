"""Targets permutation-invariant in the keys, for "What can a Single Attention Layer Learn? A Study Through the
Random Features Lens" (Fu, Guo, Bai and Mei, 2023, arXiv 2307.11353).

An input is a query ``x_0`` and ``N`` keys ``x_1..x_N`` uniform on the unit sphere ``S^{d-1}``, packed as
``x [N + 1, d]`` (row 0 the query). Targets ``f(x) = (1/N) sum_i F(x_0, x_i)``:

* ``'attention_head'``: ``F = exp(temperature <x_0, x_i>) <beta, x_i>``, one (unnormalised) attention head with
  query-key matrix ``temperature * I`` and value ``beta``; inside the random-feature attention class.
* ``'inner_cubic'``: ``F = <x_0, x_i>^3``. Outside the class of the paper's exp-attention features
  ``exp(x_0^T W x_i) <v, x_i>``, whose terms have degree ``k`` in ``x_0`` and ``k + 1`` in ``x_i`` (opposite
  parities on the sphere) while this target is odd in both: kept to show that limit.
* ``'beta_cubic'``: ``F = <beta, x_i>^3``.

``beta = (1, ..., 1) / sqrt(d)``.
"""

from __future__ import annotations

import numpy as np

from zoo.random_features import sphere_inputs
from zoo.recipes import data

__all__ = ["TARGETS", "rf_target"]

TARGETS = ("attention_head", "inner_cubic", "beta_cubic")


def rf_target(x: np.ndarray, target: str = "attention_head", temperature: float = 2.0) -> np.ndarray:
  """``x [examples, N + 1, d]`` (query first) -> ``[examples]`` float32 target values."""
  if target not in TARGETS:
    raise ValueError(f"rf_target: `target` must be one of {TARGETS}; got {target!r}.")
  x = np.asarray(x, np.float64)
  query, keys = x[:, 0], x[:, 1:]
  beta = np.ones(x.shape[-1]) / np.sqrt(x.shape[-1])
  inner = np.einsum("bd,bnd->bn", query, keys)
  if target == "attention_head":
    per_key = np.exp(temperature * inner) * (keys @ beta)
  elif target == "inner_cubic":
    per_key = inner ** 3
  else:
    per_key = (keys @ beta) ** 3
  return per_key.mean(axis=1).astype(np.float32)


@data.register("rf_attention_targets", version="1.0.0")
def rf_attention_targets(target: str = "attention_head", d: int = 8, num_keys: int = 8, temperature: float = 2.0,
                         train_size: int = 2000, test_size: int = 2000, seed: int = 0) -> data.Generated:
  """``x`` [num_keys + 1, d] on the unit sphere (query first), ``y`` scalar = ``rf_target(x)``."""
  rng = np.random.default_rng(seed)
  splits = {}
  for split, size in (("train", train_size), ("test", test_size)):
    x = sphere_inputs(rng, size, num_keys + 1, d)
    splits[split] = {"x": x, "y": rf_target(x, target, temperature)}
  return data.Generated(splits, metadata={"target": target, "d": d, "num_keys": num_keys, "temperature": temperature})
