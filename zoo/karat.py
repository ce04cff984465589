"""Kolmogorov-Arnold attention (KArAt): the row softmax of attention replaced by a learnable Fourier KAN operator.

Paper: "Kolmogorov-Arnold Attention: Is Learnable Attention Better For Vision Transformers?", Maity et al., 2025
(arXiv 2503.10632). The operator goes through the one KAN entry point :func:`zoo.kernels.kan_basis.kan` (the fused
Pallas kernel on GPU/TPU), the model is ``zoo.transformer.ViT`` with its ``attention_fn`` hook.

Public names:

* :func:`karat_attention` ``(query [b, q, h, d], key [b, N, kv, d], value [b, N, kv, dv], *, coef, proj, grid_size)
  -> [b, q, h, dv]``: the call signature of :func:`zoo.kernels.attention.attention` plus Φ's parameters.
* :class:`KArAtAttention`: an ``attention_fn`` for ``zoo.transformer.MultiHeadAttention`` (one operator per head; low
  rank: ``R^N -> R^r`` through the kernel, projected back to ``R^N``, rows L1-normalised).
* :class:`KArAtViT` ``image [b, H, W, C] -> [b, classes]``: ``zoo.transformer.ViT`` with KArAt (blockwise or
  universal) or softmax attention.

Deviations and choices:

* KArAt: the paper's code was not public when this was written. Φ is per head (blockwise: per layer and head;
  universal: one set of per-head operators shared by every layer); Fourier coefficients are initialised as
  FourierKAN's (``N(0, 1/(N G))``), the projection ``R^r -> R^N`` is learned, and rows are L1-normalised (sign kept).
* Ablation flag (default = the paper's method): ``KArAtViT(learn_operator=False)`` freezes Φ at its init.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo import transformer
from zoo.kernels import kan_basis

__all__ = ["KArAtAttention", "KArAtViT", "karat_attention"]

Array = jax.Array
Basis = kan_basis.Basis


def karat_attention(query: Array, key: Array, value: Array, *, coef: Array, proj: Array | None, grid_size: int,
                    bias: Array | None = None, mask: Array | None = None, is_causal: bool = False,
                    scale: float | None = None, dropout_rate: float = 0.0, dropout_rng=None, impl: str = "auto",
                    eps: float = 1e-6) -> Array:
  """Kolmogorov-Arnold attention with a Fourier basis: each row of logits goes through a learnable KAN operator.

  ``s = scale q k^T (+ bias)``; per head h, each row ``s_q in R^N`` is mapped by the KAN layer
  ``u_j = sum_n sum_g a[h,g,n,j] cos(g s_n) + b[h,g,n,j] sin(g s_n)`` (``R^N -> R^r``, through the fused kernel),
  projected back ``w = u proj[h]`` (``R^r -> R^N``; without ``proj`` r = N), masked, and L1-normalised:
  ``w / (sum |w| + eps)``. Output ``w v``.

  Args:
    query ``[b, q, h, d]``, key ``[b, N, kv_heads, d]``, value ``[b, N, kv_heads, dv]``: as
      :func:`zoo.kernels.attention.attention` (grouped heads allowed).
    coef: ``[h, 2 * grid_size, N, r]`` Fourier coefficients. proj: ``[h, r, N]`` or None.
    grid_size: G, frequencies 1..G.

  Returns:
    ``[b, q, h, dv]``.
  """
  b, tq, h, d = query.shape
  n, hk = key.shape[1], key.shape[2]
  if coef.shape[:3] != (h, 2 * grid_size, n):
    raise ValueError(f"karat_attention: `coef` must have shape [heads={h}, 2*grid_size={2 * grid_size}, "
                     f"kv_length={n}, rank]; got {coef.shape}.")
  scale = d ** -0.5 if scale is None else scale
  rep = h // hk
  k_full = jnp.repeat(key, rep, axis=2)
  v_full = jnp.repeat(value, rep, axis=2)
  logits = jnp.einsum("bqhd,bkhd->bhqk", query, k_full, preferred_element_type=jnp.float32) * scale
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  rows = jnp.transpose(logits, (1, 0, 2, 3)).reshape(h, b * tq, n)              # [h, rows, N]
  basis = Basis.fourier(grid_size)
  u = jax.vmap(lambda r, c: kan_basis.kan(r, c, basis=basis, impl=impl))(rows, coef.astype(jnp.float32))
  w = u if proj is None else jnp.einsum("hzr,hrn->hzn", u, proj.astype(jnp.float32))
  w = jnp.transpose(w.reshape(h, b, tq, n), (1, 0, 2, 3))                       # [b, h, q, N]
  if is_causal:
    causal = jnp.tril(jnp.ones((tq, n), bool), k=n - tq)
    mask = causal if mask is None else jnp.logical_and(mask, causal)
  if mask is not None:
    w = jnp.where(mask, w, 0.0)
  w = w / (jnp.sum(jnp.abs(w), axis=-1, keepdims=True) + eps)
  if dropout_rate > 0.0:
    if dropout_rng is None:
      raise ValueError("karat_attention: `dropout_rng` is required when `dropout_rate` > 0.")
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, w.shape)
    w = jnp.where(keep, w / (1.0 - dropout_rate), 0.0)
  out = jnp.einsum("bhqk,bkhd->bqhd", w.astype(value.dtype), v_full, preferred_element_type=jnp.float32)
  return out.astype(query.dtype)


def _karat_params(module: nn.Module, heads: int, n: int, grid_size: int, rank: int | None, learn: bool = True):
  """Φ's parameters; with ``learn=False`` (the ablation) their gradient is stopped, so they stay at their init."""
  r = n if rank is None else rank
  coef = module.param("phi_coef", layers.partitioned(nn.initializers.normal(1.0 / math.sqrt(n * grid_size)),
                                                     ("heads", None, None, None)), (heads, 2 * grid_size, n, r))
  proj = None
  if rank is not None:
    proj = module.param("phi_proj", layers.partitioned(nn.initializers.normal(1.0 / math.sqrt(r)),
                                                       ("heads", None, None)), (heads, r, n))
  if not learn:
    coef = jax.lax.stop_gradient(coef)
    proj = None if proj is None else jax.lax.stop_gradient(proj)
  return coef, proj


