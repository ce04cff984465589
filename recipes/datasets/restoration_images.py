"""Denoising on sklearn's digits upsampled to 16x16 (generated, no download), for MAXIM (Tu et al., CVPR 2022,
arXiv 2201.02973) at CPU scale.

``upsampled_digits_denoise(size=16, sigma=0.1, copies=1, seed=0)``: ``y`` = ``load_digits() / 16`` resized from 8x8
to ``size x size`` by cubic spline interpolation (``scipy.ndimage.zoom``, order 3) and clipped to [0, 1]; ``x`` =
``y`` + N(0, sigma^2) noise (not clipped), both ``[size, size, 1]`` float32; ``label`` the digit. The split is
sklearn's stratified ``train_test_split`` (seeded); ``copies`` noisy draws of every training image. Score with
``task.name = 'restoration.Restoration'``; the noisy input's PSNR is about ``-20 log10(sigma)`` (20 dB at 0.1).
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["upsampled_digits", "upsampled_digits_denoise"]


def upsampled_digits(size: int = 16, seed: int = 0, test_fraction: float = 0.25):
  """Clean digits ``[n, size, size, 1]`` in [0, 1]: ``(train, test, train labels, test labels)``."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  if size < 8 or size % 8:
    raise ValueError(f"upsampled_digits: `size` must be a positive multiple of 8; got {size!r}.")
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).reshape(-1, 8, 8)
  x = np.clip(ndimage.zoom(x, (1, size // 8, size // 8), order=3), 0.0, 1.0).astype(np.float32)[..., None]
  x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
  return x_tr, x_te, y_tr.astype(np.int64), y_te.astype(np.int64)


@data.register("upsampled_digits_denoise", version="1.0.0")
def upsampled_digits_denoise(size: int = 16, sigma: float = 0.1, copies: int = 1, seed: int = 0,
                             test_fraction: float = 0.25) -> data.Generated:
  """Noisy -> clean upsampled digit (``x``, ``y``: [size, size, 1]); see the module docstring."""
  if sigma < 0 or copies < 1:
    raise ValueError(f"upsampled_digits_denoise: need sigma >= 0 and copies >= 1; got sigma={sigma}, "
                     f"copies={copies}.")
  x_tr, x_te, l_tr, l_te = upsampled_digits(size, seed, test_fraction)
  rng = np.random.default_rng([seed, 14])
  clean_tr = np.concatenate([x_tr] * copies)
  noisy_tr = (clean_tr + sigma * rng.standard_normal(clean_tr.shape)).astype(np.float32)
  noisy_te = (x_te + sigma * rng.standard_normal(x_te.shape)).astype(np.float32)
  return data.Generated({"train": {"x": noisy_tr, "y": clean_tr, "label": np.tile(l_tr, copies)},
                         "test": {"x": noisy_te, "y": x_te, "label": l_te}}, metadata={"sigma": sigma, "size": size})
