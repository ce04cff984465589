"""Unit tests of zoo.mlp (shapes, presets, the shared block, the frozen lift, jit, vmap, sharding, errors), of
zoo.recipes.augment and the augmented procedure, and of the sweep runner (vmapped seeds = single runs, power law)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import mlp
from zoo.recipes import augment
from zoo.recipes import sharding
from zoo.recipes import sweep
from zoo.recipes import tasks
from zoo.recipes.configs import base_config
from zoo.recipes.procedures.augmented import Augmented

X = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)

MODELS = {
    "standard": mlp.StandardMLP(num_classes=10, width=16, depth=2),
    "bottleneck": mlp.BottleneckMLP(num_classes=10, width=16, depth=2),
    "hourglass": mlp.HourglassMLP(out_features=64, width=32, hidden=8, depth=2),
    "conventional": mlp.ConventionalResMLP(out_features=64, width=8, hidden=32, depth=2),
}


def _shapes(name):
  """The model's variables as shapes (``jax.eval_shape``: no compile, no compute)."""
  return jax.eval_shape(MODELS[name].init, jax.random.key(0), X)


@pytest.mark.parametrize("name", MODELS)
def test_shapes_jit_vmap(name):
  model = MODELS[name]

  @jax.jit  # init, the batched forward and the per-example vmapped forward: one compile
  def run(key, x):
    variables = model.init(key, x)
    return model.apply(variables, x), jax.vmap(lambda xi: model.apply(variables, xi))(x[:, None])

  out, vm = run(jax.random.key(0), X)
  assert out.shape == (4, 10 if name in ("standard", "bottleneck") else 64) and out.dtype == jnp.float32
  np.testing.assert_allclose(vm[:, 0], out, rtol=1e-5, atol=1e-5)


def test_param_counts_match_the_architectures():
  d = 64
  # BottleneckMLP: linear_in + blocks (LN 2w, w->4w, 4w->w) + linear_out.
  w, L = 16, 2
  expect = d * w + w + L * (2 * w + w * 4 * w + 4 * w + 4 * w * w + w) + w * 10 + 10
  assert mlp.param_count(_shapes("bottleneck")) == expect
  # StandardMLP: linear_in + depth x (LN, Linear w->w) + linear_out.
  assert mlp.param_count(_shapes("standard")) == d * w + w + L * (2 * w + w * w + w) + 170
  # Hourglass: the lift is not a parameter; blocks (LN 2dz, dz->dh, dh->dz) + readout.
  dz, dh = 32, 8
  v = _shapes("hourglass")
  assert mlp.param_count(v) == L * (2 * dz + dz * dh + dh + dh * dz + dz) + dz * 64 + 64
  assert nn.unbox(v["constants"]["lift"]).shape == (64, 32)


def test_presets():
  assert mlp.PRESETS["B_12-Wi_1024"] == {"depth": 12, "width": 1024, "expansion": 4}
  m = mlp.bottleneck_mlp("B_2-Wi_8-E_2", num_classes=3)
  assert (m.depth, m.width, m.expansion, m.num_classes) == (2, 8, 2, 3)
  with pytest.raises(ValueError, match="B_12-Wi_1024"):
    mlp.bottleneck_mlp("B12-W1024")


def test_one_block_pattern_and_its_equation():
  block = mlp.ResidualMLPBlock(hidden_features=12)
  z = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)
  v = jax.jit(block.init)(jax.random.key(0), z)

  @jax.jit
  def equation(p, z):
    ln = (z - z.mean(-1, keepdims=True)) / jnp.sqrt(z.var(-1, keepdims=True) + 1e-5) * p["norm"]["scale"] \
        + p["norm"]["bias"]
    h = nn.gelu(ln @ p["mlp"]["wi"]["kernel"] + p["mlp"]["wi"]["bias"])
    return z + h @ p["mlp"]["wo"]["kernel"] + p["mlp"]["wo"]["bias"]
  expect = equation(nn.unbox(v["params"]), z)
  np.testing.assert_allclose(jax.jit(block.apply)(v, z), expect, rtol=1e-5, atol=1e-5)
  no_skip = mlp.ResidualMLPBlock(hidden_features=12, residual=False)
  np.testing.assert_allclose(jax.jit(no_skip.apply)(v, z), expect - z, rtol=1e-5, atol=1e-5)
  # The hourglass, bottleneck and conventional blocks are this class.
  for model in ("bottleneck", "hourglass", "conventional"):
    tree = _shapes(model)["params"]["block_0"]
    assert set(tree) == {"norm", "mlp"}


