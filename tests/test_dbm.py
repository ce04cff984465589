"""zoo.dbm: proxsoftmax optimality and its softmax limit, the monotone coupling's structure for any
A, the splitting's fixed point = the mean-field equations, jit/vmap, bad inputs; mixed block sizes, the implicit
(custom_vjp) gradient against unrolled differentiation and finite differences (with and without Anderson
acceleration), the MonotoneDBM module's shapes, jit, vmap, gradients, 8-device sharded forward and bad inputs."""

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


# ------------------------------------------------------------ mixed blocks, implicit backward, the MonotoneDBM module

GROUPS = ((4, 2), (1, 3))  # 4 binary blocks and one 3-state block: 11 units


def _system(seed=0):
  a = jax.random.normal(jax.random.key(seed), (6, 11)) * 2.0
  b = jax.random.normal(jax.random.key(seed + 1), (11,))
  mask = jnp.zeros(11).at[:2].set(1.0)
  value = jnp.zeros(11).at[:2].set(jnp.array([0.0, 1.0]))
  return a, b, value, mask


def test_group_coupling_is_hollow_and_monotone():
  a, _, _, _ = _system()
  w = np.asarray(dbm.group_coupling(a, GROUPS, m=0.1))
  mask = dbm.group_block_mask(GROUPS)
  assert mask[8:, 8:].sum() == 9 and mask[:8, :8].sum() == 16
  assert np.all(w[mask > 0] == 0) and np.allclose(w, w.T, atol=1e-5)
  assert np.linalg.eigvalsh(np.eye(11) - w).min() >= 0.1 - 1e-4


def test_implicit_gradient_matches_finite_differences_and_unrolling():
  a, b, value, mask = _system()

  def loss(a, b, solver):
    z = solver(dbm.group_coupling(a, GROUPS), b)
    return jnp.log(z[8]) + jnp.sum(z[2:8] ** 2)

  def implicit(w, b, anderson=0):
    return dbm.mean_field_solve(w, b, value, mask, GROUPS, 0.125, 1e-7, 2000, anderson)

  def unrolled(w, b):
    z = jnp.where(mask > 0, value, jnp.concatenate([jnp.full(8, 0.5), jnp.full(3, 1 / 3)]))
    step = dbm._fb_map  # pylint: disable=protected-access
    return jax.lax.fori_loop(0, 400, lambda _, z: step(z, w, b, value, mask, GROUPS, 0.125), z)
  g_imp = jax.jit(jax.grad(lambda a, b: loss(a, b, implicit), (0, 1)))(a, b)
  g_unr = jax.jit(jax.grad(lambda a, b: loss(a, b, unrolled), (0, 1)))(a, b)
  g_and = jax.jit(jax.grad(lambda a, b: loss(a, b, lambda w, b: implicit(w, b, 5)), (0, 1)))(a, b)
  for x, y, z in zip(g_imp, g_unr, g_and):
    # The prox's derivative runs through its bisection and final renormalisation, so both gradients carry an
    # O(1e-3) relative error against each other (both check out against finite differences below).
    np.testing.assert_allclose(x, y, rtol=5e-3, atol=1e-3)
    np.testing.assert_allclose(z, y, rtol=5e-3, atol=1e-3)
  # central finite difference along a random direction of b (float32: a loose tolerance)
  d = jax.random.normal(jax.random.key(9), b.shape)
  f = jax.jit(lambda b: loss(a, b, implicit))
  eps = 1e-2
  fd = (f(b + eps * d) - f(b - eps * d)) / (2 * eps)
  np.testing.assert_allclose(float(fd), float(g_imp[1] @ d), rtol=2e-2, atol=2e-3)
  z = implicit(dbm.group_coupling(a, GROUPS), b)
  np.testing.assert_array_equal(np.asarray(z[:2]), [0.0, 1.0])  # clamped units stay clamped


@pytest.fixture(scope="module")
def small_dbm():
  model = dbm.MonotoneDBM(num_pixels=16, num_classes=3, num_hidden=4, rank=8)
  x = jax.random.uniform(jax.random.key(0), (8, 4, 4, 1))
  variables = jax.jit(model.init)(jax.random.key(1), x[:1])
  return model, variables, x


def test_monotone_dbm_shapes_jit_vmap(small_dbm):
  model, variables, x = small_dbm
  # (jit == no-jit is checked in the sharded test below, against the eager call)
  out, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["losses"]))(variables, x)
  assert out.shape == (8, 3) and np.allclose(np.exp(np.asarray(out)).sum(1), 1.0, atol=1e-4)
  assert np.isfinite(float(state["losses"]["completion"][0]))
  per = jax.jit(jax.vmap(lambda xi: model.apply(variables, xi[None])))(x)
  assert per.shape == (8, 1, 3)
  observed = jnp.ones((8, 16), bool)
  q_pix, q_label = jax.jit(lambda v, x, o: model.apply(v, x, o, method=dbm.MonotoneDBM.marginals))(variables, x,
                                                                                                  observed)
  np.testing.assert_array_equal(np.asarray(q_pix[..., 1] > 0.5), np.asarray(x.reshape(8, 16) > 0.5))
  assert q_label.shape == (8, 3)
  grads = jax.jit(jax.grad(lambda v: jnp.sum(model.apply(v, x)[:, 0])))(variables)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def test_monotone_dbm_sharded_forward_on_8_devices(small_dbm):
  from zoo.recipes import sharding  # pylint: disable=g-import-not-at-top
  model, variables, x = small_dbm
  mesh = sharding.make_mesh()
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  out = jax.jit(model.apply)(variables, xs)
  assert len(xs.sharding.device_set) == 8
  np.testing.assert_allclose(out, model.apply(variables, x), atol=1e-5)


def test_monotone_dbm_bad_inputs(small_dbm):
  model, variables, x = small_dbm
  with pytest.raises(ValueError, match="16 pixels"):
    model.apply(variables, jnp.zeros((2, 5)))
  with pytest.raises(TypeError, match="floating"):
    model.apply(variables, jnp.zeros((2, 16), jnp.int32))
  with pytest.raises(ValueError, match="hide_fraction"):
    dbm.MonotoneDBM(num_pixels=16, num_classes=3, num_hidden=4, rank=8, hide_fraction=1.0).apply(variables, x)
  with pytest.raises(ValueError, match="observed"):
    model.apply(variables, x, jnp.ones((8, 3)), method=dbm.MonotoneDBM.marginals)
  with pytest.raises(ValueError, match="groups"):
    dbm.group_coupling(jnp.zeros((2, 6)), ((3, 1),))
