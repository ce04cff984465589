"""Hierarchical polynomial regression ``y = g(p(x))``, ``x ~ N(0, I_d)``, for "Learning Hierarchical Polynomials with
Three-Layer Neural Networks" (Wang, Nichani, Lee, ICLR 2024, arXiv 2311.13774): ``zoo.hierarchical_poly``. Keys
``x`` float32 ``[d]``, ``y`` float32 ``[]`` and the hidden feature ``p`` float32 ``[]``.
"""

from __future__ import annotations

import numpy as np

from zoo import hierarchical_poly
from zoo.recipes import data

__all__ = ["hierarchical_polynomial"]


@data.register("hierarchical_polynomial", version="1.0.0")
def hierarchical_polynomial(d: int = 12, n_train: int = 20000, n_test: int = 5000, g: str = "cube",
                            seed: int = 0) -> data.Generated:
  """Splits ``train`` / ``test`` of one target (one ``A``, drawn from ``seed``)."""
  rng = np.random.default_rng(seed)
  A = hierarchical_poly.quadratic_feature_matrix(rng, d)  # pylint: disable=invalid-name
  train = hierarchical_poly.hierarchical_target(rng, n_train, d, g=g, A=A)
  test = hierarchical_poly.hierarchical_target(rng, n_test, d, g=g, A=A)
  return data.Generated({"train": train, "test": test}, metadata={"d": d, "g": g})
