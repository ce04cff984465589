"""sklearn digits as four quadrant "modalities" with planted missingness, for MultiModN (Swamy et al., 2023).

``multimodn_digits(p_even=0.8, p_odd=0.1, p_mcar=0.45, seed=0)``: ``x`` ``[4, 16]`` float32, the four 4x4 quadrants
of an 8x8 digit (top-left, top-right, bottom-left, bottom-right) flattened, NaN where a quadrant is missing;
``label`` (digit, 10 classes) and ``parity`` (label % 2). Splits:

* ``train``: missing-not-at-random: quadrant 3 (bottom-right) is missing with probability ``p_even`` when the digit
  is even and ``p_odd`` when odd (nothing else missing);
* ``test_mnar``: the test images under the training missingness;
* ``test_mcar``: the same test images, every quadrant missing independently with probability ``p_mcar``.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data


def _quadrants(images):
  x = images.reshape(-1, 2, 4, 2, 4).transpose(0, 1, 3, 2, 4)  # [n, qy, qx, 4, 4]
  return x.reshape(-1, 4, 16).astype(np.float32)


@data.register("multimodn_digits", version="1.0.0")
def multimodn_digits(p_even: float = 0.8, p_odd: float = 0.1, p_mcar: float = 0.45, seed: int = 0,
                     test_fraction: float = 0.25) -> data.Generated:
  """Quadrant modalities of digits with MNAR training / MCAR test missingness; see the module docstring."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  for name, p in (("p_even", p_even), ("p_odd", p_odd), ("p_mcar", p_mcar)):
    if not 0 <= p <= 1:
      raise ValueError(f"multimodn_digits: `{name}` must be a probability in [0, 1]; got {p}.")
  x, y = load_digits(return_X_y=True)
  x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=test_fraction, random_state=seed, stratify=y)
  rng = np.random.default_rng([seed, 37])

  def mnar(images, labels):
    q = _quadrants(images)
    p = np.where(labels % 2 == 0, p_even, p_odd)
    q[rng.random(len(q)) < p, 3] = np.nan
    return q

  mcar = _quadrants(x_te)
  mcar[rng.random(mcar.shape[:2]) < p_mcar] = np.nan
  split = lambda q, labels: {"x": q, "label": labels.astype(np.int64), "parity": (labels % 2).astype(np.int64)}
  return data.Generated({"train": split(mnar(x_tr, y_tr), y_tr), "test_mnar": split(mnar(x_te, y_te), y_te),
                         "test_mcar": split(mcar, y_te)}, metadata={"num_classes": 10})
