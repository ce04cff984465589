"""zoo.operators (CNN, U-Net, FNO baselines): shapes in 1D/2D, jit, a sharded forward, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import operators
from zoo.recipes import sharding

MODELS = {
    "cnn": lambda: operators.CNN(features=4, num_layers=2, out_features=2),
    "unet": lambda: operators.UNet(features=4, levels=2, out_features=2),
    "fno": lambda: operators.FNO(features=4, modes=3, num_layers=2, projection=8, out_features=2),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (2, 16, 3)])
def test_shapes_and_jit(name, shape):
  model = MODELS[name]()
  x = jax.random.normal(jax.random.key(0), shape)
  variables = jax.jit(model.init)(jax.random.key(1), x)
  y = jax.jit(model.apply)(variables, x)
  assert y.shape == shape[:-1] + (2,) and bool(jnp.all(jnp.isfinite(y)))


def test_fno_is_global_and_sharded_forward():
  model = MODELS["fno"]()
  x = jax.random.normal(jax.random.key(0), (8, 16, 16, 1))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  g = jax.jit(jax.grad(lambda x: model.apply(variables, x)[0, 8, 8].sum()))(x)
  assert abs(float(g[0, 0, 0, 0])) > 0  # spectral layers couple every node
  mesh = sharding.make_mesh()
  with jax.set_mesh(mesh):
    y = jax.jit(model.apply)(variables, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(y, jax.jit(model.apply)(variables, x), rtol=1e-4, atol=1e-5)


def test_clear_errors():
  with pytest.raises(ValueError, match="divisible by 2\\^\\(levels-1\\) = 4"):
    jax.eval_shape(operators.UNet(levels=3).init, jax.random.key(0), jnp.zeros((1, 10, 10, 1)))
  with pytest.raises(ValueError, match=r"`x` must have shape \[batch, length, channels\]"):
    jax.eval_shape(operators.FNO().init, jax.random.key(0), jnp.zeros((4, 4)))
