"""ART: the Anonymous Region Transformer for variable multi-layer transparent image generation.

Paper: Pu, Zhao, Tang, Yin, Ye, Yuan, Chen, Bao et al., "ART: Anonymous Region Transformer for Variable Multi-Layer
Transparent Image Generation", CVPR 2025, arXiv 2502.18364 (reference code and weights withdrawn in 2025; this is
written from the paper).

A global prompt and an *anonymous* region layout (boxes with no per-layer caption) give a merged image, a background
and N transparent (RGBA) foreground layers, generated jointly by one diffusion transformer. Two mechanisms:

* **Layer-wise region crop**: every layer keeps only the latent tokens inside its box, so the visual tokens scale
  with the sum of the box areas, not with ``N * canvas``; the merged image and the background keep the full canvas.
  The ragged per-layer sets are packed into one padded sequence with layer ids, positions and a validity mask.
* **3-D RoPE** over (layer, y, x): prompt and all layers' tokens attend jointly in one sequence; a token's rotary
  position is its layer index and its *canvas* coordinates, so cropped tokens keep their place on the canvas.

And the multi-layer transparent autoencoder that provides the latents: an encoder applied to each RGBA layer (the
colour premultiplied onto gray, as the paper feeds its VAE) and a ViT decoder that decodes the layers' latents jointly
(attention across layers, 3-D RoPE) to RGBA.

Public names (``b`` batch, ``L`` layers, ``H x W`` pixels, ``h x w`` latent grid, ``c`` latent channels, ``T``
packed tokens):

* :func:`segment_mask` ``(q_segment_ids [b, q], kv_segment_ids [b, k] | None) -> [b, 1, q, k]`` bool: a query may
  attend to a key iff both ids are equal and >= 0 (negative = padding), as in splash attention's segment ids.
* :func:`region_mask` ``(boxes [b, L, 4], layer_valid [b, L], h, w) -> [b, L, h, w]`` bool: the tokens inside each
  valid layer's box; boxes ``(y0, x0, y1, x1)`` in grid cells, end exclusive.
* :func:`region_crop_tokens` ``(latents [b, L, h, w, c], boxes, layer_valid, *, max_tokens, region_crop)`` -> a
  :class:`PackedTokens` (``tokens [b, T, c]``, ``index``, ``layer``, ``y``, ``x``, ``valid`` ``[b, T]``).
* :func:`uncrop_tokens` ``(tokens [b, T, c], packed, L, h, w) -> [b, L, h, w, c]`` (zeros where no token).
* :func:`rope3d` ``(x [b, l, heads, d], positions [b, l, 3], *, sections) -> [b, l, heads, d]``: one
  :func:`zoo.transformer.apply_rope` per axis on its share of the head dim.
* :class:`MultiLayerRGBAAutoencoder`: ``encode(layers [b, L, H, W, 4], layer_valid) -> latents [b, L, h, w, c]``,
  ``decode(latents, layer_valid) -> RGBA [b, L, H, W, 4]`` in [0, 1], ``__call__`` = decode(encode(.)).
* :class:`AnonymousRegionDiT` ``(latents [b, L, h, w, c], t [b], boxes [b, L, 4], layer_valid [b, L], prompt [b, P])
  -> velocity [b, L, h, w, c]`` (0 outside the kept tokens). ``region_crop=False`` keeps every layer's full canvas
  (the paper's full-attention comparison); ``independent_layers=True`` lets a layer attend only to itself and the
  prompt (a per-layer generation baseline, no cross-layer attention).

Attention always goes through :func:`zoo.kernels.attention.attention` with segment ids (the DiT: one segment of
valid tokens; the autoencoder's decoder: one per layer, or one when ``joint``; padding -1): the Pallas kernels
compute that mask per tile and skip the tile pairs without a common id, so no ``[T, T]`` mask is built. Only
``independent_layers=True`` (a layer sees itself and the prompt, whose keys several segments share) passes a dense
boolean mask, built with :func:`segment_mask` (the same rule written out). Deviations from the paper (small-scale
stand-ins): single-stream DiT blocks with shared weights for prompt and image tokens (FLUX's MM-DiT has
double-stream blocks first), a learned prompt embedding instead of a T5 encoder, and a small deterministic
autoencoder trained from scratch with an L1 loss (the paper starts from a frozen pretrained VAE encoder).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo import transformer
from zoo.kernels import attention as attention_lib

__all__ = ["AnonymousRegionDiT", "MultiLayerRGBAAutoencoder", "PackedTokens", "check_boxes", "region_crop_tokens",
           "region_mask", "rope3d", "segment_mask", "timestep_embedding", "uncrop_tokens"]

Array = jax.Array


# -------------------------------------------------------------------------------------------------- token sets


def segment_mask(q_segment_ids: Array, kv_segment_ids: Array | None = None) -> Array:
  """``[b, 1, q, k]`` bool: query ``i`` may attend to key ``j`` iff ``q_ids[i] == kv_ids[j] >= 0``.

  A negative id marks padding: a padded query attends to nothing (the attention function then averages the values
  uniformly; its output must be discarded) and a padded key is never attended.
  """
  layers.check_shape(q_segment_ids, "q_segment_ids", "batch length", where="segment_mask", dtype="integer")
  kv = q_segment_ids if kv_segment_ids is None else kv_segment_ids
  layers.check_shape(kv, "kv_segment_ids", "batch length", where="segment_mask", dtype="integer",
                     batch=q_segment_ids.shape[0])
  same = q_segment_ids[:, :, None] == kv[:, None, :]
  return (same & (q_segment_ids[:, :, None] >= 0) & (kv[:, None, :] >= 0))[:, None]


def check_boxes(boxes: Any, layer_valid: Any, height: int, width: int, *, where: str) -> Array:
  """Checks ``boxes [b, L, 4]`` ``(y0, x0, y1, x1)`` (int, grid cells) of valid layers: ``0 <= y0 < y1 <= height``
  and ``0 <= x0 < x1 <= width``. Raises when concrete; returns the per-example "bad" flags ``[b]`` (for NaN outputs
  when traced)."""
  layers.check_shape(boxes, "boxes", "batch layers four", where=where, dtype="integer", four=4)
  layers.check_shape(layer_valid, "layer_valid", "batch layers", where=where, batch=boxes.shape[0],
                     layers=boxes.shape[1])
  y0, x0, y1, x1 = (boxes[..., i] for i in range(4))
  bad = (y0 < 0) | (x0 < 0) | (y1 > height) | (x1 > width) | (y1 <= y0) | (x1 <= x0)
  bad = bad & layer_valid.astype(bool)
  try:
    concrete = np.asarray(bad)
  except jax.errors.TracerArrayConversionError:
    return jnp.any(bad, axis=1)
  if concrete.any():
    e, i = (int(v) for v in np.argwhere(concrete)[0])
    raise ValueError(f"{where}: `boxes` must lie inside the {height}x{width} grid with y0 < y1 and x0 < x1 "
                     f"(y0, x0, y1, x1, end exclusive); example {e} layer {i} has {np.asarray(boxes)[e, i].tolist()}.")
  return jnp.asarray(concrete.any(axis=1))


def region_mask(boxes: Array, layer_valid: Array, height: int, width: int) -> Array:
  """``[b, L, h, w]`` bool: True on the grid cells inside each valid layer's box (the tokens region crop keeps)."""
  boxes = jnp.asarray(boxes)
  ys = jnp.arange(height)[None, None, :, None]
  xs = jnp.arange(width)[None, None, None, :]
  y0, x0, y1, x1 = (boxes[..., i][..., None, None] for i in range(4))
  inside = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
  return inside & jnp.asarray(layer_valid).astype(bool)[..., None, None]


