"""zoo.dbm (inference part): proxsoftmax optimality and its softmax limit, the monotone coupling's structure for any
A, the splitting's fixed point = the mean-field equations, jit/vmap, bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import dbm


def test_prox_softmax_is_the_prox():
  v = jax.random.normal(jax.random.key(0), (4, 5)) * 2
  z = dbm.prox_softmax(v, 0.3)
  np.testing.assert_allclose(z.sum(-1), 1.0, atol=1e-6)
  assert np.all(np.asarray(z) > 0)
  # Optimality on the simplex: (1 - alpha) z + alpha log z - v is the same constant in every entry of a block.
  r = np.asarray(0.7 * z + 0.3 * jnp.log(z) - v)
  assert np.max(r.max(-1) - r.min(-1)) < 1e-5
  # The objective at z is below that at random simplex points.
  def objective(p):
    return 0.5 * np.sum((p - np.asarray(v)) ** 2, -1) + 0.3 * np.sum(p * np.log(p) - 0.5 * p ** 2, -1)
  others = np.random.default_rng(0).dirichlet(np.ones(5), size=(200, 4))
  assert np.all(objective(np.asarray(z, np.float64))[None] <= objective(others) + 1e-6)
  np.testing.assert_allclose(dbm.prox_softmax(v, 0.999), jax.nn.softmax(v, -1), atol=1e-3)


def test_monotone_coupling_structure():
  a = jax.random.normal(jax.random.key(1), (10, 12)) * 5.0
  w = np.asarray(dbm.monotone_coupling(a, 3, m=0.2))
  np.testing.assert_allclose(w, w.T, atol=1e-5)
  for i in range(4):
    assert np.all(w[3 * i:3 * i + 3, 3 * i:3 * i + 3] == 0)
  assert np.linalg.eigvalsh(np.eye(12) - w).min() >= 0.2 - 1e-4
  raw = np.asarray(dbm.monotone_coupling(a, 3, m=0.2, monotone=False))
  assert np.linalg.eigvalsh(np.eye(12) - raw).min() < 0  # the ablation is not monotone at this scale


def test_fixed_point_solves_mean_field_jit_vmap():
  n, k = 5, 3
  w = dbm.monotone_coupling(jax.random.normal(jax.random.key(2), (8, n * k)), k)
  b = jax.random.normal(jax.random.key(3), (n * k,))
  q, iters, res = dbm.mean_field_fixed_point(w, b, k)
  assert float(res) <= 1e-6 and int(iters) < 2000
  np.testing.assert_allclose(q, jax.nn.softmax((w @ q + b).reshape(n, k), -1).reshape(-1), atol=1e-5)
  inits = jax.nn.softmax(jax.random.normal(jax.random.key(4), (3, n, k)), -1).reshape(3, -1)
  batched = jax.jit(jax.vmap(lambda z0: dbm.mean_field_fixed_point(w, b, k, z0=z0)[0]))(inits)
  np.testing.assert_allclose(batched, np.broadcast_to(q, batched.shape), atol=1e-5)
  q_naive, _, res_naive = dbm.naive_mean_field(w, b, k)
  assert float(res_naive) <= 1e-6
  np.testing.assert_allclose(q_naive, q, atol=1e-4)


def test_bad_inputs():
  w, b = jnp.zeros((6, 6)), jnp.zeros(6)
  with pytest.raises(ValueError, match="blocks of 4"):
    dbm.mean_field_fixed_point(w, b, 4)
  with pytest.raises(ValueError, match="block_size"):
    dbm.mean_field_fixed_point(w, b, 1)
  with pytest.raises(ValueError, match="alpha"):
    dbm.mean_field_fixed_point(w, b, 3, alpha=1.5)
  with pytest.raises(ValueError, match="`b` must have shape"):
    dbm.mean_field_fixed_point(w, jnp.zeros(5), 3)
  with pytest.raises(ValueError, match="`z0` must have shape"):
    dbm.mean_field_fixed_point(w, b, 3, z0=jnp.zeros(4))
  with pytest.raises(ValueError, match="square"):
    dbm.naive_mean_field(jnp.zeros((6, 3)), b, 3)
  with pytest.raises(ValueError, match="damping"):
    dbm.naive_mean_field(w, b, 3, damping=0.0)
  with pytest.raises(ValueError, match="`m`"):
    dbm.monotone_coupling(jnp.zeros((2, 6)), 3, m=1.0)
  with pytest.raises(TypeError, match="floating"):
    dbm.prox_softmax(jnp.zeros((2, 3), jnp.int32), 0.5)
