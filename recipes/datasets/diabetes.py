"""scikit-learn's bundled diabetes regression set (Efron et al., 2004; no download), for regression recipes.

``diabetes``: 442 patients, ten baseline variables (age, sex, BMI, blood pressure, six serum measurements) and a
quantitative measure of disease progression one year later. GBNN (arXiv:1909.12098) reports it among its regression
benchmarks. Both the features and the target are standardised with the training split's statistics; the target's
mean and standard deviation are in the metadata (``y_mean``, ``y_std``), so an RMSE in the original units is
``sqrt(mse) * y_std``.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["diabetes"]


@data.register("diabetes", version="1.0.0")
def diabetes(seed: int = 0, test_fraction: float = 0.3) -> data.Generated:
  """sklearn's diabetes: ``x`` [10] standardised features, ``y`` [1] standardised disease progression."""
  from sklearn.datasets import load_diabetes  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"diabetes: `test_fraction` must be in (0, 1); got {test_fraction}.")
  x, y = load_diabetes(return_X_y=True)
  x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed)
  x_mean, x_std = x_tr.mean(0), x_tr.std(0) + 1e-8
  y_mean, y_std = float(y_tr.mean()), float(y_tr.std())
  split = lambda xs, ys: {"x": ((xs - x_mean) / x_std).astype(np.float32),
                          "y": ((ys - y_mean) / y_std).astype(np.float32)[:, None]}
  return data.Generated({"train": split(x_tr, y_tr), "test": split(x_te, y_te)},
                        metadata={"y_mean": y_mean, "y_std": y_std})
