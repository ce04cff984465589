"""Swin Transformer: shifted-window attention with a relative position bias, patch merging, the hierarchical backbone.

Paper: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", Liu et al., ICCV 2021 (arXiv
2103.14030). Details as in the authors' code (github.com/microsoft/Swin-Transformer): ``qkv`` is one dense layer
packed ``[q | k | v]``, each head's columns contiguous; the relative position bias table ``[(2M-1)^2, heads]`` is
indexed by the query-minus-key offset, row-major; the shifted windows are a cyclic ``roll(-s, -s)`` of the map
(``s = M // 2``), undone after attention, with a mask that keeps tokens from attending across the wrapped border;
the shift is switched off (and the window shrunk) when the map is at most one window wide; PatchMerging concatenates
``[(0::2, 0::2), (1::2, 0::2), (0::2, 1::2), (1::2, 1::2)]``, then LayerNorm(4C) and a bias-free reduction to 2C;
exact (erf) GELU; LayerNorm eps 1e-5; linear weights truncated-normal(0.02) with zero biases.

Every window attention goes through :func:`zoo.kernels.attention.attention` with ``bias`` (the relative position
bias, ``[1, heads, M^2, M^2]``) and ``mask`` (the shifted-window mask, ``[windows, 1, M^2, M^2]``, True = may attend),
so the Pallas kernel serves it on GPU/TPU. The reference adds -100 to the masked logits; here the mask is boolean
(the attention function masks with the float32 minimum): the weights differ by ``exp(-100)`` relative, i.e. not at
float32 precision.

Public names (``b`` batch, ``H``/``W`` map height/width, ``C`` channels, ``M`` window side, ``N = M * M``):

* :func:`window_partition` ``(x [b, H, W, C], M) -> [b * (H/M) * (W/M), N, C]`` (windows row-major per image).
* :func:`window_reverse` ``(windows [b * nW, N, C], M, H, W) -> [b, H, W, C]``.
* :func:`relative_position_index` ``(M) -> int [N, N]``: the bias table row of each (query, key) pair.
* :func:`shifted_window_mask` ``(H, W, M, s) -> bool [nW, N, N]``: True where two tokens of one shifted window
  were neighbours in the unshifted map (may attend).
* :class:`WindowAttention` ``(windows [B, N, C], mask [nW, N, N] | None) -> [B, N, C]``.
* :class:`SwinBlock` ``(x [b, H, W, C]) -> [b, H, W, C]``: (S)W-MSA + MLP, pre-norm, stochastic depth.
* :class:`PatchMerging` ``(x [b, H, W, C]) -> [b, H/2, W/2, 2C]``.
* :class:`SwinTransformer` ``(image [b, H, W, channels]) -> logits [b, num_classes]`` (``num_classes=0``: the pooled
  feature ``[b, embed_dim * 2^(stages-1)]``); ``features`` gives the pooled feature.
* :data:`PRESETS` and :func:`swin`: Swin-T/S/B/L of the paper (224^2, window 7) and ``'test'`` (patch 2, window 4,
  two stages) for small images.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo.kernels import attention as attention_lib
from zoo.transformer import MLPBlock

__all__ = ["PRESETS", "PatchMerging", "SwinBlock", "SwinTransformer", "WindowAttention", "relative_position_index",
           "shifted_window_mask", "swin", "window_partition", "window_reverse"]

Array = jax.Array

# The authors' _init_weights: trunc_normal_(std=.02) on every nn.Linear (the conv patch embedding keeps its default).
trunc_normal = nn.initializers.truncated_normal(0.02)

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's Table 1 / the official configs (224^2 input, patch 4, window 7); drop_path_rate per the configs.
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "base": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
    "large": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), drop_path_rate=0.2),
    # For tests and small images (32x32 -> a 16x16 map of 4x4 windows, then 8x8).
    "test": dict(patch_size=2, window_size=4, embed_dim=32, depths=(2, 2), num_heads=(2, 4), drop_path_rate=0.0),
}
"""Backbone presets; every other field keeps :class:`SwinTransformer`'s default (patch 4, window 7, mlp ratio 4)."""


# ------------------------------------------------------------------------------------------------------- windows


