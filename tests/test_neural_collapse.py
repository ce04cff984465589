"""zoo.analysis.neural_collapse: the UFM module (shapes, jit, vmap, sharded, sown weight decay), the objective, the
metrics on planted collapsed / uncollapsed features, the closed form, float64 without a global flag, bad inputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo.analysis import neural_collapse as nc
from zoo.recipes import sharding


def test_module_shapes_jit_vmap_and_sown_penalty():
  model = nc.DeepLinearUFM(num_classes=3, num_samples=8, feature_dim=4, depth=2, bias=True)
  idx = jnp.arange(8)
  variables = nn.unbox(model.init(jax.random.key(0), idx))
  logits, col = model.apply(variables, idx, mutable=["losses"])
  assert logits.shape == (8, 3)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, idx), logits, rtol=1e-6)
  batched = jax.vmap(lambda i: model.apply(variables, i))(idx.reshape(2, 4))
  np.testing.assert_allclose(batched.reshape(8, 3), logits, rtol=1e-6)
  p = variables["params"]
  expected = 1e-3 / 2 * (np.sum(p["W_1"] ** 2) + np.sum(p["W_2"] ** 2) + np.sum(p["H"] ** 2))
  assert float(jax.tree.leaves(col["losses"])[0]) == pytest.approx(float(expected), rel=1e-5)
  labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
  fit = 0.5 * np.sum((np.asarray(logits) - np.eye(3)[np.asarray(labels)]) ** 2) / 8
  assert float(nc.ufm_loss(p, labels, lambda_b=0.0)) == pytest.approx(fit + float(expected), rel=1e-5)
  assert nc.ufm_classifier(p).shape == (3, 4) and nc.ufm_features(p).shape == (8, 4)


def test_sharded_forward_on_8_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  model = nc.DeepLinearUFM(num_classes=4, num_samples=16, feature_dim=8, depth=2)
  idx = jnp.arange(16)
  variables = nn.unbox(model.init(jax.random.key(0), idx))
  expected = model.apply(variables, idx)
  params = jax.device_put(variables, sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), idx),
                                                              mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(params, jax.device_put(idx, sharding.batch_sharding(mesh)))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_metrics_on_planted_features():
  k, d = 4, 6
  etf = np.eye(k) - 1 / k  # centred simplex (rows), padded into d dims
  means = np.concatenate([etf, np.zeros((k, d - k))], axis=1)
  labels = np.repeat(np.arange(k), 5)
  collapsed = nc.nc_metrics(means[labels], labels, means)
  assert collapsed["nc1"] < 1e-20 and collapsed["nc2_etf"] < 1e-10 and collapsed["nc3"] == pytest.approx(1.0)
  noisy = means[labels] + 0.3 * np.random.default_rng(0).normal(size=(20, d))
  assert nc.nc_metrics(noisy, labels)["nc1"] > 1e-2
  ortho = nc.nc_metrics(np.eye(d)[labels] * 2, labels, centered=False)
  assert ortho["nc2_of"] < 1e-12 and ortho["max_mean_cos"] < 1e-12


def test_closed_form_and_float64_without_global_flag():
  w_sq, h_sq = nc.gof_predicted_norms((1000, 1), 1e-3, 1e-3)  # the minority class is below the threshold
  assert w_sq[0] == pytest.approx(np.sqrt(1000) - 1.001) and w_sq[1] == 0.0 and h_sq[1] == 0.0
  assert h_sq[0] == pytest.approx(w_sq[0] / 1000)
  labels = np.repeat(np.arange(3), (6, 3, 2))
  params, _ = nc.train_ufm(labels, 3, feature_dim=4, steps=300, loss="ce")
  assert params["H"].dtype == np.float64
  assert jnp.zeros(1).dtype == jnp.float32  # the x64 context did not leak


@pytest.mark.parametrize("call, message", [
    (lambda: nc.DeepLinearUFM(3, 8).init(jax.random.key(0), jnp.arange(9)), "\\[0, 8\\)"),
    (lambda: nc.DeepLinearUFM(3, 8).init(jax.random.key(0), jnp.ones(4)), "integer"),
    (lambda: nc.DeepLinearUFM(3, 8, depth=0).init(jax.random.key(0), jnp.arange(4)), "depth"),
    (lambda: nc.train_ufm(np.array([0, 3]), 3), "labels"),
    (lambda: nc.train_ufm(np.array([0, 1]), 2, loss="hinge"), "loss"),
    (lambda: nc.nc_metrics(np.ones((4, 2)), np.array([0, 0, 2, 2])), "every class"),
    (lambda: nc.gof_predicted_norms((4,), 1e-3, 1e-3), "class sizes"),
])
def test_bad_inputs_raise(call, message):
  with pytest.raises((ValueError, TypeError), match=message):
    call()
