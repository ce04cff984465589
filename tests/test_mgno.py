"""zoo.mgno: shapes, parameters, dtypes, jit/vmap/sharding, boundary handling, errors (the global
receptive field is checked in tests/papers/test_mgno.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import mgno
from zoo.recipes import sharding

TINY = dict(features=4, num_layers=1, levels=3, pre_smooth=1, pointwise=False, impl="xla")


def _x(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


@pytest.fixture(scope="module")
def tiny_2d():
  model = mgno.MgNO(**TINY)
  x = _x((2, 16, 16, 1))
  return model, jax.jit(model.init)(jax.random.key(0), x), x


def test_shapes_1d_and_2d(tiny_2d):
  model, variables, x = tiny_2d
  assert jax.eval_shape(model.apply, variables, x).shape == (2, 16, 16, 1)
  m1 = mgno.MgNO(features=4, num_layers=1, out_features=3, levels=3, pre_smooth=1, impl="xla")
  x1 = _x((3, 24, 2))
  v1 = jax.jit(m1.init)(jax.random.key(0), x1)
  y1 = jax.jit(m1.apply)(v1, x1)
  assert y1.shape == (3, 24, 3) and bool(jnp.all(jnp.isfinite(y1)))


def test_parameters_are_v_cycles_without_lifting_or_projection(tiny_2d):
  _, variables, _ = tiny_2d
  params = nn.unbox(variables["params"])
  assert set(params) == {"layer_0", "output"}  # every layer is an MgNO layer: no lifting, no projection
  layer = params["layer_0"]
  assert set(layer) == {"W", "B"}
  assert layer["B"].shape == (16, 16, 4)  # the bias is a function on the grid
  w = layer["W"]
  assert set(w) == {"A_0", "S_0_0", "R_0", "P_0", "A_1", "S_1_0", "R_1", "P_1", "A_2", "S_2_0"}
  assert w["A_0"].shape == (3, 3, 4, 1) and w["S_0_0"].shape == (3, 3, 1, 4)  # u -> f and f -> u channels
  assert w["R_0"].shape == (3, 3, 1, 1) and w["P_0"].shape == (3, 3, 4, 4)
  out = params["output"]["W"]
  assert out["S_0_0"].shape == (3, 3, 4, 1)
  # Logical axis names for sharding.
  boxed = variables["params"]["layer_0"]["W"]["S_0_0"]
  assert boxed.names == (None, None, "conv_in", "conv_out")


def test_ablation_and_per_step_operator_flags():
  x = _x((2, 16, 16, 1))
  names = lambda **kw: set(nn.unbox(jax.eval_shape(mgno.VCycleConv(4, levels=3, impl="xla", **kw).init,
                                                   jax.random.key(0), x))["params"])
  # No coarse-grid correction: every smoothing step on the finest grid, no R, no P, no coarser A or S.
  assert names(pre_smooth=(1, 1, 2), coarse_correction=False) == {"A_0", "S_0_0", "S_0_1", "S_0_2", "S_0_3"}
  # A new A for each smoothing step after the first (the authors' code); the level's residual keeps A_l.
  shared = names(pre_smooth=(1, 2, 2))
  assert names(pre_smooth=(1, 2, 2), share_operator=False) == shared | {"A_1_1", "A_2_1"}
  # With one step per level the two are the same operator.
  a, b = mgno.VCycleConv(4, levels=3, impl="xla"), mgno.VCycleConv(4, levels=3, impl="xla", share_operator=False)
  v = jax.jit(a.init)(jax.random.key(0), x)
  np.testing.assert_array_equal(jax.jit(a.apply)(v, x), jax.jit(b.apply)(v, x))
  # Without the coarse-grid correction the operator is local: a far input node does not reach the centre.
  local = mgno.VCycleConv(4, levels=3, pre_smooth=(1, 1, 2), coarse_correction=False, impl="xla")
  vl = jax.jit(local.init)(jax.random.key(0), x)
  g = jax.jit(jax.grad(lambda x: local.apply(vl, x)[0, 8, 8].sum()))(x)
  assert float(g[0, 0, 0, 0]) == 0.0 and float(jnp.abs(g[0, 6:11, 6:11]).sum()) > 0


def test_presets():
  x = jnp.zeros((1, 64, 64, 1))
  variables = jax.eval_shape(mgno.PRESETS["darcy"](impl="xla").init, jax.random.key(0), x)
  n = sum(np.prod(v.shape) for v in jax.tree.leaves(variables))
  assert 4e5 < n < 1e6
  model = mgno.PRESETS["darcy"]()
  assert (model.features, model.num_layers, model.levels, model.boundary) == (24, 5, 5, "dirichlet")
  assert tuple(model.pre_smooth) == (1, 1, 1, 2, 2) and model == mgno.MgNO()


def test_jit_equals_no_jit_and_bfloat16(tiny_2d):
  model, variables, x = tiny_2d
  eager = model.apply(variables, x)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, x), eager, rtol=1e-5, atol=1e-6)
  m16 = mgno.MgNO(**{**TINY, "dtype": jnp.bfloat16})
  y16 = jax.jit(m16.apply)(variables, x)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y16, np.float32), eager, atol=0.05 * float(jnp.abs(eager).max()))


def test_auto_implementation_matches_reference(tiny_2d):
  model, variables, x = tiny_2d
  auto = mgno.MgNO(**{**TINY, "impl": "auto"})
  np.testing.assert_allclose(jax.jit(auto.apply)(variables, x), model.apply(variables, x), rtol=1e-5, atol=1e-6)


def test_vmap(tiny_2d):
  model, variables, x = tiny_2d
  per_example = jax.jit(jax.vmap(lambda xi: model.apply(variables, xi[None])[0]))(x)
  np.testing.assert_allclose(per_example, jax.jit(model.apply)(variables, x), rtol=1e-5, atol=1e-6)


def test_sharded_forward_on_8_devices(tiny_2d):
  model, variables, _ = tiny_2d
  mesh = sharding.make_mesh()
  assert mesh.size == 8
  x = _x((8, 16, 16, 1))
  xs = jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"))))
  with jax.set_mesh(mesh):
    y = jax.jit(model.apply)(variables, xs)
  np.testing.assert_allclose(y, jax.jit(model.apply)(variables, x), rtol=1e-5, atol=1e-6)


def test_periodic_boundary_is_translation_equivariant():
  model = mgno.MgNO(**{**TINY, "boundary": "periodic", "bias": "constant"})
  x = _x((1, 16, 16, 1))
  v = jax.jit(model.init)(jax.random.key(0), x)
  shift = lambda a: jnp.roll(a, (4, 8), axis=(1, 2))  # multiples of 4: the coarsest grid's spacing
  apply = jax.jit(model.apply)
  np.testing.assert_allclose(apply(v, shift(x)), shift(apply(v, x)), rtol=1e-4, atol=1e-6)
  dirichlet = jax.jit(mgno.MgNO(**{**TINY, "bias": "constant"}).apply)
  assert not np.allclose(dirichlet(v, shift(x)), shift(dirichlet(v, x)), atol=1e-4)


def test_neumann_grid_and_bias_on_another_grid():
  model = mgno.MgNO(**{**TINY, "boundary": "neumann"})
  x = _x((2, 17, 17, 1))
  v = jax.jit(model.init)(jax.random.key(0), x)
  assert jax.jit(model.apply)(v, x).shape == (2, 17, 17, 1)
  y = jax.jit(model.apply)(v, _x((1, 33, 33, 1)))  # B is resampled: a function, not a table
  assert y.shape == (1, 33, 33, 1) and bool(jnp.all(jnp.isfinite(y)))


def test_post_smoothing_and_pointwise_parameters():
  model = mgno.MgNO(features=4, num_layers=1, levels=2, pre_smooth=(1, 2), post_smooth=1, pointwise=True, impl="xla")
  v = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), _x((1, 8, 8, 1)))["params"])
  w = v["layer_0"]["W"]
  assert {"S_1_0", "S_1_1", "S_post_0_0"} <= set(w)
  assert v["layer_0"]["W0"].shape == (1, 4)


def test_clear_errors():
  model = mgno.MgNO(**TINY)
  init = lambda m, x: jax.eval_shape(m.init, jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"`x` must have shape \[batch, length, channels\]"):
    init(model, jnp.zeros((2, 8, 8, 8, 1)))
  with pytest.raises(TypeError, match="floating dtype"):
    init(model, jnp.zeros((2, 8, 8, 1), jnp.int32))
  with pytest.raises(ValueError, match="cannot be coarsened 4 times"):
    init(mgno.MgNO(features=4, levels=5, pre_smooth=1, impl="xla"), jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match="pre_smooth"):
    init(mgno.MgNO(features=4, levels=2, pre_smooth=(1, 0), impl="xla"), jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match="`activation`"):
    init(mgno.MgNO(features=4, levels=2, pre_smooth=1, activation="swish", impl="xla"), jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match="periodic grid must have an even size"):
    init(mgno.MgNO(features=4, levels=2, pre_smooth=1, boundary="periodic", impl="xla"), jnp.zeros((1, 9, 9, 1)))
