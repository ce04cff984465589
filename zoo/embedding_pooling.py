"""Text-embedding models from a decoder-only transformer: pooling designs and causal vs bidirectional attention.

Paper: "Pooling And Attention: What Are Effective Designs For LLM-Based Embedding Models?", Yixuan Tang and Yi Yang,
2024 (arXiv 2409.02727); trainable poolers follow the authors' reference code (github.com/yixuantt/PoolingAndAttn).

The paper fine-tunes one LLM with the same contrastive recipe under five designs: EOS (last-token) pooling with
causal attention; last-layer trainable pooling, causal or bidirectional; multi-layer trainable pooling (ML-TP),
causal or bidirectional. Here the LLM is the zoo's :class:`zoo.transformer.TransformerLM`.

Every pooler takes ``hidden_states [layers, batch, length, features]`` (each transformer block's output; the last
one after the final norm) and ``mask [batch, length]`` (True for real tokens; padding on the right, so the last real
token is the EOS token) and returns an L2-normalised embedding ``[batch, features]``:

* :class:`MeanPooling`: mean of the last layer over real tokens.
* :class:`EOSPooling`: the last layer's state at the last real token (EOS).
* :class:`LatentAttentionPooling`: the trainable core of both trainable designs (the reference code's
  ``PerceiverResampler``): ``r`` learned latents cross-attend (pre-norm on latents and inputs, bias-free
  projections) to a set of states, with a residual; then a GEGLU FFN (x4) with a residual; mean over the latents;
  L2 normalisation.
* :class:`LastLayerTrainablePooling`: latent attention over the last layer. As in the reference code the keys are
  the EOS state only (``last_token_only=True``); ``False`` attends over every real token of the last layer (NV-Embed's
  latent attention).
* :class:`MultiLayerTrainablePooling`: the EOS state of *every* layer, ``[batch, layers, features]``, plus a learned
  layer embedding, as the keys of the latent attention. Two ablation flags switch the mechanism off in the same
  module: ``last_layer_only=True`` keeps only the last layer's EOS state (what a last-layer pooler sees) and
  ``layer_attention=False`` replaces the latents' learned attention weights over the layers by uniform ones (a fixed
  mean of the layers, same parameters).
* :class:`EmbeddingModel` ``tokens [batch, length] -> [batch, embed_dim]``: backbone + pooler, ``causal`` selects
  the attention of the embedding pass (bidirectional = the causal mask dropped), ``language_model`` gives the
  backbone's next-token logits (always causal) for LM pretraining, ``freeze_backbone`` stops gradients into it.

Reference sizes (Mistral-7B): 768 latents, 32 heads of 2048 features; the defaults here are small (16 latents,
4 heads) for the zoo's small transformer.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo import transformer

__all__ = [
    "EOSPooling", "EmbeddingModel", "LastLayerTrainablePooling", "LatentAttentionPooling", "MeanPooling",
    "MultiLayerTrainablePooling", "POOLINGS", "last_token", "l2_normalize", "mean_pool",
]

Array = jax.Array


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  """``x / |x|`` over the last axis (float32)."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def mean_pool(hidden: Array, mask: Array) -> Array:
  """``hidden [batch, length, features]``, ``mask [batch, length]`` -> mean over real tokens ``[batch, features]``."""
  w = mask.astype(jnp.float32)[..., None]
  return jnp.sum(hidden.astype(jnp.float32) * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def last_token(hidden: Array, mask: Array) -> Array:
  """The state at the last real token: ``hidden [..., batch, length, features]``, ``mask [batch, length]`` ->
  ``[..., batch, features]`` (right padding assumed: the last True of each row)."""
  length = mask.shape[-1]
  last = length - 1 - jnp.argmax(mask[:, ::-1], axis=-1)  # [batch]
  onehot = jax.nn.one_hot(last, length, dtype=hidden.dtype)  # gathers by contraction: shards and vmaps cleanly
  return jnp.einsum("...bld,bl->...bd", hidden, onehot)


def _check(hidden_states, mask, where):
  layers.check_shape(hidden_states, "hidden_states", "layers batch length features", where=where, dtype="floating")
  layers.check_shape(mask, "mask", "batch length", where=where, batch=hidden_states.shape[1],
                     length=hidden_states.shape[2])
  if mask.dtype != jnp.bool_:
    raise TypeError(f"{where}: `mask` must be bool (True = real token); got {mask.dtype}.")


class MeanPooling(nn.Module):
  """Mean of the last layer over real tokens, L2-normalised. ``(hidden_states [L, b, l, d], mask [b, l]) -> [b, d]``."""

  @nn.compact
  def __call__(self, hidden_states: Array, mask: Array) -> Array:
    _check(hidden_states, mask, type(self).__name__)
    return l2_normalize(mean_pool(hidden_states[-1], mask))


class EOSPooling(nn.Module):
  """The last layer's state at the last real (EOS) token, L2-normalised. ``([L, b, l, d], [b, l]) -> [b, d]``."""

  @nn.compact
  def __call__(self, hidden_states: Array, mask: Array) -> Array:
    _check(hidden_states, mask, type(self).__name__)
    return l2_normalize(last_token(hidden_states[-1], mask))


class LatentAttentionPooling(nn.Module):
  """``r`` learned latents cross-attend to ``states``; GEGLU FFN; mean over latents; L2 norm.

  ``x = latents + MHA(LN_q(latents), LN_kv(states))``, ``x = x + FFN(LN(x))``, output ``normalize(mean_r x)``.

  Attributes:
    num_latents: ``r`` (768 in the reference code).
    num_heads: cross-attention heads.
    head_dim: features per head; default ``features // num_heads``.
    ffn_mult: hidden width of the GEGLU FFN in multiples of ``features``.
    attention: True (the method): softmax attention of the latents over the set. False (an ablation): uniform
      weights, every latent reads the (masked) mean of the normalised states through the same value and output
      projections (the cross-attention's parameters are kept; only its weights are fixed).
    impl: attention implementation.
  """
  num_latents: int = 16
  num_heads: int = 4
  head_dim: int | None = None
  ffn_mult: int = 4
  attention: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, states: Array, mask: Array | None = None) -> Array:
    """``states [batch, set, features]``, ``mask [batch, set]`` bool or None -> ``[batch, features]``."""
    where = type(self).__name__
    layers.check_shape(states, "states", "batch set features", where=where, dtype="floating")
    b, _, d = states.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    latents = self.param("latents", layers.partitioned(nn.initializers.normal(1.0), (None, "embed")),
                         (self.num_latents, d), self.param_dtype)
    x = jnp.broadcast_to(jnp.asarray(latents, states.dtype)[None], (b, self.num_latents, d))
    attn_mask = None
    if mask is not None:
      layers.check_shape(mask, "mask", "batch set", where=where, batch=b, set=states.shape[1])
      attn_mask = transformer.key_padding_mask(mask)
    queries = layers.layer_norm(name="norm_latents", **kw)(x)
    context = layers.layer_norm(name="norm_states", **kw)(states)
    if not self.attention:  # uniform weights: attention over one key, the mean state, equals the mean of the values
      context = (mean_pool(context, mask) if mask is not None else context.mean(axis=1))[:, None].astype(context.dtype)
      attn_mask = None
    x = x + transformer.MultiHeadAttention(self.num_heads, head_dim=self.head_dim, use_bias=False, impl=self.impl,
                                           name="cross_attention", **kw)(queries, context, mask=attn_mask)
    x = x + transformer.MLPBlock(self.ffn_mult * d, activation="gelu", gated=True, name="ffn", **kw)(
        layers.layer_norm(name="norm_ffn", **kw)(x))
    return l2_normalize(x.mean(axis=1))


