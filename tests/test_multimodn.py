"""Unit tests of zoo.multimodn and its task: skipping leaves the state unchanged (no imputation), per-step outputs,
the loss's penalty, P-Fusion, jit, vmap, sharding on the 8-device mesh, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import multimodn as mm
from zoo.recipes import sharding
from zoo.recipes.procedures.multimodn import MultiModNTask

X = np.random.default_rng(0).normal(size=(8, 4, 16)).astype(np.float32)
X[1, 2] = np.nan
X[3, 0] = np.nan
X[3, 3, 5] = np.nan  # one NaN feature marks the modality missing
BATCH = {"x": X, "label": np.arange(8) % 10, "parity": np.arange(8) % 2}


def test_shapes_and_skipping_keeps_the_state():
  model = mm.MultiModN(state_dim=6, hidden=8)
  v = model.init(jax.random.key(0), X)
  out = model.apply(v, X)
  assert [lg.shape for lg in out["logits"]] == [(8, 5, 10), (8, 5, 2)] and out["states"].shape == (8, 5, 6)
  s = np.asarray(out["states"])
  np.testing.assert_array_equal(s[1, 3], s[1, 2])  # modality 2 missing: step 3 state == step 2 state
  np.testing.assert_array_equal(s[3, 1], s[3, 0])
  np.testing.assert_array_equal(s[3, 4], s[3, 3])
  assert not np.array_equal(s[0, 3], s[0, 2]) and np.all(np.isfinite(s))
  # The missing values never matter: any filler gives the same outputs.
  x2 = X.copy()
  x2[1, 2] = 123.0
  x2[1, 2, 0] = np.nan
  np.testing.assert_allclose(model.apply(v, x2)["states"], out["states"], rtol=1e-6)
  ablation = mm.MultiModN(state_dim=6, hidden=8, skip_missing=False)
  sa = np.asarray(ablation.apply(v, X)["states"])
  assert not np.array_equal(sa[1, 3], sa[1, 2])
  # s_0 is the trainable state, the same for every example.
  np.testing.assert_array_equal(s[:, 0], np.broadcast_to(nn.unbox(v["params"]["init_state"]["s0"]), (8, 6)))


def test_loss_penalty_and_metrics():
  model = mm.MultiModN(state_dim=6, hidden=8)
  v = model.init(jax.random.key(0), X)
  out = model.apply(v, X)
  base = MultiModNTask(state_change_penalty=0.0).loss(out, BATCH)
  full = MultiModNTask(state_change_penalty=1.0).loss(out, BATCH)
  change = np.mean(np.sum(np.diff(np.asarray(out["states"]), axis=1) ** 2, -1), -1)
  np.testing.assert_allclose(full - base, 0.01 * change, rtol=1e-4, atol=1e-6)
  m = MultiModNTask().metrics(out, BATCH)
  assert {"step0_accuracy", "step4_accuracy", "accuracy_parity", "accuracy"} <= set(m)
  with pytest.raises(ValueError, match="target_keys"):
    MultiModNTask(target_keys=("label",)).loss(out, BATCH)


@pytest.mark.parametrize("cls", [mm.MultiModN, mm.PFusion])
def test_jit_vmap_sharded(cls):
  model = cls()
  v = model.init(jax.random.key(0), X)
  out = model.apply(v, X)
  np.testing.assert_allclose(jax.jit(model.apply)(v, X)["logits"][0], out["logits"][0], rtol=1e-5, atol=1e-5)
  vm = jax.vmap(lambda a: model.apply(v, a)["logits"][0])(X[:, None])
  np.testing.assert_allclose(vm[:, 0], out["logits"][0], rtol=1e-5, atol=1e-5)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(v), sharding.state_shardings(v, mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    y = jax.jit(model.apply)(placed, jax.device_put(X, NamedSharding(mesh, P(("data", "fsdp")))))
  np.testing.assert_allclose(y["logits"][1], out["logits"][1], rtol=1e-4, atol=1e-4)
  if cls is mm.PFusion:
    assert out["logits"][0].shape == (8, 1, 10)


def test_bad_inputs():
  m = mm.MultiModN()
  with pytest.raises(ValueError, match="rank 3"):
    m.init(jax.random.key(0), X[:, 0])
  with pytest.raises(TypeError, match="floating"):
    m.init(jax.random.key(0), X.astype(np.int32))
  with pytest.raises(ValueError, match="empty"):
    m.init(jax.random.key(0), X[:0])
  with pytest.raises(ValueError, match="task_classes"):
    mm.MultiModN(task_classes=()).init(jax.random.key(0), X)
