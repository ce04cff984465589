"""zoo.grokking: shapes, jit, vmap, sharded forward, data, Fourier concentration on planted weights, bad inputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import grokking
from zoo.recipes import sharding


def test_shapes_jit_vmap_and_data():
  data = grokking.modular_addition_data(7, 0.5, seed=1)
  assert data["x_train"].shape[1] == 14 and len(data["c_train"]) + len(data["c_test"]) == 49
  np.testing.assert_array_equal(data["y_train"].argmax(1), data["c_train"])
  model = grokking.GroupArithmeticNet(modulus=7, hidden=16)
  x = jnp.asarray(data["x_train"][:8])
  v = nn.unbox(model.init(jax.random.key(0), x))
  out = model.apply(v, x)
  assert out.shape == (8, 7)
  np.testing.assert_allclose(jax.jit(model.apply)(v, x), out, rtol=1e-5)
  np.testing.assert_allclose(jax.vmap(lambda a: model.apply(v, a))(x.reshape(2, 4, 14)).reshape(8, 7), out,
                             rtol=1e-5)


def test_sharded_forward_on_8_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  model = grokking.GroupArithmeticNet(modulus=5, hidden=16)
  x = jnp.asarray(grokking.modular_addition_data(5, 0.5)["x_train"][:8])
  v = nn.unbox(model.init(jax.random.key(0), x))
  expected = model.apply(v, x)
  params = jax.device_put(v, sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), x), mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(params, jax.device_put(x, sharding.batch_sharding(mesh)))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_fourier_concentration_planted():
  m = 11
  t = np.arange(m)
  pure = np.stack([np.cos(2 * np.pi * 3 * t / m + 0.4), np.sin(2 * np.pi * 5 * t / m)])
  mixed = np.cos(2 * np.pi * t / m) + np.cos(2 * np.pi * 2 * t / m)
  share, active = grokking.fourier_concentration(np.concatenate([pure, mixed[None], 1e-3 * pure[:1]]))
  np.testing.assert_allclose(share[:2], 1.0, atol=1e-12)
  assert share[2] == pytest.approx(0.5)
  assert active.tolist() == [True, True, True, False]
  assert 0 < grokking.critical_train_fraction(23) < 1


def test_train_small():
  data = grokking.modular_addition_data(5, 0.6)
  _, metrics = grokking.train_group_net(data, hidden=32, steps=200, learning_rate=1e-2)
  assert metrics["train_accuracy"] == 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: grokking.modular_addition_data(1, 0.5), "modulus"),
    (lambda: grokking.modular_addition_data(5, 1.0), "train_fraction"),
    (lambda: grokking.GroupArithmeticNet(modulus=5).init(jax.random.key(0), jnp.ones((2, 9))), "inputs=10"),
    (lambda: grokking.GroupArithmeticNet(modulus=5, activation="tanh").init(jax.random.key(0), jnp.ones((2, 10))),
     "activation"),
    (lambda: grokking.fourier_concentration(np.ones((2, 2))), "M >= 3"),
    (lambda: grokking.train_group_net(grokking.modular_addition_data(5, 0.5), steps=0), "steps"),
])
def test_bad_inputs_raise(call, message):
  with pytest.raises((ValueError, TypeError), match=message):
    call()