def test_frozen_lift_gets_no_gradient_and_trainable_lift_does():
  model = MODELS["hourglass"]
  v = jax.jit(model.init)(jax.random.key(0), X)
  lift = np.asarray(nn.unbox(v["constants"]["lift"]))
  assert abs(lift.std() * np.sqrt(64) - 1) < 0.1  # N(0, 1/d_in)
  loss = lambda params: jnp.sum(model.apply({**v, "params": params}, X) ** 2)
  assert "lift" not in jax.jit(jax.grad(loss))(v["params"])
  trainable = mlp.HourglassMLP(out_features=64, width=32, hidden=8, depth=2, trainable_lift=True)
  vt = jax.eval_shape(trainable.init, jax.random.key(0), X)
  assert "constants" not in vt and nn.unbox(vt["params"]["lift"]).shape == (64, 32)


def _init_and_apply(model, x):
  """(boxed variables, unsharded forward), one compile."""
  def run(key, x):
    variables = model.init(key, x)
    return variables, model.apply(nn.unbox(variables), x)
  return jax.jit(run)(jax.random.key(0), x)


def test_sharded_forward_on_8_devices():
  model = mlp.BottleneckMLP(num_classes=10, width=16, depth=1)
  x = np.random.default_rng(2).normal(size=(8, 8, 8, 1)).astype(np.float32)
  variables, ref = _init_and_apply(model, x)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(placed, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
  hg = mlp.HourglassMLP(out_features=64, width=16, hidden=4, depth=1)
  v, ref = _init_and_apply(hg, x)
  placed = jax.device_put(nn.unbox(v), sharding.state_shardings(v, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(hg.apply)(placed, jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_bad_inputs():
  with pytest.raises(TypeError, match="floating"):
    jax.eval_shape(MODELS["bottleneck"].init, jax.random.key(0), X.astype(np.int32))
  with pytest.raises(ValueError, match="rank"):
    jax.eval_shape(MODELS["standard"].init, jax.random.key(0), X[0, 0, :, 0])
  with pytest.raises(ValueError, match="empty"):
    jax.eval_shape(MODELS["standard"].init, jax.random.key(0), X[:0])
  with pytest.raises(ValueError, match="width"):
    jax.eval_shape(mlp.BottleneckMLP(width=0).init, jax.random.key(0), X)
  with pytest.raises(ValueError, match="below the stream width"):
    jax.eval_shape(mlp.HourglassMLP(out_features=4, width=8, hidden=8).init, jax.random.key(0), X)
  with pytest.raises(ValueError, match=">= `width`"):
    jax.eval_shape(mlp.ConventionalResMLP(out_features=4, width=16, hidden=8).init, jax.random.key(0), X)


# ------------------------------------------------------------------------------------------------ augmentation


def test_shift_is_a_translation_with_zero_fill_and_deterministic():
  img = jnp.arange(2 * 5 * 5, dtype=jnp.float32).reshape(2, 5, 5, 1) + 1
  shift = jax.jit(augment.random_shift, static_argnums=2)
  out = shift(jax.random.key(3), img, 1)
  np.testing.assert_array_equal(out, shift(jax.random.key(3), img, 1))
  for b in range(2):
    o, i = np.asarray(out[b, :, :, 0]), np.asarray(img[b, :, :, 0])
    matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               if np.array_equal(o, np.pad(i, 1)[1 - dy:6 - dy, 1 - dx:6 - dx])]
    assert len(matches) == 1
  np.testing.assert_array_equal(shift(jax.random.key(3), img, 0), img)
  flipped = jax.jit(augment.random_flip)(jax.random.key(0), img)
  for b in range(2):
    assert np.array_equal(flipped[b], img[b]) or np.array_equal(flipped[b], img[b, :, ::-1])
  with pytest.raises(ValueError, match="max_shift"):
    augment.random_shift(jax.random.key(0), img, -1)
  with pytest.raises(ValueError, match="rank 4"):
    augment.random_shift(jax.random.key(0), img[..., 0], 1)


def test_mixup_mixes_with_one_lambda_and_a_permutation():
  x = jnp.asarray(np.random.default_rng(4).normal(size=(6, 3)), jnp.float32)
  mixed, perm, lam = jax.jit(augment.mixup, static_argnums=2)(jax.random.key(5), x, 0.8)
  assert sorted(np.asarray(perm).tolist()) == list(range(6)) and 0 <= float(lam) <= 1
  np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[perm], rtol=1e-6)
  with pytest.raises(ValueError, match="alpha"):
    augment.mixup(jax.random.key(0), x, 0.0)


def test_augmented_procedure_is_deterministic_by_step_and_ablation_is_backprop():
  model = mlp.BottleneckMLP(num_classes=10, width=8, depth=1)
  task = tasks.Classification(label_smoothing=0.3)
  batch = {"image": jnp.asarray(X), "label": jnp.arange(4)}
  proc = Augmented(model=model, task=task, optimizer=optax.lamb(1e-3))
  # init and one augmented batch in one compile
  state, a = jax.jit(lambda k, b: (nn.unbox(proc.init(k, b)), proc.augment_batch(jax.random.key(1), b)[0]))(
      jax.random.key(0), batch)
  step = jax.jit(proc.step)
  s1, m1 = step(state, batch)
  s2, m2 = step(state, batch)
  np.testing.assert_array_equal(jax.tree.leaves(s1.params)[0], jax.tree.leaves(s2.params)[0])
  assert 0 <= float(m1["mixup_lambda"]) <= 1 and np.isfinite(float(m1["loss"]))
  assert not np.allclose(a["image"], batch["image"])
  off = Augmented(model=model, task=task, optimizer=optax.lamb(1e-3), augment=False)
  from zoo.recipes.procedures.backprop import Backprop
  ref = Backprop(model=model, task=task, optimizer=optax.lamb(1e-3))
  off_params, ref_params = jax.jit(lambda st, b: (off.step(st, b)[0].params, ref.step(st, b)[0].params))(state, batch)
  np.testing.assert_allclose(jax.tree.leaves(off_params)[0], jax.tree.leaves(ref_params)[0], rtol=1e-6)
  with pytest.raises(ValueError, match="shift"):
    Augmented(model=model, task=task, optimizer=optax.lamb(1e-3), shift=-1)


# ------------------------------------------------------------------------------------------------------ sweep


def _config(width, seed, steps=3):
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "mlp.BottleneckMLP", "width": width, "depth": 1})
  c.data.name = "digits"
  c.data.batch_size = 32
  c.steps, c.seed = steps, seed
  return c


