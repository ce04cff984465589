"""Training ART (Pu et al., 2025, arXiv 2502.18364): rectified flow matching of region-cropped layer latents, the
RGBA autoencoder's reconstruction task, an Euler sampler, and token / FLOP counters.

Tasks and procedure (config names ``'art.<Class>'``):

* :class:`LayeredCanvas` (task): turns a ``layered_canvas`` batch into the DiT's inputs. Layers are ordered
  ``[merged image, background, foreground 1..N]``; the merged image and the background are full-canvas layers
  (alpha 1), the foreground boxes are the anonymous regions. Latents are the RGBA pixels premultiplied onto gray,
  scaled to [-1, 1] and folded ``patch x patch`` into channels (:func:`canvas_latents`, a lossless stand-in for the
  autoencoder's latents so that the recipe trains from pixels alone).
* :class:`RegionFlowMatching` (procedure): rectified flow ``x_t = (1 - t) x_0 + t eps``, the model regresses the
  velocity ``eps - x_0`` on the tokens it keeps (region crop: the in-box tokens; full: every valid layer's canvas),
  with ``t`` drawn logit-normal (SD3 / FLUX). ``evaluate`` reports the loss on the kept tokens and ``region_loss``,
  the loss on the in-box tokens only, which is comparable between region-crop and full-canvas models (stratified
  times and seeded noise: deterministic; ``evaluate_variables`` computes it from shipped variables).
  :meth:`RegionFlowMatching.sample` integrates ``dx/dt = v`` from ``t = 1`` (noise) to 0 with Euler steps.
* :class:`RGBAReconstruction` (task): the autoencoder's L1 loss (the paper's) on the valid layers, with per-example
  ``psnr`` of the composite and ``alpha_iou``.

Counters: :func:`token_counts` (prompt, global and foreground-layer tokens of region crop or full canvas, from the
boxes) and :func:`transformer_flops` (linear and attention FLOPs of a DiT pass over ``n`` tokens).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo import art as art_lib
from zoo.recipes.procedures.backprop import TrainState

__all__ = ["LayeredCanvas", "RGBAReconstruction", "RegionFlowMatching", "alpha_iou", "canvas_latents",
           "composite", "from_latents", "psnr", "stack_with_background", "token_counts", "transformer_flops"]

GLOBAL_LAYERS = 2  # the merged image and the background keep the full canvas


# -------------------------------------------------------------------------------------------------- pixels


def composite(rgba, layer_valid):
  """``rgba [b, L, H, W, 4]`` blended "over" in order (layer 0 at the back) -> ``[b, H, W, 3]``."""
  out = jnp.zeros(rgba.shape[:1] + rgba.shape[2:4] + (3,), rgba.dtype)
  for i in range(rgba.shape[1]):
    a = rgba[:, i, ..., 3:] * jnp.asarray(layer_valid)[:, i].astype(rgba.dtype)[:, None, None, None]
    out = a * rgba[:, i, ..., :3] + (1 - a) * out
  return out


def psnr(pred, target, *, axes=(-3, -2, -1)):
  """Peak signal-to-noise ratio (dB) of images in [0, 1], per example."""
  mse = jnp.mean((pred - target) ** 2, axis=axes)
  return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


def alpha_iou(pred_alpha, true_alpha, valid, *, threshold: float = 0.5):
  """Per-example IoU of the thresholded alphas ``[b, L, H, W]`` over the valid layers ``[b, L]`` (pooled)."""
  v = jnp.asarray(valid).astype(bool)[:, :, None, None]
  p, t = (pred_alpha > threshold) & v, (true_alpha > threshold) & v
  inter = jnp.sum(p & t, axis=(1, 2, 3))
  union = jnp.sum(p | t, axis=(1, 2, 3))
  return inter / jnp.maximum(union, 1)


def stack_with_background(batch):
  """``[background (alpha 1), foreground layers]`` ``[b, 1 + L, H, W, 4]`` and its validity ``[b, 1 + L]``."""
  bg = batch["background"]
  bg = jnp.concatenate([bg, jnp.ones_like(bg[..., :1])], axis=-1)[:, None]
  layers = jnp.concatenate([bg, batch["layers"]], axis=1)
  valid = jnp.concatenate([jnp.ones_like(batch["layer_valid"][:, :1]), batch["layer_valid"]], axis=1)
  return layers, valid


def canvas_latents(batch, patch: int = 4):
  """The DiT's layers ``[merged, background, foreground...]`` as patch latents.

  Returns ``(latents [b, 2 + L, H/p, W/p, 4 p^2], boxes [b, 2 + L, 4] in grid cells, layer_valid [b, 2 + L])``.
  Each RGBA layer is premultiplied onto gray (as the autoencoder sees it), scaled to [-1, 1] and folded.
  """
  merged = jnp.concatenate([batch["composite"], jnp.ones_like(batch["composite"][..., :1])], axis=-1)[:, None]
  layers, fg_valid = stack_with_background(batch)
  rgba = jnp.concatenate([merged, layers], axis=1)
  alpha = rgba[..., 3:]
  x = jnp.concatenate([rgba[..., :3] * alpha + 0.5 * (1 - alpha), alpha], axis=-1) * 2.0 - 1.0
  b, n, height, width, _ = x.shape
  if height % patch or width % patch:
    raise ValueError(f"canvas_latents: the canvas {height}x{width} is not a multiple of patch={patch}.")
  h, w = height // patch, width // patch
  lat = x.reshape(b, n, h, patch, w, patch, 4).transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, n, h, w, patch * patch * 4)
  boxes = jnp.asarray(batch["boxes"]) // patch
  full = jnp.broadcast_to(jnp.array([0, 0, h, w], boxes.dtype), (b, GLOBAL_LAYERS, 4))
  valid = jnp.concatenate([jnp.ones_like(fg_valid[:, :1]), fg_valid], axis=1)
  return lat, jnp.concatenate([full, boxes], axis=1).astype(jnp.int32), valid.astype(jnp.int32)


def from_latents(latents, patch: int = 4):
  """Inverse of :func:`canvas_latents`' folding: ``[b, n, h, w, 4 p^2]`` -> gray-premultiplied RGBA in [0, 1]."""
  b, n, h, w, _ = latents.shape
  x = latents.reshape(b, n, h, w, patch, patch, 4).transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, n, h * patch,
                                                                                           w * patch, 4)
  return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