class KArAtAttention(nn.Module):
  """Fourier-KArAt as the ``attention_fn`` of ``zoo.transformer.MultiHeadAttention`` (one operator per head).

  Call signature of :func:`zoo.kernels.attention.attention`; see :func:`karat_attention`.

  Attributes:
    grid_size: G (the paper's default 3). rank: r (None: the full ``R^N -> R^N`` operator).
    learn_operator: the mechanism flag. True (the paper): Φ's Fourier coefficients and projection are trained.
      False (the ablation): they are frozen at their random init (gradient stopped), so only the rest of the model
      learns around a fixed random operator.
  """
  grid_size: int = 3
  rank: int | None = 8
  learn_operator: bool = True
  impl: str = "auto"

  @nn.compact
  def __call__(self, query, key, value, *, bias=None, mask=None, is_causal=False, scale=None, dropout_rate=0.0,
               dropout_rng=None):
    coef, proj = _karat_params(self, query.shape[2], key.shape[1], self.grid_size, self.rank, self.learn_operator)
    return karat_attention(query, key, value, coef=coef, proj=proj, grid_size=self.grid_size, bias=bias, mask=mask,
                           is_causal=is_causal, scale=scale, dropout_rate=dropout_rate, dropout_rng=dropout_rng,
                           impl=self.impl)


class KArAtViT(nn.Module):
  """``zoo.transformer.ViT`` with Kolmogorov-Arnold attention (or its softmax baseline, same everything else).

  Attributes:
    attention: ``'karat'`` or ``'softmax'``.
    mode: ``'blockwise'`` (each layer its own per-head operators) or ``'universal'`` (one set shared by all layers).
    grid_size, rank: of Fourier-KArAt.
    learn_operator: True (the paper) trains Φ; False (the ablation) freezes it at init (:class:`KArAtAttention`).
    Others: as ``zoo.transformer.ViT``.
  """
  num_classes: int = 10
  patch_size: int = 2
  hidden: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  dropout_rate: float = 0.0
  pool: str = "cls"
  attention: str = "karat"
  mode: str = "blockwise"
  grid_size: int = 3
  rank: int | None = 8
  learn_operator: bool = True
  impl: str = "auto"
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: Array, *, train: bool = False) -> Array:
    """``image [b, H, W, C] -> logits [b, num_classes]``."""
    where = type(self).__name__
    layers.check_shape(image, "image", "batch height width channels", where=where, dtype="floating")
    if self.attention not in ("karat", "softmax"):
      raise ValueError(f"{where}: `attention` must be 'karat' or 'softmax'; got {self.attention!r}.")
    if self.mode not in ("blockwise", "universal"):
      raise ValueError(f"{where}: `mode` must be 'blockwise' or 'universal'; got {self.mode!r}.")
    fn = None
    if self.attention == "karat":
      if self.mode == "blockwise":
        fn = KArAtAttention(self.grid_size, self.rank, self.learn_operator, impl=self.impl)
      else:
        p = self.patch_size
        n = (image.shape[1] // p) * (image.shape[2] // p) + (1 if self.pool == "cls" else 0)
        coef, proj = _karat_params(self, self.num_heads, n, self.grid_size, self.rank, self.learn_operator)
        fn = functools.partial(karat_attention, coef=coef, proj=proj, grid_size=self.grid_size, impl=self.impl)
    return transformer.ViT(self.num_classes, self.patch_size, self.hidden, self.num_layers, self.num_heads,
                           self.mlp_dim, dropout_rate=self.dropout_rate, pool=self.pool, attention_fn=fn,
                           impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype, name="vit")(image,
                                                                                                         train=train)
