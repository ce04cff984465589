"""Unit tests of zoo.art and recipes/procedures/art.py: segment masks, region crop packing and its inverse, 3-D RoPE
against per-axis RoPE, the autoencoder and the DiT (shapes, jit, vmap, the 8-device mesh, what region crop and
independent layers may see), the counters against brute force, the dataset, and clear errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import art
from zoo import transformer
from zoo.recipes import sharding
from zoo.recipes.datasets import layered_canvas as lc
from zoo.recipes.procedures import art as art_proc

B, L, H, W, C = 3, 4, 4, 4, 8


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  latents = rng.normal(size=(B, L, H, W, C)).astype(np.float32)
  boxes = np.array([[[0, 0, 4, 4], [0, 0, 2, 3], [1, 1, 4, 2], [0, 0, 0, 0]],
                    [[0, 0, 4, 4], [2, 2, 4, 4], [0, 3, 1, 4], [1, 0, 3, 4]],
                    [[0, 0, 4, 4], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]], np.int32)
  valid = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], np.int32)
  prompt = np.array([[3, 5, 0], [1, 2, 4], [7, 0, 0]], np.int32)
  t = np.array([0.1, 0.5, 0.9], np.float32)
  return latents, t, boxes, valid, prompt


def _areas(boxes, valid):
  return np.where(valid, (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]), 0)


@pytest.fixture(scope="module")
def dit():
  model = art.AnonymousRegionDiT(latent_channels=C, vocab_size=9, max_layers=L, width=16, depth=1, num_heads=2,
                                 max_tokens=40)
  latents, t, boxes, valid, prompt = _inputs()
  params = jax.jit(model.init)(jax.random.key(0), latents, t, boxes, valid, prompt)
  # The output head is zero-initialised (DiT): perturb every parameter so the outputs carry information.
  params = jax.jit(lambda ps: jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), ps))(
      params)
  return model, params, jax.jit(model.apply)


# ------------------------------------------------------------------------------------------------ token sets


def test_segment_mask_by_hand():
  q = np.array([[0, 0, 1, -1]], np.int32)
  kv = np.array([[1, 0, -1]], np.int32)
  m = np.asarray(art.segment_mask(jnp.asarray(q), jnp.asarray(kv)))
  want = np.array([[q[0, i] == kv[0, j] and q[0, i] >= 0 for j in range(3)] for i in range(4)])
  assert m.shape == (1, 1, 4, 3)
  np.testing.assert_array_equal(m[0, 0], want)
  with pytest.raises(TypeError, match="q_segment_ids"):
    art.segment_mask(jnp.zeros((1, 3)))


def test_region_crop_packs_the_boxes_and_uncrop_inverts_it():
  latents, _, boxes, valid, _ = _inputs()
  packed = art.region_crop_tokens(jnp.asarray(latents), boxes, valid, max_tokens=40)
  np.testing.assert_array_equal(np.asarray(packed.valid).sum(1), _areas(boxes, valid).sum(1))
  pk = type(packed)(*(np.asarray(f) for f in packed))  # host copies: no device dispatch per element
  for e in range(B):
    for s in np.flatnonzero(pk.valid[e]):
      l, y, x = int(pk.layer[e, s]), int(pk.y[e, s]), int(pk.x[e, s])
      y0, x0, y1, x1 = boxes[e, l]
      assert valid[e, l] and y0 <= y < y1 and x0 <= x < x1
      np.testing.assert_array_equal(pk.tokens[e, s], latents[e, l, y, x])
  inside = np.asarray(art.region_mask(boxes, valid, H, W))
  back = art.uncrop_tokens(packed.tokens, packed, L, H, W)
  np.testing.assert_array_equal(back, latents * inside[..., None])
  full = art.region_crop_tokens(jnp.asarray(latents), boxes, valid, region_crop=False)
  np.testing.assert_array_equal(np.asarray(full.valid).sum(1), valid.sum(1) * H * W)
  with pytest.raises(ValueError, match="max_tokens"):
    art.region_crop_tokens(jnp.asarray(latents), boxes, valid, max_tokens=10)


def test_rope3d_is_per_axis_rope():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 5, 2, 12)).astype(np.float32))
  pos = jnp.asarray(rng.integers(0, 7, size=(2, 5, 3)).astype(np.int32))
  out = art.rope3d(x, pos, sections=(2, 4, 6))
  parts = [x[..., :2], x[..., 2:6], x[..., 6:]]
  want = jnp.concatenate([transformer.apply_rope(p, pos[..., i]) for i, p in enumerate(parts)], axis=-1)
  np.testing.assert_allclose(out, want, atol=1e-6)
  # Relative: scores are unchanged when every token moves by the same (layer, y, x) offset.
  k = jnp.asarray(rng.normal(size=(2, 5, 2, 12)).astype(np.float32))
  s1 = jnp.einsum("blhd,bmhd->bhlm", art.rope3d(x, pos), art.rope3d(k, pos))
  shift = pos + jnp.array([3, 1, 2])
  s2 = jnp.einsum("blhd,bmhd->bhlm", art.rope3d(x, shift), art.rope3d(k, shift))
  np.testing.assert_allclose(s1, s2, atol=1e-4)
  with pytest.raises(ValueError, match="sections"):
    art.rope3d(x, pos, sections=(2, 2, 2))


# ------------------------------------------------------------------------------------------------ the DiT


def test_dit_shapes_jit_vmap_and_what_each_token_sees(dit):
  model, params, apply = dit
  latents, t, boxes, valid, prompt = _inputs()
  out = apply(params, latents, t, boxes, valid, prompt)
  assert out.shape == latents.shape and out.dtype == jnp.float32
  inside = np.asarray(art.region_mask(boxes, valid, H, W))
  assert np.all(np.asarray(out)[~inside] == 0) and np.abs(np.asarray(out)[inside]).min() > 0
  # Region crop: what lies outside the boxes cannot change any output.
  noisy = latents + 10.0 * (~inside)[..., None]
  np.testing.assert_allclose(apply(params, noisy, t, boxes, valid, prompt), out, atol=1e-5)
  # vmap over a leading axis of examples.
  vm = jax.jit(jax.vmap(lambda a, b_, c, d, e: model.apply(params, a[None], b_[None], c[None], d[None], e[None])[0]))
  np.testing.assert_allclose(vm(latents, t, boxes, valid, prompt), out, atol=1e-5)
  # Full canvas: the outside now matters and is predicted.
  full = jax.jit(model.clone(region_crop=False, max_tokens=None).apply)
  out_full = full(params, latents, t, boxes, valid, prompt)
  assert np.abs(np.asarray(out_full)[valid.astype(bool)]).min() > 0
  assert not np.allclose(full(params, noisy, t, boxes, valid, prompt)[inside], out_full[inside])


def test_independent_layers_do_not_see_each_other(dit):
  model, params, _ = dit
  latents, t, boxes, valid, prompt = _inputs()
  ind = jax.jit(model.clone(independent_layers=True).apply)
  out = ind(params, latents, t, boxes, valid, prompt)
  other = latents.copy()
  other[:, 2] += 5.0  # change layer 2 only
  out2 = ind(params, other, t, boxes, valid, prompt)
  np.testing.assert_allclose(out2[:, :2], out[:, :2], atol=1e-5)
  np.testing.assert_allclose(out2[:, 3:], out[:, 3:], atol=1e-5)
  _, _, apply = dit
  joint = apply(params, other, t, boxes, valid, prompt)
  assert not np.allclose(joint[:, 1], apply(params, latents, t, boxes, valid, prompt)[:, 1], atol=1e-4)


def test_dit_sharded_forward(dit):
  model, params, apply = dit
  rng = np.random.default_rng(2)
  latents = rng.normal(size=(8, L, H, W, C)).astype(np.float32)
  boxes = np.tile(_inputs()[2][1:2], (8, 1, 1))
  valid = np.ones((8, L), np.int32)
  prompt = rng.integers(0, 9, size=(8, 3)).astype(np.int32)
  t = rng.uniform(size=8).astype(np.float32)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  shardings = sharding.state_shardings(jax.eval_shape(model.init, jax.random.key(0), latents, t, boxes, valid,
                                                      prompt), mesh)
  sharded = jax.device_put(jax.device_get(params), shardings)
  put = lambda a: jax.device_put(a, sharding.batch_sharding(mesh))  # noqa: E731
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.LOGICAL_RULES):
    out = jax.jit(model.apply)(sharded, put(latents), put(t), put(boxes), put(valid), put(prompt))
  assert len(out.sharding.device_set) == 8
  np.testing.assert_allclose(out, apply(params, latents, t, boxes, valid, prompt), rtol=1e-4, atol=1e-4)


def test_dit_bad_inputs(dit):
  model, params, apply = dit
  latents, t, boxes, valid, prompt = _inputs()
  bad = boxes.copy()
  bad[1, 2] = [0, 3, 1, 5]  # x1 = 5 > 4
  with pytest.raises(ValueError, match="boxes"):
    model.apply(params, latents, t, bad, valid, prompt)
  out = apply(params, latents, t, bad, valid, prompt)  # traced: the bad example reads NaN, the others do not
  out = np.asarray(out)
  assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()
  # Shape errors are raised at trace time: check them abstractly (no compile, no eager dispatch).
  with pytest.raises(ValueError, match="max_layers"):
    jax.eval_shape(model.apply, params, np.concatenate([latents, latents[:, :1]], 1), t,
                   np.concatenate([boxes, boxes[:, :1]], 1), np.concatenate([valid, valid[:, :1]], 1), prompt)
  with pytest.raises(ValueError, match="latents"):
    jax.eval_shape(model.apply, params, latents[..., :3], t, boxes, valid, prompt)
  with pytest.raises(ValueError, match="tokens"):
    model.apply(params, latents, t, boxes, valid, prompt + 20)


# ------------------------------------------------------------------------------------------------ autoencoder


def test_autoencoder_shapes_jit_vmap_and_errors():
  ae = art.MultiLayerRGBAAutoencoder(max_layers=3, patch=4, latent_channels=4, hidden=8, width=16, depth=1,
                                     num_heads=2)
  data = lc.make_canvases(2, size=16, min_layers=1, max_layers=2, min_box=1, max_box=3, seed=3)
  layers, valid = art_proc.stack_with_background(jax.tree.map(jnp.asarray, data))
  solo = ae.clone(joint=False)
  other = layers.at[:, 1].set(1.0 - layers[:, 1])

  @jax.jit  # one compile for init and every call below (eager flax apply dispatches hundreds of small compiles)
  def run(layers, other, valid):
    params = ae.init(jax.random.key(0), layers, valid)
    return params, dict(
        out=ae.apply(params, layers, valid),
        out_dict=ae.apply(params, {"layers": layers, "layer_valid": valid}),
        z=ae.apply(params, layers, valid, method="encode"),
        vm=jax.vmap(lambda x, v: ae.apply(params, x[None], v[None])[0])(layers, valid),
        dz=ae.apply(params, ae.apply(params, other, valid, method="encode"), valid, method="decode"),
        solo_other=solo.apply(params, other, valid), solo=solo.apply(params, layers, valid))

  params, r = run(layers, other, valid)
  out = r["out"]
  assert out.shape == layers.shape and float(out.min()) >= 0 and float(out.max()) <= 1
  np.testing.assert_allclose(out, r["out_dict"], atol=1e-5)
  assert r["z"].shape == (2, 3, 4, 4, 4)
  np.testing.assert_allclose(r["vm"], out, atol=1e-5)
  # Joint decoding: a layer's reconstruction depends on the other layers; per-layer decoding does not.
  assert not np.allclose(r["dz"][:, 0], out[:, 0], atol=1e-5)
  np.testing.assert_allclose(r["solo_other"][:, 0], r["solo"][:, 0], atol=1e-5)
  # Shape errors are raised at trace time: check them abstractly.
  with pytest.raises(ValueError, match="channels=4"):
    jax.eval_shape(ae.apply, params, layers[..., :3], valid)
  with pytest.raises(ValueError, match="max_layers"):
    jax.eval_shape(ae.apply, params, jnp.concatenate([layers, layers[:, :1]], 1), jnp.ones((2, 4), jnp.int32))


# ------------------------------------------------------------------------------------------------ procedure, data


def test_counters_and_latents_against_brute_force():
  data = lc.make_canvases(6, seed=4)
  batch = jax.tree.map(jnp.asarray, data)
  latents, boxes, valid = art_proc.canvas_latents(batch, 4)
  assert latents.shape == (6, 7, 8, 8, 64)
  rgba = art_proc.from_latents(latents, 4)
  a = data["layers"][..., 3:]
  np.testing.assert_allclose(rgba[:, 2:, ..., :3], data["layers"][..., :3] * a + 0.5 * (1 - a), atol=1e-6)
  np.testing.assert_allclose(rgba[:, 0, ..., :3], data["composite"], atol=1e-6)
  counts = art_proc.token_counts(boxes, valid, (8, 8), region_crop=True, prompt_length=5)
  brute = [sum(int(np.sum(np.asarray(art.region_mask(boxes[e:e + 1, i:i + 1], valid[e:e + 1, i:i + 1], 8, 8))))
               for i in range(2, 7)) for e in range(6)]
  np.testing.assert_array_equal(counts["layer"], brute)
  np.testing.assert_array_equal(counts["global"], 128)
  full = art_proc.token_counts(boxes, valid, (8, 8), region_crop=False)
  np.testing.assert_array_equal(full["layer"], data["num_layers"] * 64)
  f = art_proc.transformer_flops(np.array([10]), width=8, depth=2, mlp_ratio=4.0)
  assert f["linear"][0] == 2 * 2 * 10 * (4 * 64 + 2 * 8 * 32) and f["attention"][0] == 2 * 4 * 100 * 8


def test_dataset_deterministic_and_consistent():
  a, b = lc.make_canvases(4, seed=7), lc.make_canvases(4, seed=7)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["layers"], lc.make_canvases(4, seed=8)["layers"])
  assert ((a["num_layers"] >= 2) & (a["num_layers"] <= 5)).all()
  assert (a["boxes"] % 4 == 0).all()
  for e in range(4):
    for i in range(a["num_layers"][e]):
      y0, x0, y1, x1 = a["boxes"][e, i]
      alpha = a["layers"][e, i, ..., 3]
      assert alpha[y0:y1, x0:x1].max() > 0 and alpha.sum() == pytest.approx(alpha[y0:y1, x0:x1].sum())
  with pytest.raises(ValueError, match="grid"):
    lc.make_canvases(2, size=30)


def test_flow_matching_step_and_sampler():
  data = jax.tree.map(jnp.asarray, lc.make_canvases(4, size=16, min_box=1, max_box=2, seed=5))
  model = art.AnonymousRegionDiT(latent_channels=64, vocab_size=25, max_layers=7, width=16, depth=1, num_heads=2,
                                 max_tokens=2 * 16 + 5 * 4)
  proc = art_proc.RegionFlowMatching(model, art_proc.LayeredCanvas(4), optax.adam(1e-2))

  @jax.jit  # init, one step, evaluate, the sampler and the kept mask in one compile
  def run(data):
    state = proc.init(jax.random.key(0), data)
    state, metrics = proc.step(state, data)
    inputs = proc.task.inputs(data)
    return (state, metrics, proc.evaluate(state, data),
            proc.sample(state.params, inputs, jax.random.key(1), steps=3), proc.kept(inputs))

  state, metrics, ev, x, keep = run(data)
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
  assert ev["loss"].shape == (4,) and ev["region_loss"].shape == (4,)
  np.testing.assert_allclose(ev["loss"], ev["region_loss"], rtol=1e-6)  # region crop: kept == in-box tokens
  keep = np.asarray(keep)
  assert x.shape == keep.shape + (64,) == (4, 7, 4, 4, 64) and np.all(np.asarray(x)[~keep] == 0)
  with pytest.raises(KeyError, match="layered_canvas"):
    proc.task.inputs({"image": data["layers"]})