class LastLayerTrainablePooling(nn.Module):
  """Latent attention over the last layer: its EOS state (``last_token_only``, the reference code) or all tokens.

  Attributes: as :class:`LatentAttentionPooling`, plus ``last_token_only``.
  """
  num_latents: int = 16
  num_heads: int = 4
  head_dim: int | None = None
  ffn_mult: int = 4
  last_token_only: bool = True
  impl: str = "auto"

  @nn.compact
  def __call__(self, hidden_states: Array, mask: Array) -> Array:
    """``(hidden_states [L, b, l, d], mask [b, l]) -> [b, d]``."""
    _check(hidden_states, mask, type(self).__name__)
    pool = LatentAttentionPooling(self.num_latents, self.num_heads, self.head_dim, self.ffn_mult, impl=self.impl,
                                  name="latent_attention")
    if self.last_token_only:
      return pool(last_token(hidden_states[-1], mask)[:, None, :])
    return pool(hidden_states[-1], mask)


class MultiLayerTrainablePooling(nn.Module):
  """ML-TP: the EOS state of every layer ``[b, L, d]`` + a learned layer embedding, pooled by latent attention.

  Attributes: as :class:`LatentAttentionPooling`, plus the mechanism's ablation flags (defaults: the paper's ML-TP):
    last_layer_only: False (the method): every layer's EOS state. True: only the last layer's (the multi-layer input
      switched off; the pooler is then a last-layer trainable pooler).
    layer_attention: True (the method): the latents attend over the layers. False: uniform weights over the layers
      (``LatentAttentionPooling.attention=False``), a fixed mean of the layers instead of a learned selection.
  """
  num_latents: int = 16
  num_heads: int = 4
  head_dim: int | None = None
  ffn_mult: int = 4
  last_layer_only: bool = False
  layer_attention: bool = True
  impl: str = "auto"

  @nn.compact
  def __call__(self, hidden_states: Array, mask: Array) -> Array:
    """``(hidden_states [L, b, l, d], mask [b, l]) -> [b, d]``."""
    _check(hidden_states, mask, type(self).__name__)
    if self.last_layer_only:
      hidden_states = hidden_states[-1:]
    num_layers, d = hidden_states.shape[0], hidden_states.shape[-1]
    states = jnp.swapaxes(last_token(hidden_states, mask), 0, 1)  # [b, L, d]
    layer_embedding = self.param("layer_embedding", layers.partitioned(nn.initializers.normal(1.0), (None, "embed")),
                                 (num_layers, d))
    states = states + jnp.asarray(layer_embedding, states.dtype)[None]
    return LatentAttentionPooling(self.num_latents, self.num_heads, self.head_dim, self.ffn_mult,
                                  attention=self.layer_attention, impl=self.impl, name="latent_attention")(states)


