"""Scaled dot-product attention: the one attention function every model in the zoo calls.

Layout and semantics follow ``jax.nn.dot_product_attention``::

  query: [batch, q_length, heads, head_dim]
  key:   [batch, kv_length, kv_heads, head_dim]     kv_heads divides heads (grouped-query attention)
  value: [batch, kv_length, kv_heads, value_dim]
  bias:  broadcastable to [batch, heads, q_length, kv_length], added to the logits
  mask:  bool, broadcastable to [batch, heads, q_length, kv_length]; True means "may attend"
  out:   [batch, q_length, heads, value_dim]

  out = softmax(scale * query @ key^T + bias, masked) @ value,   scale = 1/sqrt(head_dim) by default

Parts (DESIGN.md, "Kernels"): ``reference`` is plain ``jnp``, the source of truth and the fallback. ``attention``
is the public entry point with ``impl='auto' | 'pallas' | 'xla'``. This file holds the reference path; the Pallas
kernels are added beside it (their own issue) and must keep this signature.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp

__all__ = ["attention", "reference"]

_log = logging.getLogger(__name__)


def _check(query, key, value):
  if query.ndim != 4 or key.ndim != 4 or value.ndim != 4:
    raise ValueError(
        "attention: `query`, `key`, `value` must have shape [batch, length, heads, head_dim] (rank 4); got "
        f"query {query.shape}, key {key.shape}, value {value.shape}.")
  b, _, h, d = query.shape
  bk, tk, hk, dk = key.shape
  if value.shape[:3] != (bk, tk, hk):
    raise ValueError(f"attention: `value` must have shape [batch, kv_length, kv_heads, value_dim] = "
                     f"[{bk}, {tk}, {hk}, value_dim] like `key`; got {value.shape}.")
  if bk != b or dk != d:
    raise ValueError(f"attention: `key` must have shape [batch={b}, kv_length, kv_heads, head_dim={d}] to match "
                     f"`query` {query.shape}; got {key.shape}.")
  if h % hk:
    raise ValueError(f"attention: the key/value heads ({hk}) must divide the query heads ({h}).")


def reference(query, key, value, *, bias=None, mask=None, is_causal: bool = False, scale: float | None = None,
              dropout_rate: float = 0.0, dropout_rng=None):
  """Plain ``jnp`` attention; shapes as in the module docstring. Softmax in float32, output in query's dtype.

  ``dropout_rate``/``dropout_rng`` drop entries of the attention weights (inverted dropout), as the Hopfield layers
  do on their association matrix. Fully masked rows attend uniformly, as in ``jax.nn.dot_product_attention``.
  """
  _check(query, key, value)
  b, tq, h, d = query.shape
  tk, hk = key.shape[1], key.shape[2]
  scale = d ** -0.5 if scale is None else scale
  q = query.reshape(b, tq, hk, h // hk, d)  # grouped-query: query heads grouped under their key/value head
  logits = jnp.einsum("bqhgd,bkhd->bhgqk", q, key, preferred_element_type=jnp.float32) * scale
  logits = logits.reshape(b, h, tq, tk)
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  if is_causal:
    causal = jnp.tril(jnp.ones((tq, tk), bool), k=tk - tq)  # bottom-right aligned, as jax.nn when tq != tk
    mask = causal if mask is None else jnp.logical_and(mask, causal)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1)
  if dropout_rate > 0.0:
    if dropout_rng is None:
      raise ValueError("attention: `dropout_rng` is required when `dropout_rate` > 0.")
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  weights = weights.reshape(b, hk, h // hk, tq, tk).astype(value.dtype)
  out = jnp.einsum("bhgqk,bkhd->bqhgd", weights, value, preferred_element_type=jnp.float32)
  return out.reshape(b, tq, h, value.shape[-1]).astype(query.dtype)


def attention(query, key, value, *, bias=None, mask=None, is_causal: bool = False, scale: float | None = None,
              dropout_rate: float = 0.0, dropout_rng=None, impl: str = "auto"):
  """Scaled dot-product attention; shapes as in the module docstring.

  Args:
    impl: ``'xla'`` runs :func:`reference`; ``'pallas'`` forces the Pallas kernel; ``'auto'`` picks the kernel on
      GPU/TPU where the shape suits it and the reference otherwise.
  """
  if impl not in ("auto", "pallas", "xla"):
    raise ValueError(f"attention: `impl` must be 'auto', 'pallas' or 'xla'; got {impl!r}.")
  if impl == "pallas":
    raise ValueError("attention: impl='pallas' is not available yet (no Pallas attention kernel in this build); "
                     "use impl='xla' or 'auto'.")
  return reference(query, key, value, bias=bias, mask=mask, is_causal=is_causal, scale=scale,
                   dropout_rate=dropout_rate, dropout_rng=dropout_rng)
