"""SwinCheX: a Swin backbone, its pooled feature, and one independent MLP head per label (multi-label chest X-rays).

Paper: "SwinCheX: Multi-label classification on chest X-ray images with transformers", Taslimi, Taslimi, Fathi,
Salehi, Rohban, 2022 (arXiv 2206.04246). The backbone is :class:`zoo.swin.SwinTransformer` (the paper: Swin-L,
ImageNet-22k pretrained, 224^2, window 7); its pooled feature feeds 14 heads, one per ChestX-ray14 pathology, each
an independent MLP. The best head (3 layers; ``num_mlp_heads=3`` in a SwinCheX-derived
``SwinTransformerTimm`` wrapper, as the rohban-lab code only shows the linear head and a commented 48-unit one) is
``feature -> 384 -> 48 -> 48 -> out`` with ReLU; the baseline (``num_mlp_heads=0``) is one linear layer per label,
i.e. a single linear head ``feature -> labels``. The loss is the sum over labels of each label's binary
cross-entropy (``zoo.recipes.procedures.chexray.SummedMultilabel``); the metric is the mean over labels of the
AUROC.

Deviation: the authors' heads output 2 logits per label under a 2-way softmax cross-entropy; here each head outputs
one logit under a sigmoid binary cross-entropy. The two are the same model (the softmax of two logits is the sigmoid
of their difference), with one redundant parameter fewer.

Public names (``b`` batch, ``L`` labels, ``F`` the pooled feature width):

* :class:`PerLabelMLP` ``(feature [b, F]) -> logits [b, L]``: ``L`` independent MLPs evaluated as batched einsums
  (weights ``[L, in, out]``); ``hidden=()`` is the linear head.
* :class:`SwinCheX` ``(image [b, H, W, channels]) -> logits [b, num_labels]`` float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo import swin as swin_lib

__all__ = ["PerLabelMLP", "SwinCheX"]

Array = jax.Array

# Deviation: the heads use torch's default nn.Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (variance
# 1 / (3 fan_in)), as the SwinCheX-derived wrapper that adds them after the backbone is built leaves them; the
# rohban-lab model creates its heads before `self.apply(_init_weights)`, i.e. trunc-normal(0.02). Trained from
# scratch (the paper fine-tunes a pretrained Swin-L), a 4-layer trunc-normal(0.02) head starts with a vanishing
# signal and barely trained here.
torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=-2, out_axis=-1,
                                                     batch_axis=(0,))


class PerLabelMLP(nn.Module):
  """``num_labels`` independent MLPs on one feature: label ``l``'s logit is ``MLP_l(feature)``.

  Attributes:
    num_labels: heads (14 pathologies in ChestX-ray14).
    hidden: hidden widths of every head (the paper's best: ``(384, 48, 48)``); ``()``: one linear layer per label.
    activation: between the layers (ReLU, as the authors' heads).
  """
  num_labels: int = 14
  hidden: Sequence[int] = (384, 48, 48)
  activation: Any = nn.relu
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, feature: Array) -> Array:
    """``feature [batch, F] -> logits [batch, num_labels]``."""
    layers.check_shape(feature, "feature", "batch features", where=type(self).__name__, dtype="floating")
    if self.num_labels < 1:
      raise ValueError(f"{type(self).__name__}: `num_labels` must be >= 1; got {self.num_labels}.")
    dtype = self.dtype or feature.dtype
    widths = (*self.hidden, 1)
    h = jnp.broadcast_to(feature[None], (self.num_labels, *feature.shape)).astype(dtype)  # [L, b, F]
    for i, width in enumerate(widths):
      kernel = self.param(f"kernel_{i}", layers.partitioned(torch_linear_init, (None, "embed", "mlp")),
                          (self.num_labels, h.shape[-1], width), self.param_dtype)
      bias = self.param(f"bias_{i}", layers.partitioned(nn.initializers.zeros_init(), (None, "mlp")),
                        (self.num_labels, width), self.param_dtype)
      h = jnp.einsum("lbi,lio->lbo", h, kernel.astype(dtype)) + bias.astype(dtype)[:, None, :]
      if i < len(widths) - 1:
        h = self.activation(h)
    return jnp.transpose(h[..., 0], (1, 0))


class SwinCheX(nn.Module):
  """Swin backbone -> pooled feature -> ``num_labels`` per-label MLP heads -> one logit per label.

  Defaults are the paper's: Swin-L (``zoo.swin.PRESETS['large']``: embed 192, depths (2, 2, 18, 2), heads
  (6, 12, 24, 48)), patch 4, window 7, 14 labels, heads 384-48-48. Small images use the ``'test'`` preset's fields
  (``patch_size=2, window_size=4, embed_dim=32, depths=(2, 2), num_heads=(2, 4)``).

  Attributes:
    num_labels: outputs.
    head_hidden: hidden widths of each label's MLP head.
    linear_head: True: the paper's baseline, a single linear head ``feature -> num_labels`` (the heads' hidden
      layers are dropped).
    shift: False: W-MSA only (the Swin ablation of the shifted windows).
    patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio, drop_rate, attn_drop_rate, drop_path_rate,
    impl: of the :class:`zoo.swin.SwinTransformer` backbone.
  """
  num_labels: int = 14
  head_hidden: Sequence[int] = (384, 48, 48)
  linear_head: bool = False
  shift: bool = True
  patch_size: int = 4
  embed_dim: int = 192
  depths: Sequence[int] = (2, 2, 18, 2)
  num_heads: Sequence[int] = (6, 12, 24, 48)
  window_size: int = 7
  mlp_ratio: float = 4.0
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.2
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def setup(self):
    self.backbone = swin_lib.SwinTransformer(
        num_classes=0, patch_size=self.patch_size, embed_dim=self.embed_dim, depths=tuple(self.depths),
        num_heads=tuple(self.num_heads), window_size=self.window_size, shift=self.shift, mlp_ratio=self.mlp_ratio,
        drop_rate=self.drop_rate, attn_drop_rate=self.attn_drop_rate, drop_path_rate=self.drop_path_rate,
        impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype)
    self.heads = PerLabelMLP(self.num_labels, () if self.linear_head else tuple(self.head_hidden), dtype=self.dtype,
                             param_dtype=self.param_dtype)

  def __call__(self, image: Array, *, train: bool = False) -> Array:
    """``image [batch, H, W, channels]`` float -> logits ``[batch, num_labels]`` float32."""
    return self.heads(self.backbone(image, train=train)).astype(jnp.float32)

  def features(self, image: Array, *, train: bool = False) -> Array:
    """The backbone's pooled feature ``[batch, embed_dim * 2^(stages-1)]``."""
    return self.backbone(image, train=train)
