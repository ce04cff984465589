"""zoo.ntk_ensembles: the two-layer NTK net and its closed-form kernel (checked against the finite-width empirical
NTK), the permutation task, ensemble training under one jit, rounding rules, jit/vmap/sharding and clear errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import ntk
from zoo import ntk_ensembles as ne
from zoo.recipes import sharding


def test_closed_form_ntk_matches_wide_net():
  x = jnp.asarray(ne.permutation_task(4)["x_test"][:6])
  model = ne.TwoLayerNTKNet(width=2048, outputs=1)
  emp = jax.vmap(lambda k: ntk.empirical_ntk(model, nn.unbox(model.init(k, x)), x, x))(
      jax.random.split(jax.random.key(0), 4)).mean(0)
  np.testing.assert_allclose(emp, ne.two_layer_ntk(x, x), rtol=0.06, atol=0.03)


def test_task_levels_and_rounding():
  task = ne.permutation_task(5, seed=3)
  assert task["x_test"].shape == (31, 5) and sorted(task["perm"]) == list(range(5))
  np.testing.assert_array_equal(task["y_test"].sum(1), task["x_test"].sum(1))
  hi, lo = ne.rounding_levels(5)
  assert hi[0] == pytest.approx(1.0) and lo[0] == pytest.approx(0.0, abs=1e-12)
  assert np.all(hi > 0) and np.all(lo[1:-1] < 0) and lo[-1] == -np.inf
  y = jnp.asarray(task["y_test"])
  x = jnp.asarray(task["x_test"])
  for rule in ("midpoint", "topk", "half"):
    assert bool(jnp.all(ne.exact_match(ne.round_prediction(y * 0.8 + 0.05, x, rule), task["y_test"])))


def test_train_ensemble_one_jit_and_vmap():
  task = ne.permutation_task(3)
  params, mse = ne.train_ensemble(jnp.asarray(task["x_train"]), jnp.asarray(task["y_train"]), num_models=4,
                                  width=64, steps=100, learning_rate=2.0)
  assert params["w"].shape == (4, 3, 64) and mse.shape == (4,) and float(mse.max()) < 1e-4
  out = ne.ensemble_outputs(params, jnp.asarray(task["x_test"]))
  assert out.shape == (4, 7, 3)
  single = ne.TwoLayerNTKNet(width=64, outputs=3).apply({"params": jax.tree.map(lambda a: a[1], params)},
                                                        jnp.asarray(task["x_test"]))
  np.testing.assert_allclose(out[1], single, rtol=1e-5, atol=1e-6)
  model = ne.TwoLayerNTKNet(width=8, outputs=3)
  v = nn.unbox(model.init(jax.random.key(0), jnp.ones((2, 3))))
  np.testing.assert_allclose(jax.jit(model.apply)(v, jnp.ones((2, 3))), model.apply(v, jnp.ones((2, 3))), rtol=1e-6)


def test_sharded_forward_on_8_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  model = ne.TwoLayerNTKNet(width=32, outputs=4)
  x = jnp.asarray(ne.permutation_task(4)["x_test"][:8])
  variables = nn.unbox(model.init(jax.random.key(0), x))
  expected = model.apply(variables, x)
  params = jax.device_put(variables, sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), x), mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(params, jax.device_put(x, sharding.batch_sharding(mesh)))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  assert len(out.sharding.device_set) == 8


@pytest.mark.parametrize("call, message", [
    (lambda: ne.permutation_task(1), "k"),
    (lambda: ne.two_layer_ntk(jnp.zeros((2, 3)), jnp.ones((2, 3))), "nonzero"),
    (lambda: ne.round_prediction(jnp.ones((2, 3)), jnp.zeros((2, 3))), "nonzero binary"),
    (lambda: ne.round_prediction(jnp.ones((2, 3)), jnp.ones((2, 3)), "nearest"), "rule"),
    (lambda: ne.round_prediction(jnp.ones((2, 4)), jnp.ones((2, 3))), "k=3"),
    (lambda: ne.train_ensemble(jnp.ones((3, 3)), jnp.ones((2, 3))), "n=3"),
    (lambda: ne.train_ensemble(jnp.ones((3, 3)), jnp.ones((3, 3)), num_models=0), "num_models"),
    (lambda: ne.TwoLayerNTKNet().init(jax.random.key(0), jnp.ones((2, 3), jnp.int32)), "floating"),
])
def test_bad_inputs_raise(call, message):
  with pytest.raises((ValueError, TypeError), match=message):
    call()