# -------------------------------------------------------------------------------------------------- counters


def token_counts(boxes, layer_valid, grid: tuple[int, int], *, region_crop: bool, prompt_length: int = 0,
                 global_layers: int = GLOBAL_LAYERS) -> dict[str, np.ndarray]:
  """Per-example token counts of one DiT pass, from the boxes (host-side numpy).

  ``boxes [b, L, 4]`` / ``layer_valid [b, L]`` are the DiT's layers (the first ``global_layers`` full canvas).
  Returns ``{'prompt', 'global', 'layer', 'total'}`` (``layer``: the foreground layers' tokens).
  """
  boxes, valid = np.asarray(boxes), np.asarray(layer_valid).astype(bool)
  h, w = grid
  if region_crop:
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
  else:
    area = np.full(boxes.shape[:2], h * w)
  area = np.where(valid, area, 0)
  counts = {"prompt": np.full(boxes.shape[:1], prompt_length), "global": area[:, :global_layers].sum(1),
            "layer": area[:, global_layers:].sum(1)}
  counts["total"] = counts["prompt"] + counts["global"] + counts["layer"]
  return counts


def transformer_flops(tokens, *, width: int, depth: int, mlp_ratio: float = 4.0) -> dict[str, np.ndarray]:
  """Multiply-add FLOPs (2 per MAC) of ``depth`` joint blocks over ``tokens`` (array of per-example counts).

  ``linear``: the qkv, output and MLP projections, ``2 n (4 + 2 mlp_ratio) width^2``; ``attention``: the scores and
  the weighted sum, ``4 n^2 width``. The timestep/adaLN path does not depend on ``n`` and is left out.
  """
  n = np.asarray(tokens, np.float64)
  linear = depth * 2.0 * n * (4.0 + 2.0 * mlp_ratio) * width ** 2
  attention = depth * 4.0 * n ** 2 * width
  return {"linear": linear, "attention": attention, "total": linear + attention}


