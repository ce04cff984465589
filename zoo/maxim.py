"""MAXIM: Multi-Axis MLP for Image Processing (Tu, Talebi, Zhang, Yang, Milanfar, Bovik and Li, CVPR 2022,
arXiv 2201.02973).

A multi-stage UNet whose blocks mix pixels with gated MLPs along two axes at once: a *block* gMLP mixes the b x b
pixels inside each non-overlapping block (local), a *grid* gMLP mixes the g x g positions of a dilated grid laid
over the whole image (global, sparse). Both are linear in the number of pixels. Images are channels-last.

* :class:`SpatialGatingUnit` (the gMLP gate): split the channels into ``u`` (first half) and ``v``, return
  ``u * (W LN(v) + b)`` where ``W`` mixes the token axis; ``W`` starts near 0 (normal, std 2e-2) and ``b`` at 1, so
  the unit starts as the identity gate (the reference writes the same thing as ``u * (W LN(v) + 1)`` with ``b = 0``).
  ``x: [..., tokens, ..., channels] -> [..., channels / 2]``.
* :func:`block_images` / :func:`unblock_images`: ``[n, (gh fh), (gw fw), c] <-> [n, gh gw, fh fw, c]``.
* :class:`BlockGmlp` (``block_size`` b: mixes the ``fh fw = b^2`` axis) and :class:`GridGmlp` (``grid_size`` g:
  mixes the ``gh gw = g^2`` axis, the patches being ``(h/g, w/g)``): LN, Dense(2C), GELU, gate, Dense(C), residual.
  ``x: [batch, h, w, c] -> [batch, h, w, c]``.
* :class:`MultiAxisGmlpBlock`: LN, Dense(2C), GELU, split the channels: first half -> GridGmlp, second -> BlockGmlp,
  concat, Dense(C), residual. ``use_grid=False`` is the ablation (both halves go through BlockGmlp: the same
  parameter count when b = g, no global mixing).
* :class:`CrossGatingBlock` (CGB): two streams ``x``, ``y`` each compute multi-axis spatial gating weights and gate
  the other; returns ``(x', y')`` at ``x``'s resolution (``y`` is first upsampled 2x when ``upsample_y``).
* :class:`RCAB` (LN, conv3x3, leaky ReLU 0.2, conv3x3, channel attention, residual) and :class:`RDCAB` (the
  bottleneck's channel-MLP + channel-attention block, as in the reference code).
* :class:`SAM`: supervised attention module between stages: ``(features, image) -> (features', restored image)``.
* :class:`MAXIM`: ``x: [batch, h, w, num_outputs] -> tuple of num_stages restored images [batch, h, w,
  num_outputs]`` (the last is the final output). Stage s > 0 fuses its input features with the previous stage's SAM
  features through a CGB, and its encoder levels with the previous stage's encoder + decoder features through a CGB
  (cross-stage feature fusion). Skips: every level's encoder features, resized to each level, are cross-gated with
  the upsampled bottleneck / coarser-level feature (the reference's multi-scale CGB skip fusion).
  ``h`` and ``w`` must be divisible by ``2**depth``, and every level's size by its block and grid sizes.

* :class:`ConvDenoiser`: the plain conv-net baseline (DnCNN-style residual 3x3 conv stack).

Presets (:data:`PRESETS`): the reference's ``S-1/2/3`` and ``M-1/2/3`` (features 32 / 64, depth 3, 2 groups, 2
bottleneck blocks, block = grid = 16 at the two high-resolution levels and 8 below), and ``tiny`` (features 8,
depth 2, 2 stages, 1 group, b = g = 4) for tests. The paper's text says b = g = 8; its released models use 16/8.
Single-scale supervision (the reference's default ``num_supervision_scales=1``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers

__all__ = ["BlockGmlp", "ConvDenoiser", "CrossGatingBlock", "GridGmlp", "MAXIM", "MultiAxisGmlpBlock", "PRESETS",
           "RCAB", "RDCAB", "SAM", "SpatialGatingUnit", "block_images", "check_image", "unblock_images"]

_EPS = 1e-6  # LayerNorm epsilon of the reference
_near_zero = nn.initializers.normal(stddev=2e-2)
_ln = functools.partial(layers.layer_norm, epsilon=_EPS)


def _pair(size) -> tuple[int, int]:
  if isinstance(size, int):
    return (size, size)
  size = tuple(int(s) for s in size)
  if len(size) != 2:
    raise ValueError(f"expected an int or a pair (height, width); got {size!r}.")
  return size


def check_image(x: Any, name: str, *, where: str, channels: int | None = None,
                divisible_by: Sequence[tuple[str, tuple[int, int]]] = ()) -> None:
  """``x`` must be a float ``[batch, h, w, c]`` image whose ``h, w`` are divisible by each named ``(fh, fw)``."""
  layers.check_shape(x, name, "batch height width channels", where=where, dtype="floating", channels=channels)
  h, w = x.shape[1:3]
  for what, (fh, fw) in divisible_by:
    if fh < 1 or fw < 1 or h % fh or w % fw:
      raise ValueError(f"{where}: `{name}` has spatial size {h}x{w}, which is not divisible by {what} {fh}x{fw}; "
                       f"pad or crop the image to a multiple of it.")


def block_images(x, patch: tuple[int, int]):
  """``[n, (gh fh), (gw fw), c] -> [n, gh gw, fh fw, c]`` for ``patch = (fh, fw)``."""
  n, h, w, c = x.shape
  fh, fw = patch
  x = x.reshape(n, h // fh, fh, w // fw, fw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, (h // fh) * (w // fw), fh * fw, c)


def unblock_images(x, grid: tuple[int, int], patch: tuple[int, int]):
  """Inverse of :func:`block_images`: ``[n, gh gw, fh fw, c] -> [n, gh fh, gw fw, c]``."""
  n, _, _, c = x.shape
  (gh, gw), (fh, fw) = grid, patch
  return x.reshape(n, gh, gw, fh, fw, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, gh * fh, gw * fw, c)


class SpatialGatingUnit(nn.Module):
  """gMLP gate ``u * (W LN(v) + b)`` mixing the token axis ``axis`` of ``x [n, G, P, 2d] -> [n, G, P, d]``.

  ``axis=-2`` mixes inside a patch (block gMLP), ``axis=-3`` across patches (grid gMLP).
  """
  axis: int = -2

  @nn.compact
  def __call__(self, x):
    if x.shape[-1] % 2:
      raise ValueError(f"SpatialGatingUnit: `x` needs an even number of channels to split; got {x.shape}.")
    u, v = jnp.split(x, 2, axis=-1)
    v = _ln(name="norm")(v)
    v = jnp.swapaxes(v, -1, self.axis)
    v = layers.dense(v.shape[-1], axes=(None, None), kernel_init=_near_zero, bias_init=nn.initializers.ones,
                     name="spatial")(v)
    return u * jnp.swapaxes(v, -1, self.axis)


class _AxisGmlp(nn.Module):
  """Shared body of BlockGmlp / GridGmlp: LN, Dense(factor C), GELU, gate over ``axis``, Dense(C), residual."""
  factor: int = 2
  dropout_rate: float = 0.0

  def _mix(self, x, patch, grid, axis, deterministic):
    n, h, w, c = x.shape
    x = block_images(x, patch)
    y = _ln(name="norm")(x)
    y = nn.gelu(layers.dense(c * self.factor, kernel_init=_near_zero, name="in_proj")(y))
    y = SpatialGatingUnit(axis=axis, name="gate")(y)
    y = layers.dense(c, kernel_init=_near_zero, name="out_proj")(y)
    y = layers.dropout(self.dropout_rate, deterministic=deterministic, where=type(self).__name__)(y)
    return unblock_images(x + y, grid, patch)


class BlockGmlp(_AxisGmlp):
  """Local mixing: gMLP over the ``b x b`` pixels of each block. ``x: [batch, h, w, c] -> same``."""
  block_size: Any = (8, 8)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    fh, fw = _pair(self.block_size)
    check_image(x, "x", where="BlockGmlp", divisible_by=[("block_size", (fh, fw))])
    grid = (x.shape[1] // fh, x.shape[2] // fw)
    return self._mix(x, (fh, fw), grid, -2, not train)


class GridGmlp(_AxisGmlp):
  """Global (dilated) mixing: gMLP over the ``g x g`` grid positions. ``x: [batch, h, w, c] -> same``."""
  grid_size: Any = (8, 8)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    gh, gw = _pair(self.grid_size)
    check_image(x, "x", where="GridGmlp", divisible_by=[("grid_size", (gh, gw))])
    patch = (x.shape[1] // gh, x.shape[2] // gw)
    return self._mix(x, patch, (gh, gw), -3, not train)  # -3: the (gh gw) axis, i.e. across patches


class MultiAxisGmlpBlock(nn.Module):
  """The multi-axis gated MLP block. ``x: [batch, h, w, c] -> [batch, h, w, c]``.

  ``use_grid=False`` (ablation) sends the global half through a second BlockGmlp instead of the GridGmlp.
  """
  block_size: Any = (8, 8)
  grid_size: Any = (8, 8)
  block_gmlp_factor: int = 2
  grid_gmlp_factor: int = 2
  input_proj_factor: int = 2
  dropout_rate: float = 0.0
  use_grid: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    b, g = _pair(self.block_size), _pair(self.grid_size)
    check_image(x, "x", where="MultiAxisGmlpBlock", divisible_by=[("block_size", b), ("grid_size", g)])
    c = x.shape[-1]
    y = _ln(name="norm")(x)
    y = nn.gelu(layers.dense(c * self.input_proj_factor, kernel_init=_near_zero, name="in_proj")(y))
    u, v = jnp.split(y, 2, axis=-1)
    if self.use_grid:
      u = GridGmlp(grid_size=g, factor=self.grid_gmlp_factor, dropout_rate=self.dropout_rate, name="grid")(
          u, train=train)
    else:
      u = BlockGmlp(block_size=b, factor=self.grid_gmlp_factor, dropout_rate=self.dropout_rate, name="grid")(
          u, train=train)
    v = BlockGmlp(block_size=b, factor=self.block_gmlp_factor, dropout_rate=self.dropout_rate, name="block")(
        v, train=train)
    y = layers.dense(c, kernel_init=_near_zero, name="out_proj")(jnp.concatenate([u, v], axis=-1))
    y = layers.dropout(self.dropout_rate, deterministic=not train, where="MultiAxisGmlpBlock")(y)
    return x + y


class _ChannelAttention(nn.Module):
  """Squeeze-and-excitation: ``x * sigmoid(W2 relu(W1 mean_hw(x)))``."""
  reduction: int = 4

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.relu(layers.conv(max(c // self.reduction, 1), (1, 1), name="squeeze")(s))
    return x * nn.sigmoid(layers.conv(c, (1, 1), name="excite")(s))


class RCAB(nn.Module):
  """Residual channel attention block: LN, conv3x3, leaky ReLU, conv3x3, channel attention, residual."""
  reduction: int = 4
  lrelu_slope: float = 0.2

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    y = layers.conv(c, (3, 3), name="conv1")(_ln(name="norm")(x))
    y = layers.conv(c, (3, 3), name="conv2")(nn.leaky_relu(y, self.lrelu_slope))
    return x + _ChannelAttention(self.reduction, name="attention")(y)


class RDCAB(nn.Module):
  """Bottleneck channel block of the reference: LN, channel MLP (GELU), channel attention, residual."""
  reduction: int = 4
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    c = x.shape[-1]
    y = nn.gelu(layers.dense(c, kernel_init=_near_zero, name="mlp_in")(_ln(name="norm")(x)))
    y = layers.dropout(self.dropout_rate, deterministic=not train, where="RDCAB")(y)
    y = layers.dense(c, kernel_init=_near_zero, name="mlp_out")(y)
    return x + _ChannelAttention(self.reduction, name="attention")(y)


class _GatingWeights(nn.Module):
  """The CGB's multi-axis spatial weights: LN, Dense(2C), GELU, grid Dense on one half, block Dense on the other,
  concat, Dense(C) (no gate: these multiply the other stream)."""
  block_size: tuple[int, int]
  grid_size: tuple[int, int]
  input_proj_factor: int = 2
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, deterministic: bool):
    n, h, w, c = x.shape
    x = nn.gelu(layers.dense(c * self.input_proj_factor, name="in_proj")(_ln(name="norm")(x)))
    u, v = jnp.split(x, 2, axis=-1)
    gh, gw = self.grid_size
    patch, grid = (h // gh, w // gw), (gh, gw)
    u = jnp.swapaxes(block_images(u, patch), -1, -3)
    u = layers.dense(u.shape[-1], axes=(None, None), kernel_init=_near_zero, bias_init=nn.initializers.ones,
                     name="grid")(u)
    u = unblock_images(jnp.swapaxes(u, -1, -3), grid, patch)
    fh, fw = self.block_size
    patch, grid = (fh, fw), (h // fh, w // fw)
    v = jnp.swapaxes(block_images(v, patch), -1, -2)
    v = layers.dense(v.shape[-1], axes=(None, None), kernel_init=_near_zero, bias_init=nn.initializers.ones,
                     name="block")(v)
    v = unblock_images(jnp.swapaxes(v, -1, -2), grid, patch)
    x = layers.dense(c, name="out_proj")(jnp.concatenate([u, v], axis=-1))
    return layers.dropout(self.dropout_rate, deterministic=deterministic, where="CrossGatingBlock")(x)


class CrossGatingBlock(nn.Module):
  """Cross-gating MLP block: ``(x [b, h, w, cx], y [b, h', w', cy]) -> (x', y') [b, h, w, features]``.

  ``y`` has ``x``'s resolution, or half of it when ``upsample_y`` (a 2x2 stride-2 transposed conv). Each stream
  computes multi-axis gating weights; ``y' = y * g(x) W + y`` and ``x' = x * g(y) W + y' + x``.
  """
  features: int
  block_size: Any = (8, 8)
  grid_size: Any = (8, 8)
  input_proj_factor: int = 2
  upsample_y: bool = True
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, y, *, train: bool = False):
    b, g = _pair(self.block_size), _pair(self.grid_size)
    check_image(x, "x", where="CrossGatingBlock", divisible_by=[("block_size", b), ("grid_size", g)])
    layers.check_shape(y, "y", "batch height width channels", where="CrossGatingBlock", dtype="floating")
    scale = 2 if self.upsample_y else 1
    if (y.shape[0], y.shape[1] * scale, y.shape[2] * scale) != x.shape[:3]:
      raise ValueError(f"CrossGatingBlock: `y` must have shape [{x.shape[0]}, {x.shape[1] // scale}, "
                       f"{x.shape[2] // scale}, channels] (x's batch and {'half ' if scale == 2 else ''}its "
                       f"resolution); got {tuple(y.shape)} for x {tuple(x.shape)}.")
    if self.upsample_y:
      y = nn.ConvTranspose(self.features, (2, 2), strides=(2, 2), name="up_y",
                           kernel_init=layers.partitioned(layers.default_kernel_init, (None, None, "conv_in",
                                                                                       "conv_out")))(y)
    c = self.features
    x = layers.conv(c, (1, 1), name="proj_x")(x)
    y = layers.conv(c, (1, 1), name="proj_y")(y)
    sx, sy = x, y
    det = not train
    gx = _GatingWeights(b, g, self.input_proj_factor, self.dropout_rate, name="weights_x")(
        nn.gelu(layers.dense(c, name="in_x")(_ln(name="norm_x")(x))), det)
    gy = _GatingWeights(b, g, self.input_proj_factor, self.dropout_rate, name="weights_y")(
        nn.gelu(layers.dense(c, name="in_y")(_ln(name="norm_y")(y))), det)
    drop = layers.dropout(self.dropout_rate, deterministic=det, where="CrossGatingBlock")
    y = drop(layers.dense(c, name="out_y")(y * gx)) + sy
    x = drop(layers.dense(c, name="out_x")(x * gy)) + y + sx
    return x, y


class SAM(nn.Module):
  """Supervised attention module (from MPRNet): ``(x [b, h, w, f], image [b, h, w, c]) -> (x' [b, h, w, f],
  restored [b, h, w, c])`` with ``restored = conv(x) + image`` and ``x' = conv(x) * sigmoid(conv(restored)) + x``."""

  @nn.compact
  def __call__(self, x, image):
    f, c = x.shape[-1], image.shape[-1]
    x1 = layers.conv(f, (3, 3), name="features")(x)
    restored = layers.conv(c, (3, 3), name="image")(x) + image
    x1 = x1 * nn.sigmoid(layers.conv(f, (3, 3), name="attention")(restored))
    return x1 + x, restored


