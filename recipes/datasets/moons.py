"""scikit-learn's two interleaving half circles (``make_moons``) with a constant bias feature, labels -1 / +1.

For the robust convex two-layer ReLU program ("Efficient Global Optimization of Two-layer ReLU Networks", Bai,
Gautam, Sojoudi, 2022, arXiv 2201.01965, Section 5): the network ``relu(x U) alpha`` has no bias, so ``x`` carries
a constant 1 as its last feature (an attack perturbs only the first two: ``perturbed = 2``).
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data


def moons_arrays(n: int, noise: float, seed: int):
  """``x [n, 3]`` = (the 2-d point, 1) float32 and ``y [n]`` in {-1, +1} float32."""
  from sklearn.datasets import make_moons  # pylint: disable=g-import-not-at-top
  x, y = make_moons(n, noise=noise, random_state=seed)
  return (np.concatenate([x, np.ones((n, 1))], axis=1).astype(np.float32), (2.0 * y - 1.0).astype(np.float32))


@data.register("moons_bias", version="1.0.0")
def moons_bias(n_train: int = 100, n_test: int = 400, noise: float = 0.25, seed: int = 0) -> data.Generated:
  """``x`` [3] (``make_moons`` point, then 1), ``y`` in {-1, +1} float32 (a regression target: the hinge and the
  squared loss both read it); train and test drawn with different ``random_state`` from ``seed``."""
  if n_train < 2 or n_test < 2 or not noise >= 0:
    raise ValueError(f"moons_bias: need n_train, n_test >= 2 and noise >= 0; got {n_train}, {n_test}, {noise}.")
  splits = {}
  for k, (split, n) in enumerate((("train", n_train), ("test", n_test))):
    x, y = moons_arrays(n, noise, int(np.random.default_rng([seed, k]).integers(1 << 30)))
    splits[split] = {"x": x, "y": y}
  return data.Generated(splits, metadata={"perturbed": 2})