# -------------------------------------------------------------------------------------------------- tasks


@dataclasses.dataclass(frozen=True)
class LayeredCanvas:
  """A ``layered_canvas`` batch as the DiT's inputs (module docstring); ``patch`` pixels per grid cell."""
  patch: int = 4

  def inputs(self, batch) -> dict[str, Any]:
    for key in ("layers", "background", "composite", "boxes", "layer_valid", "prompt"):
      if key not in batch:
        raise KeyError(f"LayeredCanvas: the batch has no key {key!r}; it has {sorted(batch)} (use the "
                       "'layered_canvas' dataset).")
    latents, boxes, valid = canvas_latents(batch, self.patch)
    return {"latents": latents, "boxes": boxes, "layer_valid": valid, "prompt": jnp.asarray(batch["prompt"])}

  def check_data(self, arrays, *, num_classes=None, where: str = "") -> None:
    del num_classes
    if "layers" in arrays and np.asarray(arrays["layers"]).shape[-1] != 4:
      raise ValueError(f"LayeredCanvas: `layers`{where} must be RGBA (last axis 4); got shape "
                       f"{np.asarray(arrays['layers']).shape}.")


@dataclasses.dataclass(frozen=True)
class RGBAReconstruction:
  """The autoencoder's task: L1 between reconstructed and true RGBA ``[background, layers]`` on valid layers."""

  def inputs(self, batch):
    layers, valid = stack_with_background(batch)
    return {"layers": layers, "layer_valid": valid}

  def loss(self, outputs, batch):
    layers, valid = stack_with_background(batch)
    v = valid.astype(outputs.dtype)[:, :, None, None, None]
    err = jnp.sum(jnp.abs(outputs - layers) * v, axis=(1, 2, 3, 4))
    return err / jnp.maximum(jnp.sum(v, axis=(1, 2, 3, 4)) * np.prod(layers.shape[2:]), 1.0)

  def metrics(self, outputs, batch):
    layers, valid = stack_with_background(batch)
    fg = valid[:, 1:]
    return {"loss": self.loss(outputs, batch),
            "psnr": psnr(composite(outputs, valid), batch["composite"]),
            "alpha_iou": alpha_iou(outputs[:, 1:, ..., 3], layers[:, 1:, ..., 3], fg)}


# -------------------------------------------------------------------------------------------------- procedure