class _Level(nn.Module):
  """One UNet level: conv1x1 in, ``num_groups`` x (multi-axis block + RCAB), long residual; optional CSFF CGB."""
  features: int
  block_size: tuple[int, int]
  grid_size: tuple[int, int]
  num_groups: int
  config: dict

  @nn.compact
  def __call__(self, x, fuse=None, *, train: bool = False):
    cfg = self.config
    x = layers.conv(self.features, (1, 1), name="proj")(x)
    shortcut = x
    for i in range(self.num_groups):
      x = MultiAxisGmlpBlock(self.block_size, self.grid_size, cfg["block_gmlp_factor"], cfg["grid_gmlp_factor"],
                             cfg["input_proj_factor"], cfg["dropout_rate"], cfg["use_grid"], name=f"mab_{i}")(
                                 x, train=train)
      x = RCAB(cfg["channels_reduction"], cfg["lrelu_slope"], name=f"rcab_{i}")(x)
    x = x + shortcut
    if fuse is not None:  # cross-stage feature fusion: gate with the previous stage's encoder + decoder features
      x, _ = CrossGatingBlock(self.features, self.block_size, self.grid_size, cfg["input_proj_factor"], False,
                              cfg["dropout_rate"], name="csff")(x, fuse, train=train)
    return x


