"""Batch augmentations as pure functions of a PRNG key: random shifts, horizontal flips and MixUp.

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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from zoo.layers import check_shape

__all__ = ["mixup", "random_flip", "random_shift", "step_key"]


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
