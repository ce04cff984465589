"""zoo.analysis.feature_vis: the blur against scipy, the center-biased windows, AM raising a linear model's logit
to its closed-form optimum, facets of planted clusters ranked by size, mean-image vs random starts, jit reuse, vmap,
a sharded batch on the 8-device mesh, bad inputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from zoo import core
from zoo.analysis import feature_vis as fv
from zoo.recipes import sharding


class _Linear(nn.Module):
  """logits = x . w_c with w fixed by the caller: AM of a_c - l2 |x|^2 has the optimum clip(w_c / (2 l2))."""

  @nn.compact
  def __call__(self, x):
    w = self.param("w", nn.initializers.zeros, (x.shape[1] * x.shape[2] * x.shape[3], 2))
    return x.reshape(x.shape[0], -1) @ w


@pytest.fixture(scope="module")
def convnet():
  model = core.ConvNet(num_classes=3, features=(4,), kernel_size=(3, 3), hidden=(8,))
  x = jax.random.uniform(jax.random.key(0), (30, 8, 8, 1))
  return model, nn.unbox(jax.jit(model.init)(jax.random.key(1), x[:1])), x


def test_gaussian_blur_matches_scipy():
  x = np.random.default_rng(0).uniform(size=(2, 9, 7, 3)).astype(np.float32)
  sigma = 0.8
  out = np.asarray(fv.gaussian_blur(jnp.asarray(x), sigma))
  radius = int(np.ceil(2 * sigma))
  ref = scipy.ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="constant", truncate=radius / sigma)
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_center_biased_schedule():
  masks = fv.center_biased_schedule(12, 8, 8, full_fraction=0.5, stages=2, min_fraction=0.5)
  assert masks.shape == (12, 8, 8)
  assert np.all(masks[:6] == 1)
  assert masks[6:9].sum((1, 2)).tolist() == [36] * 3  # 6x6 central window (3/4 of each side)
  assert masks[9:].sum((1, 2)).tolist() == [16] * 3 and np.all(masks[-1, 2:6, 2:6] == 1)  # 4x4 at the center
  with pytest.raises(ValueError, match="min_fraction"):
    fv.center_biased_schedule(10, 8, 8, min_fraction=0.0)
  with pytest.raises(ValueError, match="steps"):
    fv.center_biased_schedule(0, 8, 8)


def test_am_reaches_the_closed_form_optimum_of_a_linear_model():
  model = _Linear()
  w = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32) * 0.1
  variables = {"params": {"w": jnp.asarray(w)}}
  x0 = jnp.full((1, 4, 4, 1), 0.5)
  l2 = 0.1
  x, act = fv.activation_maximization(model, variables, x0, 1, steps=200, learning_rate=0.5, l2=l2, jitter=0,
                                      blur_every=0, optimizer="sgd")
  expected = np.clip(w[:, 1] / (2 * l2), 0, 1).reshape(1, 4, 4, 1)
  np.testing.assert_allclose(np.asarray(x), expected, atol=1e-3)
  np.testing.assert_allclose(np.asarray(act), (expected.reshape(1, -1) @ w)[:, 1], atol=1e-3)
  # a window of zeros freezes the image
  frozen, _ = fv.activation_maximization(model, variables, x0, 1, steps=5, jitter=0, blur_every=0,
                                         window=np.zeros((5, 4, 4)))
  np.testing.assert_array_equal(np.asarray(frozen), np.asarray(x0))


def test_am_raises_the_logit_clips_and_vmaps(convnet):
  model, v, x = convnet
  x0 = x[:8]
  before = np.asarray(model.apply(v, x0))[:, 2]
  out, act = fv.activation_maximization(model, v, x0, 2, steps=3, window=fv.center_biased_schedule(3, 8, 8))
  assert out.shape == x0.shape and act.shape == (8,)
  assert np.all(np.asarray(act) > before) and float(out.min()) >= 0 and float(out.max()) <= 1
  # the same compiled function serves other variables of the same model (variables are arguments)
  v2 = jax.tree.map(lambda a: a * 1.1, v)
  size = fv._ascend._cache_size()  # pylint: disable=protected-access
  out2, _ = fv.activation_maximization(model, v2, x0, 2, steps=3, window=fv.center_biased_schedule(3, 8, 8))
  assert fv._ascend._cache_size() == size and not np.allclose(out, out2)  # pylint: disable=protected-access
  # vmap over several variable sets
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), v, v2)
  logits = jax.vmap(lambda vv: model.apply(vv, out))(stacked)
  assert logits.shape == (2, 8, 3)


def test_sharded_batch_on_8_devices(convnet):
  model, v, x = convnet
  mesh = sharding.make_mesh()
  x0 = jax.device_put(x[:8], sharding.batch_sharding(mesh))
  out, act = fv.activation_maximization(model, v, x0, 0, steps=3)
  single, _ = fv.activation_maximization(model, v, x[:8], 0, steps=3)
  assert len(x0.sharding.device_set) == 8 and act.shape == (8,)
  np.testing.assert_allclose(np.asarray(out), np.asarray(single), atol=1e-5)


def test_facets_of_planted_clusters_ranked_by_size(convnet):
  # Class 0 = 30 bright-left images + 10 bright-right images; a conv net at its random init already separates
  # them in its penultimate layer (the embedding is a function of the input).
  rng = np.random.default_rng(0)
  left = np.zeros((30, 8, 8, 1), np.float32)
  left[:, :, :4] = 1.0
  right = np.zeros((10, 8, 8, 1), np.float32)
  right[:, :, 4:] = 1.0
  other = rng.uniform(size=(5, 8, 8, 1)).astype(np.float32)
  images = np.concatenate([left, right, other]) + 0.05 * rng.normal(size=(45, 8, 8, 1)).astype(np.float32)
  labels = np.array([0] * 40 + [1] * 5)
  model, v, _ = convnet
  facets = fv.class_facets(model, v, images, labels, 0, k=2)
  assert facets.sizes.tolist() == [30, 10]
  assert sorted(facets.indices[0].tolist()) == list(range(30)) and sorted(facets.indices[1].tolist()) == list(
      range(30, 40))
  np.testing.assert_allclose(facets.means[0], images[:30].mean(0), atol=1e-6)
  imgs, f2 = fv.multifaceted_visualization(model, v, images, labels, 0, k=2, steps=3, facets=facets)
  assert imgs.shape == (2, 8, 8, 1) and f2 is facets
  # mean-image starts keep the facets apart; random starts of the same AM do not start from the facets
  assert np.abs(imgs[0] - imgs[1]).mean() > 0.5
  rnd, _ = fv.multifaceted_visualization(model, v, images, labels, 0, k=2, steps=3, facets=facets,
                                         mean_image_init=False, noise=0.01)
  assert np.abs(rnd[0] - rnd[1]).mean() < 0.1


def test_bad_inputs(convnet):
  model, v, x = convnet
  with pytest.raises(ValueError, match="x0"):
    fv.activation_maximization(model, v, x[0], 0)
  with pytest.raises(TypeError, match="x0"):
    fv.activation_maximization(model, v, jnp.zeros((1, 8, 8, 1), jnp.int32), 0)
  with pytest.raises(ValueError, match="`cls`"):
    fv.activation_maximization(model, v, x[:1], 3)
  with pytest.raises(ValueError, match="`window`"):
    fv.activation_maximization(model, v, x[:1], 0, steps=4, window=np.ones((3, 8, 8)))
  with pytest.raises(ValueError, match="`clip`"):
    fv.activation_maximization(model, v, x[:1], 0, clip=(1.0, 0.0))
  with pytest.raises(ValueError, match="`optimizer`"):
    fv.activation_maximization(model, v, x[:1], 0, optimizer="lbfgs")
  labels = np.zeros(30, np.int64)
  with pytest.raises(ValueError, match="fewer than k=40"):
    fv.class_facets(model, v, x, labels, 0, k=40)
  with pytest.raises(ValueError, match="labels"):
    fv.class_facets(model, v, x, labels[:5], 0)
  with pytest.raises(ValueError, match="no submodule named 'nope'"):
    fv.class_facets(model, v, x, labels, 0, k=2, layer="nope")
  with pytest.raises(ValueError, match="sigma"):
    fv.gaussian_blur(x[:1], 0.0)
