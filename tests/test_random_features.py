"""Unit tests of zoo.random_features and the ridge procedure (zoo.recipes.procedures.ridge)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import random_features as R
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes import train
from zoo.recipes.procedures.ridge import RidgeRegression


def _x(n=8, keys=5, d=4, seed=0):
  return jnp.asarray(R.sphere_inputs(np.random.default_rng(seed), n, keys + 1, d))


def _with_values(model, variables, seed=3):
  params = jax.tree.map(lambda v: v, variables["params"])
  name = "value" if isinstance(model, R.RandomFeatureAttention) else "readout"
  params[name] = params[name].replace_boxed(jax.random.normal(jax.random.key(seed), params[name].value.shape))
  return {**variables, "params": params}


@pytest.mark.parametrize("model", [R.RandomFeatureAttention(6), R.RandomFeatureAttention(6, attn="softmax"),
                                   R.RandomFeatureMLP(16)])
def test_shapes_frozen_weights_axes_jit_vmap(model):
  x = _x()
  variables = _with_values(model, jax.jit(model.init)(jax.random.key(0), x))
  assert set(variables) == {"params", "random_features"}  # frozen weights are not trainable parameters
  for leaf in jax.tree.leaves(variables, is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned)):
    assert isinstance(leaf, nn.LogicallyPartitioned) and len(leaf.names) == leaf.value.ndim
  out = jax.jit(model.apply)(variables, x)
  assert out.shape == (8,) and out.dtype == jnp.float32
  feats = model.apply(variables, x, method="features")
  width = 6 * 4 if isinstance(model, R.RandomFeatureAttention) else 16
  assert feats.shape == (8, width)
  coef = nn.unbox(variables["params"])
  coef = (coef["value"] if "value" in coef else coef["readout"]).reshape(-1)
  np.testing.assert_allclose(feats @ coef, model.apply(variables, x), rtol=1e-5, atol=1e-5)  # linear in params
  np.testing.assert_allclose(jax.jit(jax.vmap(lambda a: model.apply(variables, a)))(x.reshape(2, 4, 6, 4)).ravel(),
                             out, rtol=1e-5, atol=1e-6)


def test_attention_features_match_the_formula():
  x = _x(n=3)
  for attn in ("exp", "softmax", "uniform"):
    model = R.RandomFeatureAttention(5, attn=attn, mean_scale=0.5)
    variables = model.init(jax.random.key(0), x)
    w = nn.unbox(variables["random_features"]["query_key"])
    assert w.shape == (5, 4, 4)
    scores = jnp.einsum("bd,mde,bne->bmn", x[:, 0], w, x[:, 1:])  # x_0^T W_m x_i
    weights = {"exp": jnp.exp(scores) / 5, "softmax": jax.nn.softmax(scores, axis=-1),
               "uniform": jnp.full_like(scores, 1 / 5)}[attn]
    expected = jnp.einsum("bmn,bnd->bmd", weights, x[:, 1:]).reshape(3, -1)
    np.testing.assert_allclose(model.apply(variables, x, method="features"), expected, rtol=1e-5, atol=1e-6)
  # The non-zero mean shifts every W_m by mean_scale * I.
  biased = R.RandomFeatureAttention(400, mean_scale=2.0).init(jax.random.key(1), x)["random_features"]
  mean = nn.unbox(biased)["query_key"].mean(0)
  np.testing.assert_allclose(mean, 2.0 * np.eye(4), atol=0.1)


def test_fit_ridge_matches_numpy_and_paths():
  rng = np.random.default_rng(0)
  for n, p in [(40, 10), (10, 40)]:
    f, y = rng.normal(size=(n, p)).astype(np.float32), rng.normal(size=n).astype(np.float32)
    expected = np.linalg.solve(f.T @ f / n + 0.1 * np.eye(p), f.T @ y / n)
    np.testing.assert_allclose(R.fit_ridge(f, y, 0.1), expected, rtol=1e-3, atol=1e-4)
    path = R.fit_ridge(f, y, [0.1, 10.0])
    assert path.shape == (2, p)
    np.testing.assert_allclose(path[0], expected, rtol=1e-3, atol=1e-4)
    assert np.linalg.norm(path[1]) < np.linalg.norm(path[0])
  with pytest.raises(ValueError, match="l2"):
    R.fit_ridge(f, y, 0.0)
  with pytest.raises(ValueError, match="targets"):
    R.fit_ridge(f, y[:3], 0.1)


def test_ridge_procedure_equals_closed_form(single_device_mesh):
  model = R.RandomFeatureAttention(8)
  x = np.asarray(_x(n=96, d=4))
  y = np.sin(3 * x[:, 0, 0] * x[:, 1:, 1].mean(1)).astype(np.float32)
  result = train.fit(model, {"x": x, "y": y}, task=tasks.Regression(), procedure=RidgeRegression,
                     procedure_kwargs={"l2": 1e-3}, steps=3, batch_size=32, mesh=single_device_mesh)
  assert result.history[-1]["train/linearity_gap"] < 1e-4
  feats = model.apply(result.variables, x, method="features")
  np.testing.assert_allclose(np.asarray(nn.unbox(result.variables["params"])["value"]).ravel(),
                             R.fit_ridge(feats, y, 1e-3), rtol=1e-3, atol=1e-4)
  with pytest.raises(ValueError, match="l2"):
    RidgeRegression(model=model, task=tasks.Regression(), l2=-1.0)


def test_sharded_forward_on_8_devices():
  model = R.RandomFeatureAttention(8, attn="softmax")
  x = _x()
  variables = _with_values(model, model.init(jax.random.key(0), x))
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(placed, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(out, model.apply(variables, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, x, match", [
    (lambda: R.RandomFeatureAttention(4), jnp.ones((2, 4)), r"x.*rank 3"),
    (lambda: R.RandomFeatureAttention(4), jnp.ones((2, 1, 4)), r"query and at least one key"),
    (lambda: R.RandomFeatureAttention(4, attn="relu"), jnp.ones((2, 3, 4)), r"attn"),
    (lambda: R.RandomFeatureMLP(4), jnp.ones((2, 3, 4), jnp.int32), r"floating"),
])
def test_bad_input_raises_a_clear_error(make, x, match):
  with pytest.raises((ValueError, TypeError), match=match):
    make().init(jax.random.key(0), x)