POOLINGS = {
    "mean": MeanPooling,
    "eos": EOSPooling,
    "last_layer": LastLayerTrainablePooling,
    "multi_layer": MultiLayerTrainablePooling,
}
"""``EmbeddingModel.pooling`` names -> pooler classes."""


class EmbeddingModel(nn.Module):
  """A :class:`zoo.transformer.TransformerLM` backbone and a pooler: ``tokens [batch, length] -> [batch, embed_dim]``.

  Attributes:
    vocab_size, embed_dim, num_layers, num_heads, mlp_dim, max_length, position, impl: of the backbone.
    causal: attention of the embedding pass; False = bidirectional (the paper drops the causal mask for fine-tuning).
    pooling: ``'mean'``, ``'eos'``, ``'last_layer'`` or ``'multi_layer'``.
    num_latents, pool_heads: of the trainable poolers.
    last_token_only: of ``'last_layer'`` pooling.
    freeze_backbone: stop gradients into the backbone (only the pooler trains).
    pad_id: the padding token; every other token is real.
  """
  vocab_size: int = 259
  embed_dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  max_length: int = 128
  position: str = "learned"
  causal: bool = True
  pooling: str = "eos"
  num_latents: int = 16
  pool_heads: int = 4
  last_token_only: bool = True
  freeze_backbone: bool = False
  pad_id: int = 0
  impl: str = "auto"

  def setup(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"EmbeddingModel: `pooling` must be one of {sorted(POOLINGS)}; got {self.pooling!r}.")
    self.backbone = transformer.TransformerLM(self.vocab_size, self.embed_dim, self.num_layers, self.num_heads,
                                              self.mlp_dim, position=self.position, max_length=self.max_length,
                                              causal=self.causal, impl=self.impl)
    if self.pooling == "last_layer":
      self.pool = LastLayerTrainablePooling(self.num_latents, self.pool_heads, last_token_only=self.last_token_only,
                                            impl=self.impl)
    elif self.pooling == "multi_layer":
      self.pool = MultiLayerTrainablePooling(self.num_latents, self.pool_heads, impl=self.impl)
    else:
      self.pool = POOLINGS[self.pooling]()

  def hidden_states(self, tokens: Array, *, train: bool = False) -> tuple[Array, Array]:
    """``tokens [b, l]`` -> (``hidden_states [layers, b, l, d]``, the last one after the final norm;
    ``mask [b, l]``)."""
    layers.check_shape(tokens, "tokens", "batch length", where="EmbeddingModel", dtype="integer")
    mask = tokens != self.pad_id
    final, hidden = self.backbone.encode(tokens, mask=mask, causal=self.causal, train=train,
                                         return_hidden_states=True)
    hidden = hidden.at[-1].set(final)
    if self.freeze_backbone:
      hidden = jax.lax.stop_gradient(hidden)
    return hidden, mask

  def __call__(self, tokens: Array, *, train: bool = False) -> Array:
    """``tokens [batch, length]`` int -> L2-normalised embeddings ``[batch, embed_dim]`` float32."""
    hidden, mask = self.hidden_states(tokens, train=train)
    return self.pool(hidden, mask)

  def language_model(self, tokens: Array, *, train: bool = False) -> Array:
    """The backbone's causal next-token logits ``[batch, length, vocab_size]`` (for LM pretraining)."""
    return self.backbone(tokens, mask=tokens != self.pad_id, train=train)
