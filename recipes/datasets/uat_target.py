"""A fixed continuous sequence-to-sequence target on a compact domain that is not permutation-equivariant.

For "Universal Approximation Theorem for a Single-Layer Transformer" (Gumaan, 2025, arXiv 2507.10581): inputs
``X`` uniform on ``[-1, 1]^{n x d}`` and

    f(X)_{i, c} = sin(3 (A x_i)_c) + tanh((B sum_j x_j)_c) * x_{i, 0} + i / 4,

with fixed ``A, B`` (entries ``N(0, 1/d)`` from ``target_seed``). The first term is token-wise, the second mixes the
whole sequence (what attention must route), the third depends on the position ``i`` (so a permutation-equivariant
map, e.g. a transformer layer without positional encoding, cannot approximate it: two rows swapped keep their
outputs swapped, while the target's offsets stay put).
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["uat_target"]


def uat_target(x: np.ndarray, target_seed: int = 1234) -> np.ndarray:
  """``x [examples, n, d]`` -> ``f(x) [examples, n, d]`` float32 (the target in the module docstring)."""
  x = np.asarray(x, np.float64)
  n, d = x.shape[1], x.shape[2]
  rs = np.random.default_rng(target_seed)
  a = rs.normal(size=(d, d)) / np.sqrt(d)
  b = rs.normal(size=(d, d)) / np.sqrt(d)
  context = np.tanh(x.sum(axis=1) @ b.T)[:, None, :]
  y = np.sin(3.0 * x @ a.T) + context * x[:, :, :1] + (np.arange(n) / 4.0)[None, :, None]
  return y.astype(np.float32)


@data.register("uat_seq2seq", version="1.0.0")
def uat_seq2seq(n: int = 4, d: int = 2, train_size: int = 65536, test_size: int = 4096, seed: int = 0,
                target_seed: int = 1234) -> data.Generated:
  """``x`` [n, d] uniform on [-1, 1], ``y`` [n, d] = the fixed target ``uat_target(x)``; train/test drawn apart."""
  rng = np.random.default_rng(seed)
  splits = {}
  for split, size in (("train", train_size), ("test", test_size)):
    x = rng.uniform(-1.0, 1.0, (size, n, d)).astype(np.float32)
    splits[split] = {"x": x, "y": uat_target(x, target_seed)}
  return data.Generated(splits, metadata={"n": n, "d": d, "target_seed": target_seed})
