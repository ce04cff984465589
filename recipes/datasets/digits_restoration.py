"""Image restoration on sklearn's 8x8 digits: denoising and 4x4 -> 8x8 super-resolution (generated, no download).

The generative tasks of "Rethinking the shape convention of an MLP" (Chen et al., 2025, arXiv 2510.01796) at digits
scale. Images are ``load_digits() / 16`` in [0, 1]; the split is sklearn's ``train_test_split`` (stratified, seeded).

* ``digits_denoise(sigma=0.3, copies=1, seed=0)``: ``x`` = image + N(0, sigma^2) noise (not clipped), ``y`` = the
  clean image, both ``[8, 8, 1]`` float32. ``copies`` noisy draws of every training image (the test split has one).
* ``digits_superres(seed=0)``: ``x`` = the 2x2 average-pooled image ``[4, 4, 1]``, ``y`` = the image ``[8, 8, 1]``.

Score with the ``regression`` task (``input_key='x'``, ``target_key='y'``); PSNR is ``10 log10(1 / MSE)``.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data


def _digits(seed: int, test_fraction: float):
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
  x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
  return x_tr, x_te, y_tr.astype(np.int64), y_te.astype(np.int64)


@data.register("digits_denoise", version="1.0.0")
def digits_denoise(sigma: float = 0.3, copies: int = 1, seed: int = 0, test_fraction: float = 0.25) -> data.Generated:
  """Noisy digit -> clean digit (``x``, ``y``: [8, 8, 1]); see the module docstring."""
  if sigma < 0 or copies < 1:
    raise ValueError(f"digits_denoise: need sigma >= 0 and copies >= 1; got sigma={sigma}, copies={copies}.")
  x_tr, x_te, l_tr, l_te = _digits(seed, test_fraction)
  rng = np.random.default_rng([seed, 7])
  clean_tr = np.concatenate([x_tr] * copies)
  noisy_tr = clean_tr + sigma * rng.standard_normal(clean_tr.shape).astype(np.float32)
  noisy_te = x_te + sigma * rng.standard_normal(x_te.shape).astype(np.float32)
  return data.Generated({"train": {"x": noisy_tr.astype(np.float32), "y": clean_tr, "label": np.tile(l_tr, copies)},
                         "test": {"x": noisy_te.astype(np.float32), "y": x_te, "label": l_te}},
                        metadata={"sigma": sigma})


@data.register("digits_superres", version="1.0.0")
def digits_superres(seed: int = 0, test_fraction: float = 0.25) -> data.Generated:
  """2x2-average-pooled digit [4, 4, 1] -> digit [8, 8, 1]; see the module docstring."""
  x_tr, x_te, l_tr, l_te = _digits(seed, test_fraction)
  pool = lambda x: x.reshape(-1, 4, 2, 4, 2, 1).mean((2, 4))
  return data.Generated({"train": {"x": pool(x_tr), "y": x_tr, "label": l_tr},
                         "test": {"x": pool(x_te), "y": x_te, "label": l_te}}, metadata={"factor": 2})
