"""Batch augmentations as pure functions of a PRNG key: random shifts, horizontal flips, MixUp, elastic deformations.

The recipe of "Scaling MLPs: A Tale of Inductive Bias" (Bachmann et al., 2023, arXiv 2306.13575) trains MLPs with
data augmentation (random crops, i.e. shifts, and flips) and MixUp (alpha 0.8), which matter more for an MLP than for
a network with the inductive bias built in. Every function here takes an explicit key, so an augmentation is
deterministic by ``(seed, step)``: a training step derives its key with :func:`step_key` (``fold_in(key, step)``), and
a resumed run draws exactly the augmentations an uninterrupted one would. The procedure that applies them to each
batch is ``zoo.recipes.procedures.augmented.Augmented``.

Public names (``b`` batch):

* :func:`step_key` ``(key, step) -> key``: the augmentation key of a step.
* :func:`random_shift` ``(key, images [b, H, W, C], max_shift) -> [b, H, W, C]``: each image translated by an integer
  offset drawn uniformly from ``{-max_shift, ..., max_shift}^2``, zeros shifted in (a random crop of the
  zero-padded image, as ``RandomCrop(padding=max_shift)``).
* :func:`random_flip` ``(key, images [b, H, W, C]) -> [b, H, W, C]``: each image mirrored left-right with
  probability 1/2.
* :func:`mixup` ``(key, inputs [b, ...], alpha) -> (mixed [b, ...], perm [b], lam [])``: one
  ``lam ~ Beta(alpha, alpha)`` per batch and one permutation, ``mixed = lam x + (1 - lam) x[perm]`` (Zhang et al.,
  2018); the loss is then ``lam L(y) + (1 - lam) L(y[perm])``, which for cross-entropy equals the loss on the mixed
  one-hot (or smoothed) targets.
* :func:`elastic_displacement` ``(key, batch, height, width, *, alpha, sigma) -> [b, H, W, 2]`` and
  :func:`elastic_deform` ``(key, images [b, H, W, C], *, alpha, sigma) -> [b, H, W, C]``: Simard, Steinkraus and
  Platt (ICDAR 2003)'s elastic distortion, the augmentation of "Deep Learning for Case-Based Reasoning through
  Prototypes" (Li et al., AAAI 2018; sigma 4, alpha 20 on 28x28 MNIST in its code): a displacement field of uniform
  ``[-1, 1]`` noise per pixel and axis, smoothed by a Gaussian of std ``sigma`` pixels (zero outside the image,
  truncated at 4 sigma), scaled by ``alpha``; each image resampled bilinearly at ``(y + dy, x + dx)``, zeros outside.
  The resampling interpolates towards the zeros beyond the border (scipy's ``mode='grid-constant'``, which is
  ``jax.scipy.ndimage``'s ``'constant'``); the reference code's scipy ``'constant'`` zeroes any sample that falls
  outside ``[0, n - 1]`` outright, which differs only at the (blank) border of a digit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zoo.layers import check_shape

__all__ = ["elastic_deform", "elastic_displacement", "mixup", "random_flip", "random_shift", "step_key"]


def step_key(key: jax.Array, step) -> jax.Array:
  """The key of training step ``step``: ``fold_in(key, step)`` (pure in ``(key, step)``)."""
  return jax.random.fold_in(key, step)


def random_shift(key: jax.Array, images: jax.Array, max_shift: int = 1) -> jax.Array:
  """Translates each image by a uniform integer offset in ``[-max_shift, max_shift]`` per axis, filling with zeros.

  Args:
    key: a PRNG key.
    images: ``[batch, height, width, channels]`` float.
    max_shift: the largest shift in pixels (0: identity).

  Returns:
    ``[batch, height, width, channels]``, same dtype.
  """
  check_shape(images, "images", "batch height width channels", where="random_shift", dtype="floating")
  if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
    raise ValueError(f"random_shift: `max_shift` must be an integer >= 0; got {max_shift!r}.")
  if max_shift == 0:
    return images
  b, h, w, _ = images.shape
  s = max_shift
  offsets = jax.random.randint(key, (b, 2), 0, 2 * s + 1)  # top-left corner of the crop in the padded image
  padded = jnp.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each image left-right with probability 1/2. ``images: [batch, H, W, C]`` -> same shape."""
  check_shape(images, "images", "batch height width channels", where="random_flip", dtype="floating")
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def mixup(key: jax.Array, inputs: jax.Array, alpha: float = 0.8):
  """MixUp of a batch with a permutation of itself.

  Args:
    key: a PRNG key.
    inputs: ``[batch, ...]`` float.
    alpha: the Beta distribution's parameter (> 0); Scaling MLPs uses 0.8.

  Returns:
    ``(mixed [batch, ...], perm [batch] int32, lam [] float32)``: ``mixed = lam * inputs + (1 - lam) *
    inputs[perm]``; mix the targets (or losses) with the same ``perm`` and ``lam``.
  """
  check_shape(inputs, "inputs", "... features", where="mixup", dtype="floating")
  if not alpha > 0:
    raise ValueError(f"mixup: `alpha` must be > 0; got {alpha!r}.")
  lam_key, perm_key = jax.random.split(key)
  lam = jax.random.beta(lam_key, alpha, alpha).astype(jnp.float32)
  perm = jax.random.permutation(perm_key, inputs.shape[0]).astype(jnp.int32)
  mixed = lam.astype(inputs.dtype) * inputs + (1 - lam).astype(inputs.dtype) * inputs[perm]
  return mixed, perm, lam


