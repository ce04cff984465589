"""zoo.attacks: budgets, clipping, that the attacks raise the loss, jit == no-jit, vmap over eps, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import attacks
from zoo import core


def _setup():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(16, 8, 8, 1)).astype(np.float32)
  y = rng.integers(0, 10, size=16)
  model = core.MLP(features=(32, 10))
  variables = model.init(jax.random.key(0), x)
  return (lambda xx: model.apply(variables, xx)), jnp.asarray(x), jnp.asarray(y)


def _loss(f, x, y):
  return float(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(f(x), y)))


def test_budgets_clipping_and_loss_increase():
  f, x, y = _setup()
  base = _loss(f, x, y)
  for name, adv, norm, eps in [
      ("fgsm", attacks.fgsm(f, x, y, 0.1, clip=(0.0, 1.0)), "inf", 0.1),
      ("pgd_linf", attacks.pgd_linf(f, x, y, 0.1, 0.025, 10, jax.random.key(1), clip=(0.0, 1.0)), "inf", 0.1),
      ("pgd_l2", attacks.pgd_l2(f, x, y, 1.0, 0.25, 10, jax.random.key(1), clip=(0.0, 1.0)), "l2", 1.0)]:
    assert adv.shape == x.shape, name
    d = np.asarray(adv - x).reshape(16, -1)
    size = np.abs(d).max(1) if norm == "inf" else np.linalg.norm(d, axis=1)
    assert np.all(size <= eps + 1e-5), name
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0, name
    assert _loss(f, adv, y) > base + 0.05, name
  strong = attacks.pgd_linf(f, x, y, 0.1, 0.025, 10, jax.random.key(1), clip=(0.0, 1.0))
  assert _loss(f, strong, y) >= _loss(f, attacks.fgsm(f, x, y, 0.1, clip=(0.0, 1.0)), y) - 1e-4


def test_jit_vmap_over_eps():
  f, x, y = _setup()
  eager = attacks.pgd_linf(f, x, y, 0.05, 0.01, 5)
  jitted = jax.jit(attacks.pgd_linf, static_argnums=(0, 5))(f, x, y, 0.05, 0.01, 5)
  np.testing.assert_allclose(jitted, eager, atol=1e-6)
  grid = jnp.array([0.0, 0.05, 0.1])
  batched = jax.vmap(lambda e: attacks.fgsm(f, x, y, e))(grid)
  assert batched.shape == (3, *x.shape)
  np.testing.assert_allclose(batched[0], x)
  np.testing.assert_allclose(batched[2], attacks.fgsm(f, x, y, 0.1), atol=1e-6)


def test_bad_inputs():
  f, x, y = _setup()
  with pytest.raises(TypeError, match="float"):
    attacks.fgsm(f, x.astype(jnp.int32), y, 0.1)
  with pytest.raises(ValueError, match="labels"):
    attacks.fgsm(f, x, y[:3], 0.1)
  with pytest.raises(ValueError, match="labels"):
    attacks.pgd_linf(f, x, y.astype(jnp.float32), 0.1, 0.01)
  with pytest.raises(ValueError, match="empty"):
    attacks.pgd_l2(f, x[:0], y[:0], 0.1, 0.01)
  with pytest.raises(ValueError, match="logits"):
    attacks.fgsm(lambda xx: jnp.sum(xx), x, y, 0.1)
