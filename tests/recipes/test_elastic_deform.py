"""Elastic deformation (zoo.recipes.augment.elastic_deform): checked against scipy.ndimage on the same noise draw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from zoo.recipes import augment


def test_displacement_is_scipys_gaussian_filter_of_the_noise():
  key = jax.random.key(3)
  field = np.asarray(augment.elastic_displacement(key, 2, 9, 7, alpha=1.6, sigma=1.2))
  noise = np.asarray(jax.random.uniform(key, (2, 9, 7, 2), jnp.float32, -1.0, 1.0))  # the field's noise draw
  want = np.stack([[ndimage.gaussian_filter(noise[b, ..., a], 1.2, mode="constant", cval=0.0, truncate=4.0)
                    for a in range(2)] for b in range(2)]).transpose(0, 2, 3, 1) * 1.6
  np.testing.assert_allclose(field, want, rtol=1e-5, atol=1e-6)


def test_deform_is_scipys_bilinear_resampling_at_the_displaced_grid():
  key = jax.random.key(5)
  images = jax.random.uniform(jax.random.key(1), (3, 8, 8, 2))
  out = np.asarray(jax.jit(lambda k, x: augment.elastic_deform(k, x, alpha=2.0, sigma=1.0))(key, images))
  field = np.asarray(augment.elastic_displacement(key, 3, 8, 8, alpha=2.0, sigma=1.0))
  yy, xx = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
  for b in range(3):
    for c in range(2):
      want = ndimage.map_coordinates(np.asarray(images[b, ..., c]), [yy + field[b, ..., 0], xx + field[b, ..., 1]],
                                     order=1, mode="grid-constant", cval=0.0)
      np.testing.assert_allclose(out[b, ..., c], want, rtol=1e-5, atol=1e-5)
  assert np.abs(out - np.asarray(images)).max() > 0.05  # it moved something
  again = augment.elastic_deform(key, images, alpha=2.0, sigma=1.0)
  np.testing.assert_allclose(out, np.asarray(again), rtol=1e-6, atol=1e-6)  # pure in the key (eager vs jit)
  other = augment.elastic_deform(jax.random.key(6), images, alpha=2.0, sigma=1.0)
  assert np.abs(np.asarray(other) - out).max() > 1e-3


def test_alpha_zero_is_identity_and_bad_arguments_are_named():
  images = jnp.ones((2, 8, 8, 1))
  assert augment.elastic_deform(jax.random.key(0), images, alpha=0.0, sigma=4.0) is images
  with pytest.raises(ValueError, match="alpha"):
    augment.elastic_deform(jax.random.key(0), images, alpha=-1.0, sigma=4.0)
  with pytest.raises(ValueError, match="sigma"):
    augment.elastic_deform(jax.random.key(0), images, alpha=1.0, sigma=0.0)
  with pytest.raises(ValueError, match="images"):
    augment.elastic_deform(jax.random.key(0), images[..., 0], alpha=1.0, sigma=1.0)