class PackedTokens(NamedTuple):
  """A ragged token set per example packed into ``T`` slots (valid slots first, in layer-major raster order).

  ``tokens [b, T, c]``; ``index [b, T]`` int32: the slot's flat position ``(layer * h + y) * w + x`` in the layer
  grid; ``layer``, ``y``, ``x`` ``[b, T]`` int32: its 3-D position; ``valid [b, T]`` bool.
  """
  tokens: Array
  index: Array
  layer: Array
  y: Array
  x: Array
  valid: Array


def region_crop_tokens(latents: Array, boxes: Array, layer_valid: Array, *, max_tokens: int | None = None,
                       region_crop: bool = True) -> PackedTokens:
  """Layer-wise region crop: each layer keeps its latent tokens inside its box, packed into one padded sequence.

  Args:
    latents: ``[b, L, h, w, c]``.
    boxes: ``[b, L, 4]`` int ``(y0, x0, y1, x1)`` in grid cells, end exclusive.
    layer_valid: ``[b, L]`` (bool or 0/1): padded layers keep no token.
    max_tokens: the packed length ``T`` (static); default ``L * h * w``. An example with more kept tokens is an
      error when concrete (traced: its surplus tokens are dropped and every kept token of it is marked invalid, so
      the model's output for that example is 0 rather than silently cut).
    region_crop: False keeps every valid layer's full canvas (the full-attention comparison).

  Returns:
    :class:`PackedTokens`.
  """
  layers.check_shape(latents, "latents", "batch layers height width channels", where="region_crop_tokens")
  b, num_layers, h, w, c = latents.shape
  valid_layers = jnp.asarray(layer_valid).astype(bool)
  if region_crop:
    keep = region_mask(boxes, valid_layers, h, w)
  else:
    keep = jnp.broadcast_to(valid_layers[..., None, None], (b, num_layers, h, w))
  keep = keep.reshape(b, num_layers * h * w)
  total = num_layers * h * w
  length = total if max_tokens is None else int(max_tokens)
  if not 1 <= length <= total:
    raise ValueError(f"region_crop_tokens: `max_tokens` must be in [1, {total}]; got {max_tokens}.")
  count = jnp.sum(keep, axis=1)
  try:
    worst = int(np.max(np.asarray(count)))
    if worst > length:
      raise ValueError(f"region_crop_tokens: an example keeps {worst} tokens but `max_tokens` is {length}; raise "
                       "`max_tokens` to at least the largest sum of box areas (in grid cells).")
  except jax.errors.TracerArrayConversionError:
    pass
  # A stable sort of "not kept" puts the kept positions first, in their raster order.
  order = jnp.argsort(~keep, axis=1, stable=True)[:, :length].astype(jnp.int32)
  valid = jnp.take_along_axis(keep, order, axis=1) & (count <= length)[:, None]
  flat = latents.reshape(b, total, c)
  tokens = jnp.take_along_axis(flat, order[..., None], axis=1) * valid[..., None].astype(latents.dtype)
  layer, rest = order // (h * w), order % (h * w)
  return PackedTokens(tokens, order, layer, rest // w, rest % w, valid)


def uncrop_tokens(tokens: Array, packed: PackedTokens, num_layers: int, height: int, width: int) -> Array:
  """Scatters packed ``tokens [b, T, c]`` back to ``[b, L, h, w, c]`` (zeros at the positions no token holds)."""
  b, _, c = tokens.shape
  values = tokens * packed.valid[..., None].astype(tokens.dtype)
  # Invalid slots all point at a real position; sending them out of bounds with mode='drop' leaves it untouched.
  index = jnp.where(packed.valid, packed.index, num_layers * height * width)
  out = jnp.zeros((b, num_layers * height * width, c), tokens.dtype)
  out = jax.vmap(lambda o, i, v: o.at[i].set(v, mode="drop"))(out, index, values)
  return out.reshape(b, num_layers, height, width, c)


def _rope_sections(head_dim: int, sections: tuple[int, int, int] | None) -> tuple[int, int, int]:
  if sections is None:  # a quarter for the layer axis, the rest halved between y and x (FLUX: (16, 56, 56) of 128)
    first = max(2, 2 * (head_dim // 8))
    rest = head_dim - first
    second = 2 * (rest // 4)
    sections = (first, second, rest - second)
  if len(sections) != 3 or sum(sections) != head_dim or any(s <= 0 or s % 2 for s in sections):
    raise ValueError(f"rope3d: `sections` must be three positive even sizes summing to head_dim={head_dim}; got "
                     f"{sections}.")
  return tuple(int(s) for s in sections)


def rope3d(x: Array, positions: Array, *, sections: tuple[int, int, int] | None = None,
           base: float = 10000.0) -> Array:
  """3-D rotary positions: head-dim slices ``sections`` rotate by the (layer, y, x) coordinates respectively.

  Args:
    x: ``[batch, length, heads, head_dim]``.
    positions: int ``[batch, length, 3]`` (layer, y, x).
    sections: head-dim share of each axis (even, summing to head_dim); default ``2*(d//8)`` for the layer axis and
      the rest split evenly between y and x.
    base: RoPE wavelength base.
  """
  layers.check_shape(x, "x", "batch length heads head_dim", where="rope3d")
  layers.check_shape(positions, "positions", "batch length three", where="rope3d", length=x.shape[1], three=3)
  secs = _rope_sections(x.shape[-1], sections)
  parts = jnp.split(x, np.cumsum(secs)[:-1], axis=-1)
  return jnp.concatenate([transformer.apply_rope(p, positions[..., i], base=base) for i, p in enumerate(parts)],
                         axis=-1)


def timestep_embedding(t: Array, features: int, *, scale: float = 1000.0, max_period: float = 10000.0) -> Array:
  """Sinusoidal embedding ``[b, features]`` of continuous times ``t [b]`` in [0, 1] (scaled by 1000, as DiT/FLUX)."""
  half = features // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = (scale * t.astype(jnp.float32))[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


# -------------------------------------------------------------------------------------------------- blocks


class _JointBlock(nn.Module):
  """Pre-norm transformer block over one joint sequence with 3-D RoPE and a segment mask; with ``cond`` it is a
  DiT adaLN-Zero block (shift/scale/gate from the timestep embedding, gates initialised at 0)."""
  num_heads: int
  mlp_ratio: float = 4.0
  rope_sections: tuple[int, int, int] | None = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: Array, positions: Array, mask: Array | None, cond: Array | None = None,
               segment_ids: Array | None = None) -> Array:
    """``mask``: a dense ``[b, 1, l, l]`` bool mask, or None with ``segment_ids [b, l]`` (the attention
    function's segment ids: equal non-negative ids attend to each other)."""
    width = x.shape[-1]
    head_dim = width // self.num_heads
    if cond is not None:
      mod = layers.dense(6 * width, axes=("embed", "mlp"), kernel_init=nn.initializers.zeros_init(),
                         name="adaln")(nn.silu(cond))[:, None, :]
      shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
    else:
      shift1 = shift2 = jnp.zeros((), x.dtype)
      scale1 = scale2 = jnp.zeros((), x.dtype)
      gate1 = gate2 = jnp.ones((), x.dtype)
    h = layers.layer_norm(use_scale=cond is None, use_bias=cond is None, epsilon=1e-6, name="norm1")(x)
    h = h * (1 + scale1) + shift1
    qkv = layers.dense(3 * width, axes=("embed", "mlp"), name="qkv")(h)
    q, k, v = (a.reshape(*x.shape[:2], self.num_heads, head_dim) for a in jnp.split(qkv, 3, axis=-1))
    q, k = rope3d(q, positions, sections=self.rope_sections), rope3d(k, positions, sections=self.rope_sections)
    out = attention_lib.attention(q, k, v, mask=mask, q_segment_ids=segment_ids, impl=self.impl).reshape(x.shape)
    x = x + gate1 * layers.dense(width, axes=("mlp", "embed"), name="proj")(out)
    h = layers.layer_norm(use_scale=cond is None, use_bias=cond is None, epsilon=1e-6, name="norm2")(x)
    h = h * (1 + scale2) + shift2
    h = layers.dense(int(self.mlp_ratio * width), axes=("embed", "mlp"), name="mlp_in")(h)
    return x + gate2 * layers.dense(width, axes=("mlp", "embed"), name="mlp_out")(nn.gelu(h))


def _positions(packed: PackedTokens, offset: int) -> Array:
  return jnp.stack([packed.layer + offset, packed.y, packed.x], axis=-1)


# -------------------------------------------------------------------------------------------------- autoencoder


class MultiLayerRGBAAutoencoder(nn.Module):
  """Joint multi-layer transparent autoencoder (ART §3.1, small-scale).

  ``encode``: each RGBA layer, colour premultiplied onto gray and scaled to [-1, 1] with its alpha, goes through a
  per-layer patch encoder (a ``patch x patch`` stride-``patch`` conv, GELU, a dense to ``latent_channels``).
  ``decode``: every valid layer's latent tokens form one sequence; ``depth`` ViT blocks with 3-D RoPE over
  (layer, y, x) attend across the layers (``joint=False``: within each layer only, the per-layer baseline); a dense
  head gives ``patch x patch`` RGBA pixels per token (sigmoid, [0, 1]).

  Attributes:
    max_layers: the most layers an input may have.
    patch: pixels per latent cell side (the grid is ``H / patch x W / patch``).
    latent_channels: channels of a latent cell.
    hidden: encoder width; width / depth / num_heads: the decoder ViT.
    joint: decode the layers jointly (the paper) or each on its own.
  """
  max_layers: int = 8
  patch: int = 4
  latent_channels: int = 16
  hidden: int = 64
  width: int = 64
  depth: int = 2
  num_heads: int = 4
  joint: bool = True
  impl: str = "auto"

  def _check_layers(self, layers_rgba, layer_valid):
    where = type(self).__name__
    layers.check_shape(layers_rgba, "layers", "batch layers height width channels", where=where, dtype="floating",
                       channels=4)
    if layers_rgba.shape[1] > self.max_layers:
      raise ValueError(f"{where}: `layers` has {layers_rgba.shape[1]} layers, more than max_layers="
                       f"{self.max_layers}.")
    if layers_rgba.shape[2] % self.patch or layers_rgba.shape[3] % self.patch:
      raise ValueError(f"{where}: `layers` height and width must be multiples of patch={self.patch}; got shape "
                       f"{layers_rgba.shape}.")
    layers.check_shape(layer_valid, "layer_valid", "batch layers", where=where, batch=layers_rgba.shape[0],
                       layers=layers_rgba.shape[1])

  def setup(self):
    p = self.patch
    self.patchify = layers.conv(self.hidden, (p, p), strides=p, padding="VALID")
    self.to_latent = layers.dense(self.latent_channels, axes=("mlp", "embed"))
    self.embed = layers.dense(self.width, axes=("embed", "mlp"))
    self.blocks = [_JointBlock(self.num_heads, impl=self.impl) for _ in range(self.depth)]
    self.norm_out = layers.layer_norm()
    self.to_pixels = layers.dense(p * p * 4, axes=("embed", "mlp"))

  def __call__(self, layers_rgba: Array | dict, layer_valid: Array | None = None) -> Array:
    """``layers [b, L, H, W, 4]`` RGBA in [0, 1], ``layer_valid [b, L]`` -> reconstruction ``[b, L, H, W, 4]``.

    ``layers_rgba`` may also be a dict ``{'layers', 'layer_valid'}`` (how the trainer passes a task's inputs);
    ``layer_valid`` defaults to every layer valid.
    """
    if isinstance(layers_rgba, dict):
      layers_rgba, layer_valid = layers_rgba["layers"], layers_rgba.get("layer_valid")
    if layer_valid is None:
      layer_valid = jnp.ones(jnp.shape(layers_rgba)[:2], jnp.int32)
    return self.decode(self.encode(layers_rgba, layer_valid), layer_valid)

  def encode(self, layers_rgba: Array, layer_valid: Array) -> Array:
    """-> latents ``[b, L, H/patch, W/patch, latent_channels]`` (0 for padded layers)."""
    self._check_layers(layers_rgba, layer_valid)
    b, num_layers, height, width, _ = layers_rgba.shape
    alpha = layers_rgba[..., 3:]
    gray = layers_rgba[..., :3] * alpha + 0.5 * (1.0 - alpha)  # the paper encodes colour on a gray background
    x = jnp.concatenate([gray, alpha], axis=-1) * 2.0 - 1.0
    x = x.reshape(b * num_layers, height, width, 4)
    z = self.to_latent(nn.gelu(self.patchify(x)))
    z = z.reshape(b, num_layers, *z.shape[1:])
    return z * jnp.asarray(layer_valid).astype(z.dtype)[:, :, None, None, None]

  def decode(self, latents: Array, layer_valid: Array) -> Array:
    """``latents [b, L, h, w, c]`` -> RGBA ``[b, L, h*patch, w*patch, 4]`` in [0, 1] (0 for padded layers)."""
    where = type(self).__name__
    layers.check_shape(latents, "latents", "batch layers height width channels", where=where, dtype="floating",
                       channels=self.latent_channels)
    if latents.shape[1] > self.max_layers:
      raise ValueError(f"{where}: `latents` has {latents.shape[1]} layers, more than max_layers={self.max_layers}.")
    b, num_layers, h, w, _ = latents.shape
    valid_layers = jnp.asarray(layer_valid).astype(bool)
    full = jnp.broadcast_to(jnp.array([0, 0, h, w], jnp.int32), (b, num_layers, 4))
    packed = region_crop_tokens(latents, full, valid_layers, region_crop=False)
    segments = jnp.where(packed.valid, packed.layer if not self.joint else 0, -1)
    x = self.embed(packed.tokens)
    for block in self.blocks:
      x = block(x, _positions(packed, 0), None, segment_ids=segments)
    p = self.patch
    pix = nn.sigmoid(self.to_pixels(self.norm_out(x)))
    grid = uncrop_tokens(pix, packed, num_layers, h, w).reshape(b, num_layers, h, w, p, p, 4)
    return grid.transpose(0, 1, 2, 4, 3, 5, 6).reshape(b, num_layers, h * p, w * p, 4)


# -------------------------------------------------------------------------------------------------- the DiT


class AnonymousRegionDiT(nn.Module):
  """The Anonymous Region Transformer: a flow-matching DiT over prompt tokens and region-cropped layer tokens.

  The sequence is ``[prompt (P) | packed layer tokens (T)]``. Prompt tokens sit at 3-D position (0, 0, 0) (FLUX
  gives text tokens zero positions); a layer token of layer ``l`` at grid cell ``(y, x)`` sits at ``(l + 1, y, x)``.
  Every valid token attends to every valid token (one joint attention; ``independent_layers=True``: a layer token
  attends only to its own layer and the prompt). Timestep conditioning is adaLN-Zero; the output head (adaLN, then a
  zero-initialised dense) predicts the velocity of each kept token, scattered back onto the layer grid.

  Attributes:
    latent_channels: ``c`` of the latents.
    vocab_size: prompt vocabulary (id 0 = padding).
    max_layers: the most layers (merged image and background included) an input may have.
    width, depth, num_heads, mlp_ratio: the transformer.
    region_crop: keep only each layer's in-box tokens (the paper); False: every layer's full canvas (ablation).
    independent_layers: no attention between layers (a per-layer generation baseline).
    max_tokens: static packed length ``T`` of the layer tokens; default ``max_layers * h * w``. Region crop saves
      compute only when this is set near the largest sum of box areas.
    rope_sections: head-dim split of the 3-D RoPE (default: see :func:`rope3d`).
  """
  latent_channels: int
  vocab_size: int
  max_layers: int = 8
  width: int = 64
  depth: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  region_crop: bool = True
  independent_layers: bool = False
  max_tokens: int | None = None
  rope_sections: tuple[int, int, int] | None = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, latents: Array, t: Array, boxes: Array, layer_valid: Array, prompt: Array) -> Array:
    where = type(self).__name__
    layers.check_shape(latents, "latents", "batch layers height width channels", where=where, dtype="floating",
                       channels=self.latent_channels)
    b, num_layers, h, w, c = latents.shape
    if num_layers > self.max_layers:
      raise ValueError(f"{where}: `latents` has {num_layers} layers, more than max_layers={self.max_layers}.")
    layers.check_shape(t, "t", "batch", where=where, dtype="floating", batch=b)
    layers.check_shape(prompt, "prompt", "batch prompt_length", where=where, dtype="integer", batch=b)
    layers.check_shape(layer_valid, "layer_valid", "batch layers", where=where, batch=b, layers=num_layers)
    bad = check_boxes(boxes, layer_valid, h, w, where=where)
    length = self.max_tokens if self.max_tokens is not None else self.max_layers * h * w
    packed = region_crop_tokens(latents, boxes, layer_valid, max_tokens=min(length, num_layers * h * w),
                                region_crop=self.region_crop)
    prompt_valid = prompt > 0
    x_img = layers.dense(self.width, axes=("embed", "mlp"), name="embed_latent")(packed.tokens)
    x_txt = layers.Embed(self.vocab_size, self.width, name="embed_prompt",
                         embedding_init=layers.partitioned(nn.linear.default_embed_init, ("vocab", "embed")))(prompt)
    x = jnp.concatenate([x_txt, x_img], axis=1)
    pos = jnp.concatenate([jnp.zeros(prompt.shape + (3,), jnp.int32), _positions(packed, 1)], axis=1)
    valid = jnp.concatenate([prompt_valid, packed.valid], axis=1)
    ids = None
    if self.independent_layers:  # prompt keys are shared by every segment: not segment ids, a dense mask
      seg = jnp.concatenate([jnp.zeros_like(prompt, jnp.int32), packed.layer + 1], axis=1)
      is_txt = jnp.concatenate([jnp.ones_like(prompt_valid), jnp.zeros_like(packed.valid)], axis=1)
      mask = segment_mask(jnp.where(valid, seg, -1)) | ((is_txt & valid)[:, None, None, :] & valid[:, None, :, None])
    else:  # one segment of valid tokens, padding -1: the kernel's segment ids, no [T, T] mask
      mask, ids = None, jnp.where(valid, 0, -1)
    temb = timestep_embedding(t, 256)
    temb = layers.dense(self.width, axes=("embed", "mlp"), name="time_in")(temb)
    cond = layers.dense(self.width, axes=("mlp", "embed"), name="time_out")(nn.silu(temb))
    for i in range(self.depth):
      x = _JointBlock(self.num_heads, self.mlp_ratio, self.rope_sections, self.impl, name=f"block{i}")(
          x, pos, mask, cond, segment_ids=ids)
    x = x[:, prompt.shape[1]:]
    shift, scale = jnp.split(layers.dense(2 * self.width, axes=("embed", "mlp"),
                                          kernel_init=nn.initializers.zeros_init(), name="adaln_out")(nn.silu(cond)),
                             2, axis=-1)
    x = layers.layer_norm(use_scale=False, use_bias=False, epsilon=1e-6, name="norm_out")(x)
    x = x * (1 + scale[:, None]) + shift[:, None]
    v = layers.dense(c, axes=("embed", "mlp"), kernel_init=nn.initializers.zeros_init(), name="out")(x)
    out = uncrop_tokens(v, packed, num_layers, h, w)
    return jnp.where(bad[:, None, None, None, None], jnp.nan, out)