def _gaussian_kernel(sigma: float) -> jax.Array:
  radius = int(4.0 * sigma + 0.5)  # scipy.ndimage.gaussian_filter's default truncate=4
  x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (x / sigma) ** 2)
  return k / k.sum()


def _check_elastic(alpha, sigma, where: str) -> None:
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
    raise ValueError(f"{where}: `alpha` (the displacement scale, pixels) must be a number >= 0; got {alpha!r}.")
  if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
    raise ValueError(f"{where}: `sigma` (the smoothing std, pixels) must be a number > 0; got {sigma!r}.")


def elastic_displacement(key: jax.Array, batch: int, height: int, width: int, *, alpha: float,
                         sigma: float) -> jax.Array:
  """A random smooth displacement field ``[batch, height, width, 2]`` (``dy``, ``dx`` in pixels).

  Uniform ``[-1, 1]`` noise, smoothed separably by a normalised Gaussian of std ``sigma`` with zeros outside the image
  (``scipy.ndimage.gaussian_filter(..., mode='constant')``), times ``alpha``.
  """
  _check_elastic(alpha, sigma, "elastic_displacement")
  noise = jax.random.uniform(key, (batch, height, width, 2), jnp.float32, -1.0, 1.0)
  k = _gaussian_kernel(float(sigma))
  r = (k.shape[0] - 1) // 2
  padded = jnp.pad(noise, ((0, 0), (r, r), (r, r), (0, 0)))
  # Separable filter: along y, then along x (a sum of shifted slices; the kernel is at most a few dozen taps).
  rows = sum(k[i] * padded[:, i:i + height] for i in range(k.shape[0]))
  smooth = sum(k[i] * rows[:, :, i:i + width] for i in range(k.shape[0]))
  return alpha * smooth


def elastic_deform(key: jax.Array, images: jax.Array, *, alpha: float, sigma: float) -> jax.Array:
  """Elastic distortion of each image (module docstring).

  Args:
    key: a PRNG key.
    images: ``[batch, height, width, channels]`` float.
    alpha: displacement scale in pixels (0: identity).
    sigma: std of the smoothing Gaussian in pixels (> 0).

  Returns:
    ``[batch, height, width, channels]``, same dtype: each image sampled bilinearly at its displaced grid, zeros
    outside the image (``scipy.ndimage.map_coordinates(order=1, mode='grid-constant')``).
  """
  check_shape(images, "images", "batch height width channels", where="elastic_deform", dtype="floating")
  _check_elastic(alpha, sigma, "elastic_deform")
  if alpha == 0:
    return images
  b, h, w, _ = images.shape
  field = elastic_displacement(key, b, h, w, alpha=alpha, sigma=sigma)
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")

  def warp(image, disp):  # image [h, w, c], disp [h, w, 2]
    coords = [yy + disp[..., 0], xx + disp[..., 1]]
    channel = lambda x: jax.scipy.ndimage.map_coordinates(x, coords, order=1, mode="constant", cval=0.0)
    return jax.vmap(channel, in_axes=-1, out_axes=-1)(image.astype(jnp.float32))

  return jax.vmap(warp)(images, field).astype(images.dtype)
