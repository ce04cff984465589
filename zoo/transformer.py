"""The zoo's transformer: attention, MLP and residual blocks written once, and the models built from them.

Every attention in this file goes through the one attention function, :func:`zoo.kernels.attention.attention`
(Pallas kernel on GPU/TPU, XLA reference elsewhere), so the families that import these blocks (KAN attention,
Hopfield-style layers, embedding models ...) get the kernel for free. Every parameter carries logical axis names
(``zoo.layers``); inputs are checked once at each public module's boundary.

Papers:

* "Attention Is All You Need", Vaswani et al., 2017 (arXiv 1706.03762): multi-head attention, encoder/decoder
  blocks, sinusoidal positions; pre-norm as in "On Layer Normalization in the Transformer Architecture" (Xiong et
  al., 2020, arXiv 2002.04745); grouped-query attention as in GQA (Ainslie et al., 2023, arXiv 2305.13245); rotary
  positions as in RoFormer (Su et al., 2021, arXiv 2104.09864); GLU feed-forward variants as in "GLU Variants
  Improve Transformer" (Shazeer, 2020, arXiv 2002.05202).
* "An Image is Worth 16x16 Words" (ViT), Dosovitskiy et al., 2020 (arXiv 2010.11929).
* "Universal Approximation Theorem for a Single-Layer Transformer", Gumaan, 2025 (arXiv 2507.10581):
  :class:`SingleLayerTransformer`.

Public names (shapes: ``b`` batch, ``l`` length, ``e`` features, ``h`` heads, ``d`` head_dim):

* :func:`apply_rope` ``(x [b, l, h, d], positions [b, l] | [l]) -> [b, l, h, d]``: rotary position embedding.
* :func:`sinusoidal_positions` ``(length, features) -> [length, features]``.
* :func:`key_padding_mask` ``(valid [b, l] bool) -> [b, 1, 1, l]``: the attention mask of a padded batch.
* :func:`attention_weights` ``(query, key, ...) -> [b, h, q_length, kv_length]``: the weights an attention function
  uses, read out through that same function (for analysis and tests).
* :class:`MultiHeadAttention` ``(inputs_q [b, l, e], inputs_kv [b, s, e'] | None) -> [b, l, out_features]``:
  self/cross attention, grouped-query option, RoPE option, and an ``attention_fn`` hook so a variant can replace
  the score function without copying the block.
* :class:`MLPBlock` ``(x [..., e]) -> [..., out_features]``: MLP or GLU (GEGLU/SwiGLU/ReGLU ...) feed-forward.
* :class:`EncoderBlock` ``(x [b, l, e], mask [b, l]) -> [b, l, e]``: self-attention + MLP, pre or post norm,
  bidirectional or causal (a decoder-only LM block is an ``EncoderBlock(causal=True)``).
* :class:`DecoderBlock` ``(x [b, l, e], encoded [b, s, e']) -> [b, l, e]``: causal self-attention, cross-attention
  and MLP (encoder-decoder models).
* :class:`Encoder` ``(x [b, l, e], mask [b, l]) -> [b, l, e]``: positions (learned, sinusoidal, rotary or none) and a
  stack of :class:`EncoderBlock`; optionally every layer's output ``[layers, b, l, e]``.
* :class:`TransformerLM` ``(tokens [b, l] int) -> logits [b, l, vocab]``: token embedding + :class:`Encoder` + head;
  ``encode`` gives the hidden states (causal or bidirectional) for embedding models.
* :class:`ViT` ``(image [b, H, W, C]) -> logits [b, classes]``: patchify (a conv with kernel = stride = patch),
  class token or mean pooling, :class:`Encoder`. Small patches suit 8x8 digits.
* :class:`SingleLayerTransformer` ``(x [b, n, d]) -> [b, n, d]``: one multi-head self-attention (residual) and one
  position-wise ReLU FFN (residual), the layer of the universal-approximation theorem; ``attn_scale`` is the
  theorem's beta (large beta: softmax ~ hardmax routing), ``pos_enc`` the positional encoding (without one the layer
  is permutation-equivariant and cannot approximate a target that is not).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo.kernels import attention as attention_lib

__all__ = [
    "ACTIVATIONS", "DecoderBlock", "Encoder", "EncoderBlock", "MLPBlock", "MultiHeadAttention", "POSITIONS",
    "SingleLayerTransformer", "TransformerLM", "ViT", "apply_rope", "attention_weights", "get_activation",
    "key_padding_mask", "sinusoidal_positions",
]

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": nn.gelu,
    "gelu_exact": functools.partial(nn.gelu, approximate=False),
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "identity": lambda x: x,
}
"""Activation names a config may use. GLU variants are ``gated=True`` with ``'sigmoid'`` (GLU), ``'gelu'`` (GEGLU),
``'silu'`` (SwiGLU) or ``'relu'`` (ReGLU)."""

POSITIONS = ("learned", "sinusoidal", "rope", "none")
"""Position encodings of :class:`Encoder`, :class:`ViT` and :class:`TransformerLM`."""


def get_activation(activation: str | Callable[[Array], Array]) -> Callable[[Array], Array]:
  """A callable from an activation name in :data:`ACTIVATIONS` (a callable is returned as is)."""
  if callable(activation):
    return activation
  if activation not in ACTIVATIONS:
    raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(sorted(ACTIVATIONS))} or a callable.")
  return ACTIVATIONS[activation]


def _check_position(position: str, where: str) -> None:
  if position not in POSITIONS:
    raise ValueError(f"{where}: `position` must be one of {POSITIONS}; got {position!r}.")


# -------------------------------------------------------------------------------------------------- positions


def apply_rope(x: Array, positions: Array, *, base: float = 10000.0) -> Array:
  """Rotary position embedding (RoFormer): rotates feature pairs ``(i, i + d/2)`` by ``position * base^(-2i/d)``.

  Args:
    x: ``[batch, length, heads, head_dim]``, ``head_dim`` even.
    positions: integer positions ``[batch, length]`` or ``[length]``.
    base: the wavelength base.

  Returns:
    ``[batch, length, heads, head_dim]`` in ``x``'s dtype (rotation computed in float32).
  """
  layers.check_shape(x, "x", "batch length heads head_dim", where="apply_rope")
  if x.shape[-1] % 2:
    raise ValueError(f"apply_rope: `x` must have an even head_dim; got shape {x.shape}.")
  positions = jnp.asarray(positions)
  if positions.ndim == 1:
    layers.check_shape(positions, "positions", "length", where="apply_rope", length=x.shape[1])
    positions = positions[None]
  else:
    layers.check_shape(positions, "positions", "batch length", where="apply_rope", length=x.shape[1])
  half = x.shape[-1] // 2
  inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [b|1, l, half]
  sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def sinusoidal_positions(length: int, features: int, *, base: float = 10000.0) -> Array:
  """The fixed sine/cosine position table of "Attention Is All You Need": ``[length, features]`` float32."""
  if features % 2:
    raise ValueError(f"sinusoidal_positions: `features` must be even; got {features}.")
  pos = np.arange(length, dtype=np.float32)[:, None]
  inv_freq = base ** (-np.arange(0, features, 2, dtype=np.float32) / features)
  table = np.zeros((length, features), np.float32)
  table[:, 0::2] = np.sin(pos * inv_freq)
  table[:, 1::2] = np.cos(pos * inv_freq)
  return jnp.asarray(table)


def key_padding_mask(valid: Array) -> Array:
  """``valid [batch, length]`` (True: a real token) -> attention mask ``[batch, 1, 1, length]`` (True: may attend)."""
  layers.check_shape(valid, "valid", "batch length", where="key_padding_mask")
  if valid.dtype != jnp.bool_:
    raise TypeError(f"key_padding_mask: `valid` must be bool; got {valid.dtype}.")
  return valid[:, None, None, :]


def attention_weights(query: Array, key: Array, *, bias=None, mask=None, is_causal: bool = False,
                      scale: float | None = None, attention_fn: Callable[..., Array] | None = None) -> Array:
  """The attention weights that ``attention_fn`` applies, read out by attending over one-hot values.

  Attending over ``value = identity`` returns the weight matrix itself, so this works for any function with the
  signature of :func:`zoo.kernels.attention.attention` (the Pallas kernel included) without reimplementing it.

  Args:
    query: ``[batch, q_length, heads, head_dim]``; key: ``[batch, kv_length, kv_heads, head_dim]``.
    bias, mask, is_causal, scale: as in :func:`zoo.kernels.attention.attention`.
    attention_fn: default :func:`zoo.kernels.attention.attention`.

  Returns:
    ``[batch, heads, q_length, kv_length]`` float32.
  """
  fn = attention_fn or attention_lib.attention
  b, tk, hk = key.shape[:3]
  value = jnp.broadcast_to(jnp.eye(tk, dtype=jnp.float32)[None, :, None, :], (b, tk, hk, tk))
  out = fn(query.astype(jnp.float32), key.astype(jnp.float32), value, bias=bias, mask=mask, is_causal=is_causal,
           scale=scale)
  return jnp.transpose(out, (0, 2, 1, 3))


# -------------------------------------------------------------------------------------------------- attention


class _Projection(nn.Module):
  """``x [..., *in] -> [..., *features]``: a dense layer over the last ``in_axes`` axes with a multi-axis kernel.

  ``nn.DenseGeneral`` unboxes a logically partitioned kernel while it is still flat (2-D), which a mesh with logical
  rules rejects; here ``kernel_init`` sees the flat ``[prod(in), prod(features)]`` shape (so fan-in is right) and the
  kernel is reshaped before it is boxed with its logical ``names``.
  """
  features: tuple[int, ...]
  in_axes: int
  names: tuple[str | None, ...]
  use_bias: bool = True
  kernel_init: Callable = layers.default_kernel_init
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    in_shape = tuple(x.shape[x.ndim - self.in_axes:])
    shape = in_shape + tuple(self.features)

    def init(rng, shape, dtype=jnp.float32):
      flat = (int(np.prod(in_shape)), int(np.prod(self.features)))
      return jnp.reshape(self.kernel_init(rng, flat, dtype), shape)

    kernel = self.param("kernel", layers.partitioned(init, self.names), shape, self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    y = jnp.tensordot(x, kernel, axes=self.in_axes)
    if self.use_bias:
      bias = self.param("bias", layers.partitioned(nn.initializers.zeros_init(), self.names[self.in_axes:]),
                        tuple(self.features), self.param_dtype)
      y = y + jnp.asarray(bias, y.dtype)
    return y


class MultiHeadAttention(nn.Module):
  """Multi-head (self or cross) attention through :func:`zoo.kernels.attention.attention`.

  ``q = inputs_q W_q``, ``k = inputs_kv W_k``, ``v = inputs_kv W_v`` (per head), optional RoPE on ``q``/``k``,
  ``o = attention_fn(q, k, v)``, output ``o W_o``. With ``num_kv_heads < num_heads`` the key/value heads are shared by
  groups of query heads (GQA; ``num_kv_heads=1`` is multi-query attention).

  Attributes:
    num_heads: query heads.
    head_dim: features per head; default ``features // num_heads``.
    num_kv_heads: key/value heads (must divide ``num_heads``); default ``num_heads``.
    out_features: output width; default the width of ``inputs_q``.
    use_bias: biases on the projections.
    dropout_rate: dropout on the attention weights (training only; needs the ``'dropout'`` rng).
    scale: logit scale; default ``1/sqrt(head_dim)``.
    use_rope: rotary positions on queries and keys.
    rope_base: RoPE wavelength base.
    attention_fn: the hook that turns ``(q, k, v)`` into outputs. Default: the zoo attention with ``impl``. Either a
      function with the signature of :func:`zoo.kernels.attention.attention` (``query, key, value, *, bias, mask,
      is_causal, scale, dropout_rate, dropout_rng``), or an unbound Linen module with that call signature: each
      attention block then gets its own copy (its parameters live under ``<block>/attention_fn``), which is how a
      learnable score function (KArAt ...) plugs in without copying this block.
    impl: ``'auto' | 'pallas' | 'xla'`` for the default attention function.
    kernel_init: initializer of the projection kernels (fan-in computed over the flattened input axes).
  """
  num_heads: int
  head_dim: int | None = None
  num_kv_heads: int | None = None
  out_features: int | None = None
  use_bias: bool = True
  dropout_rate: float = 0.0
  scale: float | None = None
  use_rope: bool = False
  rope_base: float = 10000.0
  attention_fn: Any = None
  impl: str = "auto"
  kernel_init: Callable = layers.default_kernel_init
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array | None = None, *, mask: Array | None = None,
               bias: Array | None = None, is_causal: bool = False, positions: Array | None = None,
               kv_positions: Array | None = None, train: bool = False, sow_weights: bool = False) -> Array:
    """Attends from ``inputs_q`` to ``inputs_kv`` (itself if None).

    Args:
      inputs_q: ``[batch, q_length, features]``.
      inputs_kv: ``[batch, kv_length, kv_features]`` or None (self-attention).
      mask: bool, broadcastable to ``[batch, heads, q_length, kv_length]`` (rank 4), True = may attend;
        :func:`key_padding_mask` builds it from a ``[batch, length]`` validity mask.
      bias: added to the logits, broadcastable to ``[batch, heads, q_length, kv_length]``.
      is_causal: causal mask (bottom-right aligned when the lengths differ).
      positions / kv_positions: integer positions for RoPE, ``[batch, length]`` or ``[length]``; default
        ``arange``.
      train: enables attention dropout.
      sow_weights: also store the weights ``[batch, heads, q_length, kv_length]`` in the ``'intermediates'``
        collection under ``attention_weights`` (call ``apply`` with ``mutable=['intermediates']``).

    Returns:
      ``[batch, q_length, out_features]``.
    """
    where = type(self).__name__
    layers.check_shape(inputs_q, "inputs_q", "batch q_length features", where=where, dtype="floating")
    self_attention = inputs_kv is None
    if self_attention:
      inputs_kv = inputs_q
    else:
      layers.check_shape(inputs_kv, "inputs_kv", "batch kv_length kv_features", where=where, dtype="floating",
                         batch=inputs_q.shape[0])
    if mask is not None:
      layers.check_shape(mask, "mask", "batch heads q_length kv_length", where=where)
      if mask.dtype != jnp.bool_:
        raise TypeError(f"{where}: `mask` must be bool (True = may attend); got {mask.dtype}.")
    features = inputs_q.shape[-1]
    if self.num_heads < 1:
      raise ValueError(f"{where}: `num_heads` must be >= 1; got {self.num_heads}.")
    head_dim = self.head_dim or features // self.num_heads
    if head_dim < 1:
      raise ValueError(f"{where}: features ({features}) < num_heads ({self.num_heads}); set `head_dim`.")
    kv_heads = self.num_kv_heads or self.num_heads
    if self.num_heads % kv_heads:
      raise ValueError(f"{where}: `num_kv_heads` ({kv_heads}) must divide `num_heads` ({self.num_heads}).")
    if self.use_rope and head_dim % 2:
      raise ValueError(f"{where}: RoPE needs an even head_dim; got {head_dim}.")

    def projection(heads: int, name: str):
      return _Projection((heads, head_dim), 1, ("embed", "heads", "kv"), use_bias=self.use_bias,
                         kernel_init=self.kernel_init, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

    query = projection(self.num_heads, "query")(inputs_q)
    key = projection(kv_heads, "key")(inputs_kv)
    value = projection(kv_heads, "value")(inputs_kv)
    if self.use_rope:
      q_pos = jnp.arange(inputs_q.shape[1]) if positions is None else positions
      if kv_positions is not None:
        k_pos = kv_positions
      else:
        k_pos = q_pos if self_attention else jnp.arange(inputs_kv.shape[1])
      query = apply_rope(query, q_pos, base=self.rope_base)
      key = apply_rope(key, k_pos, base=self.rope_base)

    fn = self.attention_fn
    if fn is None:
      fn = functools.partial(attention_lib.attention, impl=self.impl)
    elif isinstance(fn, nn.Module):
      # A module passed as an attribute is adopted by the outermost module that received it, so every layer would
      # share one set of parameters; a clone owned by this block gives each attention its own.
      fn = fn.clone(parent=self, name="attention_fn")
    layers.check_rate(self.dropout_rate, "dropout_rate", where=type(self).__name__)
    rate = self.dropout_rate if train else 0.0
    rng = self.make_rng("dropout") if rate > 0.0 else None
    out = fn(query, key, value, bias=bias, mask=mask, is_causal=is_causal, scale=self.scale, dropout_rate=rate,
             dropout_rng=rng)
    if sow_weights:
      self.sow("intermediates", "attention_weights",
               attention_weights(query, key, bias=bias, mask=mask, is_causal=is_causal, scale=self.scale,
                                 attention_fn=fn))
    return _Projection((self.out_features or features,), 2, ("heads", "kv", "embed"), use_bias=self.use_bias,
                       kernel_init=self.kernel_init, dtype=self.dtype, param_dtype=self.param_dtype, name="out")(out)


class MLPBlock(nn.Module):
  """Position-wise feed-forward: ``act(x W_i) W_o``, or the gated form ``(act(x W_i0) * (x W_i1)) W_o``.

  Attributes:
    hidden_features: the hidden width.
    out_features: default the input width.
    activation: a name in :data:`ACTIVATIONS` or a callable.
    gated: GLU form (GEGLU with ``'gelu'``, SwiGLU with ``'silu'``, ReGLU with ``'relu'``, GLU with ``'sigmoid'``).
    dropout_rate: dropout after the activation (training only).
  """
  hidden_features: int
  out_features: int | None = None
  activation: Any = "gelu"
  gated: bool = False
  dropout_rate: float = 0.0
  use_bias: bool = True
  kernel_init: Callable = layers.default_kernel_init
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False) -> Array:
    """``x [..., features] -> [..., out_features]``."""
    layers.check_shape(x, "x", "... features", where=type(self).__name__, dtype="floating")
    act = get_activation(self.activation)
    dense = functools.partial(layers.dense, use_bias=self.use_bias, kernel_init=self.kernel_init, dtype=self.dtype,
                              param_dtype=self.param_dtype)
    if self.gated:
      h = act(dense(self.hidden_features, name="wi_0")(x)) * dense(self.hidden_features, name="wi_1")(x)
    else:
      h = act(dense(self.hidden_features, name="wi")(x))
    h = layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)(h)
    return dense(self.out_features or x.shape[-1], axes=("mlp", "embed"), name="wo")(h)


# ----------------------------------------------------------------------------------------------------- blocks


class EncoderBlock(nn.Module):
  """Self-attention and MLP with residuals; pre-norm ``x + f(LN(x))`` or post-norm ``LN(x + f(x))``.

  Attributes:
    num_heads, head_dim, num_kv_heads: of the attention (see :class:`MultiHeadAttention`).
    mlp_dim: hidden width of the MLP.
    dropout_rate: dropout on each residual branch and inside the MLP.
    attention_dropout_rate: dropout on the attention weights.
    pre_norm: pre-norm (default) or post-norm (the original transformer).
    activation, gated: of the MLP (see :class:`MLPBlock`).
    use_rope: rotary positions inside the attention.
    causal: causal self-attention (a decoder-only block); a call may override it.
    attention_fn, impl: see :class:`MultiHeadAttention`.
  """
  num_heads: int
  mlp_dim: int
  head_dim: int | None = None
  num_kv_heads: int | None = None
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  pre_norm: bool = True
  activation: Any = "gelu"
  gated: bool = False
  use_rope: bool = False
  causal: bool = False
  attention_fn: Any = None
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, mask: Array | None = None, positions: Array | None = None,
               causal: bool | None = None, train: bool = False, sow_weights: bool = False) -> Array:
    """``x [batch, length, features]``, ``mask [batch, length]`` bool (True: real token) -> ``[batch, length,
    features]``. ``sow_weights``: the attention block stores its weights (see :class:`MultiHeadAttention`)."""
    where = type(self).__name__
    layers.check_shape(x, "x", "batch length features", where=where, dtype="floating")
    attn_mask = None
    if mask is not None:
      layers.check_shape(mask, "mask", "batch length", where=where, batch=x.shape[0], length=x.shape[1])
      attn_mask = key_padding_mask(mask)
    is_causal = self.causal if causal is None else causal
    attention = MultiHeadAttention(self.num_heads, head_dim=self.head_dim, num_kv_heads=self.num_kv_heads,
                                   dropout_rate=self.attention_dropout_rate, use_rope=self.use_rope,
                                   attention_fn=self.attention_fn, impl=self.impl, dtype=self.dtype,
                                   param_dtype=self.param_dtype, name="attention")
    mlp = MLPBlock(self.mlp_dim, activation=self.activation, gated=self.gated, dropout_rate=self.dropout_rate,
                   dtype=self.dtype, param_dtype=self.param_dtype, name="mlp")
    drop = layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)
    norm_attention = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm_attention")
    norm_mlp = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm_mlp")

    def attend(y):
      return attention(y, mask=attn_mask, is_causal=is_causal, positions=positions, train=train,
                       sow_weights=sow_weights)

    if self.pre_norm:
      x = x + drop(attend(norm_attention(x)))
      return x + drop(mlp(norm_mlp(x), train=train))
    x = norm_attention(x + drop(attend(x)))
    return norm_mlp(x + drop(mlp(x, train=train)))


class DecoderBlock(nn.Module):
  """Causal self-attention, cross-attention to an encoded sequence, MLP; residuals and pre/post norm.

  Attributes: as :class:`EncoderBlock` (``causal`` defaults to True).
  """
  num_heads: int
  mlp_dim: int
  head_dim: int | None = None
  num_kv_heads: int | None = None
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  pre_norm: bool = True
  activation: Any = "gelu"
  gated: bool = False
  use_rope: bool = False
  causal: bool = True
  attention_fn: Any = None
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, encoded: Array, *, mask: Array | None = None, encoded_mask: Array | None = None,
               positions: Array | None = None, train: bool = False) -> Array:
    """Decodes ``x`` while attending to ``encoded``.

    Args:
      x: ``[batch, length, features]`` decoder stream.
      encoded: ``[batch, source_length, source_features]`` encoder output.
      mask: ``[batch, length]`` bool, valid decoder tokens.
      encoded_mask: ``[batch, source_length]`` bool, valid encoder tokens.
      positions: RoPE positions of the decoder tokens.

    Returns:
      ``[batch, length, features]``.
    """
    where = type(self).__name__
    layers.check_shape(x, "x", "batch length features", where=where, dtype="floating")
    layers.check_shape(encoded, "encoded", "batch source_length source_features", where=where, dtype="floating",
                       batch=x.shape[0])
    self_mask = cross_mask = None
    if mask is not None:
      layers.check_shape(mask, "mask", "batch length", where=where, batch=x.shape[0], length=x.shape[1])
      self_mask = key_padding_mask(mask)
    if encoded_mask is not None:
      layers.check_shape(encoded_mask, "encoded_mask", "batch source_length", where=where, batch=x.shape[0],
                         source_length=encoded.shape[1])
      cross_mask = key_padding_mask(encoded_mask)
    common = dict(head_dim=self.head_dim, num_kv_heads=self.num_kv_heads, dropout_rate=self.attention_dropout_rate,
                  attention_fn=self.attention_fn, impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype)
    self_attention = MultiHeadAttention(self.num_heads, use_rope=self.use_rope, name="self_attention", **common)
    cross_attention = MultiHeadAttention(self.num_heads, name="cross_attention", **common)
    mlp = MLPBlock(self.mlp_dim, activation=self.activation, gated=self.gated, dropout_rate=self.dropout_rate,
                   dtype=self.dtype, param_dtype=self.param_dtype, name="mlp")
    drop = layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)
    norms = [layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name=f"norm_{n}")
             for n in ("self_attention", "cross_attention", "mlp")]
    branches = [
        lambda y: self_attention(y, mask=self_mask, is_causal=self.causal, positions=positions, train=train),
        lambda y: cross_attention(y, encoded, mask=cross_mask, train=train),
        lambda y: mlp(y, train=train),
    ]
    for norm, branch in zip(norms, branches):
      x = x + drop(branch(norm(x))) if self.pre_norm else norm(x + drop(branch(x)))
    return x


# ----------------------------------------------------------------------------------------------------- models


class Encoder(nn.Module):
  """Positions + ``num_layers`` :class:`EncoderBlock` (+ a final LayerNorm with pre-norm).

  Attributes:
    num_layers, num_heads, mlp_dim, head_dim, num_kv_heads, dropout_rate, attention_dropout_rate, pre_norm,
      activation, gated, attention_fn, impl: of the blocks.
    position: ``'learned'`` (a trained ``[max_length, features]`` table), ``'sinusoidal'``, ``'rope'`` (rotary, in
      every attention) or ``'none'``.
    max_length: longest sequence (size of the learned table).
    causal: causal self-attention (decoder-only stack); a call may override it.
  """
  num_layers: int
  num_heads: int
  mlp_dim: int
  head_dim: int | None = None
  num_kv_heads: int | None = None
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  pre_norm: bool = True
  activation: Any = "gelu"
  gated: bool = False
  position: str = "learned"
  max_length: int = 512
  causal: bool = False
  attention_fn: Any = None
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, mask: Array | None = None, causal: bool | None = None, train: bool = False,
               return_hidden_states: bool = False, sow_weights: bool = False):
    """Encodes ``x``.

    Args:
      x: ``[batch, length, features]``.
      mask: ``[batch, length]`` bool, True for real tokens (padding is never attended to).
      causal: overrides the ``causal`` attribute for this call.
      train: enables dropout.
      return_hidden_states: also return every block's output.
      sow_weights: every block stores its attention weights ``[batch, heads, length, length]`` in the
        ``'intermediates'`` collection (``block_<i>/attention/attention_weights``; call ``apply`` with
        ``mutable=['intermediates']``).

    Returns:
      ``[batch, length, features]`` (after the final norm with pre-norm), and with ``return_hidden_states`` also
      ``[num_layers, batch, length, features]``: the output of each block (the last one before the final norm).
    """
    where = type(self).__name__
    layers.check_shape(x, "x", "batch length features", where=where, dtype="floating")
    _check_position(self.position, where)
    length, features = x.shape[1], x.shape[2]
    if self.position == "learned":
      if length > self.max_length:
        raise ValueError(f"{where}: `x` has length {length} > max_length={self.max_length} (shape {x.shape}).")
      table = self.param("position_embedding", layers.partitioned(nn.initializers.normal(0.02), ("length", "embed")),
                         (self.max_length, features), self.param_dtype)
      x = x + jnp.asarray(table[:length], x.dtype)[None]
    elif self.position == "sinusoidal":
      x = x + sinusoidal_positions(length, features).astype(x.dtype)[None]
    x = layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)(x)
    hidden = []
    for i in range(self.num_layers):
      x = EncoderBlock(self.num_heads, self.mlp_dim, head_dim=self.head_dim, num_kv_heads=self.num_kv_heads,
                       dropout_rate=self.dropout_rate, attention_dropout_rate=self.attention_dropout_rate,
                       pre_norm=self.pre_norm, activation=self.activation, gated=self.gated,
                       use_rope=self.position == "rope", causal=self.causal, attention_fn=self.attention_fn,
                       impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype,
                       name=f"block_{i}")(x, mask=mask, causal=causal, train=train, sow_weights=sow_weights)
      hidden.append(x)
    if self.pre_norm:
      x = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)
    if return_hidden_states:
      return x, jnp.stack(hidden)
    return x


class TransformerLM(nn.Module):
  """A token-level transformer: embedding, :class:`Encoder` (causal by default), LM head.

  ``__call__`` gives next-token logits; :meth:`encode` gives hidden states, causal or bidirectional, for embedding
  models (``zoo.embedding_pooling``) and classifiers.

  Attributes:
    vocab_size: tokens are ints in ``[0, vocab_size)``.
    embed_dim: model width.
    num_layers, num_heads, mlp_dim, head_dim, num_kv_heads, dropout_rate, pre_norm, activation, gated, position,
      max_length, attention_fn, impl: of the :class:`Encoder`.
    causal: default attention pattern of :meth:`encode` (``__call__`` is always causal: it is a language model).
    tie_embeddings: the head reuses the embedding table (``logits = h E^T``).
  """
  vocab_size: int
  embed_dim: int = 128
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 512
  head_dim: int | None = None
  num_kv_heads: int | None = None
  dropout_rate: float = 0.0
  pre_norm: bool = True
  activation: Any = "gelu"
  gated: bool = False
  position: str = "learned"
  max_length: int = 512
  causal: bool = True
  tie_embeddings: bool = True
  attention_fn: Any = None
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def setup(self):
    self.embed = layers.Embed(self.vocab_size, self.embed_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                          embedding_init=layers.partitioned(nn.initializers.normal(0.02), ("vocab", "embed")))
    self.encoder = Encoder(self.num_layers, self.num_heads, self.mlp_dim, head_dim=self.head_dim,
                           num_kv_heads=self.num_kv_heads, dropout_rate=self.dropout_rate, pre_norm=self.pre_norm,
                           activation=self.activation, gated=self.gated, position=self.position,
                           max_length=self.max_length, causal=self.causal, attention_fn=self.attention_fn,
                           impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype)
    if not self.tie_embeddings:
      self.head = layers.dense(self.vocab_size, axes=("embed", "vocab"), dtype=self.dtype,
                               param_dtype=self.param_dtype)

  def _check_tokens(self, tokens, mask):
    where = type(self).__name__
    layers.check_shape(tokens, "tokens", "batch length", where=where, dtype="integer")
    if mask is not None:
      layers.check_shape(mask, "mask", "batch length", where=where, batch=tokens.shape[0], length=tokens.shape[1])

  def encode(self, tokens: Array, *, mask: Array | None = None, causal: bool | None = None, train: bool = False,
             return_hidden_states: bool = False):
    """``tokens [batch, length]`` int -> hidden states ``[batch, length, embed_dim]`` (and every layer's output
    ``[num_layers, batch, length, embed_dim]`` with ``return_hidden_states``); see :meth:`Encoder.__call__`."""
    self._check_tokens(tokens, mask)
    return self.encoder(self.embed(tokens), mask=mask, causal=causal, train=train,
                        return_hidden_states=return_hidden_states)

  def logits(self, hidden: Array) -> Array:
    """Hidden states ``[..., embed_dim]`` -> next-token logits ``[..., vocab_size]`` (float32)."""
    if self.tie_embeddings:
      return self.embed.attend(hidden).astype(jnp.float32)
    return self.head(hidden).astype(jnp.float32)

  def __call__(self, tokens: Array, *, mask: Array | None = None, train: bool = False) -> Array:
    """``tokens [batch, length]`` int -> causal next-token logits ``[batch, length, vocab_size]`` float32."""
    return self.logits(self.encode(tokens, mask=mask, causal=True, train=train))


def patch_tokens(image: Array, patch_size: int, features: int, *, where: str, dtype=None,
                 param_dtype=jnp.float32) -> Array:
  """``image [b, H, W, C] -> tokens [b, (H / p) (W / p), features]``: a conv with kernel = stride = patch, named
  ``patchify`` in the calling module (call it inside a compact method). ``H`` and ``W`` must be multiples of ``p``."""
  p = patch_size
  if image.shape[1] % p or image.shape[2] % p:
    raise ValueError(f"{where}: `image` height and width must be multiples of patch_size={p}; got shape "
                     f"{image.shape}.")
  x = layers.conv(features, (p, p), strides=p, padding="VALID", dtype=dtype, param_dtype=param_dtype,
                  name="patchify")(image)
  return x.reshape(x.shape[0], -1, features)


class ViT(nn.Module):
  """Vision transformer: non-overlapping patches -> tokens -> :class:`Encoder` -> class token or mean -> logits.

  Attributes:
    num_classes: outputs.
    patch_size: side of the square patches (the image sides must be multiples of it); 2 suits 8x8 digits.
    hidden: token width.
    num_layers, num_heads, mlp_dim, dropout_rate, pre_norm, activation, gated, attention_fn, impl: of the encoder.
    pool: ``'cls'`` (a learned class token) or ``'mean'`` (mean over patch tokens).
    position: see :class:`Encoder`.
  """
  num_classes: int = 10
  patch_size: int = 2
  hidden: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  dropout_rate: float = 0.0
  pre_norm: bool = True
  activation: Any = "gelu"
  gated: bool = False
  pool: str = "cls"
  position: str = "learned"
  attention_fn: Any = None
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array, *, train: bool = False, sow_weights: bool = False) -> Array:
    """``image [batch, height, width, channels]`` float -> logits ``[batch, num_classes]``.

    ``sow_weights``: store every block's attention weights (``encoder/block_<i>/attention/attention_weights`` in
    ``'intermediates'``; the class token is position 0, then the patches row-major).
    """
    where = type(self).__name__
    layers.check_shape(image, "image", "batch height width channels", where=where, dtype="floating")
    if self.pool not in ("cls", "mean"):
      raise ValueError(f"{where}: `pool` must be 'cls' or 'mean'; got {self.pool!r}.")
    x = patch_tokens(image, self.patch_size, self.hidden, where=where, dtype=self.dtype,
                     param_dtype=self.param_dtype)
    if self.pool == "cls":
      cls = self.param("cls", layers.partitioned(nn.initializers.zeros_init(), (None, None, "embed")),
                       (1, 1, self.hidden), self.param_dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, self.hidden)), x], axis=1)
    x = Encoder(self.num_layers, self.num_heads, self.mlp_dim, dropout_rate=self.dropout_rate,
                pre_norm=self.pre_norm, activation=self.activation, gated=self.gated, position=self.position,
                max_length=x.shape[1], attention_fn=self.attention_fn, impl=self.impl, dtype=self.dtype,
                param_dtype=self.param_dtype, name="encoder")(x, train=train, sow_weights=sow_weights)
    pooled = x[:, 0] if self.pool == "cls" else x.mean(axis=1)
    return layers.dense(self.num_classes, axes=("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                        name="head")(pooled).astype(jnp.float32)


class SingleLayerTransformer(nn.Module):
  """The single layer of "Universal Approximation Theorem for a Single-Layer Transformer" (Gumaan, 2025).

  ``Y = Z + MHA(Z)``, ``T(Z) = Y + FFN(Y)`` with ``FFN(y) = ReLU(y W1 + b1) W2 + b2`` (width ``ffn_width``), on the
  embedded sequence ``Z = X W_in + P`` (``P`` the positional encoding), read out by ``T(Z) W_out``. The theorem
  states that for a continuous ``f: K -> R^{n x d}`` on a compact ``K`` some such layer is uniformly within any
  epsilon of ``f``: the heads route (at large ``attn_scale`` softmax approaches hardmax) and the FFN is the
  universal MLP. Without a positional encoding the layer is permutation-equivariant, so targets that are not cannot
  be approximated; ``pos_enc`` makes that explicit.

  The linear lift ``W_in``/``W_out`` (``embed_dim``) gives the attention and the FFN room to carry both a token and
  its context (the theorem's construction works in a widened token space); ``embed_dim=None`` applies the layer
  directly to ``X`` (``d`` features).

  Attributes:
    heads: attention heads.
    ffn_width: hidden width of the ReLU FFN.
    attn_scale: the scale beta of the attention logits; default ``1/sqrt(head_dim)``.
    pos_enc: ``'learned'``, ``'sinusoidal'`` or ``'none'``.
    embed_dim: width of the lifted token space (None: no lift).
    head_dim: features per head; default ``width // heads``.
    max_length: longest sequence for the learned encoding.
    out_features: output features per token; default ``d``.
  """
  heads: int = 4
  ffn_width: int = 128
  attn_scale: float | None = None
  pos_enc: str = "learned"
  embed_dim: int | None = 32
  head_dim: int | None = None
  max_length: int = 64
  out_features: int | None = None
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, *, sow_weights: bool = False) -> Array:
    """``x [batch, n, d]`` -> ``[batch, n, out_features or d]``. ``sow_weights`` stores the attention weights
    ``[batch, heads, n, n]`` in ``'intermediates'``."""
    where = type(self).__name__
    layers.check_shape(x, "x", "batch n d", where=where, dtype="floating")
    if self.pos_enc not in ("learned", "sinusoidal", "none"):
      raise ValueError(f"{where}: `pos_enc` must be 'learned', 'sinusoidal' or 'none'; got {self.pos_enc!r}.")
    n, d = x.shape[1], x.shape[2]
    dense = functools.partial(layers.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    z = x if self.embed_dim is None else dense(self.embed_dim, axes=(None, "embed"), name="embed")(x)
    width = z.shape[-1]
    if self.pos_enc == "learned":
      if n > self.max_length:
        raise ValueError(f"{where}: `x` has n={n} > max_length={self.max_length} (shape {x.shape}).")
      table = self.param("position_embedding", layers.partitioned(nn.initializers.normal(1.0), ("length", "embed")),
                         (self.max_length, width), self.param_dtype)
      z = z + jnp.asarray(table[:n], z.dtype)[None]
    elif self.pos_enc == "sinusoidal":
      z = z + sinusoidal_positions(n, width + width % 2)[:, :width].astype(z.dtype)[None]
    head_dim = self.head_dim or max(width // self.heads, 1)
    y = z + MultiHeadAttention(self.heads, head_dim=head_dim, scale=self.attn_scale, impl=self.impl,
                               dtype=self.dtype, param_dtype=self.param_dtype, name="attention")(
                                   z, sow_weights=sow_weights)
    y = y + MLPBlock(self.ffn_width, activation="relu", dtype=self.dtype, param_dtype=self.param_dtype,
                     name="ffn")(y)
    if self.embed_dim is None and self.out_features in (None, d):
      return y
    return dense(self.out_features or d, axes=("embed", None), name="readout")(y)
