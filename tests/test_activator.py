"""Unit tests of zoo.activator: shapes, logical axes, jit, vmap, sharding, shared norms, no token mixing, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import activator
from zoo.recipes import sharding


def _image(b=8):
  return jax.random.uniform(jax.random.key(0), (b, 8, 8, 1))


def test_classifier_shapes_axes_jit_and_vmap():
  model = activator.ActivatorClassifier(hidden=16, mlp_dim=32, num_layers=2)
  image = _image()
  variables = jax.jit(model.init)(jax.random.key(0), image)
  logits = jax.jit(model.apply)(variables, image)
  assert logits.shape == (8, 10) and logits.dtype == jnp.float32
  for leaf in jax.tree.leaves(variables["params"], is_leaf=lambda v: isinstance(v, nn.LogicallyPartitioned)):
    assert isinstance(leaf, nn.LogicallyPartitioned) and len(leaf.names) == leaf.value.ndim
  np.testing.assert_allclose(model.apply(variables, image[:2]), logits[:2], rtol=1e-5, atol=1e-5)  # eager == jit
  stacked = jax.jit(jax.vmap(lambda x: model.apply(variables, x)))(image.reshape(2, 4, 8, 8, 1))
  np.testing.assert_allclose(stacked.reshape(8, 10), logits, rtol=1e-5, atol=1e-5)
  # Reference structure: one LayerNorm per block (used twice) and one inside each gating unit (used twice).
  block = nn.unbox(variables)["params"]["block_0"]
  assert set(block) == {"norm", "agu", "ffn"}
  assert set(block["agu"]) == {"norm", "proj_1", "proj_2", "proj_3"}
  assert block["agu"]["norm"]["scale"].shape == (32,)


def test_sharded_forward_on_8_devices():
  model = activator.ActivatorClassifier(hidden=16, mlp_dim=32, num_layers=1, position_embedding=True)
  image = _image()
  variables = jax.jit(model.init)(jax.random.key(0), image)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(placed, jax.device_put(image, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(out, jax.jit(model.apply)(variables, image), rtol=1e-4, atol=1e-5)


def test_block_does_not_mix_tokens_and_variants():
  x = jax.random.normal(jax.random.key(1), (2, 5, 16))
  for block in (activator.ActivatorBlock(32), activator.ActivatorBlock(32, ffn=False, activation="silu")):
    variables = jax.jit(block.init)(jax.random.key(0), x)
    both = jax.jit(block.apply)(variables, jnp.concatenate([x, x.at[:, 2].add(3.0)]))
    changed = jnp.abs(both[:2] - both[2:]).max(-1)  # [2, 5]
    assert float(changed[:, 2].min()) > 1e-3
    np.testing.assert_allclose(np.delete(np.asarray(changed), 2, axis=1), 0.0, atol=1e-6)  # other tokens untouched
  assert "ffn" not in activator.ActivatorBlock(32, ffn=False).init(jax.random.key(0), x)["params"]


def test_dropout_only_in_training():
  model = activator.ActivatorClassifier(hidden=16, mlp_dim=32, num_layers=1, dropout_rate=0.5)
  image = _image(2)
  variables = model.init(jax.random.key(0), image)
  a = model.apply(variables, image, train=True, rngs={"dropout": jax.random.key(1)})
  b = model.apply(variables, image, train=True, rngs={"dropout": jax.random.key(2)})
  assert float(jnp.abs(a - b).max()) > 1e-4
  np.testing.assert_array_equal(model.apply(variables, image), model.apply(variables, image))


@pytest.mark.parametrize("make, x, match", [
    (lambda: activator.ActivatorClassifier(), jnp.ones((2, 8, 8)), r"image.*rank 4"),
    (lambda: activator.ActivatorClassifier(patch_size=3), jnp.ones((2, 8, 8, 1)), r"multiples of patch_size=3"),
    (lambda: activator.ActivatorClassifier(), jnp.ones((2, 8, 8, 1), jnp.int32), r"floating"),
    (lambda: activator.ActivatorBlock(8), jnp.ones((2, 4)), r"x.*rank 3"),
    (lambda: activator.ActivatorGatingUnit(8, activation="nope"), jnp.ones((2, 4)), r"unknown activation"),
])
def test_bad_input_raises_a_clear_error(make, x, match):
  with pytest.raises((ValueError, TypeError), match=match):
    make().init(jax.random.key(0), x)
