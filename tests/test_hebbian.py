"""zoo.hebbian and its procedure: pattern/example statistics, the couplings against their formulas, retrieval and
fixed points, Glauber limits, jit/vmap, the Linen module (sharded on the 8-device mesh), the procedure's couplings
equal to the batch formula, bad inputs."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import hebbian
from zoo.recipes import sharding, tasks
from zoo.recipes.procedures import hebbian as hebbian_proc


def test_patterns_and_examples_statistics():
  xi = hebbian.diluted_patterns(jax.random.key(0), 4, 20000, 0.3)
  assert xi.shape == (4, 20000) and set(np.unique(np.asarray(xi))) == {-1.0, 0.0, 1.0}
  assert abs(np.mean(np.asarray(xi) == 0) - 0.3) < 0.01 and abs(np.mean(np.asarray(xi))) < 0.01
  dense = hebbian.diluted_patterns(jax.random.key(0), 4, 20000, 0.3, dilute=False)
  assert not np.any(np.asarray(dense) == 0)
  np.testing.assert_array_equal(np.asarray(dense)[np.asarray(xi) != 0], np.asarray(xi)[np.asarray(xi) != 0])
  eta = hebbian.noisy_examples(jax.random.key(1), xi, 5, 0.6)
  assert eta.shape == (4, 5, 20000)
  support = np.asarray(xi)[:, None, :] != 0
  agree = (np.asarray(eta) * np.asarray(xi)[:, None])[np.broadcast_to(support, eta.shape)]
  assert abs(agree.mean() - 0.6) < 0.01  # E[chi] = r
  np.testing.assert_array_equal(hebbian.noisy_examples(jax.random.key(1), xi, 2, 1.0)[:, 0], xi)


def test_couplings_match_formulas():
  eta = hebbian.noisy_examples(jax.random.key(2), hebbian.diluted_patterns(jax.random.key(3), 2, 6, 0.2), 3, 0.5)
  e = np.asarray(eta, np.float64)
  unsup = sum(np.outer(e[k, a], e[k, a]) for k in range(2) for a in range(3)) / (6 * 3)
  sup = sum(np.outer(e[k].mean(0), e[k].mean(0)) for k in range(2)) / 6
  np.fill_diagonal(unsup, 0)
  np.fill_diagonal(sup, 0)
  np.testing.assert_allclose(hebbian.hebbian_couplings(eta, "unsupervised"), unsup, atol=1e-6)
  np.testing.assert_allclose(hebbian.hebbian_couplings(eta, "supervised"), sup, atol=1e-6)


def test_retrieval_fixed_point_jit_vmap_and_glauber():
  xi = hebbian.diluted_patterns(jax.random.key(4), 2, 300, 0.0)
  j = hebbian.hebbian_couplings(xi[:, None, :])
  for asynchronous in (True, False):
    fixed = hebbian.zero_t_dynamics(j, xi[0], jax.random.key(0), sweeps=3, asynchronous=asynchronous)
    np.testing.assert_array_equal(fixed, xi[0])  # a stored pattern is a fixed point
  flips = jax.random.bernoulli(jax.random.key(5), 0.2, (3, 300))
  starts = jnp.where(flips, -xi[0], xi[0])
  run = jax.jit(jax.vmap(lambda s, k: hebbian.zero_t_dynamics(j, s, k, sweeps=3)))
  out = run(starts, jax.random.split(jax.random.key(6), 3))
  np.testing.assert_allclose(hebbian.mattis(xi, out)[:, 0], 1.0)
  np.testing.assert_allclose(out[0], hebbian.zero_t_dynamics(j, starts[0], jax.random.split(jax.random.key(6), 3)[0],
                                                              sweeps=3))
  hot = hebbian.glauber_dynamics(j, xi[0], jax.random.key(7), beta=0.0, sweeps=2)
  assert abs(float(hebbian.mattis(xi, hot)[0])) < 0.15
  cold = hebbian.glauber_dynamics(j, starts[0], jax.random.key(7), beta=100.0, sweeps=2)
  assert float(hebbian.mattis(xi, cold)[0]) > 0.99
  np.testing.assert_allclose(hebbian.hierarchical_magnetisations(0.5, 3), [0.5, 0.25, 0.125])


def test_module_and_sharded_forward():
  model = hebbian.HebbianNetwork(num_neurons=16, sweeps=2)
  sigma = jnp.where(jax.random.bernoulli(jax.random.key(0), 0.5, (8, 16)), 1.0, -1.0)
  variables = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), sigma))
  assert variables["params"]["couplings"].shape == (16, 16)
  xi = hebbian.diluted_patterns(jax.random.key(1), 2, 16, 0.0)
  variables = {"params": {"couplings": hebbian.hebbian_couplings(xi[:, None])}}
  out = jax.jit(model.apply)(variables, sigma)
  assert out.shape == (8, 16)
  np.testing.assert_array_equal(out[0], hebbian.zero_t_dynamics(variables["params"]["couplings"], sigma[0],
                                                                 jax.random.split(jax.random.key(0), 8)[0], sweeps=2))
  mesh = sharding.make_mesh({"data": 8})
  with jax.set_mesh(mesh):
    sharded = jax.jit(model.apply)(variables, jax.device_put(sigma, sharding.batch_sharding(mesh)))
  np.testing.assert_allclose(sharded, out)
  with pytest.raises(ValueError, match="neurons=16"):
    model.apply(variables, jnp.ones((2, 15)))


@functools.cache
def _procedure_data():  # shared by both modes
  xi = hebbian.diluted_patterns(jax.random.key(8), 3, 40, 0.3)
  return xi, hebbian.noisy_examples(jax.random.key(9), xi, 4, 0.7)


@pytest.mark.parametrize("mode", hebbian.MODES)
def test_procedure_equals_batch_couplings(mode):
  xi, eta = _procedure_data()
  flat = {"x": eta.reshape(12, 40), "label": jnp.repeat(jnp.arange(3), 4)}
  proc = hebbian_proc.HebbianLearning(model=hebbian.HebbianNetwork(num_neurons=40), task=tasks.Classification(
      input_key="x"), mode=mode, num_patterns=3)
  rows = jnp.array([0, 1, 2, 0])

  @jax.jit
  def run(flat, xi, eta):  # one compile: init, a step on each half of the data, evaluation, the batch formula
    state = proc.init(jax.random.key(0), flat)
    for half in (slice(0, 6), slice(6, 12)):
      state, _ = proc.step(state, {k: v[half] for k, v in flat.items()})
    metrics = proc.evaluate(state, {"x": xi[rows], "label": rows, "patterns": jnp.repeat(xi[None], 4, 0)})
    return state.params["couplings"], hebbian.hebbian_couplings(eta, mode), metrics

  couplings, want, metrics = run(flat, xi, eta)
  np.testing.assert_allclose(couplings, want, atol=1e-6)
  assert set(metrics) == {"m_self", "m_second", "m_third", "accuracy"} and metrics["m_self"].shape == (4,)
  assert np.all(np.asarray(metrics["m_self"]) >= np.asarray(metrics["m_second"]) - 1e-6)


def test_bad_inputs():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="dilution"):
    hebbian.diluted_patterns(key, 3, 10, 1.0)
  with pytest.raises(ValueError, match="num_neurons"):
    hebbian.diluted_patterns(key, 3, 0, 0.1)
  with pytest.raises(ValueError, match="quality"):
    hebbian.noisy_examples(key, jnp.ones((2, 4)), 3, 1.5)
  with pytest.raises(ValueError, match="`examples` must have shape"):
    hebbian.hebbian_couplings(jnp.ones((2, 4)))
  with pytest.raises(ValueError, match="mode"):
    hebbian.hebbian_couplings(jnp.ones((2, 3, 4)), "hebb")
  with pytest.raises(ValueError, match="neurons=4"):
    hebbian.zero_t_dynamics(jnp.zeros((4, 4)), jnp.ones(5), key)
  with pytest.raises(ValueError, match="square"):
    hebbian.zero_t_dynamics(jnp.zeros((4, 5)), jnp.ones(4), key)
  with pytest.raises(TypeError, match="floating"):
    hebbian.mattis(jnp.ones((2, 4), jnp.int32), jnp.ones(4))
  with pytest.raises(ValueError, match="beta"):
    hebbian.glauber_dynamics(jnp.zeros((4, 4)), jnp.ones(4), key, beta=-1.0)
  with pytest.raises(ValueError, match="mode"):
    hebbian_proc.HebbianLearning(model=hebbian.HebbianNetwork(4), task=None, mode="x")
