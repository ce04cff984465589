"""zoo.convex_nn: patterns (sampled and enumerated), the ADMM solver, recovery, the network module, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import convex_nn as cn
from zoo.recipes import sharding


def _data(n=12, d=2, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (np.maximum(x @ rng.normal(size=(d, 2)), 0) @ np.array([1.0, -1.0])).astype(np.float32)
  return x, y


def test_enumeration_finds_every_pattern_sampling_finds():
  x, _ = _data(20)
  exact = cn.enumerate_patterns_2d(x)
  assert exact.shape == (20, 40) and exact.dtype == bool
  assert len({c.tobytes() for c in exact.T}) == 40  # distinct
  sampled = cn.sample_patterns(x, 3000, jax.random.key(0))
  exact_set = {c.tobytes() for c in exact.T}
  assert {c.tobytes() for c in sampled.T} <= exact_set and sampled.shape[1] >= 35
  few = cn.sample_patterns(x, 5, jax.random.key(1), unique=False)
  assert few.shape == (20, 5)


def test_admm_solution_is_feasible_sparse_and_recovers_its_objective():
  x, y = _data()
  d = cn.enumerate_patterns_2d(x)
  r = cn.admm_solve(x, y, d, 0.1, rho=0.3, iters=1500)
  assert r.v.shape == r.w.shape == (d.shape[1], 2) and r.objective.shape == r.residual.shape == (1500,)
  assert float(r.violation) < 1e-3 and float(r.residual[-1]) < 1e-3
  assert float(r.objective[-1]) < float(r.objective[10])
  u, alpha = cn.recover_network(r.v, r.w)
  assert u.shape == (2, alpha.shape[0]) and 0 < alpha.shape[0] < 2 * d.shape[1]  # group-sparse
  net = float(cn.network_objective(x, y, u, alpha, 0.1))
  np.testing.assert_allclose(net, float(r.objective[-1]), rtol=1e-3)
  relaxed = cn.scp_solve(x, y, d, 0.1, rho=0.3, iters=1500)
  assert float(relaxed.objective[-1]) <= float(r.objective[-1]) + 1e-4  # a relaxation


def test_admm_vmaps_over_targets():
  x, y = _data()
  d = cn.enumerate_patterns_2d(x)
  ys = jnp.stack([y, 2 * y])
  batched = jax.vmap(lambda t: cn.admm_solve(x, t, d, 0.1, iters=300).objective[-1])(ys)
  single = [float(cn.admm_solve(x, t, d, 0.1, iters=300).objective[-1]) for t in ys]
  np.testing.assert_allclose(np.asarray(batched), single, rtol=1e-4)


def test_two_layer_relu_module_jit_vmap_sharded():
  x, _ = _data(16, 3)
  model = cn.TwoLayerReLU(width=8)
  variables = model.init(jax.random.key(0), x)
  out = model.apply(variables, x)
  assert out.shape == (16,)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, x), out, rtol=1e-6)
  per_row = jax.vmap(lambda r: model.apply(variables, r[None])[0])(x)
  np.testing.assert_allclose(per_row, out, rtol=1e-5, atol=1e-6)
  plain = nn.unbox(variables)
  np.testing.assert_allclose(out, jax.nn.relu(x @ plain["params"]["u"]) @ plain["params"]["alpha"], rtol=1e-5)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  params = jax.device_put(plain, sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), x), mesh))
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    sharded = jax.jit(model.apply)(params, xs)
  np.testing.assert_allclose(sharded, out, rtol=1e-5, atol=1e-6)
  assert len(sharded.sharding.device_set) == 8


def test_bad_inputs():
  x, y = _data()
  d = cn.enumerate_patterns_2d(x)
  with pytest.raises(ValueError, match="shape"):
    cn.admm_solve(x, y[:5], d)
  with pytest.raises(TypeError, match="floating"):
    cn.admm_solve(x.astype(np.int32), y, d)
  with pytest.raises(TypeError, match="boolean"):
    cn.admm_solve(x, y, d.astype(np.float32))
  with pytest.raises(ValueError, match="no activation pattern"):
    cn.admm_solve(x, y, d[:, :0])
  with pytest.raises(ValueError, match="beta"):
    cn.admm_solve(x, y, d, 0.0)
  with pytest.raises(ValueError, match="iters"):
    cn.admm_solve(x, y, d, iters=0)
  with pytest.raises(ValueError, match="empty batch"):
    cn.sample_patterns(x[:0], 3, jax.random.key(0))
  with pytest.raises(ValueError, match="num"):
    cn.sample_patterns(x, 0, jax.random.key(0))
  with pytest.raises(ValueError, match=r"\[n, 2\]"):
    cn.enumerate_patterns_2d(np.zeros((4, 3), np.float32))
  with pytest.raises(ValueError, match="shape"):
    cn.recover_network(np.zeros((3, 2)), np.zeros((2, 2)))
  with pytest.raises(TypeError, match="floating"):
    cn.TwoLayerReLU().init(jax.random.key(0), np.zeros((2, 3), np.int32))


def test_convex_procedure_through_fit(single_device_mesh):
  from zoo.recipes import tasks, train  # pylint: disable=g-import-not-at-top
  from zoo.recipes.procedures import convex_relu  # pylint: disable=g-import-not-at-top
  x, y = _data(24)
  kw = dict(task=tasks.Regression(), steps=6, batch_size=24, mesh=single_device_mesh, log_every=1,
            sampler=lambda step: np.arange(24), procedure=convex_relu.ConvexReLU)
  result = train.fit(cn.TwoLayerReLU(width=16), {"x": x, "y": y},
                     procedure_kwargs=dict(num_patterns=8, beta=0.05, iters_per_step=100), **kw)
  objectives = [r["train/objective"] for r in result.history]
  assert objectives[-1] < objectives[0]
  params = result.variables["params"]
  net = float(cn.network_objective(x, y, params["u"], params["alpha"], 0.05))
  np.testing.assert_allclose(net, objectives[-1], rtol=2e-2)  # the recovered net carries the convex objective
  with pytest.raises(ValueError, match="width"):
    train.fit(cn.TwoLayerReLU(width=10), {"x": x, "y": y}, procedure_kwargs=dict(num_patterns=8), **kw)


def _moons_like(n=10, seed=0):
  rng = np.random.default_rng(seed)
  x = np.concatenate([rng.normal(size=(n, 2)), np.ones((n, 1))], 1).astype(np.float32)
  y = np.where(x[:, 0] * x[:, 1] + 0.1 >= 0, 1.0, -1.0).astype(np.float32)
  return x, y


def _cvxpy_robust(x, y, d, beta, eps, dp):
  cp = pytest.importorskip("cvxpy", reason="cvxpy (the test-only oracle of the robust program) is not installed")
  xx, dm = x.astype(np.float64), d.astype(np.float64)
  p, dim = d.shape[1], x.shape[1]
  v, w = cp.Variable((p, dim)), cp.Variable((p, dim))
  c = dm @ (v - w)
  margin = cp.multiply(y, cp.sum(cp.multiply(xx, c), axis=1)) - eps * cp.sum(cp.abs(c[:, :dp]), axis=1)
  cons = []
  for i in range(p):  # the dual-norm form of the paper, independent of the solver's epigraph variables
    cons += [cp.multiply(2 * dm[:, i] - 1, xx @ v[i]) >= eps * cp.norm1(v[i, :dp]),
             cp.multiply(2 * dm[:, i] - 1, xx @ w[i]) >= eps * cp.norm1(w[i, :dp])]
  obj = cp.sum(cp.pos(1 - margin)) + beta * (cp.sum(cp.norm(v, 2, axis=1)) + cp.sum(cp.norm(w, 2, axis=1)))
  problem = cp.Problem(cp.Minimize(obj), cons)
  problem.solve(solver="CLARABEL")
  return problem.value


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_robust_admm_matches_the_cvxpy_optimum(eps):
  x, y = _moons_like()
  d = cn.sample_patterns(x, 8, jax.random.key(0))
  optimum = _cvxpy_robust(x, y, d, 0.1, eps, 2)
  r = cn.robust_admm_solve(x, y, d, 0.1, eps, rho=0.1, iters=3000, perturbed=2)
  assert r.objective.shape == (3000,) and r.v.shape == (d.shape[1], 3)
  np.testing.assert_allclose(float(r.objective[-1]), optimum, rtol=1e-2)
  assert float(r.violation) < 1e-3


def test_robust_network_is_certified_over_the_ball():
  """On the recovered net, the worst case over each ball (checked at the 4 corners, where a pattern-fixed linear
  function takes its extremes) is the program's hinge term; a PGD attack cannot do better than that bound."""
  from zoo import attacks  # pylint: disable=g-import-not-at-top
  x, y = _moons_like(16, 1)
  eps = 0.05
  d = cn.sample_patterns(x, 2000, jax.random.key(1), eps=eps, perturbed=2)
  assert d.shape[1] >= 1
  r = cn.robust_admm_solve(x, y, d, 0.05, eps, rho=0.1, iters=3000, perturbed=2)
  assert float(r.violation) < 1e-3
  u, alpha = cn.recover_network(r.v, r.w)
  f = lambda p: jax.nn.relu(jnp.concatenate([p, jnp.ones((p.shape[0], 1))], 1) @ u) @ alpha  # noqa: E731
  corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32) * eps
  worst = np.min(np.stack([y * np.asarray(f(jnp.asarray(x[:, :2] + c))) for c in corners]), axis=0)
  c = d.astype(np.float32) @ np.asarray(r.v - r.w)
  bound = y * np.sum(x * c, 1) - eps * np.abs(c[:, :2]).sum(1)
  np.testing.assert_allclose(worst, bound, atol=5e-3)  # the program's margin is the network's worst case
  logits = lambda p: jnp.stack([-f(p), f(p)], 1)  # noqa: E731
  adv = attacks.pgd_linf(logits, jnp.asarray(x[:, :2]), jnp.asarray(y > 0, jnp.int32), eps, eps / 4, 20)
  assert np.all(y * np.asarray(f(adv)) >= bound - 5e-3)


