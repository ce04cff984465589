"""Unit tests of zoo.hierarchical_poly and zoo.recipes.procedures.hier_poly."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import hierarchical_poly as H
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes import train
from zoo.recipes.procedures import hier_poly


# Parameter inits draw from unsafe_rbg keys: XLA compiles them far faster than threefry (no test here depends on a
# seed's particular values).
KEY = lambda seed: jax.random.key(seed, impl="unsafe_rbg")


def test_target_statistics():
  rng = np.random.default_rng(0)
  A = H.quadratic_feature_matrix(rng, 8)  # pylint: disable=invalid-name
  np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(A)), [-1] * 4 + [1] * 4, atol=1e-6)
  t = H.hierarchical_target(rng, 200000, 8, A=A)
  assert abs(t["p"].mean()) < 0.02 and abs(t["p"].var() - 1) < 0.03
  np.testing.assert_allclose(t["y"], t["p"] ** 3, rtol=1e-4, atol=1e-4)
  he3 = H.hierarchical_target(np.random.default_rng(1), 10, 8, A=A, g="he3")
  np.testing.assert_allclose(he3["y"], he3["p"] ** 3 - 3 * he3["p"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("inner", H.INNER_ACTIVATIONS)
def test_net_shapes_jit_vmap_and_methods(inner):
  model = H.ThreeLayerNet(width=16, inner_width=8, inner_activation=inner)
  x = jax.random.normal(jax.random.key(0), (6, 5))
  variables = jax.jit(model.init)(KEY(1), x)
  assert set(variables) == {"params", "random_features"}

  @jax.jit
  def run(variables, x):  # one compile: the forward, its vmap, and the two methods
    batched = jax.vmap(model.apply, in_axes=(None, 0))(variables, x.reshape(2, 3, 5))
    return (model.apply(variables, x), batched, model.apply(variables, x, method="hidden"),
            model.apply(variables, x, method="inner"))

  out, batched, hidden, inner = run(variables, x)
  assert out.shape == (6,) and out.dtype == jnp.float32
  np.testing.assert_allclose(model.apply(variables, x), out, rtol=1e-5, atol=1e-6)  # eager == jit
  np.testing.assert_allclose(batched.reshape(6), out, rtol=1e-5, atol=1e-6)
  params = nn.unbox(variables["params"])
  np.testing.assert_allclose(hidden @ params["a"] + params["c"], out, rtol=1e-5, atol=1e-6)
  assert inner.shape == (6, 8)


def test_stage_one_moves_every_row_along_a_i_times_the_target_correlation():
  """One GD step from W ~ 0, b = 1: W_1 - W_0 = lr a_i mean((y - f) phi), the paper's stage-1 update."""
  model = H.ThreeLayerNet(width=8, inner_width=6, init_scale=0.0)
  x = jax.random.normal(jax.random.key(0), (50, 4))
  y = jax.random.normal(jax.random.key(1), (50,))

  @jax.jit
  def run(x, y):  # one compile: init, the layer-wise training, and the update computed by hand
    variables = nn.unbox(model.init(KEY(2), x))
    trained = hier_poly.train_layerwise(model, variables, x, y, x, y, jax.random.key(3), stage1_lr=1.0)
    phi = model.apply(variables, x, method="inner")
    resid = y - model.apply(variables, x)
    expected = jnp.outer(variables["params"]["a"], resid @ phi / 50)
    pre = phi @ expected.T
    # train_layerwise standardises each row: W' = W_1 / sd(phi W_1).
    return trained["params"]["W"], expected / pre.std(0)[:, None]

  got, want = run(x, y)
  assert np.abs(np.asarray(want)).max() > 1e-3  # a real update, not W ~ 0 on both sides
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


def test_procedure_in_the_loop(single_device_mesh):
  rng = np.random.default_rng(0)
  A = H.quadratic_feature_matrix(rng, 6)  # pylint: disable=invalid-name
  t = H.hierarchical_target(rng, 2000, 6, A=A)
  model = H.ThreeLayerNet(width=64, inner_width=32)
  result = train.fit(model, {"x": t["x"], "y": t["y"]}, task=tasks.Regression(input_key="x", target_key="y"),
                     procedure="hier_poly.LayerwiseTraining", steps=1, batch_size=2000,
                     eval_data={"x": t["x"][:500], "y": t["y"][:500]}, mesh=single_device_mesh)
  assert result.metrics["normalised_mse"] < 0.9, result.metrics
  pred = hier_poly.random_features_krr(jax.random.key(0), t["x"], t["y"], t["x"][:5], 16)
  assert pred.shape == (5,)


def test_sharded_forward_on_8_devices():
  model = H.ThreeLayerNet(width=16, inner_width=8)
  x = jax.random.normal(jax.random.key(0), (16, 4))
  variables = jax.jit(model.init)(KEY(1), x)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(placed, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, jax.jit(model.apply)(nn.unbox(variables), x), rtol=1e-5, atol=1e-5)


def test_bad_inputs_are_named_errors():
  model = H.ThreeLayerNet(width=4, inner_width=3)
  x = jnp.ones((2, 5))
  variables = jax.jit(model.init)(KEY(0), x)
  with pytest.raises(ValueError, match="d = 5"):
    model.apply(variables, jnp.ones((2, 4)))
  with pytest.raises(TypeError, match="`x`"):
    model.apply(variables, jnp.ones((2, 5), jnp.int32))
  with pytest.raises(ValueError, match="empty batch"):
    model.apply(variables, jnp.ones((0, 5)))
  with pytest.raises(ValueError, match="inner_activation"):
    jax.eval_shape(H.ThreeLayerNet(inner_activation="tanh").init, KEY(0), x)
  with pytest.raises(ValueError, match="`g`"):
    H.hierarchical_target(np.random.default_rng(0), 3, 2, g="sin", A=np.eye(2))
  with pytest.raises(ValueError, match="symmetric"):
    H.hierarchical_target(np.random.default_rng(0), 3, 2, A=np.array([[0.0, 1.0], [0.0, 0.0]]))
  with pytest.raises(ValueError, match="`y1`"):
    hier_poly.train_layerwise(model, variables, x, jnp.ones((3,)), x, jnp.ones((2,)), jax.random.key(0))