def window_partition(x: Array, window_size: int) -> Array:
  """``x [b, H, W, C] -> [b * (H/M) * (W/M), M*M, C]``: non-overlapping windows, row-major within each image."""
  b, h, w, c = x.shape
  m = window_size
  if h % m or w % m:
    raise ValueError(f"window_partition: the map {h}x{w} is not divisible by window_size={m}.")
  x = x.reshape(b, h // m, m, w // m, m, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b * (h // m) * (w // m), m * m, c)


def window_reverse(windows: Array, window_size: int, height: int, width: int) -> Array:
  """Inverse of :func:`window_partition`: ``[b * nW, M*M, C] -> [b, H, W, C]``."""
  m = window_size
  nh, nw = height // m, width // m
  c = windows.shape[-1]
  x = windows.reshape(-1, nh, nw, m, m, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, height, width, c)


@functools.cache
def relative_position_index(window_size: int) -> np.ndarray:
  """``int [M*M, M*M]``: the bias table row for (query i, key j), from their offset ``(dy, dx) = pos_i - pos_j``.

  Offsets range over ``[-(M-1), M-1]`` per axis; the row is ``(dy + M - 1) * (2M - 1) + (dx + M - 1)`` (row-major
  over the ``(2M-1) x (2M-1)`` table).
  """
  m = window_size
  coords = np.stack(np.meshgrid(np.arange(m), np.arange(m), indexing="ij")).reshape(2, -1)  # [2, N] (y, x)
  rel = coords[:, :, None] - coords[:, None, :] + (m - 1)  # [2, N, N]
  return (rel[0] * (2 * m - 1) + rel[1]).astype(np.int32)


@functools.cache
def shifted_window_mask(height: int, width: int, window_size: int, shift: int) -> np.ndarray:
  """``bool [nW, M*M, M*M]`` for the map rolled by ``(-shift, -shift)``: True where two tokens may attend.

  After the roll the last window row/column holds tokens from both borders of the map; each axis is cut into the
  regions ``[0, H-M)``, ``[H-M, H-s)``, ``[H-s, H)`` and tokens attend only within their own (region_y, region_x).
  """
  m, s = window_size, shift
  region = np.zeros((1, height, width, 1), np.int32)
  label = 0
  for ys in (slice(0, -m), slice(-m, -s), slice(-s, None)):
    for xs in (slice(0, -m), slice(-m, -s), slice(-s, None)):
      region[:, ys, xs, :] = label
      label += 1
  windows = np.asarray(window_partition(region, m))[..., 0]  # [nW, N] (numpy reshape: no device work)
  return windows[:, :, None] == windows[:, None, :]


# ----------------------------------------------------------------------------------------------------- modules


class WindowAttention(nn.Module):
  """Multi-head self-attention inside each window, plus the learned relative position bias.

  ``softmax(q k^T / sqrt(d) + B[rel(i, j)], masked) v``, then a dense projection.

  Attributes:
    num_heads: heads (the width must be a multiple).
    window_size: window side ``M``; inputs hold ``M*M`` tokens per window.
    qkv_bias: bias in the packed ``qkv`` projection (the paper's default True).
    attn_drop, proj_drop: dropout rates on the attention weights and on the output (training only).
    impl: backend of :func:`zoo.kernels.attention.attention`.
  """
  num_heads: int
  window_size: int
  qkv_bias: bool = True
  attn_drop: float = 0.0
  proj_drop: float = 0.0
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, windows: Array, mask: Array | None = None, *, train: bool = False) -> Array:
    """``windows [B, M*M, C]`` (``B = batch * nW``), ``mask`` bool ``[nW, M*M, M*M]`` -> ``[B, M*M, C]``."""
    where = type(self).__name__
    n = self.window_size * self.window_size
    layers.check_shape(windows, "windows", "batch tokens features", where=where, dtype="floating", tokens=n)
    bsz, _, c = windows.shape
    if c % self.num_heads:
      raise ValueError(f"{where}: the width {c} is not a multiple of num_heads={self.num_heads}.")
    layers.check_rate(self.attn_drop, "attn_drop", where=where)
    hd = c // self.num_heads
    dense = functools.partial(layers.dense, kernel_init=trunc_normal, dtype=self.dtype, param_dtype=self.param_dtype)
    qkv = dense(3 * c, use_bias=self.qkv_bias, name="qkv")(windows)
    # [q | k | v], each head's hd columns contiguous (the reference's reshape(B, N, 3, heads, hd)).
    qkv = qkv.reshape(bsz, n, 3, self.num_heads, hd)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    m = self.window_size
    table = self.param("relative_position_bias_table", layers.partitioned(trunc_normal, (None, "heads")),
                       ((2 * m - 1) ** 2, self.num_heads), self.param_dtype)
    bias = table[relative_position_index(m).reshape(-1)].reshape(n, n, self.num_heads)
    bias = jnp.transpose(bias, (2, 0, 1))[None].astype(jnp.float32)  # [1, heads, N, N]
    if mask is not None:
      layers.check_shape(mask, "mask", "windows tokens keys", where=where, tokens=n, keys=n)
      nw = mask.shape[0]
      if bsz % nw:
        raise ValueError(f"{where}: {bsz} windows are not a whole number of images of {nw} windows (mask shape "
                         f"{tuple(mask.shape)}).")
      # windows are ordered (image, window): repeat the per-window mask over the images.
      mask = jnp.broadcast_to(jnp.asarray(mask, bool)[None], (bsz // nw, nw, n, n)).reshape(bsz, 1, n, n)
    rng = self.make_rng("dropout") if train and self.attn_drop > 0 else None
    out = attention_lib.attention(q, k, v, bias=bias, mask=mask, dropout_rate=self.attn_drop if train else 0.0,
                                  dropout_rng=rng, impl=self.impl)
    out = out.reshape(bsz, n, c)
    out = dense(c, axes=("mlp", "embed"), name="proj")(out)
    return layers.dropout(self.proj_drop, deterministic=not train, where=where)(out)


def _drop_path(x: Array, rate: float, *, train: bool, where: str) -> Array:
  """Stochastic depth: drop a whole residual branch per example (kept ones scaled by ``1 / (1 - rate)``)."""
  layers.check_rate(rate, "drop_path", where=where)
  if not train or rate == 0.0:
    return x
  return nn.Dropout(rate, broadcast_dims=tuple(range(1, x.ndim)), deterministic=False)(x)


class SwinBlock(nn.Module):
  """One Swin block: ``x + DropPath((S)W-MSA(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``.

  Attributes:
    num_heads, window_size: of the window attention.
    shift_size: the cyclic shift of SW-MSA (the paper's blocks alternate 0 and ``window_size // 2``); 0 is W-MSA.
      When the map is at most one window wide the window shrinks to the map and the shift is switched off.
    mlp_ratio: MLP hidden width / input width (4).
    drop, attn_drop, drop_path: dropout on the MLP and projection, on the attention weights, stochastic depth.
  """
  num_heads: int
  window_size: int = 7
  shift_size: int = 0
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  drop: float = 0.0
  attn_drop: float = 0.0
  drop_path: float = 0.0
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False) -> Array:
    """``x [batch, H, W, C] -> [batch, H, W, C]``."""
    where = type(self).__name__
    layers.check_shape(x, "x", "batch height width channels", where=where, dtype="floating")
    layers.check_rate(self.drop_path, "drop_path", where=where)
    _, h, w, c = x.shape
    m, s = self.window_size, self.shift_size
    if min(h, w) <= m:  # one window covers the map: no shift, the window shrinks to the map
      m, s = min(h, w), 0
    if h % m or w % m:
      raise ValueError(f"{where}: the {h}x{w} map is not divisible by window_size={m}.")
    if not 0 <= s < m:
      raise ValueError(f"{where}: `shift_size` must lie in [0, window_size={m}); got {s}.")
    shortcut = x
    x = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm1")(x)
    mask = None
    if s:
      x = jnp.roll(x, (-s, -s), axis=(1, 2))
      mask = shifted_window_mask(h, w, m, s)
    windows = window_partition(x, m)
    windows = WindowAttention(self.num_heads, m, qkv_bias=self.qkv_bias, attn_drop=self.attn_drop,
                              proj_drop=self.drop, impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype,
                              name="attn")(windows, mask, train=train)
    x = window_reverse(windows, m, h, w)
    if s:
      x = jnp.roll(x, (s, s), axis=(1, 2))
    x = shortcut + _drop_path(x, self.drop_path, train=train, where=where)
    y = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm2")(x)
    y = MLPBlock(int(c * self.mlp_ratio), activation="gelu_exact", dropout_rate=self.drop, kernel_init=trunc_normal,
                 dtype=self.dtype, param_dtype=self.param_dtype, name="mlp")(y, train=train)
    y = layers.dropout(self.drop, deterministic=not train, where=where)(y)
    return x + _drop_path(y, self.drop_path, train=train, where=where)


class PatchMerging(nn.Module):
  """``[b, H, W, C] -> [b, H/2, W/2, 2C]``: concatenate each 2x2 neighbourhood (4C), LayerNorm, bias-free dense."""
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    where = type(self).__name__
    layers.check_shape(x, "x", "batch height width channels", where=where, dtype="floating")
    _, h, w, c = x.shape
    if h % 2 or w % 2:
      raise ValueError(f"{where}: the map must have even height and width; got {h}x{w}.")
    x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)
    x = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)
    return layers.dense(2 * c, use_bias=False, kernel_init=trunc_normal, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="reduction")(x)


