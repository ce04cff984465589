"""Unit tests of zoo.maxim and the restoration losses: the block/grid partition against explicit indexing, the
spatial gating unit against its formula and its identity-gate init, exact receptive fields of the block and grid
gMLPs, the cross-gating block, SAM, the multi-stage MAXIM (shapes, jit, vmap, the 8-device mesh), Charbonnier /
FFT-L1 / PSNR against numpy, the Restoration task, and clear errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import maxim
from zoo.recipes import sharding
from zoo.recipes.procedures import restoration
from zoo.recipes.tasks import LabelError

# A micro MAXIM for cheap compiles: 8x8 images, one downsampling, b = g = 2.
MICRO = dict(features=4, depth=1, num_stages=2, num_groups=1, num_bottleneck_blocks=1, block_size_hr=2,
             block_size_lr=2, grid_size_hr=2, grid_size_lr=2, num_outputs=1)


# Parameter draws only need to be valid, not threefry: an RngBitGenerator key makes the compiled inits far cheaper.
_key = lambda seed=0: jax.random.key(seed, impl="unsafe_rbg")


def _x(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.fixture(scope="module")
def micro():
  """One compile: ``init_with_output`` of the micro MAXIM on a batch sharded over the 8-device mesh."""
  model = maxim.MAXIM(**MICRO)
  x = _x((8, 8, 8, 1))
  mesh = sharding.make_mesh({"data": 8})
  xs = jax.device_put(x, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out, variables = jax.jit(model.init_with_output)(_key(), xs)
  return model, variables, x, out


# ---------------------------------------------------------------------------------------------------- partition


def test_block_images_layout_and_inverse():
  x = _x((2, 6, 8, 3))
  b = maxim.block_images(x, (3, 2))  # grid 2 x 4 of 3 x 2 patches
  assert b.shape == (2, 8, 6, 3)
  for gh, gw, fh, fw in [(0, 0, 0, 0), (1, 3, 2, 1), (0, 2, 1, 0)]:
    np.testing.assert_array_equal(b[:, gh * 4 + gw, fh * 2 + fw], x[:, gh * 3 + fh, gw * 2 + fw])
  np.testing.assert_array_equal(maxim.unblock_images(b, (2, 4), (3, 2)), x)


def test_spatial_gating_unit_formula_and_identity_init():
  x = _x((2, 3, 5, 8))  # [n, G, P, 2d]
  for axis in (-2, -3):
    sgu = maxim.SpatialGatingUnit(axis=axis)
    variables = jax.jit(sgu.init)(_key(1), x)
    p = nn.unbox(variables)["params"]
    w, bias = np.asarray(p["spatial"]["kernel"]), np.asarray(p["spatial"]["bias"])
    n = x.shape[axis]
    assert w.shape == (n, n)
    np.testing.assert_array_equal(bias, np.ones(n))  # the gate starts at 1
    assert 0.005 < w.std() < 0.05  # near-zero spatial weights (normal, std 2e-2)
    u, v = np.split(np.asarray(x), 2, axis=-1)
    mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
    vn = (v - mu) / np.sqrt(var + 1e-6)
    mix = np.einsum("ngpc,pq->ngqc", vn, w) if axis == -2 else np.einsum("ngpc,gq->nqpc", vn, w)
    shape = [1, 1, 1, 1]
    shape[axis] = n
    want = u * (mix + bias.reshape(shape))
    out = jax.jit(sgu.apply)(variables, x)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out, u, atol=0.3)  # ~identity gate at init


def _support(module, x, pixel):
  """Input pixels (h, w) with a non-zero gradient of ``y[0, pixel].sum()``."""
  variables = jax.jit(module.init)(_key(), x)
  g = jax.jit(jax.grad(lambda z: module.apply(variables, z)[0][pixel].sum()))(x)
  return set(map(tuple, np.argwhere(np.abs(np.asarray(g[0])).sum(-1) > 0)))


def test_block_and_grid_gmlp_receptive_fields_are_exact():
  x = _x((1, 8, 8, 4))
  block = _support(maxim.BlockGmlp(block_size=4), x, (5, 6))
  assert block == {(i, j) for i in range(4, 8) for j in range(4, 8)}  # its 4 x 4 block
  grid = _support(maxim.GridGmlp(grid_size=4), x, (5, 6))  # 4 x 4 grid of 2 x 2 patches: offset (1, 0)
  assert grid == {(i, j) for i in (1, 3, 5, 7) for j in (0, 2, 4, 6)}


def test_multi_axis_block_flag_keeps_parameter_count_and_drops_global_mixing():
  x = _x((1, 8, 8, 4))
  count = lambda m: sum(p.size for p in jax.tree.leaves(jax.eval_shape(m.init, jax.random.key(0), x)))
  full = maxim.MultiAxisGmlpBlock(block_size=4, grid_size=4)
  ablation = maxim.MultiAxisGmlpBlock(block_size=4, grid_size=4, use_grid=False)
  assert count(full) == count(ablation)
  # (6, 6) has (2, 2)'s offset in the 2 x 2 grid patches but lies outside its 4 x 4 block
  assert (6, 6) in _support(full, x, (2, 2)) and (6, 6) not in _support(ablation, x, (2, 2))


def test_multi_axis_block_jit_vmap_and_dropout():
  block = maxim.MultiAxisGmlpBlock(block_size=2, grid_size=2, dropout_rate=0.5)
  x = _x((3, 4, 4, 6))
  variables = jax.jit(block.init)(_key(), x)
  apply = jax.jit(block.apply, static_argnames="train")
  y = apply(variables, x)
  assert y.shape == x.shape
  np.testing.assert_allclose(y[0], block.apply(variables, x[:1])[0], rtol=1e-5, atol=1e-5)  # eager, one example
  vm = jax.jit(jax.vmap(lambda z: block.apply(variables, z[None])[0]))(x)
  np.testing.assert_allclose(vm, y, rtol=1e-5, atol=1e-5)
  y1 = apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(y1, y)


def test_cross_gating_block_sam_rcab_shapes():
  """Shapes only: traced with ``jax.eval_shape`` (the shape errors are raised at trace time)."""
  k = jax.random.key(0)
  shape = lambda m, *a: jax.eval_shape(lambda *z: m.apply(m.init(k, *z), *z), *a)
  x, y = _x((2, 8, 8, 6)), _x((2, 4, 4, 10), 1)
  cgb = maxim.CrossGatingBlock(features=5, block_size=2, grid_size=2)
  a, b = shape(cgb, x, y)
  assert a.shape == b.shape == (2, 8, 8, 5)
  variables = jax.eval_shape(cgb.init, k, x, y)
  with pytest.raises(ValueError, match="`y` must have shape"):
    jax.eval_shape(cgb.apply, variables, x, _x((2, 8, 8, 10)))
  same = maxim.CrossGatingBlock(features=5, block_size=2, grid_size=2, upsample_y=False)
  a2, _ = shape(same, x, x)
  assert a2.shape == (2, 8, 8, 5)
  image = _x((2, 8, 8, 1), 2)
  feats, restored = shape(maxim.SAM(), x, image)
  assert feats.shape == x.shape and restored.shape == image.shape
  assert shape(maxim.RCAB(), x).shape == x.shape

# -------------------------------------------------------------------------------------------------------- MAXIM


def test_maxim_shapes_and_sharded_forward_on_8_devices(micro):
  _, variables, x, out = micro
  assert isinstance(out, tuple) and len(out) == 2 and all(o.shape == x.shape for o in out)
  assert all(np.isfinite(np.asarray(o)).all() for o in out)
  assert len(out[-1].sharding.device_set) == 8
  # stage 2 fuses stage 1 through CGBs (the SAM features, and encoder + decoder features in every level)
  names = set(nn.unbox(variables)["params"])
  assert {"s1_fuse_sam", "s0_sam", "s1_skip_cgb_0"} <= names
  assert "csff" in nn.unbox(variables)["params"]["s1_enc_0"] and "csff" not in nn.unbox(variables)["params"]["s0_enc_0"]
  model = micro[0]
  vm = jax.eval_shape(jax.vmap(lambda z: model.apply(variables, z[None])[-1][0]), x)  # vmap traces
  assert vm.shape == x.shape


def test_presets():
  assert {"S-1", "S-2", "S-3", "M-1", "M-2", "M-3", "tiny"} <= set(maxim.PRESETS)
  assert maxim.PRESETS["S-3"]["features"] == 32 and maxim.PRESETS["M-2"]["features"] == 64
  assert maxim.PRESETS["tiny"]["block_size_hr"] == (4, 4) and maxim.PRESETS["tiny"]["grid_size_hr"] == (4, 4)
  # the multi-stage model is multi-output: one image per stage
  assert maxim.MAXIM(**maxim.PRESETS["S-3"]).num_stages == 3


def test_bad_inputs_are_clear_errors(micro):
  model, variables, _, _ = micro
  with pytest.raises(ValueError, match="not divisible"):
    model.apply(variables, jnp.zeros((1, 6, 6, 1)))
  with pytest.raises(ValueError, match="channels=1"):
    model.apply(variables, jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(TypeError, match="floating"):
    model.apply(variables, jnp.zeros((1, 8, 8, 1), jnp.int32))
  with pytest.raises(ValueError, match="rank 4"):
    model.apply(variables, jnp.zeros((8, 8, 1)))
  with pytest.raises(ValueError, match="grid_size 3x3"):
    maxim.GridGmlp(grid_size=3).init(jax.random.key(0), jnp.zeros((1, 8, 8, 2)))
  with pytest.raises(ValueError, match="block_size 3x3"):
    maxim.MultiAxisGmlpBlock(block_size=3, grid_size=2).init(jax.random.key(0), jnp.zeros((1, 8, 8, 2)))
  with pytest.raises(ValueError, match="empty batch"):
    maxim.BlockGmlp(block_size=2).init(jax.random.key(0), jnp.zeros((0, 8, 8, 2)))


# ------------------------------------------------------------------------------------------------------- losses


def test_losses_against_numpy():
  rng = np.random.default_rng(3)
  p, t = rng.normal(size=(2, 4, 6, 1)).astype(np.float32), rng.normal(size=(2, 4, 6, 1)).astype(np.float32)
  np.testing.assert_allclose(restoration.charbonnier(p, t), np.sqrt((p - t) ** 2 + 1e-6).mean((1, 2, 3)),
                             rtol=1e-5)
  d = np.fft.fft2(p - t, axes=(1, 2))
  np.testing.assert_allclose(restoration.fft_l1(p, t), (np.abs(d.real) + np.abs(d.imag)).mean((1, 2, 3)), rtol=1e-4)
  np.testing.assert_allclose(restoration.psnr(p, t), 10 * np.log10(1 / ((p - t) ** 2).mean((1, 2, 3))), rtol=1e-5)
  assert float(restoration.charbonnier(t, t)[0]) == pytest.approx(1e-3)


def test_restoration_task_sums_stages_and_reports_psnr():
  rng = np.random.default_rng(4)
  y = rng.uniform(size=(3, 4, 4, 1)).astype(np.float32)
  batch = {"x": y + 0.1, "y": y}
  task = restoration.Restoration()
  r1, r2 = y + 0.2, y - 0.05
  one = lambda r: restoration.charbonnier(r, y) + 0.1 * restoration.fft_l1(r, y)
  np.testing.assert_allclose(task.loss((r1, r2), batch), one(r1) + one(r2), rtol=1e-5)
  np.testing.assert_allclose(task.loss(r2, batch), one(r2), rtol=1e-5)
  m = task.metrics((r1, r2), batch)
  np.testing.assert_allclose(m["psnr"], restoration.psnr(np.clip(r2, 0, 1), y), rtol=1e-5)
  np.testing.assert_allclose(m["psnr_input"], 20.0, rtol=1e-4)
  with pytest.raises(LabelError, match="'y' must have the model output's shape"):
    task.loss(r1, {"x": y, "y": y[:, :2]})
  with pytest.raises(KeyError, match="no key 'y'"):
    task.loss(r1, {"x": y})
