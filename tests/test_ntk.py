"""zoo.ntk: dual activations, the NNGP/NTK depth recursion against finite-width Monte-Carlo estimates of wide
``NTKMLP``s (neural-tangents is not a dependency), the log-space recursion, kernel classifiers, jit/vmap/sharding and
clear errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import ntk
from zoo.recipes import sharding


def _sphere(n, d=3, seed=0):
  x = np.random.default_rng(seed).normal(size=(n, d))
  return jnp.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), jnp.float32)


def test_relu_dual_closed_form_and_normalisation():
  dual = ntk.dual_activation("relu")
  rho = jnp.linspace(-1, 1, 5)
  np.testing.assert_allclose(dual.xi(rho), (np.sqrt(1 - rho ** 2) + (np.pi - np.arccos(rho)) * rho) / np.pi,
                             atol=1e-6)
  assert float(dual.xi(jnp.array(1.0))) == pytest.approx(1.0)
  assert float(dual.dxi(jnp.array(1.0))) == pytest.approx(1.0)
  # the depth recursion on the diagonal: Sigma = 1, K^L = L + 1
  x = _sphere(4)
  np.testing.assert_allclose(jnp.diag(ntk.deep_ntk(x, x, 7)), 8.0, rtol=1e-5)
  np.testing.assert_allclose(jnp.diag(ntk.deep_nngp(x, x, 7)), 1.0, rtol=1e-5)


def test_polynomial_dual_and_its_hermite_activation():
  dual = ntk.dual_activation([0, 1, 0, 1])  # normalised to rho/2 + rho^3/2
  assert float(dual.xi(jnp.array(0.5))) == pytest.approx(0.25 + 0.0625)
  assert float(dual.dxi(jnp.array(1.0))) == pytest.approx(2.0)
  assert float(dual.cxi(jnp.array(1e-3))) == pytest.approx(1 - float(dual.xi(jnp.array(1 - 1e-3, jnp.float32))),
                                                          rel=1e-3)
  phi = ntk.hermite_activation([0, 1, 0, 1])
  z = np.random.default_rng(0).normal(size=(2, 400_000))
  rho = 0.6
  u, v = z[0], rho * z[0] + np.sqrt(1 - rho ** 2) * z[1]
  pu, pv = np.asarray(phi(jnp.asarray(u))), np.asarray(phi(jnp.asarray(v)))
  assert np.mean(pu ** 2) == pytest.approx(1.0, abs=0.02)
  assert np.mean(pu * pv) == pytest.approx(float(dual.xi(jnp.array(rho))), abs=0.02)
  # the paper's constructed activation for S^1
  opt = ntk.dual_activation("2d_opt")
  assert float(opt.xi(jnp.array(0.9))) == pytest.approx(0.9 ** 7 / 2 + 0.45, rel=1e-6)


def test_recursion_matches_wide_finite_networks():
  """Closed forms against Monte-Carlo estimates of wide NTK-parameterised MLPs (in place of neural-tangents)."""
  x = _sphere(5)
  for depth in (1, 2):
    model = ntk.NTKMLP(depth=depth, width=512, outputs=1)
    keys = jax.random.split(jax.random.key(depth), 6)
    emp = jax.vmap(lambda k: ntk.empirical_ntk(model, nn.unbox(model.init(k, x)), x, x))(keys).mean(0)
    exact = ntk.deep_ntk(x, x, depth)
    np.testing.assert_allclose(emp, exact, rtol=0.08, atol=0.05 * (depth + 1))
    wide = ntk.NTKMLP(depth=depth, width=512, outputs=512)

    def cov(k):
      out = wide.apply(nn.unbox(wide.init(k, x)), x)
      return out @ out.T / out.shape[1]

    emp = jax.vmap(cov)(jax.random.split(jax.random.key(10 + depth), 6)).mean(0)
    np.testing.assert_allclose(emp, ntk.deep_nngp(x, x, depth), atol=0.08)
  # a polynomial activation: phi = Hermite series whose dual is rho/2 + rho^3/2
  poly = ntk.NTKMLP(depth=1, width=8192, outputs=4096, activation=(0, 0.5, 0, 0.5))  # heavy-tailed: wide
  out = poly.apply(nn.unbox(poly.init(jax.random.key(3), x)), x)
  np.testing.assert_allclose(out @ out.T / out.shape[1], ntk.deep_nngp(x, x, 1, (0, 0.5, 0, 0.5)), atol=0.15)


def test_log_space_matches_plain_recursion_and_survives_underflow():
  x = _sphere(6, d=2)
  plain = ntk.deep_nngp(x, x, 20, "2d_opt")
  sign, logabs = ntk.deep_nngp(x, x, 20, "2d_opt", log_space=True)
  np.testing.assert_allclose(sign * jnp.exp(logabs), plain, rtol=2e-3, atol=1e-30)
  sign, logabs = ntk.deep_nngp(x, x, 5000, "2d_opt", log_space=True)  # 2^-5000: far below float range
  assert bool(jnp.all(jnp.isfinite(logabs)))
  np.testing.assert_allclose(jnp.diag(logabs), 0.0, atol=1e-6)
  # far from the diagonal each layer multiplies by xi'(0) = 1/2
  _, deeper = ntk.deep_nngp(x, x, 5001, "2d_opt", log_space=True)
  off = ~np.eye(6, dtype=bool)
  np.testing.assert_allclose(np.asarray(deeper - logabs)[off], np.log(0.5), atol=1e-3)  # float32 ulp at |log| ~ 3500


def test_classifiers_and_baselines():
  x_train = _sphere(30, d=2, seed=1)
  y = jnp.where(x_train[:, 0] > x_train[:, 1], 1, -1)
  x_test = _sphere(20, d=2, seed=2)
  k = ntk.deep_ntk(x_train, x_train, 2)
  np.testing.assert_array_equal(ntk.kernel_classify(k, y, k), y)  # ridgeless interpolates
  pred = ntk.kernel_classify(k, y, ntk.deep_ntk(x_train, x_test, 2))
  truth = jnp.where(x_test[:, 0] > x_test[:, 1], 1, -1)
  assert float(jnp.mean(pred == truth)) >= 0.8
  assert ntk.majority_vote(jnp.array([1, -1, -1]), 4).tolist() == [-1] * 4
  np.testing.assert_array_equal(ntk.one_nn(x_train, y, x_train), y)
  np.testing.assert_array_equal(ntk.hilbert_classifier(x_train, y, x_train), y)
  assert ntk.kernel_regress(k, jnp.stack([y, -y], 1).astype(jnp.float32), k).shape == (30, 2)


def test_jit_vmap_and_deep_depth():
  x = _sphere(4)
  f = jax.jit(lambda a: ntk.deep_ntk(a, a, 50))
  np.testing.assert_allclose(f(x), ntk.deep_ntk(x, x, 50), rtol=1e-6)
  batched = jax.vmap(lambda a: ntk.deep_nngp(a, a, 3))(jnp.stack([x, x[::-1]]))
  np.testing.assert_allclose(batched[0], ntk.deep_nngp(x, x, 3), rtol=1e-6)
  deep = ntk.deep_ntk(x, x, 50_000, normalize=True)  # one fori_loop, compiled once
  assert deep.shape == (4, 4) and bool(jnp.all(jnp.isfinite(deep)))


def test_sharded_forward_on_8_devices():
  assert jax.device_count() == 8
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  model = ntk.NTKMLP(depth=2, width=16, outputs=3)
  x = _sphere(16)
  variables = nn.unbox(model.init(jax.random.key(0), x))
  expected = model.apply(variables, x)
  params_sh = sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), x), mesh)
  params = jax.device_put(variables, params_sh)
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(params, xs)
    kern = jax.jit(lambda a: ntk.deep_ntk(a, a, 3))(xs)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(kern, ntk.deep_ntk(x, x, 3), rtol=1e-5)
  assert len(out.sharding.device_set) == 8


@pytest.mark.parametrize("call, message", [
    (lambda x: ntk.deep_ntk(x, x[:, :2], 2), "features=3, expected 2|x2"),
    (lambda x: ntk.deep_ntk(x.astype(jnp.int32), x, 2), "floating"),
    (lambda x: ntk.deep_ntk(x[:0], x, 2), "at least one point"),
    (lambda x: ntk.deep_ntk(x, x, -1), "depth"),
    (lambda x: ntk.deep_nngp(x, x, 2, "relu", log_space=True), "xi\\(0\\) = 0"),
    (lambda x: ntk.dual_activation("tanh"), "unknown activation"),
    (lambda x: ntk.dual_activation([0.5, -0.5]), ">= 0"),
    (lambda x: ntk.kernel_classify(jnp.eye(4), jnp.array([0, 1, 1, 0]), jnp.eye(4)), "-1 or \\+1"),
    (lambda x: ntk.kernel_regress(jnp.eye(4), jnp.ones(3), jnp.eye(4)), "n, n|shape"),
    (lambda x: ntk.kernel_regress(jnp.eye(4), jnp.ones(4), jnp.eye(4), ridge=-1.0), "ridge"),
    (lambda x: ntk.NTKMLP(activation="tanh").init(jax.random.key(0), x), "activation"),
])
def test_bad_inputs_raise(call, message):
  with pytest.raises((ValueError, TypeError), match=message):
    call(_sphere(4))