@dataclasses.dataclass(frozen=True)
class RegionFlowMatching:
  """Rectified flow matching of an :class:`zoo.art.AnonymousRegionDiT` (module docstring).

  Attributes:
    model: an ``AnonymousRegionDiT`` (its ``region_crop`` decides which tokens are kept and trained).
    task: a :class:`LayeredCanvas` (or anything whose ``inputs(batch)`` gives the DiT's inputs dict).
    optimizer: an optax transformation.
    logit_normal: draw training times ``t = sigmoid(N(0, 1))`` (SD3/FLUX); False: uniform.
    eval_seed: seed of the noise and times in ``evaluate``.
  """
  model: Any
  task: Any
  optimizer: optax.GradientTransformation
  logit_normal: bool = True
  eval_seed: int = 0

  def _apply(self, params, x, t, inputs):
    return self.model.apply({"params": params}, x, t, inputs["boxes"], inputs["layer_valid"], inputs["prompt"])

  def kept(self, inputs):
    """``[b, L, h, w]`` bool: the tokens the model keeps (and is trained on)."""
    lat = inputs["latents"]
    if self.model.region_crop:
      return art_lib.region_mask(inputs["boxes"], inputs["layer_valid"], *lat.shape[2:4])
    return jnp.broadcast_to(inputs["layer_valid"].astype(bool)[:, :, None, None], lat.shape[:4])

  def init(self, rng, batch) -> TrainState:
    params_rng, state_rng = jax.random.split(rng)
    inputs = self.task.inputs(batch)
    t = jnp.full(inputs["latents"].shape[:1], 0.5, jnp.float32)
    params = self.model.init(params_rng, inputs["latents"], t, inputs["boxes"], inputs["layer_valid"],
                             inputs["prompt"])["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params),
                      model_state={}, rng=state_rng)

  def per_token_error(self, params, inputs, t, noise):
    """Squared velocity error per grid cell ``[b, L, h, w]`` (channel mean) at times ``t [b]``."""
    x0 = inputs["latents"]
    tt = t[:, None, None, None, None]
    xt = (1.0 - tt) * x0 + tt * noise
    v = self._apply(params, xt, t, inputs)
    return jnp.mean((v - (noise - x0)) ** 2, axis=-1)

  def _times(self, rng, b):
    if self.logit_normal:
      return jax.nn.sigmoid(jax.random.normal(rng, (b,), jnp.float32))
    return jax.random.uniform(rng, (b,), jnp.float32)

  def loss(self, params, batch, rng):
    inputs = self.task.inputs(batch)
    x0 = inputs["latents"]
    t_rng, n_rng = jax.random.split(rng)
    t = self._times(t_rng, x0.shape[0])
    err = self.per_token_error(params, inputs, t, jax.random.normal(n_rng, x0.shape, x0.dtype))
    keep = self.kept(inputs).astype(err.dtype)
    return jnp.sum(err * keep) / jnp.maximum(jnp.sum(keep), 1.0)

  def step(self, state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    loss, grads = jax.value_and_grad(self.loss)(state.params, batch, rng)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), {
        "loss": loss, "grad_norm": optax.tree.norm(grads)}

  def variables(self, state: TrainState):
    return {"params": state.params}

  def evaluate(self, state: TrainState, batch):
    """Per-example ``loss`` (kept tokens) and ``region_loss`` (in-box tokens), times stratified over the batch.

    Deterministic: the times are ``(i + 0.5) / b`` over the batch's ``b`` rows and the noise is drawn from
    ``eval_seed``, so the numbers depend on the evaluation batch size (``zoo.checkpoints.evaluate`` uses the run's).
    """
    return self._evaluate_params(state.params, batch)

  @staticmethod
  def evaluate_variables(model, task, variables, batch):
    """:meth:`evaluate` from plain ``variables`` (``zoo.checkpoints.evaluate``; the default ``eval_seed`` 0)."""
    return RegionFlowMatching(model=model, task=task, optimizer=None)._evaluate_params(variables["params"], batch)

  def _evaluate_params(self, params, batch):
    inputs = self.task.inputs(batch)
    x0 = inputs["latents"]
    b = x0.shape[0]
    t = (jnp.arange(b, dtype=jnp.float32) + 0.5) / b
    noise = jax.random.normal(jax.random.key(self.eval_seed), x0.shape, x0.dtype)
    err = self.per_token_error(params, inputs, t, noise)
    region = art_lib.region_mask(inputs["boxes"], inputs["layer_valid"], *x0.shape[2:4]).astype(err.dtype)
    keep = self.kept(inputs).astype(err.dtype)

    def mean(m):
      return jnp.sum(err * m, axis=(1, 2, 3)) / jnp.maximum(jnp.sum(m, axis=(1, 2, 3)), 1.0)

    return {"loss": mean(keep), "region_loss": mean(region)}

  def sample(self, params, inputs, rng, *, steps: int = 20):
    """Euler integration of ``dx/dt = v(x, t)`` from ``t = 1`` (Gaussian noise on the kept tokens) to ``t = 0``.

    ``inputs``: the task's inputs (``latents`` used only for its shape). Returns latents ``[b, L, h, w, c]`` (0 at
    the tokens the model does not keep).
    """
    shape = inputs["latents"].shape
    keep = self.kept(inputs)[..., None].astype(jnp.float32)
    x = jax.random.normal(rng, shape, jnp.float32) * keep
    ts = jnp.linspace(1.0, 0.0, steps + 1)

    def body(x, i):
      t = jnp.full(shape[:1], ts[i])
      v = self._apply(params, x, t, inputs)
      return (x + (ts[i + 1] - ts[i]) * v) * keep, None

    x, _ = jax.lax.scan(body, x, jnp.arange(steps))
    return x
