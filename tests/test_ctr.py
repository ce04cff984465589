"""Unit tests of zoo.ctr: embeddings and their sharding, the mini-batch-aware L2 against its formula, Dice, DIN's
activation unit, FinalMLP's gates and bilinear fusion against explicit einsums, jit/vmap, the 8-device mesh, the
metrics, the Click task and clear errors."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from zoo import ctr
from zoo.recipes import sharding
from zoo.recipes.procedures.ctr import Click
from zoo.recipes.tasks import LabelError

V = (5, 7, 4)  # three fields, 16 rows


def _din_inputs(seed=0, b=6, l=5, num_items=12, num_cates=4, num_users=3):
  rng = np.random.default_rng(seed)
  mask = (np.arange(l)[None] < rng.integers(1, l + 1, size=(b, 1))).astype(np.int32)
  return {"user": rng.integers(0, num_users, b).astype(np.int32),
          "item": rng.integers(0, num_items, b).astype(np.int32),
          "cate": rng.integers(0, num_cates, b).astype(np.int32),
          "hist_item": rng.integers(0, num_items, (b, l)).astype(np.int32),
          "hist_cate": rng.integers(0, num_cates, (b, l)).astype(np.int32), "hist_mask": mask}


DIN_KW = dict(num_items=12, num_cates=4, num_users=3, embed_dim=4, head=(8, 4), attention_hidden=(6,))


# ------------------------------------------------------------------------------------------------ embeddings


def test_feature_embedding_offsets_shapes_and_logical_axes():
  emb = ctr.FeatureEmbedding(V, features=3)
  ids = np.array([[0, 0, 0], [4, 6, 3]], np.int32)
  variables = emb.init(jax.random.key(0), ids)
  assert nn.get_partition_spec(variables)["params"]["table"] == jax.sharding.PartitionSpec("embed", None)
  table = np.asarray(nn.unbox(variables)["params"]["table"])
  assert table.shape == (16, 3)  # 5 + 7 + 4 = 16 rows, a multiple of 8
  out = emb.apply(variables, ids)
  assert out.shape == (2, 3, 3)
  np.testing.assert_array_equal(out[1], table[[4, 5 + 6, 12 + 3]])
  np.testing.assert_array_equal(emb.apply(variables, ids[None])[0], out)  # leading axes pass through


def test_feature_embedding_bad_inputs():
  emb = ctr.FeatureEmbedding(V, features=3)
  ids = np.zeros((2, 3), np.int32)
  variables = emb.init(jax.random.key(0), ids)
  with pytest.raises(ValueError, match="out-of-range"):
    emb.apply(variables, np.array([[0, 7, 0]], np.int32))  # field 1 has 7 ids: 0..6
  with pytest.raises(ValueError, match="out-of-range"):
    emb.apply(variables, np.array([[-1, 0, 0]], np.int32))
  with pytest.raises(TypeError, match="integer"):
    emb.apply(variables, ids.astype(np.float32))
  with pytest.raises(ValueError, match="fields=3"):
    emb.apply(variables, np.zeros((2, 2), np.int32))
  with pytest.raises(ValueError, match="empty"):
    emb.apply(variables, np.zeros((0, 3), np.int32))


def test_mba_l2_penalty_equals_formula_and_touches_only_batch_rows():
  rng = np.random.default_rng(0)
  table = rng.normal(size=(10, 3)).astype(np.float32)
  counts = rng.integers(1, 9, size=10).astype(np.float32)
  ids = np.array([[1, 1, 4], [4, 7, 2]])
  mask = np.array([[1, 1, 1], [1, 1, 0]], bool)  # row 2 is padding
  used = {1, 4, 7}
  want = sum((table[j] ** 2).sum() / counts[j] for j in used)
  np.testing.assert_allclose(ctr.mba_l2_penalty(table, ids, counts, mask), want, rtol=1e-6)
  np.testing.assert_allclose(ctr.mba_l2_penalty(table, ids), sum((table[j] ** 2).sum() for j in {1, 4, 7, 2}),
                             rtol=1e-6)
  grad = np.asarray(jax.grad(ctr.mba_l2_penalty)(table, ids, counts, mask))
  touched = set(np.flatnonzero(np.abs(grad).sum(-1)))
  assert touched == used
  np.testing.assert_allclose(grad[7], 2 * table[7] / counts[7], rtol=1e-6)


# ------------------------------------------------------------------------------------------------------ DIN


def test_dice_batch_statistics_in_training_and_running_averages_at_inference():
  s = np.random.default_rng(1).normal(2.0, 3.0, size=(64, 5)).astype(np.float32)
  dice = ctr.Dice()
  variables = nn.unbox(dice.init(jax.random.key(0), s))
  assert float(jnp.abs(variables["params"]["alpha"]).sum()) == 0.0  # alpha starts at 0
  out, state = dice.apply(variables, s, train=True, mutable=["batch_stats"])
  p = 1 / (1 + np.exp(-(s - s.mean(0)) / np.sqrt(s.var(0) + 1e-8)))
  np.testing.assert_allclose(out, p * s, rtol=1e-4, atol=1e-5)  # alpha = 0: f(s) = p * s
  mean = np.asarray(state["batch_stats"]["bn"]["mean"])
  np.testing.assert_allclose(mean, 0.01 * s.mean(0), rtol=1e-4)  # momentum 0.99 from a zero start
  params = {"alpha": jnp.full((5,), 0.25)}
  inf = dice.apply({"params": params, **state}, s, train=False)
  var = np.asarray(state["batch_stats"]["bn"]["var"])
  p = 1 / (1 + np.exp(-(s - mean) / np.sqrt(var + 1e-8)))
  np.testing.assert_allclose(inf, p * s + (1 - p) * 0.25 * s, rtol=1e-4, atol=1e-5)


def test_local_activation_unit_masks_keeps_intensity_and_ablation_ignores_target():
  rng = np.random.default_rng(2)
  target, hist = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 6, 4)).astype(np.float32)
  mask = np.array([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], np.int32)
  unit = ctr.LocalActivationUnit(hidden=(8, 4), activation="relu")
  variables = nn.unbox(unit.init(jax.random.key(0), target, hist, mask))
  pooled, w = unit.apply(variables, target, hist, mask)
  assert pooled.shape == (3, 4) and w.shape == (3, 6)
  assert float(jnp.abs(w[mask == 0]).max()) == 0.0
  np.testing.assert_allclose(pooled, np.einsum("bl,ble->be", np.asarray(w), hist), rtol=1e-5, atol=1e-6)
  assert not np.allclose(np.asarray(w).sum(-1), 1.0)  # no softmax: the weights do not sum to 1
  _, w_other = unit.apply(variables, target[::-1].copy(), hist, mask)
  assert not np.allclose(w, w_other)  # the weights depend on the candidate
  ablated = ctr.LocalActivationUnit(hidden=(8, 4), activation="relu", local_activation=False)
  av = ablated.init(jax.random.key(0), target, hist, mask)
  np.testing.assert_allclose(ablated.apply(av, target, hist, mask)[1], ablated.apply(av, -target, hist, mask)[1])
  _, ws = ctr.LocalActivationUnit(hidden=(8,), softmax=True).init_with_output(jax.random.key(0), target, hist, mask)[0]
  np.testing.assert_allclose(np.asarray(ws).sum(-1), 1.0, rtol=1e-5)


def test_din_shapes_jit_vmap_l2_and_sum_pooling_base():
  x = _din_inputs()
  model = ctr.DIN(**DIN_KW, l2=0.1)
  variables = model.init(jax.random.key(0), x)
  assert set(variables) == {"params", "batch_stats"}
  out = model.apply(variables, x)
  assert out.shape == (6,) and out.dtype == jnp.float32
  np.testing.assert_allclose(jax.jit(model.apply)(variables, x), out, rtol=1e-5, atol=1e-6)
  stacked = jax.tree.map(lambda a: np.stack([a, a[::-1]]), x)
  vm = jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(variables, stacked)
  np.testing.assert_allclose(vm[0], out, rtol=1e-5, atol=1e-6)
  _, cols = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats", "losses"]))(variables, x)
  assert float(cols["losses"]["mba_l2"][0]) > 0
  w = jax.jit(functools.partial(model.apply, method=ctr.DIN.attention_weights))(variables, x)
  assert w.shape == (6, 5) and float(jnp.abs(w[x["hist_mask"] == 0]).max()) == 0.0
  base = ctr.EmbMLPBase(**DIN_KW)
  bv = base.init(jax.random.key(0), x)
  assert "unit" not in bv["params"]
  np.testing.assert_array_equal(base.apply(bv, x, method=ctr.DIN.attention_weights), x["hist_mask"])


def test_din_bad_inputs():
  x = _din_inputs()
  model = ctr.DIN(**DIN_KW)
  variables = model.init(jax.random.key(0), x)
  with pytest.raises(KeyError, match="hist_mask"):
    model.apply(variables, {k: v for k, v in x.items() if k != "hist_mask"})
  with pytest.raises(ValueError, match="out-of-range"):
    model.apply(variables, {**x, "item": x["item"] + 12})
  with pytest.raises(TypeError, match="integer"):
    model.apply(variables, {**x, "cate": x["cate"].astype(np.float32)})
  with pytest.raises(ValueError, match="batch=6"):
    model.apply(variables, {**x, "item": x["item"][:3]})
  with pytest.raises(TypeError, match="dict"):
    model.apply(variables, x["item"])


# ----------------------------------------------------------------------------------------------- FinalMLP


def test_bilinear_fusion_equals_explicit_per_head_einsum():
  rng = np.random.default_rng(3)
  o1, o2 = rng.normal(size=(5, 12)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
  fusion = ctr.InteractionAggregation(heads=4)
  variables = nn.unbox(fusion.init(jax.random.key(0), o1, o2))
  p = jax.tree.map(np.asarray, variables["params"])
  want = o1 @ p["w1"]["kernel"][:, 0] + p["w1"]["bias"][0] + o2 @ p["w2"]["kernel"][:, 0] + p["w2"]["bias"][0]
  for j in range(4):
    want = want + np.einsum("bi,ij,bj->b", o1[:, 3 * j:3 * j + 3], p["w3"][j], o2[:, 2 * j:2 * j + 2])
  np.testing.assert_allclose(fusion.apply(variables, o1, o2), want, rtol=1e-5, atol=1e-5)
  assert p["w3"].shape == (4, 3, 2)
  np.testing.assert_allclose(p["w3"].std(), np.sqrt(2 / (4 * 3 * 2 + 1)), rtol=0.5)  # Xavier-normal scale
  linear = ctr.InteractionAggregation(heads=4, bilinear=False)
  lv = linear.init(jax.random.key(0), o1, o2)
  assert "w3" not in lv["params"]
  with pytest.raises(ValueError, match="divide"):
    ctr.InteractionAggregation(heads=5).init(jax.random.key(0), o1, o2)


def test_finalmlp_gates_start_at_identity_and_shapes_jit_vmap():
  ids = np.random.default_rng(4).integers(0, 4, size=(6, 3)).astype(np.int32)
  model = ctr.FinalMLP(V, embed_dim=4, mlp1=(8, 8), mlp2=(8, 4), gate_hidden=(8,), heads=2)
  variables = model.init(jax.random.key(0), ids)
  g1, g2 = jax.jit(functools.partial(model.apply, method=ctr.FinalMLP.gates))(variables, ids)
  assert g1.shape == (6, 3, 4)
  np.testing.assert_allclose(g1, 1.0)
  np.testing.assert_allclose(g2, 1.0)
  out = model.apply(variables, ids)
  assert out.shape == (6,)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, ids), out, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.jit(jax.vmap(model.apply, in_axes=(None, 0)))(variables, ids[None])[0], out,
                             rtol=1e-5, atol=1e-6)
  ctx = ctr.FinalMLP(V, embed_dim=4, mlp1=(8,), mlp2=(8,), context1=(0,), context2=(1, 2))
  cv = jax.eval_shape(ctx.init, jax.random.key(0), ids)
  assert cv["params"]["feature_selection"]["gate2_dense_0"]["kernel"].value.shape == (8, 64)
  dual = ctr.DualMLP(V, embed_dim=4, mlp1=(8,), mlp2=(8,))
  dv = jax.eval_shape(dual.init, jax.random.key(0), ids)
  assert "feature_selection" not in dv["params"] and "w3" not in dv["params"]["fusion"]
  with pytest.raises(ValueError, match="context field 3"):
    ctr.FinalMLP(V, context1=(3,)).init(jax.random.key(0), ids)
  with pytest.raises(ValueError, match="out-of-range"):
    model.apply(variables, ids + 6)


def test_sharded_forward_on_8_devices_shards_the_table_rows_over_fsdp():
  vocab = (40, 24)  # 64 rows
  model = ctr.FinalMLP(vocab, embed_dim=4, mlp1=(16,), mlp2=(16,), gate_hidden=(8,))
  ids = np.random.default_rng(5).integers(0, 24, size=(16, 2)).astype(np.int32)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  abstract = jax.eval_shape(model.init, jax.random.key(0), ids)
  shardings = sharding.state_shardings(abstract, mesh)
  assert shardings["params"]["embedding"]["table"].spec == jax.sharding.PartitionSpec("fsdp", None)
  variables = jax.jit(model.init, out_shardings=shardings)(jax.random.key(0), ids)
  x = jax.device_put(ids, sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(variables, x)
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, jax.jit(model.apply)(jax.device_get(variables), ids), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------------- metrics, task


def test_metrics_against_sklearn_and_by_hand():
  y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
  s = np.array([0.1, 0.9, 0.3, 0.4, 0.8, 0.7, 0.2, 0.6])
  assert ctr.auc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
  logits = np.log(s / (1 - s))
  assert ctr.logloss(y, logits) == pytest.approx(skm.log_loss(y, s))
  groups = np.array([0, 0, 0, 0, 1, 1, 1, 2])  # user 2 has one impression: no AUC
  # user 0: pairs (1 vs 0): 0.9>0.1, 0.9>0.4, 0.3>0.1, 0.3<0.4 -> 3/4; user 1: 0.8 > 0.7, 0.2 -> 1
  assert ctr.gauc(y, s, groups) == pytest.approx((4 * 0.75 + 3 * 1.0) / 7)
  assert ctr.rela_impr(0.75, 0.7) == pytest.approx(25.0)
  with pytest.raises(ValueError, match="0/1"):
    ctr.auc(y * 2, s)
  with pytest.raises(ValueError, match="no examples"):
    ctr.auc([], [])
  with pytest.raises(ValueError, match="exceed 0.5"):
    ctr.rela_impr(0.7, 0.5)


def test_click_task_is_binary_cross_entropy_and_checks_labels():
  task = Click(input_key="ids")
  batch = {"ids": np.zeros((3, 2), np.int32), "click": np.array([1, 0, 1]), "logit": np.zeros(3)}
  logits = jnp.array([2.0, -1.0, -0.5])
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  np.testing.assert_allclose(task.loss(logits, batch), -np.log([p[0], 1 - p[1], p[2]]), rtol=1e-5)
  np.testing.assert_array_equal(task.metrics(logits, batch)["accuracy"], [1, 1, 0])
  assert set(Click().inputs(batch)) == {"ids"}  # the target and the planted logit are not inputs
  with pytest.raises(LabelError, match="0/1"):
    task.check_data({"click": np.array([0, 2])})
  with pytest.raises(LabelError, match="shape"):
    task.loss(logits[:2], batch)
