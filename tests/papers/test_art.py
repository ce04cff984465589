"""ART: Anonymous Region Transformer for Variable Multi-Layer Transparent Image Generation (Pu et al., 2025, arXiv
2502.18364).

The mechanism: layer-wise region crop (``zoo.art.region_crop_tokens``): each foreground layer keeps only its in-box
latent tokens, the merged image and the background keep the full canvas, and all of them (with the prompt) attend
jointly under 3-D RoPE. The paper's comparison is the same DiT with full-canvas tokens for every layer ("full
attention": 12x slower, more layer conflicts), which here is also the ablation (``region_crop=False``).

(a) Tokens and FLOPs (32x32 canvases, 2-5 layers, 8x8 latent grid): the foreground tokens the DiT actually packs
    (counted from ``region_crop_tokens``' validity mask) and ``token_counts`` both equal an independent count from
    the pixel boxes, so the ratio to full canvases is exactly ``sum(area) / (N * canvas)``; the linear FLOPs follow
    it and the attention FLOPs fall with its square.
(b) Quality at a fraction of the tokens (16x16 canvases, 4x4 grid, 1-3 cell boxes, DiT width 32, depth 2, batch 16,
    Adam 3e-3, 150 steps, rectified flow with logit-normal times): region crop vs full canvas, both evaluated by the
    flow-matching loss on the same in-box tokens (``region_loss``, stratified times, fixed noise, 128 test
    canvases). Measured (``ZOO_TEST_SEED`` 0 / 1 / 2; 300 steps in brackets):

    ======================================  =========================  =========================  ======================
    run                                     offset 0                   offset 1                   offset 2
    ======================================  =========================  =========================  ======================
    region crop (the paper)                 0.784 (0.762)              0.784 (0.759)              0.777 (0.761)
    full canvas (ablation = paper baseline) 0.842 (0.808)              0.852 (0.813)              0.843 (0.814)
    per-layer, no cross-layer attention     0.776 (0.753)              0.775 (0.756)              0.770 (0.744)
    ======================================  =========================  =========================  ======================

    At 32x32 (seed 0, 300 steps): 0.722 crop / 0.779 full / 0.709 per-layer. Region crop trains on ~45% of the
    full-canvas tokens (1-3 cell boxes on a 4x4 grid) and reaches a lower in-box loss at equal steps: the full model
    spends its capacity and its attention on the transparent outside of every box. Asserted: full - crop >= 0.025
    on the in-box loss (measured gap 0.058-0.068) and the token fraction <= 0.6.
    Not reproduced: the per-layer baseline without cross-layer attention is as good as (slightly better than) the
    joint model on this loss; the synthetic layers are independent given the prompt, so the cross-layer
    harmonisation the paper shows has nothing to act on here. It is reported, not asserted.
(c) The multi-layer RGBA autoencoder (joint ViT decoder width 64, depth 1; 16x16 canvases, latent 4x4x32, Adam
    3e-3, batch 16, 800 steps of L1): composite PSNR and alpha IoU on 128 held-out canvases against the PAPERS.md
    bars (PSNR >= 25 dB, alpha IoU >= 0.9). Measured (offset 0 / 1 / 2): PSNR 27.39 / 27.47 / 27.62 dB, alpha IoU
    0.972 / 0.979 / 0.980. Smaller settings miss the bars (seed 0: latent 16, width 32, 300 steps: 20.8 dB / 0.83;
    latent 16, width 64, 500 steps: 23.0 dB / 0.896; latent 32, width 64, 500 steps: 24.4 dB / 0.934). The
    per-layer decoder (``joint=False``) measured 20.5 dB / 0.81 against 20.8 dB / 0.83 for the joint one at the
    smallest setting: no clear gain from joint decoding on these independent synthetic layers (not asserted).
    The test itself measured 27.58 dB / 0.974 on offset 0 (the calibration script 27.39 / 0.972; the batches are
    the same, the float reductions not).
(d) Slow (600 steps each, 20 Euler steps from noise on the test canvases): IoU of the sampled foreground alphas
    (> 0.5) with the boxes, pooled over layers; PAPERS.md asks region crop within 0.05 of full canvas. Measured
    (offset 0 / 1 / 2): crop 0.629 / 0.646 / 0.650, full canvas 0.154 / 0.169 / 0.157: the full-canvas model
    spreads alpha outside the boxes (the layer conflicts the paper reports) while region crop cannot. Asserted:
    crop >= full - 0.05.

Mutation check: ``keep = region_mask(...)`` in ``zoo.art.region_crop_tokens`` replaced by the full-canvas ``keep``
(the ``else`` branch) makes (a) fail (``max_tokens`` overflow: every layer keeps N * canvas tokens) and (b) fail
(crop region_loss 1.197: the traced overflow invalidates every example's tokens, nothing is learned).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import art
from zoo.recipes.datasets import layered_canvas as lc
from zoo.recipes.procedures import art as art_proc

OFFSET = int(os.environ.get("ZOO_TEST_SEED", 0))
SMALL = dict(size=16, min_box=1, max_box=3)
STEPS, BATCH, LR, WIDTH, DEPTH = 150, 16, 3e-3, 32, 2
MAX_TOKENS_16 = 2 * 16 + 5 * 9  # merged + background + five 3x3-cell boxes at most


def _train_dit(train, test, seed, **model_kw):
  model = art.AnonymousRegionDiT(latent_channels=64, vocab_size=25, max_layers=7, width=WIDTH, depth=DEPTH,
                                 num_heads=2, **model_kw)
  proc = art_proc.RegionFlowMatching(model, art_proc.LayeredCanvas(4), optax.adam(LR))
  n = len(train["prompt"])
  state = jax.jit(proc.init)(jax.random.key(seed), {k: v[:BATCH] for k, v in train.items()})
  step = jax.jit(proc.step)
  rng = np.random.default_rng(seed)
  for _ in range(STEPS):
    idx = rng.integers(0, n, BATCH)
    state, _ = step(state, {k: v[idx] for k, v in train.items()})
  metrics = jax.jit(proc.evaluate)(state, test)
  return proc, state, {k: float(np.mean(v)) for k, v in metrics.items()}


@pytest.fixture(scope="module")
def canvases16():
  return lc.make_canvases(512, seed=OFFSET, **SMALL), lc.make_canvases(128, seed=OFFSET + 999, **SMALL)


def test_region_crop_tokens_and_flops_are_the_box_area_fraction():
  data = lc.make_canvases(64, seed=OFFSET)
  # Independent count: box areas in pixels over the 4x4 pixels of a latent cell, and N full canvases.
  px = (data["boxes"][..., 2] - data["boxes"][..., 0]) * (data["boxes"][..., 3] - data["boxes"][..., 1])
  area_cells = np.where(data["layer_valid"] > 0, px, 0).sum(1) / 16
  full_cells = data["num_layers"] * 64
  want = area_cells.sum() / full_cells.sum()

  latents, boxes, valid = art_proc.canvas_latents(jax.tree.map(jnp.asarray, data), 4)
  crop = art.region_crop_tokens(latents, boxes, valid, max_tokens=2 * 64 + 5 * 25)
  full = art.region_crop_tokens(latents, boxes, valid, region_crop=False)
  packed_crop = np.asarray(crop.valid & (crop.layer >= 2)).sum(1)
  packed_full = np.asarray(full.valid & (full.layer >= 2)).sum(1)
  np.testing.assert_array_equal(packed_crop, area_cells)
  np.testing.assert_array_equal(packed_full, full_cells)
  assert packed_crop.sum() / packed_full.sum() == pytest.approx(want, rel=1e-12)
  assert 0.1 < want < 0.4  # boxes of 2-5 cells on an 8x8 grid

  counts_crop = art_proc.token_counts(boxes, valid, (8, 8), region_crop=True, prompt_length=5)
  counts_full = art_proc.token_counts(boxes, valid, (8, 8), region_crop=False, prompt_length=5)
  np.testing.assert_array_equal(counts_crop["layer"], area_cells)
  assert counts_crop["layer"].sum() / counts_full["layer"].sum() == pytest.approx(want, rel=1e-12)
  flops_crop = art_proc.transformer_flops(counts_crop["layer"], width=64, depth=2)
  flops_full = art_proc.transformer_flops(counts_full["layer"], width=64, depth=2)
  assert flops_crop["linear"].sum() / flops_full["linear"].sum() == pytest.approx(want, rel=1e-12)
  per_example = flops_crop["attention"] / flops_full["attention"]
  np.testing.assert_allclose(per_example, (area_cells / full_cells) ** 2, rtol=1e-12)


def test_region_crop_beats_full_canvas_on_in_box_loss_at_a_fraction_of_the_tokens(canvases16):
  train, test = canvases16
  _, _, crop = _train_dit(train, test, OFFSET, region_crop=True, max_tokens=MAX_TOKENS_16)
  _, _, full = _train_dit(train, test, OFFSET, region_crop=False)
  latents, boxes, valid = art_proc.canvas_latents(jax.tree.map(jnp.asarray, test), 4)
  fraction = (art_proc.token_counts(boxes, valid, (4, 4), region_crop=True)["total"].sum()
              / art_proc.token_counts(boxes, valid, (4, 4), region_crop=False)["total"].sum())
  print(f"offset {OFFSET}: region_loss crop {crop['region_loss']:.4f} full {full['region_loss']:.4f} "
        f"(full kept-token loss {full['loss']:.4f}); token fraction {fraction:.3f}")
  assert fraction <= 0.6
  assert np.isfinite(crop["region_loss"]) and crop["region_loss"] < 0.95  # learned: v = 0 scores 1 + E|x0|^2 >= 1
  assert full["region_loss"] - crop["region_loss"] >= 0.025


def test_autoencoder_composite_psnr_and_alpha_iou():
  train = jax.tree.map(jnp.asarray, lc.make_canvases(512, seed=OFFSET, **SMALL))
  test = jax.tree.map(jnp.asarray, lc.make_canvases(128, seed=OFFSET + 999, **SMALL))
  ae = art.MultiLayerRGBAAutoencoder(max_layers=6, patch=4, latent_channels=32, hidden=64, width=64, depth=1,
                                     num_heads=2)
  task = art_proc.RGBAReconstruction()
  opt = optax.adam(3e-3)
  params = jax.jit(ae.init)(jax.random.key(OFFSET), task.inputs(jax.tree.map(lambda v: v[:16], train)))
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state, idx):
    batch = jax.tree.map(lambda v: v[idx], train)
    grads = jax.grad(lambda p: jnp.mean(task.loss(ae.apply(p, task.inputs(batch)), batch)))(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(OFFSET)
  for _ in range(800):
    params, opt_state = step(params, opt_state, rng.integers(0, 512, 16))
  m = jax.jit(lambda p: task.metrics(ae.apply(p, task.inputs(test)), test))(params)
  psnr, iou = float(np.mean(m["psnr"])), float(np.mean(m["alpha_iou"]))
  print(f"offset {OFFSET}: autoencoder composite PSNR {psnr:.2f} dB, alpha IoU {iou:.3f}")
  assert psnr >= 25.0
  assert iou >= 0.9


def _box_iou(alpha, boxes, valid, grid: int):
  """Per-layer IoU of ``alpha > 0.5`` with the box, pooled over valid foreground layers."""
  region = np.asarray(art.region_mask(boxes, valid, alpha.shape[2] // grid, alpha.shape[3] // grid))
  region = region.repeat(grid, axis=2).repeat(grid, axis=3)
  pred = (alpha > 0.5) & valid.astype(bool)[:, :, None, None]
  return (pred & region).sum() / max((pred | region).sum(), 1)


@pytest.mark.slow
def test_generated_alphas_match_boxes_like_full_attention(canvases16):
  global STEPS
  train, test = canvases16
  steps, STEPS = STEPS, 600
  try:
    results = {}
    for name, kw in (("crop", dict(region_crop=True, max_tokens=MAX_TOKENS_16)), ("full", dict(region_crop=False))):
      proc, state, _ = _train_dit(train, test, OFFSET, **kw)
      inputs = proc.task.inputs(jax.tree.map(jnp.asarray, test))
      x = jax.jit(lambda p, i: proc.sample(p, i, jax.random.key(OFFSET + 7), steps=20))(state.params, inputs)
      alpha = np.asarray(art_proc.from_latents(x, 4)[:, 2:, ..., 3])
      results[name] = _box_iou(alpha, np.asarray(inputs["boxes"][:, 2:]), np.asarray(inputs["layer_valid"][:, 2:]),
                               4)
  finally:
    STEPS = steps
  print(f"offset {OFFSET}: generated alpha / box IoU crop {results['crop']:.3f} full {results['full']:.3f}")
  assert results["crop"] >= results["full"] - 0.05