def test_robust_sampler_and_bad_inputs():
  x, y = _moons_like(30, 2)
  h = jax.random.normal(jax.random.key(0), (3, 500))
  keep = np.asarray(cn.robust_directions(jnp.asarray(x), h, 0.1, 2))
  margin = np.min(np.abs(x @ np.asarray(h)), 0) - 0.1 * np.abs(np.asarray(h)[:2]).sum(0)
  np.testing.assert_array_equal(keep, margin >= 0)
  assert 0 < keep.sum() < 500
  robust = cn.sample_patterns(x, 500, jax.random.key(0), eps=0.1, perturbed=2)
  plain = cn.sample_patterns(x, 500, jax.random.key(0))
  assert robust.shape[1] < plain.shape[1]
  d = plain[:, :6]
  with pytest.raises(ValueError, match="-1 / \\+1"):
    cn.robust_admm_solve(x, (y > 0).astype(np.float32), d, 0.1, 0.1)
  with pytest.raises(ValueError, match="eps"):
    cn.robust_admm_solve(x, y, d, 0.1, -0.1)
  with pytest.raises(ValueError, match="perturbed"):
    cn.robust_admm_solve(x, y, d, 0.1, 0.1, perturbed=4)
  with pytest.raises(ValueError, match="iters"):
    cn.robust_admm_solve(x, y, d, 0.1, 0.1, iters=0)
  with pytest.raises(ValueError, match="none of the"):
    cn.sample_patterns(x, 3, jax.random.key(0), eps=100.0)