def test_sweep_vmapped_seeds_equal_single_runs_and_power_law():
  recs = sweep.run_sweep([_config(8, 0), _config(8, 1)], names=["a", "a"])
  alone = sweep.run_sweep([_config(8, 1)], names=["a"])
  np.testing.assert_allclose(recs[1]["metrics"]["accuracy"], alone[0]["metrics"]["accuracy"], atol=2e-3)
  np.testing.assert_allclose(recs[1]["train_loss"], alone[0]["train_loss"], rtol=1e-3)
  assert recs[0]["metrics"]["accuracy"] != recs[1]["metrics"]["accuracy"]
  shapes = jax.eval_shape(mlp.BottleneckMLP(width=8, depth=1).init, jax.random.key(0), X)
  assert recs[0]["params"] == mlp.param_count(shapes)
  x, y = sweep.summarize(recs, "params", "error")
  assert len(x) == 1 and abs(y[0] - np.mean([1 - r["metrics"]["accuracy"] for r in recs])) < 1e-9
  fit = sweep.power_law([1, 10, 100], [3.0, 0.3, 0.03])
  assert abs(fit["slope"] + 1) < 1e-9 and abs(fit["prefactor"] - 3) < 1e-9 and fit["r2"] > 0.999
  with pytest.raises(ValueError, match="positive"):
    sweep.power_law([1, 0], [1, 1])
  with pytest.raises(ValueError, match="identical"):
    sweep.run_sweep([_config(8, 0), _config(8, 0)])


def _noise_keys(state):
  found = [x.rng_key for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.AddNoiseState))
           if isinstance(x, optax.AddNoiseState)]
  assert len(found) == 1
  return jax.random.key_data(found[0])


def test_sweep_members_draw_their_own_gradient_noise():
  """Each vmapped member's optax.add_noise key is its own run's (its seed), not one key shared by the members."""
  configs = [_config(8, seed, steps=1) for seed in (0, 1)]
  for c in configs:
    c.optimizer.grad_noise = 0.01
  recs = sweep.run_sweep(configs, keep_states=True)
  for rec, noise_seed in zip(recs, (0, 1)):
    key, _ = jax.random.split(jax.random.key(noise_seed))  # add_noise splits its key once per update
    np.testing.assert_array_equal(_noise_keys(rec["state"]), jax.random.key_data(key))