class SwinTransformer(nn.Module):
  """The hierarchical Swin backbone: patch embedding + LN, stages of :class:`SwinBlock` (alternating W-MSA and
  SW-MSA) joined by :class:`PatchMerging`, a final LN, global average pooling, a linear head.

  Defaults are Swin-T (``PRESETS['tiny']`` with the reference's default drop_path_rate 0.1); see :func:`swin`.

  Attributes:
    num_classes: outputs of the linear head; 0: no head (``__call__`` returns the pooled feature).
    patch_size: side of the non-overlapping patches.
    embed_dim: width of stage 1 (stage ``i`` has ``embed_dim * 2^i``).
    depths, num_heads: blocks and heads per stage.
    window_size: window side ``M``; the image side / patch_size / 2^(stages-1) must be a multiple of ``M`` (or at
      most ``M``, where the window shrinks to the map).
    shift: True: blocks alternate W-MSA and SW-MSA (the paper); False: W-MSA only (the ablation).
    mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate: as the paper (stochastic depth grows linearly
      from 0 to ``drop_path_rate`` over the blocks).
    patch_norm: LayerNorm after the patch embedding.
  """
  num_classes: int = 1000
  patch_size: int = 4
  embed_dim: int = 96
  depths: Sequence[int] = (2, 2, 6, 2)
  num_heads: Sequence[int] = (3, 6, 12, 24)
  window_size: int = 7
  shift: bool = True
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.1
  patch_norm: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def _check(self, image: Array) -> None:
    where = type(self).__name__
    layers.check_shape(image, "image", "batch height width channels", where=where, dtype="floating")
    if len(self.depths) != len(self.num_heads) or not self.depths:
      raise ValueError(f"{where}: `depths` {tuple(self.depths)} and `num_heads` {tuple(self.num_heads)} must be "
                       "non-empty and of the same length (one entry per stage).")
    _, h, w, _ = image.shape
    p, m, down = self.patch_size, self.window_size, 2 ** (len(self.depths) - 1)
    for stage in range(len(self.depths)):
      f = p * 2 ** stage
      sh, sw = h // f, w // f
      if h % f or w % f or (min(sh, sw) > m and (sh % m or sw % m)):
        raise ValueError(
            f"{where}: `image` height and width must be multiples of patch_size * 2^(stages-1) = {p * down} and "
            f"every stage's map a multiple of window_size={m} (or at most one window); got image shape "
            f"{tuple(image.shape)}, whose stage-{stage + 1} map is {h / f:g}x{w / f:g}.")

  @nn.compact
  def __call__(self, image: Array, *, train: bool = False, pooled: bool = False) -> Array:
    """``image [batch, H, W, channels]`` -> logits ``[batch, num_classes]`` float32; with ``pooled=True`` (or
    ``num_classes=0``) the pooled feature ``[batch, embed_dim * 2^(stages-1)]`` instead."""
    self._check(image)
    p = self.patch_size
    x = layers.conv(self.embed_dim, (p, p), strides=p, padding="VALID", dtype=self.dtype,
                    param_dtype=self.param_dtype, name="patch_embed")(image)
    if self.patch_norm:
      x = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="patch_norm")(x)
    x = layers.dropout(self.drop_rate, deterministic=not train, where=type(self).__name__)(x)
    total = sum(self.depths)
    rates = np.linspace(0.0, self.drop_path_rate, total)
    block = 0
    for stage, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      for i in range(depth):
        shift = self.window_size // 2 if (self.shift and i % 2 == 1) else 0
        x = SwinBlock(heads, self.window_size, shift, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
                      drop=self.drop_rate, attn_drop=self.attn_drop_rate, drop_path=float(rates[block]),
                      impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype,
                      name=f"stage{stage}_block{i}")(x, train=train)
        block += 1
      if stage < len(self.depths) - 1:
        x = PatchMerging(dtype=self.dtype, param_dtype=self.param_dtype, name=f"merge{stage}")(x)
    x = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)
    feature = x.mean(axis=(1, 2))
    if pooled or not self.num_classes:
      return feature
    return layers.dense(self.num_classes, axes=("embed", "classes"), kernel_init=trunc_normal, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="head")(feature).astype(jnp.float32)

  def features(self, image: Array, *, train: bool = False) -> Array:
    """``image [batch, H, W, channels]`` -> pooled feature ``[batch, embed_dim * 2^(stages-1)]``."""
    return self(image, train=train, pooled=True)


def swin(preset: str, **overrides: Any) -> SwinTransformer:
  """``SwinTransformer`` with the fields of ``PRESETS[preset]`` (``'tiny'``, ``'small'``, ``'base'``, ``'large'``,
  ``'test'``), updated by ``overrides``."""
  if preset not in PRESETS:
    raise ValueError(f"swin: unknown preset {preset!r}; valid: {', '.join(PRESETS)}.")
  return SwinTransformer(**{**PRESETS[preset], **overrides})
