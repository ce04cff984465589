"""Unit tests of zoo.swin and zoo.swinchex: windows, the relative position bias index, the shifted-window mask (against
an independent construction and through the block's Jacobian), patch merging order, presets' parameter counts,
jit, vmap, the sharded forward on 8 devices, errors; the chexray task, AUROC and the data loaders."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo import swin, swinchex
from zoo.recipes import sharding
from zoo.recipes.datasets import chexray as chexray_data
from zoo.recipes.procedures import chexray
from zoo.recipes.tasks import LabelError

SMALL = dict(patch_size=2, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 4), drop_path_rate=0.0)
# Compiling, not running, is this file's cost (the SwinCheX init alone compiles for 5 s): XLA's backend optimization
# level 0 halves it; the comparisons are between programs compiled the same way or against eager/numpy values, and
# the numbers move by float rounding only.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _jit(fn, **kw):
  return jax.jit(fn, compiler_options=FAST_COMPILE, **kw)


def _img(shape=(4, 32, 32, 1), seed=0):
  # numpy draws: an eager jax.random.normal compiles its sampler anew for every shape (about 0.3 s each)
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.fixture(scope="module")
def chex():
  model = swinchex.SwinCheX(num_labels=3, head_hidden=(8, 4), **SMALL)
  x = _img((4, 16, 16, 1))
  return model, x, _jit(model.init)(jax.random.key(1), x)


# ----------------------------------------------------------------------------------------------- windows, index


def test_window_partition_is_row_major_windows_and_reverse_inverts_it():
  x = np.arange(2 * 8 * 12 * 3, dtype=np.float32).reshape(2, 8, 12, 3)
  w = np.asarray(swin.window_partition(jnp.asarray(x), 4))
  assert w.shape == (2 * 2 * 3, 16, 3)
  for b in range(2):
    for wy in range(2):
      for wx in range(3):
        expected = x[b, 4 * wy:4 * wy + 4, 4 * wx:4 * wx + 4].reshape(16, 3)
        np.testing.assert_array_equal(w[b * 6 + wy * 3 + wx], expected)
  np.testing.assert_array_equal(np.asarray(swin.window_reverse(jnp.asarray(w), 4, 8, 12)), x)


def test_relative_position_index_depends_only_on_the_offset_and_covers_the_table():
  m = 3
  idx = swin.relative_position_index(m)
  pos = [(y, x) for y in range(m) for x in range(m)]  # row-major tokens
  seen = {}
  for i, (yi, xi) in enumerate(pos):
    for j, (yj, xj) in enumerate(pos):
      seen.setdefault((yi - yj, xi - xj), set()).add(int(idx[i, j]))
  assert all(len(v) == 1 for v in seen.values())  # one table row per offset
  rows = {next(iter(v)) for v in seen.values()}
  assert len(rows) == (2 * m - 1) ** 2 and rows == set(range((2 * m - 1) ** 2))  # distinct offsets, distinct rows
  assert idx[0, 0] == (m - 1) * (2 * m - 1) + (m - 1)  # zero offset: the table's centre
  assert idx[0, m * m - 1] == 0  # offset (-(m-1), -(m-1)): the first row (row-major in dy, then dx)


def _expected_shift_mask(h, w, m, s):
  """Independent: after roll(-s, -s) the token at (r, c) came from ((r + s) % h, (c + s) % w); two tokens of one
  window may attend iff their offset in the original map equals their offset in the rolled map (no wrap between)."""
  nh, nw = h // m, w // m
  out = np.zeros((nh * nw, m * m, m * m), bool)
  for wy in range(nh):
    for wx in range(nw):
      toks = [(wy * m + a, wx * m + b) for a in range(m) for b in range(m)]
      for i, (ri, ci) in enumerate(toks):
        for j, (rj, cj) in enumerate(toks):
          oi, oj = ((ri + s) % h, (ci + s) % w), ((rj + s) % h, (cj + s) % w)
          out[wy * nw + wx, i, j] = (oi[0] - oj[0] == ri - rj) and (oi[1] - oj[1] == ci - cj)
  return out


@pytest.mark.parametrize("h,w,m,s", [(8, 8, 4, 2), (12, 8, 4, 2), (9, 6, 3, 1)])
def test_shifted_window_mask_matches_the_no_wrap_rule(h, w, m, s):
  mask = swin.shifted_window_mask(h, w, m, s)
  np.testing.assert_array_equal(mask, _expected_shift_mask(h, w, m, s))
  assert mask[0].all() and not mask[-1].all()  # interior windows are unmasked; the corner window is split in 4


def _dependence(block, x, variables):
  """``[H, W, H, W]``: ``[r, c]`` is |d out[r, c] / d x| summed over channels, which input tokens output token
  (r, c) reads; one compiled Jacobian for every output token (a jitted jacrev per token compiled once each)."""
  jac = _jit(jax.jacrev(lambda x: block.apply(variables, x)[0].sum(-1)))(x)  # [H, W, 1, H, W, C]
  return np.abs(np.asarray(jac[:, :, 0])).sum(-1)


def test_sw_msa_block_reads_no_token_across_the_wrapped_border():
  h = w = 8
  m, s = 4, 2
  x = _img((1, h, w, 8))
  expected = _expected_shift_mask(h, w, m, s)
  deps = {}
  for shift in (s, 0):
    block = swin.SwinBlock(num_heads=2, window_size=m, shift_size=shift)
    deps[shift] = _dependence(block, x, _jit(block.init)(jax.random.key(0), x))
    for token in [(7, 7), (5, 0), (1, 6), (3, 3)]:  # original coordinates
      dep = deps[shift][token] > 1e-7
      want = np.zeros((h, w), bool)
      if shift:  # the token's place in the rolled map, its window there, then back to original coordinates
        r, c = (token[0] - s) % h, (token[1] - s) % w
        win, i = (r // m) * (w // m) + c // m, (r % m) * m + c % m
        for j in np.flatnonzero(expected[win, i]):
          rr, cc = (r // m) * m + j // m, (c // m) * m + j % m
          want[(rr + s) % h, (cc + s) % w] = True
      else:
        want[token[0] // m * m:token[0] // m * m + m, token[1] // m * m:token[1] // m * m + m] = True
      np.testing.assert_array_equal(dep, want, err_msg=f"shift {shift}, token {token}")
  # the bottom-right corner token (7, 7) in SW-MSA reads only the 2x2 corner it was next to... and never (0, 0)
  dep = deps[s][7, 7]
  assert dep[0, 0] == 0 and dep[6, 6] > 0 and dep[7, 0] == 0


def test_shift_is_switched_off_when_the_map_is_one_window():
  x = _img((2, 4, 4, 8))
  shifted = swin.SwinBlock(num_heads=2, window_size=4, shift_size=2)
  plain = swin.SwinBlock(num_heads=2, window_size=4, shift_size=0)
  variables = _jit(shifted.init)(jax.random.key(0), x)  # eager init would dispatch (compile) op by op
  np.testing.assert_allclose(_jit(shifted.apply)(variables, x), _jit(plain.apply)(variables, x), rtol=1e-6,
                             atol=1e-6)
  # and a map smaller than the window attends over the whole map with the window shrunk to it
  small = jax.ShapeDtypeStruct((2, 2, 2, 8), jnp.float32)
  assert jax.eval_shape(shifted.apply, jax.eval_shape(shifted.init, jax.random.key(0), small), small).shape \
      == small.shape


def test_patch_merging_concatenation_order():
  x = _img((2, 4, 6, 3))
  merge = swin.PatchMerging()
  variables = _jit(merge.init)(jax.random.key(0), x)
  kernel = np.asarray(variables["params"]["reduction"]["kernel"].unbox())
  assert kernel.shape == (12, 6) and "bias" not in variables["params"]["reduction"]
  xn = np.asarray(x)
  vec = np.zeros((2, 2, 3, 12), np.float32)
  for i in range(2):
    for j in range(3):
      vec[:, i, j] = np.concatenate([xn[:, 2 * i, 2 * j], xn[:, 2 * i + 1, 2 * j], xn[:, 2 * i, 2 * j + 1],
                                     xn[:, 2 * i + 1, 2 * j + 1]], -1)
  normed = (vec - vec.mean(-1, keepdims=True)) / np.sqrt(vec.var(-1, keepdims=True) + 1e-5)
  np.testing.assert_allclose(_jit(merge.apply)(variables, x), normed @ kernel, rtol=1e-4, atol=1e-5)


# Parameter counts of the ImageNet-1k models (224^2, 1000 classes) as timm reports them for the official weights.
@pytest.mark.parametrize("preset,millions", [("tiny", 28.29), ("base", 87.77)])
def test_preset_parameter_counts_match_the_official_models(preset, millions):
  model = swin.swin(preset, num_classes=1000)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(nn.unbox(shapes)))
  assert abs(count / 1e6 - millions) < 0.01, count


# ------------------------------------------------------------------------------------------- models: jit, vmap


def test_swin_shapes_features_and_window_attention_through_the_one_function(monkeypatch):
  model = swin.swin("test", num_classes=7, embed_dim=16)
  x = _img((3, 32, 32, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only: the values are never read
  assert jax.eval_shape(model.apply, variables, x).shape == (3, 7)
  assert jax.eval_shape(lambda v, x: model.apply(v, x, method="features"), variables, x).shape == (3, 32)
  calls = []
  from zoo.kernels import attention as attention_lib
  real = attention_lib.attention
  monkeypatch.setattr(attention_lib, "attention", lambda *a, **k: calls.append(k) or real(*a, **k))
  jax.eval_shape(model.apply, variables, x)  # the calls happen at trace time
  assert len(calls) == 4 and all(c["bias"].shape == (1, h, 16, 16) for c, h in zip(calls, (2, 2, 4, 4)))
  # 16x16 then 8x8 maps of 4x4 windows: blocks 1 and 3 are SW-MSA, their mask repeated over the 3 images
  assert calls[0]["mask"] is None and calls[2]["mask"] is None
  assert calls[1]["mask"].shape == (3 * 16, 1, 16, 16) and calls[3]["mask"].shape == (3 * 4, 1, 16, 16)


def test_swinchex_jit_vmap_and_independent_heads(chex):
  model, x, variables = chex
  out = _jit(model.apply)(variables, x)
  assert out.shape == (4, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(model.apply(variables, x), out, rtol=1e-5, atol=1e-5)
  vm = _jit(jax.vmap(lambda a: model.apply(variables, a)))(x.reshape(2, 2, 16, 16, 1))
  np.testing.assert_allclose(vm.reshape(4, 3), out, rtol=1e-5, atol=1e-5)
  heads = variables["params"]["heads"]
  assert [heads[f"kernel_{i}"].unbox().shape for i in range(3)] == [(3, 32, 8), (3, 8, 4), (3, 4, 1)]
  # label 0's logit does not depend on label 1's head
  grads = _jit(jax.grad(lambda p: model.apply({"params": p}, x)[:, 0].sum()))(variables["params"])
  for i in range(3):
    g = np.asarray(nn.unbox(grads["heads"][f"kernel_{i}"]))
    assert np.abs(g[0]).sum() > 0 and np.abs(g[1:]).sum() == 0
  linear = swinchex.SwinCheX(num_labels=3, linear_head=True, **SMALL)
  lv = jax.eval_shape(linear.init, jax.random.key(0), x)
  assert set(lv["params"]["heads"]) == {"kernel_0", "bias_0"} and lv["params"]["heads"]["kernel_0"].value.shape \
      == (3, 32, 1)


def test_sharded_forward_on_8_devices(chex):
  assert jax.device_count() == 8
  model, x, variables = chex
  x = _img((8, 16, 16, 1))
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  placed = jax.device_put(nn.unbox(variables), sharding.state_shardings(variables, mesh))
  assert any(len(a.sharding.device_set) > 1 and not a.sharding.is_fully_replicated for a in jax.tree.leaves(placed))
  xs = jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"))))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = _jit(model.apply)(placed, xs)
  np.testing.assert_allclose(out, _jit(model.apply)(variables, x), rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_named_errors(chex):
  model, x, variables = chex
  with pytest.raises(ValueError, match="multiples of patch_size"):
    model.apply(variables, _img((2, 30, 30, 1)))
  with pytest.raises(ValueError, match="window_size=4"):
    swinchex.SwinCheX(**SMALL).init(jax.random.key(0), _img((1, 40, 40, 1)))  # stage 2 map 10x10
  with pytest.raises(ValueError, match="image"):
    model.apply(variables, _img((32, 32, 1)))
  with pytest.raises(TypeError, match="floating"):
    model.apply(variables, jnp.zeros((2, 32, 32, 1), jnp.int32))
  with pytest.raises(ValueError, match="empty batch"):
    model.apply(variables, jnp.zeros((0, 32, 32, 1)))
  with pytest.raises(ValueError, match="same length"):
    swin.SwinTransformer(depths=(2, 2), num_heads=(2,)).init(jax.random.key(0), _img((1, 32, 32, 1)))
  with pytest.raises(ValueError, match="tokens=16"):
    swin.WindowAttention(2, 4).init(jax.random.key(0), jnp.zeros((2, 9, 8)))
  with pytest.raises(ValueError, match="multiple of num_heads"):
    swin.WindowAttention(3, 2).init(jax.random.key(0), jnp.zeros((2, 4, 8)))
  with pytest.raises(ValueError, match="even height"):
    swin.PatchMerging().init(jax.random.key(0), jnp.zeros((1, 3, 4, 2)))
  with pytest.raises(ValueError, match="unknown preset"):
    swin.swin("huge")
  with pytest.raises(ValueError, match="drop_path"):
    swin.SwinBlock(2, 4, drop_path=1.5).apply({"params": {}}, jnp.zeros((1, 4, 4, 8)), train=True)


# ------------------------------------------------------------------------------------------------ task, AUROC


def test_summed_multilabel_loss_is_the_sum_of_per_label_bce():
  logits = jnp.asarray([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
  labels = np.asarray([[1, 0, 1], [0, 1, 1]], np.int32)
  task = chexray.SummedMultilabel()
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  expected = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).sum(-1)
  np.testing.assert_allclose(task.loss(logits, {"label": labels}), expected, rtol=1e-5)
  with pytest.raises(LabelError, match="shape"):
    task.loss(logits, {"label": labels[:, :2]})
  with pytest.raises(LabelError, match="0/1"):
    task.check_data({"label": labels * 2})


def test_mean_auroc():
  y = np.asarray([[1, 0], [0, 1], [1, 1], [0, 0]])
  mean, per = chexray.mean_auroc(y, np.asarray([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2], [0.1, 0.4]]))
  np.testing.assert_allclose(per, [1.0, 0.5])  # label 1: positives 0.3, 0.2 vs negatives 0.1, 0.4 -> 2 of 4 pairs
  assert mean == pytest.approx(0.75)
  mean, per = chexray.mean_auroc(np.asarray([[1, 0], [0, 0]]), np.asarray([[0.9, 0.0], [0.1, 0.5]]))
  assert mean == 1.0 and np.isnan(per[1])
  with pytest.raises(ValueError, match="both"):
    chexray.mean_auroc(y, np.zeros((4, 3)))


# ---------------------------------------------------------------------------------------------------- datasets


def test_planted_shapes_are_deterministic_and_labelled():
  a = chexray_data.planted_shapes(num_train=64, num_test=8, seed=3).splits
  b = chexray_data.planted_shapes(num_train=64, num_test=8, seed=3).splits
  np.testing.assert_array_equal(a["train"]["image"], b["train"]["image"])
  img, lab = a["train"]["image"], a["train"]["label"]
  assert img.shape == (64, 32, 32, 1) and lab.shape == (64, 5) and set(np.unique(lab)) <= {0, 1}
  bright = (img > 0.55).sum((1, 2, 3))  # noise (std 0.1) almost never passes 0.55; any shape does
  assert (bright[lab.sum(1) == 0] <= 2).all() and (bright[lab.sum(1) > 0] >= 8).all()
  with pytest.raises(ValueError, match="p_present"):
    chexray_data.planted_shapes(p_present=1.5)


def test_chestxray14_error_names_the_path_and_a_local_copy_loads_patient_wise(tmp_path, monkeypatch):
  monkeypatch.delenv(chexray_data.ENV_VAR, raising=False)
  with pytest.raises(chexray_data.ChestXray14NotFound, match=chexray_data.ENV_VAR):
    chexray_data.load_chestxray14()
  with pytest.raises(FileNotFoundError, match="Data_Entry_2017.csv"):
    chexray_data.load_chestxray14(str(tmp_path))
  from PIL import Image
  (tmp_path / "images").mkdir()
  rows = ["Image Index,Finding Labels,Follow-up #,Patient ID"]
  findings = ["No Finding", "Effusion|Mass", "Hernia", "Atelectasis", "Cardiomegaly|Effusion"]
  for i in range(10):
    name = f"{i:08d}_000.png"
    Image.fromarray(np.full((20, 20), 25 * i, np.uint8)).save(tmp_path / "images" / name)
    rows.append(f"{name},{findings[i % 5]},0,{i // 2}")
  (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
  monkeypatch.setenv(chexray_data.ENV_VAR, str(tmp_path))
  out = chexray_data.load_chestxray14(image_size=8, fractions=(0.6, 0.2, 0.2))
  assert sum(len(s["label"]) for s in out.values()) == 10
  patients = [set(s["patient"].tolist()) for s in out.values()]
  assert all(not (p & q) for i, p in enumerate(patients) for q in patients[i + 1:])
  train = out["train"]
  assert train["image"].shape[1:] == (8, 8, 1) and train["label"].shape[1] == 14
  for img, lab, pid in zip(train["image"], train["label"], train["patient"]):
    idx = [j for j in range(10) if j // 2 == pid]
    assert any(np.isclose(img.mean(), 25 * j / 255, atol=1e-3) for j in idx)
    assert lab.sum() in (0, 1, 2)
  effusion = chexray_data.PATHOLOGIES.index("Effusion")
  all_labels = np.concatenate([s["label"] for s in out.values()])
  assert all_labels[:, effusion].sum() == 4 and all_labels.sum() == 12  # 0+2+1+1+2 labels, twice
