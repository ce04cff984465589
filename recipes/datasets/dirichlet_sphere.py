"""Two Dirichlet classes projected to the unit sphere, for "Wide and Deep Neural Networks Achieve Consistency for
Classification" (Radhakrishnan, Belkin, Uhler, PNAS 2023, arXiv 2204.14126), as in its official code
(github.com/uhlerlab/inf_depth_ntks, dataset.py).

Class 1 (label 1, probability ``prior``) is ``Dirichlet(alpha1)``, class 0 is ``Dirichlet(alpha2)``; a sample ``s``
on the simplex becomes ``x = s / ||s||`` on ``S^{k-1}``. Defaults: ``alpha1 = (1, 2)``, ``alpha2 = (2, 1)``, prior
0.4, so ``x`` lies on a quarter of the circle ``S^1``. Each split also carries ``bayes``, the Bayes-optimal label
(``prior pdf1(s) > (1 - prior) pdf2(s)``, densities from ``scipy.stats.dirichlet``), to score against.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from zoo.recipes import data

__all__ = ["dirichlet_sphere", "dirichlet_sphere_arrays"]


def dirichlet_sphere_arrays(size: int, alpha1=(1.0, 2.0), alpha2=(2.0, 1.0), prior: float = 0.4, seed: int = 0,
                            dtype=np.float64) -> dict[str, np.ndarray]:
  """``{'x': [size, k] unit vectors, 'label': [size] int32 in {0, 1}, 'bayes': [size] int32}``."""
  alpha1, alpha2 = np.asarray(alpha1, np.float64), np.asarray(alpha2, np.float64)
  if alpha1.shape != alpha2.shape or alpha1.ndim != 1 or alpha1.size < 2 or np.any(alpha1 <= 0) or np.any(alpha2 <= 0):
    raise ValueError(f"dirichlet_sphere: `alpha1`, `alpha2` must be positive vectors of one length >= 2; got "
                     f"{alpha1.tolist()}, {alpha2.tolist()}.")
  if not 0 < prior < 1 or size < 1:
    raise ValueError(f"dirichlet_sphere: need 0 < prior < 1 and size >= 1; got prior={prior}, size={size}.")
  rng = np.random.default_rng(seed)
  label = (rng.random(size) < prior).astype(np.int32)
  s = np.where(label[:, None] == 1, rng.dirichlet(alpha1, size), rng.dirichlet(alpha2, size))
  s = np.clip(s, 1e-12, None)
  s /= s.sum(axis=1, keepdims=True)
  bayes = (prior * stats.dirichlet.pdf(s.T, alpha1) > (1 - prior) * stats.dirichlet.pdf(s.T, alpha2)).astype(np.int32)
  x = s / np.linalg.norm(s, axis=1, keepdims=True)
  return {"x": x.astype(dtype), "label": label, "bayes": bayes}


@data.register("dirichlet_sphere", version="1.0.0")
def dirichlet_sphere(alpha1=(1.0, 2.0), alpha2=(2.0, 1.0), prior: float = 0.4, train_size: int = 500,
                     test_size: int = 1000, seed: int = 0) -> data.Generated:
  """Train/test splits of :func:`dirichlet_sphere_arrays` (float32 ``x``)."""
  splits = {split: dirichlet_sphere_arrays(size, alpha1, alpha2, prior, seed * 2 + i, np.float32)
            for i, (split, size) in enumerate((("train", train_size), ("test", test_size)))}
  return data.Generated(splits, metadata={"alpha1": list(alpha1), "alpha2": list(alpha2), "prior": prior})
