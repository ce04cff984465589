"""sklearn digits with merged, multimodal classes, the setting of the multifaceted-visualisation effect test.

"Multifaceted Feature Visualization" (Nguyen, Yosinski, Clune, 2016, arXiv 1602.03616) needs classes made of several
distinct kinds of images. Here digits 0 and 6 become class A (label 0) and digits 1 and 7 class B (label 1); the
other digits keep their own classes (2, 3, 4, 5, 8, 9 -> labels 2..7), so 8 classes. ``digit`` keeps each image's
original digit, the ground truth that a class's facets should recover.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

# original digit -> merged label: A = {0, 6} -> 0, B = {1, 7} -> 1, the rest in order.
MERGE = np.array([0, 1, 2, 3, 4, 5, 0, 1, 6, 7], np.int64)


@data.register("merged_digits")
def merged_digits(seed: int = 0, test_fraction: float = 0.25) -> data.Generated:
  """``image`` [8, 8, 1] float32 in [0, 1], ``label`` in [0, 8) (A={0,6} -> 0, B={1,7} -> 1), ``digit`` in [0, 10)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
  x_tr, x_te, d_tr, d_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
  split = lambda xs, ds: {"image": xs, "label": MERGE[ds], "digit": ds.astype(np.int64)}  # noqa: E731
  return data.Generated({"train": split(x_tr, d_tr), "test": split(x_te, d_te)}, metadata={"num_classes": 8})
