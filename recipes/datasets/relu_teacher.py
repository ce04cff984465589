"""A planted two-layer ReLU teacher in the plane (no bias), for the convex two-layer ReLU programs.

For "Efficient Global Optimization of Two-layer ReLU Networks" (Bai, Gautam, Sojoudi, 2022, arXiv 2201.01965):
with ``d = 2`` and no bias every activation pattern of the data can be enumerated exactly.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data


@data.register("relu_teacher_2d", version="1.0.0")
def relu_teacher_2d(n_train: int = 80, n_test: int = 400, width: int = 3, noise: float = 0.1,
                    seed: int = 0) -> data.Generated:
  """``x`` [2] ~ N(0, I), ``y = relu(x U) alpha + noise * N(0, 1)`` with ``U [2, width]`` ~ N(0, 1) and ``alpha``
  alternating +-1 (the test targets are noiseless)."""
  if n_train < 1 or n_test < 1 or width < 1:
    raise ValueError(f"relu_teacher_2d: n_train, n_test and width must be >= 1; got {n_train}, {n_test}, {width}.")
  rng = np.random.default_rng([seed, 0x52454c55])
  u = rng.normal(size=(2, width))
  alpha = np.where(np.arange(width) % 2 == 0, 1.0, -1.0)
  splits = {}
  for split, n, sigma in (("train", n_train, noise), ("test", n_test, 0.0)):
    x = rng.normal(size=(n, 2))
    y = np.maximum(x @ u, 0) @ alpha + sigma * rng.normal(size=n)
    splits[split] = {"x": x.astype(np.float32), "y": y.astype(np.float32)}
  return data.Generated(splits, metadata={"width": width})