def test_robust_procedure_through_fit(single_device_mesh):
  from zoo.recipes import tasks, train  # pylint: disable=g-import-not-at-top
  from zoo.recipes.procedures import convex_relu  # pylint: disable=g-import-not-at-top
  x, y = _moons_like(24, 3)
  kw = dict(task=tasks.Regression(), steps=4, batch_size=24, mesh=single_device_mesh, log_every=1,
            sampler=lambda step: np.arange(24), procedure=convex_relu.RobustConvexReLU)
  result = train.fit(cn.TwoLayerReLU(width=16), {"x": x, "y": y},
                     procedure_kwargs=dict(num_patterns=8, beta=0.05, eps=0.05, perturbed=2,
                                           iters_per_step=200, attack_eps=0.05), **kw)
  objectives = [r["train/objective"] for r in result.history]
  # The procedure runs the library's solver: 4 x 200 iterations from the state's patterns are robust_admm_solve's.
  patterns = np.asarray(x @ np.asarray(result.state.h) >= 0)
  direct = cn.robust_admm_solve(x, y, patterns, 0.05, 0.05, rho=0.1, iters=800, perturbed=2)
  np.testing.assert_allclose(objectives[-1], float(direct.objective[-1]), rtol=1e-3)
  u, alpha = cn.recover_network(direct.v, direct.w)
  f = lambda p: jax.nn.relu(p @ u) @ alpha  # noqa: E731
  np.testing.assert_allclose(np.asarray(cn.TwoLayerReLU(width=16).apply(result.variables, x)), f(x), atol=1e-3)
  metrics = result.evaluate({"x": x, "y": y})
  np.testing.assert_allclose(metrics["accuracy"], np.mean(np.sign(np.asarray(f(x))) == y), atol=1e-6)
  assert 0.0 <= metrics["pgd_accuracy"] <= metrics["accuracy"]
  with pytest.raises(ValueError, match="width"):
    train.fit(cn.TwoLayerReLU(width=10), {"x": x, "y": y}, procedure_kwargs=dict(num_patterns=8), **kw)
