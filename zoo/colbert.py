"""ColBERT late interaction with the projection variants of "Simple Projection Variants Improve ColBERT Performance".

Papers:

* Khattab and Zaharia, "ColBERT: Efficient and Effective Passage Search via Contextualized Late Interaction over
  BERT", SIGIR 2020 (arXiv 2004.12832): token states of a transformer, a linear projection (no bias) to 128 dims,
  L2-normalised; the score is MaxSim, ``s(q, d) = sum_i max_j q_i . d_j``; document padding is masked.
* "Simple Projection Variants Improve ColBERT Performance" (2025; mixedbread.ai, the variants as implemented in
  PyLate): MaxSim routes each query token's gradient to its single argmax document token, so a single linear
  projection receives sparse, conflicting updates. Replacing it by a small FFN block helps: deeper non-linear maps,
  GLU gating (SwiGLU/GEGLU), an upscaled intermediate width (2-4x) and a residual with a linear shortcut; upscaling
  and the residual matter most, and the best variants gain > 2 NDCG@10 points on BEIR.

The encoder is the zoo transformer (:class:`zoo.transformer.TransformerLM` used through ``encode``, bidirectional);
MaxSim goes through the fused kernel :func:`zoo.kernels.maxsim.maxsim` (Pallas on GPU/TPU, the jnp reference
elsewhere). Public names (``b`` batch, ``l`` tokens, ``e`` encoder width, ``k`` output dim ``dim``):

* :class:`LinearProj` ``[..., e] -> [..., k]``: ColBERT's projection, ``x W`` (no bias).
* :class:`FFNProj` ``[..., e] -> [..., k]``: ``depth`` hidden layers of width ``expansion * k`` with activation
  ``activation`` (``gated=True``: the GLU form ``act(x W0) * (x W1)``), an output layer, and with ``residual=True``
  a linear shortcut ``+ x W_s``. ``nonlinear=False`` removes the activation and the gate (a deep *linear* map of
  the same widths): the ablation of the mechanism.
* :data:`PROJECTIONS`: the named variants (``'linear'``, ``'ffn'``, ``'ffn_upscaled'``, ``'glu'``,
  ``'residual_ffn'``, ``'residual_glu_upscaled'`` ...) as keyword sets of :class:`FFNProj` / :class:`LinearProj`.
* :class:`ColBERT`: ``encode(tokens [b, l]) -> [b, l, k]`` (unit vectors, padding zeroed), ``score(query [b, lq],
  docs [b, n, ld]) -> [b, n]`` (reranking) and ``__call__({'query': [b, lq], 'doc': [b, ld], 'negative': [b, ld]
  or [b, m, ld]}) -> [b, b (1 + m)]``: each query against every document of the batch (its positive, the other
  positives, every hard negative), the in-batch contrastive form of PyLate.
* :func:`maxsim`: re-export of :func:`zoo.kernels.maxsim.maxsim`.

Token id ``pad_id`` (0) is padding in queries and documents: masked from attention and from MaxSim. Deviation:
ColBERT pads queries with [MASK] tokens that *do* take part in MaxSim (query augmentation); here a query's padding
is masked like a document's (pass ``query_augmentation=True`` to keep them, as ColBERT does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo import transformer
from zoo.kernels import maxsim as maxsim_lib

__all__ = ["ColBERT", "FFNProj", "LinearProj", "PROJECTIONS", "make_projection", "maxsim"]

Array = jax.Array
maxsim = maxsim_lib.maxsim


class LinearProj(nn.Module):
  """ColBERT's projection: ``x W``, ``W [e, features]``, no bias (as ColBERT's ``nn.Linear(hidden, dim, bias=False)``).

  ``x: [..., e] -> [..., features]``."""
  features: int = 128
  use_bias: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    layers.check_shape(x, "x", "... features", where=type(self).__name__, dtype="floating")
    return layers.dense(self.features, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                        name="linear")(x)


class FFNProj(nn.Module):
  """An FFN projection block: ``depth`` hidden layers, an output layer, optionally a linear shortcut.

  Attributes:
    features: output dim (ColBERT: 128).
    depth: hidden layers (1: one FFN block; 2+: "deeper").
    expansion: hidden width = ``expansion * features`` (1: no upscaling; the paper's upscaled variants use 2-4).
    activation: a name in :data:`zoo.transformer.ACTIVATIONS` (``'silu'`` with ``gated``: SwiGLU; ``'gelu'``:
      GEGLU).
    gated: GLU hidden layers ``act(h W0) * (h W1)``.
    residual: add the linear shortcut ``x W_s`` (no bias) to the output (the input width differs from
      ``features``, so the shortcut is a projection, as in the paper).
    nonlinear: False drops the activation and the gate (``h W0`` only): the same widths, but a linear map. The
      ablation of the mechanism; the paper's variants all have True.

  ``x: [..., e] -> [..., features]``.
  """
  features: int = 128
  depth: int = 1
  expansion: float = 4.0
  activation: str = "silu"
  gated: bool = True
  residual: bool = True
  nonlinear: bool = True
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    where = type(self).__name__
    layers.check_shape(x, "x", "... features", where=where, dtype="floating")
    if not isinstance(self.depth, int) or self.depth < 1:
      raise ValueError(f"{where}: `depth` must be an int >= 1; got {self.depth!r}.")
    if not self.expansion > 0:
      raise ValueError(f"{where}: `expansion` must be > 0; got {self.expansion!r}.")
    hidden = max(1, int(round(self.expansion * self.features)))
    act = transformer.get_activation(self.activation)
    dense = lambda n, name, **kw: layers.dense(n, dtype=self.dtype, param_dtype=self.param_dtype, name=name, **kw)
    h = x
    for i in range(self.depth):
      if not self.nonlinear:
        h = dense(hidden, f"wi_{i}", use_bias=self.use_bias)(h)
      elif self.gated:
        h = act(dense(hidden, f"wi_{i}", use_bias=self.use_bias)(h)) * dense(hidden, f"gate_{i}",
                                                                            use_bias=self.use_bias)(h)
      else:
        h = act(dense(hidden, f"wi_{i}", use_bias=self.use_bias)(h))
    out = dense(self.features, "wo", axes=("mlp", "embed"), use_bias=self.use_bias)(h)
    if self.residual:
      out = out + dense(self.features, "shortcut", use_bias=False)(x)
    return out


PROJECTIONS: dict[str, dict[str, Any]] = {
    "linear": {"kind": "linear"},
    "ffn": {"gated": False, "activation": "gelu", "expansion": 1.0, "residual": False},
    "ffn_upscaled": {"gated": False, "activation": "gelu", "expansion": 4.0, "residual": False},
    "ffn_deep": {"gated": False, "activation": "gelu", "expansion": 1.0, "depth": 2, "residual": False},
    "glu": {"gated": True, "activation": "silu", "expansion": 1.0, "residual": False},
    "glu_upscaled": {"gated": True, "activation": "silu", "expansion": 4.0, "residual": False},
    "residual_ffn": {"gated": False, "activation": "gelu", "expansion": 1.0, "residual": True},
    "residual_ffn_upscaled": {"gated": False, "activation": "gelu", "expansion": 4.0, "residual": True},
    "residual_glu": {"gated": True, "activation": "silu", "expansion": 1.0, "residual": True},
    "residual_glu_upscaled": {"gated": True, "activation": "silu", "expansion": 4.0, "residual": True},
}
"""The projection variants by name: keyword arguments of :class:`FFNProj` (``'linear'``: :class:`LinearProj`)."""


def make_projection(name: str, features: int, overrides: Mapping[str, Any] | None = None, **kw) -> nn.Module:
  """The projection ``name`` of :data:`PROJECTIONS` with output dim ``features`` and ``overrides`` applied."""
  if name not in PROJECTIONS:
    raise ValueError(f"ColBERT: `projection` must be one of {sorted(PROJECTIONS)}; got {name!r}.")
  spec = {**PROJECTIONS[name], **dict(overrides or {})}
  if spec.pop("kind", "ffn") == "linear":
    return LinearProj(features, **spec, **kw)
  return FFNProj(features, **spec, **kw)


class ColBERT(nn.Module):
  """ColBERT: zoo-transformer token states -> projection -> L2 normalisation; MaxSim scores.

  Attributes:
    vocab_size: token ids in ``[0, vocab_size)``; ``pad_id`` is padding.
    embed_dim, num_layers, num_heads, mlp_dim, max_length, position: of the encoder
      (:class:`zoo.transformer.TransformerLM`, bidirectional; ``num_layers=0`` leaves the token embeddings, after
      the final LayerNorm).
    dim: output dim of the projection (ColBERT: 128).
    projection: a name in :data:`PROJECTIONS` (default: the paper's best family, residual + SwiGLU + 4x upscale).
    projection_kwargs: overrides of that variant's fields (``{'expansion': 2.0}``, ``{'depth': 2}``).
    nonlinear: False switches the FFN projections' activation and gate off (:class:`FFNProj` ``nonlinear``): the
      ablation of the mechanism; ``'linear'`` is linear either way.
    freeze_encoder: stop the gradient at the token states, so that only the projection learns (the effect test).
    normalize: L2-normalise the projected vectors (ColBERT does).
    query_augmentation: let padded query positions take part in MaxSim (ColBERT's [MASK] augmentation).
    impl: of :func:`zoo.kernels.maxsim.maxsim` (``'auto'``: the Pallas kernel on GPU/TPU).
  """
  vocab_size: int
  embed_dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  max_length: int = 128
  position: str = "learned"
  dim: int = 128
  projection: str = "residual_glu_upscaled"
  projection_kwargs: Mapping[str, Any] | None = None
  nonlinear: bool = True
  freeze_encoder: bool = False
  normalize: bool = True
  query_augmentation: bool = False
  pad_id: int = 0
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def setup(self):
    self.encoder = transformer.TransformerLM(
        self.vocab_size, embed_dim=self.embed_dim, num_layers=self.num_layers, num_heads=self.num_heads,
        mlp_dim=self.mlp_dim, max_length=self.max_length, position=self.position, causal=False, impl=self.impl,
        dtype=self.dtype, param_dtype=self.param_dtype)
    overrides = dict(self.projection_kwargs or {})
    if not self.nonlinear and PROJECTIONS.get(self.projection, {}).get("kind") != "linear":
      overrides["nonlinear"] = False
    self.project = make_projection(self.projection, self.dim, overrides, dtype=self.dtype,
                                   param_dtype=self.param_dtype)

  def encode(self, tokens: Array, *, train: bool = False) -> Array:
    """``tokens [b, l]`` int -> unit token vectors ``[b, l, dim]``; padding positions are zero."""
    layers.check_shape(tokens, "tokens", "batch length", where=type(self).__name__, dtype="integer")
    mask = tokens != self.pad_id
    states = self.encoder.encode(tokens, mask=mask, train=train)
    if self.freeze_encoder:
      states = jax.lax.stop_gradient(states)
    v = self.project(states)
    if self.normalize:
      v = v / jnp.maximum(jnp.linalg.norm(v.astype(jnp.float32), axis=-1, keepdims=True), 1e-12).astype(v.dtype)
    return jnp.where(mask[..., None], v, 0)

  def _query(self, query, train):
    q = self.encode(query, train=train)
    return q, (None if self.query_augmentation else query != self.pad_id)

  def score(self, query: Array, docs: Array, *, train: bool = False) -> Array:
    """Reranking: ``query [b, lq]`` against its candidates ``docs [b, n, ld]`` (int) -> MaxSim ``[b, n]`` float32."""
    where = type(self).__name__
    layers.check_shape(query, "query", "batch length", where=where, dtype="integer")
    layers.check_shape(docs, "docs", "batch docs length", where=where, dtype="integer", batch=query.shape[0])
    b, n, ld = docs.shape
    q, qmask = self._query(query, train)
    d = self.encode(docs.reshape(b * n, ld), train=train).reshape(b, n, ld, -1)
    return maxsim_lib.maxsim(q, d, query_mask=qmask, doc_mask=docs != self.pad_id, impl=self.impl)

  def __call__(self, inputs: Mapping[str, Array], *, train: bool = False) -> Array:
    """In-batch scores ``[b, b (1 + m)]``: query ``i`` against every positive (columns ``0..b-1``, its own at
    ``i``) and every hard negative (columns ``b..``, query-major) of the batch.

    ``inputs``: ``'query' [b, lq]``, ``'doc' [b, ld]`` and optionally ``'negative' [b, ld]`` or ``[b, m, ld]``.
    """
    where = type(self).__name__
    if not isinstance(inputs, Mapping) or "query" not in inputs or "doc" not in inputs:
      got = sorted(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__
      raise TypeError(f"{where}: `inputs` must be a dict with 'query' [b, lq] and 'doc' [b, ld] (and optionally "
                      f"'negative'); got {got}.")
    query, doc = inputs["query"], inputs["doc"]
    layers.check_shape(query, "query", "batch length", where=where, dtype="integer")
    layers.check_shape(doc, "doc", "batch length", where=where, dtype="integer", batch=query.shape[0])
    docs = [doc]
    if inputs.get("negative") is not None:
      neg = inputs["negative"]
      if neg.ndim == 2:
        neg = neg[:, None]
      layers.check_shape(neg, "negative", "batch negatives length", where=where, dtype="integer",
                         batch=query.shape[0], length=doc.shape[1])
      docs.append(neg.reshape(-1, neg.shape[-1]))
    docs = jnp.concatenate(docs, axis=0)  # [b (1 + m), ld]
    q, qmask = self._query(query, train)
    d = self.encode(docs, train=train)
    return maxsim_lib.maxsim_pairwise(q, d, query_mask=qmask, doc_mask=docs != self.pad_id, impl=self.impl)
