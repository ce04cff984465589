"""scikit-learn's bundled datasets (no download) and real TFDS image sets.

Every split is stratified and seeded, so the same ``seed`` gives the same split on every machine.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data


def _split(x, y, *, test_fraction: float, seed: int, x_key: str) -> data.Generated:
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
  return data.Generated(
      {"train": {x_key: x_tr, "label": y_tr.astype(np.int64)}, "test": {x_key: x_te, "label": y_te.astype(np.int64)}},
      metadata={"num_classes": int(y.max()) + 1})


@data.register("digits")
def digits(seed: int = 0, test_fraction: float = 0.25) -> data.Generated:
  """sklearn's 1797 8x8 handwritten digits; ``image`` [8, 8, 1] float32 in [0, 1], ``label`` int in [0, 10)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
  return _split(x, y, test_fraction=test_fraction, seed=seed, x_key="image")


def _tabular(loader, seed: int, test_fraction: float) -> data.Generated:
  x, y = loader(return_X_y=True)
  # Standardised with the training split's statistics only.
  gen = _split(x.astype(np.float32), y, test_fraction=test_fraction, seed=seed, x_key="x")
  mean, std = gen.splits["train"]["x"].mean(0), gen.splits["train"]["x"].std(0) + 1e-8
  for split in gen.splits.values():
    split["x"] = ((split["x"] - mean) / std).astype(np.float32)
  return gen


@data.register("iris")
def iris(seed: int = 0, test_fraction: float = 0.3) -> data.Generated:
  """sklearn's iris: ``x`` [4] standardised features, ``label`` in [0, 3)."""
  from sklearn.datasets import load_iris  # pylint: disable=g-import-not-at-top
  return _tabular(load_iris, seed, test_fraction)


@data.register("wine")
def wine(seed: int = 0, test_fraction: float = 0.3) -> data.Generated:
  """sklearn's wine: ``x`` [13] standardised features, ``label`` in [0, 3)."""
  from sklearn.datasets import load_wine  # pylint: disable=g-import-not-at-top
  return _tabular(load_wine, seed, test_fraction)


@data.register("breast_cancer")
def breast_cancer(seed: int = 0, test_fraction: float = 0.3) -> data.Generated:
  """sklearn's breast cancer (Wisconsin): ``x`` [30] standardised features, ``label`` in {0, 1}."""
  from sklearn.datasets import load_breast_cancer  # pylint: disable=g-import-not-at-top
  return _tabular(load_breast_cancer, seed, test_fraction)


# Real image sets, read through tfds.data_source from a prepared data_dir; uint8 images are scaled to [0, 1].
for _name in ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped"):
  data.register_tfds(_name, doc=f"TFDS {_name} (must be prepared as array_record; see zoo.recipes.data)")
