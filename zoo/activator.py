"""Activator: a vision transformer whose core is a GLU, without softmax attention.

Paper: "Activator: GLU Activations as The Core Functions of a Vision Transformer", Abdullah Nazhat Abdullah and
Tarkan Aydin, 2024 (arXiv 2405.15953); built following the authors' reference code (github.com/Abdullah-88/Activator).

* :class:`ActivatorGatingUnit` ``x [..., d] -> [..., d]``: ``u = LN_h(act(x W1))``, ``v = LN_h(x W2)`` with *one*
  LayerNorm ``LN_h`` (the same scale and bias) applied to both, output ``(u * v) W3``. A per-token GLU-MLP: it does
  not mix tokens.
* :class:`ActivatorBlock` ``x [b, n, d] -> [b, n, d]``: ``x += AGU(LN(x))`` then ``x += FFN(LN(x))`` with the *same*
  ``LN`` instance both times; ``FFN`` is Linear-GELU-Dropout-Linear-Dropout (``zoo.transformer.MLPBlock``).
  ``ffn=False`` drops the FFN (the paper's GLU-only core variant).
* :class:`ActivatorClassifier` ``image [b, H, W, C] -> logits [b, classes]``: patchify conv (kernel = stride =
  patch), ``num_layers`` blocks, mean over tokens (the only token mixing), linear head. The reference settings for
  CIFAR-10 are patch 4, d = 256, d_ffn = 512, 4 layers, dropout 0.5, Adam 1e-3, 100 epochs.

``gated=False`` is the ablation of the paper's mechanism: the gating unit loses its linear branch ``v`` (and
``W2``) and becomes the plain-activation MLP ``LN_h(act(x W1)) W3``; everything else stays the same.

``activation`` selects the gate's nonlinearity (``'gelu'`` as in the paper; ``'silu'`` / ``'relu'`` give the
SwiGLU / ReGLU-style variants). The reference code adds no positional embedding, so the classifier sees a bag of
patches; ``position_embedding=True`` adds a learned one (an option of this implementation, off by default).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo import transformer

__all__ = ["ActivatorBlock", "ActivatorClassifier", "ActivatorGatingUnit"]

Array = jax.Array


class ActivatorGatingUnit(nn.Module):
  """``(LN_h(act(x W1)) * LN_h(x W2)) W3`` with one shared ``LN_h``.

  Attributes:
    hidden_features: ``d_ffn``.
    activation: the gate's nonlinearity (name in ``zoo.transformer.ACTIVATIONS`` or a callable).
    gated: the GLU (default, the paper's unit); ``False`` is the ablation ``LN_h(act(x W1)) W3`` (no ``W2`` branch,
      a plain activation in place of the GLU).
  """
  hidden_features: int
  activation: Any = "gelu"
  gated: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [..., features] -> [..., features]``."""
    layers.check_shape(x, "x", "... features", where=type(self).__name__, dtype="floating")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = layers.layer_norm(name="norm", **kw)  # one instance, applied to both branches
    u = norm(transformer.get_activation(self.activation)(layers.dense(self.hidden_features, name="proj_1", **kw)(x)))
    if self.gated:
      u = u * norm(layers.dense(self.hidden_features, name="proj_2", **kw)(x))
    return layers.dense(x.shape[-1], axes=("mlp", "embed"), name="proj_3", **kw)(u)


class ActivatorBlock(nn.Module):
  """``x += AGU(LN(x)); x += FFN(LN(x))`` with the same ``LN``.

  Attributes:
    mlp_dim: ``d_ffn`` of the gating unit and of the FFN.
    dropout_rate: the FFN's dropouts.
    ffn: keep the FFN (False: the GLU-only core).
    activation: the gate's nonlinearity.
    gated: the GLU gating unit (``False``: the plain-activation ablation, see :class:`ActivatorGatingUnit`).
  """
  mlp_dim: int
  dropout_rate: float = 0.0
  ffn: bool = True
  activation: Any = "gelu"
  gated: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False) -> Array:
    """``x [batch, tokens, features] -> [batch, tokens, features]``."""
    layers.check_shape(x, "x", "batch tokens features", where=type(self).__name__, dtype="floating")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    norm = layers.layer_norm(name="norm", **kw)
    x = x + ActivatorGatingUnit(self.mlp_dim, activation=self.activation, gated=self.gated, name="agu",
                                 **kw)(norm(x))
    if self.ffn:
      h = transformer.MLPBlock(self.mlp_dim, activation="gelu", dropout_rate=self.dropout_rate, name="ffn",
                               **kw)(norm(x), train=train)
      x = x + layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)(h)
    return x


class ActivatorClassifier(nn.Module):
  """Patchify -> ``num_layers`` :class:`ActivatorBlock` -> mean over tokens -> linear head.

  Attributes:
    num_classes: outputs.
    patch_size: side of the square patches (image sides must be multiples); 2 suits 8x8 digits.
    hidden: ``d`` (token width).
    mlp_dim: ``d_ffn``.
    num_layers: blocks.
    dropout_rate: FFN dropout (the paper's CIFAR setting is 0.5).
    ffn: keep each block's FFN.
    activation: the gate's nonlinearity.
    gated: the GLU gating units (``False``: the plain-activation ablation).
    position_embedding: add a learned position embedding to the patch tokens (not in the reference code).
  """
  num_classes: int = 10
  patch_size: int = 2
  hidden: int = 64
  mlp_dim: int = 128
  num_layers: int = 4
  dropout_rate: float = 0.0
  ffn: bool = True
  activation: Any = "gelu"
  gated: bool = True
  position_embedding: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array, *, train: bool = False) -> Array:
    """``image [batch, height, width, channels]`` float -> logits ``[batch, num_classes]`` float32."""
    where = type(self).__name__
    layers.check_shape(image, "image", "batch height width channels", where=where, dtype="floating")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = transformer.patch_tokens(image, self.patch_size, self.hidden, where=where, **kw)
    if self.position_embedding:
      table = self.param("position_embedding", layers.partitioned(nn.initializers.normal(0.02), ("length", "embed")),
                         x.shape[1:], self.param_dtype)
      x = x + jnp.asarray(table, x.dtype)[None]
    for i in range(self.num_layers):
      x = ActivatorBlock(self.mlp_dim, dropout_rate=self.dropout_rate, ffn=self.ffn, activation=self.activation,
                         gated=self.gated, name=f"block_{i}", **kw)(x, train=train)
    return layers.dense(self.num_classes, axes=("embed", "classes"), name="head", **kw)(x.mean(axis=1)).astype(
        jnp.float32)
