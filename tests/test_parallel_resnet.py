"""Unit tests of zoo.parallel_resnet: shapes, equal parameter counts, the stacked wide convolution equals the sum of
the branches, to_parallel, jit, vmap, sharding on the 8-device mesh, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import parallel_resnet as pr
from zoo.recipes import sharding

X = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)


def _count(v):
  return sum(x.size for x in jax.tree.leaves(nn.unbox(v["params"])))


def test_shapes_and_equal_parameter_counts():
  deep = pr.ResidualStack(features=4, num_blocks=3, num_classes=10)
  flat = pr.ParallelShallow(features=4, num_blocks=3, num_classes=10)
  vd, vf = deep.init(jax.random.key(0), X), flat.init(jax.random.key(0), X)
  assert deep.apply(vd, X).shape == (4, 10) and flat.apply(vf, X).shape == (4, 10)
  assert _count(vd) == _count(vf) == 9 * 4 + 4 + 3 * (9 * 16 + 4) + 8 * 8 * 4 * 10 + 10
  assert nn.unbox(vf["params"]["branches"]["kernel"]).shape == (3, 3, 4, 12)
  body = pr.ResidualStack(features=4, num_blocks=2)
  assert body.apply(body.init(jax.random.key(0), X), X).shape == (4, 8, 8, 4)


def test_wide_conv_is_the_sum_of_branches_and_to_parallel_keeps_weights():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 5, 3)), jnp.float32)
  deep = pr.ResidualStack(features=3, num_blocks=4, stem=False)
  v = deep.init(jax.random.key(0), x)
  p = nn.unbox(v["params"])
  flat = pr.ParallelShallow(features=3, num_blocks=4, stem=False)
  y = flat.apply({"params": pr.to_parallel(v["params"])}, x)
  conv = lambda q: nn.Conv(3, (3, 3)).apply({"params": q}, x)
  expect = x + sum(nn.relu(conv(p[f"block_{i}"])) for i in range(4))
  np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)
  # The deep stack composes instead: x1 = x + f1(x), x2 = x1 + f2(x1) ...
  z = x
  for i in range(4):
    z = z + nn.relu(nn.Conv(3, (3, 3)).apply({"params": p[f"block_{i}"]}, z))
  np.testing.assert_allclose(deep.apply(v, x), z, rtol=1e-5, atol=1e-5)
  off = pr.ParallelShallow(features=3, num_blocks=4, stem=False, first_order=False)
  np.testing.assert_allclose(off.apply({"params": pr.to_parallel(v["params"])}, x), x)


def test_expansion_gap_orders():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 6, 6, 4)), jnp.float32)
  deep = pr.ResidualStack(features=4, num_blocks=3, stem=False, activation="tanh")
  v = deep.init(jax.random.key(0), x)
  g1 = [float(pr.expansion_gap(deep.clone(branch_scale=e), v, x)) for e in (0.02, 0.04)]
  g0 = [float(pr.expansion_gap(deep.clone(branch_scale=e), v, x, order=0)) for e in (0.02, 0.04)]
  assert 3.5 < g1[1] / g1[0] < 4.5 and 1.8 < g0[1] / g0[0] < 2.2
  with pytest.raises(TypeError, match="ResidualStack"):
    pr.expansion_gap(pr.ParallelShallow(features=4, num_blocks=3, stem=False), v, x)


@pytest.mark.parametrize("cls", [pr.ResidualStack, pr.ParallelShallow])
def test_jit_vmap_sharded(cls):
  model = cls(features=4, num_blocks=2, num_classes=10)
  x = np.random.default_rng(3).normal(size=(8, 8, 8, 1)).astype(np.float32)
  v = model.init(jax.random.key(0), x)
  out = model.apply(v, x)
  np.testing.assert_allclose(jax.jit(model.apply)(v, x), out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.vmap(lambda a: model.apply(v, a))(x[:, None])[:, 0], out, rtol=1e-5, atol=1e-5)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(v), sharding.state_shardings(v, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    y = jax.jit(model.apply)(placed, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(y, out, rtol=1e-4, atol=1e-4)


def test_bad_inputs():
  m = pr.ResidualStack(features=4, num_blocks=2)
  with pytest.raises(ValueError, match="rank 4"):
    m.init(jax.random.key(0), X[..., 0])
  with pytest.raises(TypeError, match="floating"):
    m.init(jax.random.key(0), X.astype(np.int32))
  with pytest.raises(ValueError, match="num_blocks"):
    pr.ParallelShallow(features=4, num_blocks=0).init(jax.random.key(0), X)
  with pytest.raises(ValueError, match="without a stem"):
    pr.ResidualStack(features=4, num_blocks=2, stem=False).init(jax.random.key(0), X)
  with pytest.raises(ValueError, match="empty|at least one"):
    m.init(jax.random.key(0), X[:0])
  with pytest.raises(ValueError, match="block_"):
    pr.to_parallel({"stem": {}})