def _resize(x, h, w):
  return x if x.shape[1:3] == (h, w) else jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), "bilinear")


class MAXIM(nn.Module):
  """The multi-stage MAXIM UNet. ``x: [batch, h, w, num_outputs] -> tuple of num_stages [batch, h, w, num_outputs]``.

  Attributes (the reference's defaults): ``features`` (level-0 width; level i has ``2**i * features``), ``depth``
  (downsamplings), ``num_stages``, ``num_groups`` (blocks per level), ``num_bottleneck_blocks``,
  ``block_size_hr`` / ``grid_size_hr`` for the first ``high_res_stages`` levels and ``block_size_lr`` (block *and*
  grid) below and in the bottleneck, gMLP factors, ``channels_reduction`` (SE), ``num_outputs`` (image channels),
  ``use_grid`` (False: the no-global-branch ablation), ``use_cross_gating`` (False: concat + conv fusions).
  """
  features: int = 64
  depth: int = 3
  num_stages: int = 2
  num_groups: int = 1
  num_bottleneck_blocks: int = 1
  high_res_stages: int = 2
  block_size_hr: Any = (16, 16)
  block_size_lr: Any = (8, 8)
  grid_size_hr: Any = (16, 16)
  grid_size_lr: Any = (8, 8)
  block_gmlp_factor: int = 2
  grid_gmlp_factor: int = 2
  input_proj_factor: int = 2
  channels_reduction: int = 4
  lrelu_slope: float = 0.2
  num_outputs: int = 3
  dropout_rate: float = 0.0
  use_grid: bool = True
  use_cross_gating: bool = True

  def _sizes(self, i):
    hr = i < self.high_res_stages
    block = _pair(self.block_size_hr if hr else self.block_size_lr)
    grid = _pair(self.grid_size_hr if hr else self.block_size_lr)  # low-res levels: the grid size is block_size_lr
    return block, grid

  def _check(self, x):
    for name in ("features", "depth", "num_stages", "num_groups"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"MAXIM: `{name}` must be >= 1; got {getattr(self, name)!r}.")
    layers.check_shape(x, "x", "batch height width channels", where="MAXIM", dtype="floating",
                       channels=self.num_outputs)
    need = [("2**depth", (2 ** self.depth, 2 ** self.depth))]
    for i in range(self.depth):
      block, grid = self._sizes(i)
      s = 2 ** i
      need += [(f"level-{i} block_size x 2**{i}", (block[0] * s, block[1] * s)),
               (f"level-{i} grid_size x 2**{i}", (grid[0] * s, grid[1] * s))]
    lr = _pair(self.block_size_lr)
    need.append((f"bottleneck block_size_lr x 2**{self.depth}", (lr[0] * 2 ** self.depth, lr[1] * 2 ** self.depth)))
    check_image(x, "x", where="MAXIM", divisible_by=need)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    self._check(x)
    cfg = dict(block_gmlp_factor=self.block_gmlp_factor, grid_gmlp_factor=self.grid_gmlp_factor,
               input_proj_factor=self.input_proj_factor, dropout_rate=self.dropout_rate, use_grid=self.use_grid,
               channels_reduction=self.channels_reduction, lrelu_slope=self.lrelu_slope)
    n, h, w, _ = x.shape
    width = lambda i: (2 ** i) * self.features
    res = lambda i: (h // 2 ** i, w // 2 ** i)
    lr = _pair(self.block_size_lr)
    outputs, sam, encs_prev, decs_prev = [], None, None, None
    for s in range(self.num_stages):
      feat = layers.conv(width(0), (3, 3), name=f"s{s}_in")(x)
      if sam is not None:  # fuse with the previous stage's SAM features
        if self.use_cross_gating:
          feat, _ = CrossGatingBlock(width(0), *self._sizes(0), self.input_proj_factor, False, self.dropout_rate,
                                     name=f"s{s}_fuse_sam")(feat, sam, train=train)
        else:
          feat = layers.conv(width(0), (1, 1), name=f"s{s}_fuse_sam")(jnp.concatenate([feat, sam], -1))
      encs = []
      for i in range(self.depth):
        fuse = None if encs_prev is None else encs_prev[i] + decs_prev[i]
        if fuse is not None and not self.use_cross_gating:
          feat, fuse = feat + layers.conv(width(i), (1, 1), name=f"s{s}_csff_{i}")(fuse), None
        feat = _Level(width(i), *self._sizes(i), self.num_groups, cfg, name=f"s{s}_enc_{i}")(feat, fuse,
                                                                                              train=train)
        encs.append(feat)
        feat = layers.conv(width(i), (4, 4), strides=2, name=f"s{s}_down_{i}")(feat)
      for j in range(self.num_bottleneck_blocks):
        feat = layers.conv(width(self.depth - 1), (1, 1), name=f"s{s}_bottleneck_{j}_proj")(feat)
        shortcut = feat
        for k in range(self.num_groups):
          feat = MultiAxisGmlpBlock(lr, lr, self.block_gmlp_factor, self.grid_gmlp_factor, self.input_proj_factor,
                                    self.dropout_rate, self.use_grid, name=f"s{s}_bottleneck_{j}_mab_{k}")(
                                        feat, train=train)
          feat = RDCAB(self.channels_reduction, self.dropout_rate, name=f"s{s}_bottleneck_{j}_rdcab_{k}")(
              feat, train=train)
        feat = feat + shortcut
      # multi-scale skip fusion: every level's encoder features, resized, cross-gated with the coarser feature
      skips, glob = {}, feat
      for i in reversed(range(self.depth)):
        signal = jnp.concatenate([layers.conv(width(i), (1, 1), name=f"s{s}_skip_{i}_from_{j}")(_resize(e, *res(i)))
                                  for j, e in enumerate(encs)], -1)
        if self.use_cross_gating:
          skips[i], glob = CrossGatingBlock(width(i), *self._sizes(i), self.input_proj_factor, True,
                                            self.dropout_rate, name=f"s{s}_skip_cgb_{i}")(signal, glob, train=train)
        else:
          skips[i] = layers.conv(width(i), (3, 3), name=f"s{s}_skip_conv_{i}")(
              layers.conv(width(i), (1, 1), name=f"s{s}_skip_proj_{i}")(signal))
      decs = [None] * self.depth
      for i in reversed(range(self.depth)):
        bridge = jnp.concatenate([layers.conv(width(i), (1, 1), name=f"s{s}_bridge_{i}_from_{j}")(
            _resize(skips[j], *res(i))) for j in range(self.depth)], -1)
        feat = nn.ConvTranspose(width(i), (2, 2), strides=(2, 2), name=f"s{s}_up_{i}",
                                kernel_init=layers.partitioned(layers.default_kernel_init,
                                                               (None, None, "conv_in", "conv_out")))(feat)
        feat = _Level(width(i), *self._sizes(i), self.num_groups, cfg, name=f"s{s}_dec_{i}")(
            jnp.concatenate([feat, bridge], -1), train=train)
        decs[i] = feat
      if s < self.num_stages - 1:
        sam, restored = SAM(name=f"s{s}_sam")(feat, x)
      else:
        restored = layers.conv(self.num_outputs, (3, 3), name=f"s{s}_out")(feat) + x
      outputs.append(restored)
      encs_prev, decs_prev = encs, decs
    return tuple(outputs)


class ConvDenoiser(nn.Module):
  """The conv-net baseline (DnCNN-style residual learning, Zhang et al., 2017): ``depth`` 3x3 convs of ``width``
  with ReLU between, the last predicting the residual. ``x: [batch, h, w, c] -> [batch, h, w, c]``."""
  width: int = 64
  depth: int = 8

  @nn.compact
  def __call__(self, x):
    layers.check_shape(x, "x", "batch height width channels", where="ConvDenoiser", dtype="floating")
    y = x
    for i in range(self.depth - 1):
      y = nn.relu(layers.conv(self.width, (3, 3), name=f"conv_{i}")(y))
    return x + layers.conv(x.shape[-1], (3, 3), name=f"conv_{self.depth - 1}")(y)


PRESETS: dict[str, dict[str, Any]] = {
    **{f"{v}-{k}": dict(features=f, depth=3, num_stages=k, num_groups=2, num_bottleneck_blocks=2)
       for v, f in (("S", 32), ("M", 64)) for k in (1, 2, 3)},
    "tiny": dict(features=8, depth=2, num_stages=2, num_groups=1, num_bottleneck_blocks=1, high_res_stages=2,
                 block_size_hr=(4, 4), block_size_lr=(4, 4), grid_size_hr=(4, 4), grid_size_lr=(4, 4)),
}
