"""Neural ranking models for ad-hoc retrieval, as surveyed in "A Deep Look into Neural Ranking Models for Information
Retrieval" (Guo et al., 2019, arXiv 1903.06902).

Representation-focused models (a vector per text, then a similarity):

* :class:`DSSM` (Huang et al., CIKM 2013): word hashing by letter trigrams, a tanh MLP tower per side (query and
  document towers have their own weights, as in MatchZoo-py), score = ``gamma * cos(q, d)``.
* :class:`CDSSM` (Shen et al., CIKM 2014): letter-trigram vectors per word, a convolution over 3-word windows
  (tanh), max-pooling over positions, a tanh semantic layer, cosine.

Interaction-focused models (a query-document matching matrix, then a scorer):

* :class:`KNRM` (Xiong et al., SIGIR 2017): ``M_ij = cos(q_i, d_j)`` of word embeddings; RBF kernels
  ``K_k(i) = sum_j exp(-(M_ij - mu_k)^2 / (2 sigma_k^2))``; ``phi_k = sum_i log K_k(i)``; score ``tanh(w . phi +
  b)``. 11 kernels: ``mu = 1, sigma = 1e-3`` (exact match) and ``mu = 0.9, 0.7, ..., -0.9`` with ``sigma = 0.1``.
  The log is the original code's ``0.01 * log(max(K, 1e-10))``. ``exact_match=False`` drops the exact-match
  kernel; ``shared_embeddings=False`` embeds documents with their own table (no term matching: the ablation).
* :class:`DRMM` (Guo et al., CIKM 2016): per query term a matching histogram of its cosines with the document
  terms (30 bins: 29 over [-1, 1) and one for exact matches, log-count ``log(1 + n)``), a feed-forward net per term
  (tanh, hidden 5), and a term gate ``softmax_i(w * idf_i)``.
* :class:`MatchPyramid` (Pang et al., AAAI 2016): the dot-product matching matrix as an image, a 2D convolution
  (ReLU), dynamic max-pooling to a fixed grid, an MLP.
* :class:`Duet` (Mitra et al., WWW 2017): a local model on the exact-match matrix (a convolution whose filter
  spans all query terms at one document position, then dense layers) plus a distributed model on letter-trigram
  representations (convolution + max-pooling on both sides, their Hadamard product, dense layers); the score is
  their sum.

Inputs (one dict for every model; each reads its keys; ``b`` queries, ``n`` candidates, ``lq``/``ld`` words,
``T`` letter trigrams per word; id 0 is padding everywhere):

* ``'query' [b, lq]``, ``'docs' [b, n, ld]``: word ids in ``[0, vocab_size)``;
* ``'query_tri' [b, lq, T]``, ``'docs_tri' [b, n, ld, T]``: hashed letter-trigram ids in ``[0, num_buckets)``
  (:func:`letter_trigrams`);
* ``'query_idf' [b, lq]``: inverse document frequencies (DRMM's gate).

Output: ``scores [b, n]`` float32. Losses and metrics are ``rax``'s (``recipes/procedures/ranking.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers

__all__ = ["CDSSM", "DRMM", "DSSM", "Duet", "KNRM", "MatchPyramid", "kernel_mus_sigmas", "letter_trigrams"]

Array = jax.Array


def letter_trigrams(word: str, num_buckets: int, max_trigrams: int) -> np.ndarray:
  """DSSM's word hashing: the letter trigrams of ``'#word#'`` hashed (crc32) into ``[1, num_buckets)``; int32
  ``[max_trigrams]``, zero-padded (0 is padding), truncated to ``max_trigrams``."""
  w = f"#{word}#"
  ids = [1 + zlib.crc32(w[i:i + 3].encode()) % (num_buckets - 1) for i in range(len(w) - 2)][:max_trigrams]
  out = np.zeros(max_trigrams, np.int32)
  out[:len(ids)] = ids
  return out


def _get(inputs, key, where, spec, **sizes):
  if not isinstance(inputs, Mapping) or key not in inputs:
    got = sorted(inputs) if isinstance(inputs, Mapping) else type(inputs).__name__
    raise TypeError(f"{where}: `inputs` must be a dict with {key!r} {spec}; got {got}.")
  x = inputs[key]
  layers.check_shape(x, key, spec, where=where, **sizes)
  return x


def _ids(module, inputs, size, trigrams: bool = False):
  """Checked ids and masks: words ``query [b, lq]``, ``docs [b, n, ld]``; trigrams (keys ``*_tri``) one axis more."""
  where = type(module).__name__
  keys, extra = (("query_tri", "docs_tri"), " trigrams") if trigrams else (("query", "docs"), "")
  q = _get(inputs, keys[0], where, "batch length" + extra, dtype="integer")
  d = _get(inputs, keys[1], where, "batch docs length" + extra, dtype="integer", batch=q.shape[0])
  for name, x in zip(keys, (q, d)):
    layers.check_indices(x, name, size, where=where)
  return q, d


def _embed(vocab, features, name):
  init = layers.partitioned(nn.initializers.normal(1.0), ("vocab", "embed"))
  return layers.Embed(vocab, features, embedding_init=init, name=name)


def _unit(x, axis=-1):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), 1e-8)


class _Tower(nn.Module):
  """Bag of letter trigrams -> tanh MLP (the DSSM tower); ``tri [..., words, T]`` -> ``[..., out]``."""
  num_buckets: int
  hidden: Sequence[int]

  @nn.compact
  def __call__(self, tri):
    table = _embed(self.num_buckets, self.hidden[0], "trigram_layer")
    bias = self.param("trigram_bias", layers.partitioned(nn.initializers.zeros_init(), ("mlp",)), (self.hidden[0],))
    counts = (tri > 0)[..., None]
    h = jnp.tanh((table(tri) * counts).sum((-3, -2)) * 0.1 + bias)  # every word's trigrams of the text
    for i, f in enumerate(self.hidden[1:]):
      h = jnp.tanh(layers.dense(f, name=f"dense_{i}")(h))
    return h


class DSSM(nn.Module):
  """Deep Structured Semantic Model: trigram hashing + two tanh towers + cosine (module docstring).

  Attributes:
    num_buckets: size of the hashed trigram space (the paper: 30k trigrams); ids in ``[0, num_buckets)``.
    hidden: tower widths (the paper: 300, 300, 128).
    gamma: the cosine's scale in the softmax over candidates (the paper's smoothing factor).
  """
  num_buckets: int = 4096
  hidden: Sequence[int] = (300, 300, 128)
  gamma: float = 10.0

  @nn.compact
  def __call__(self, inputs) -> Array:
    q, d = _ids(self, inputs, self.num_buckets, trigrams=True)
    vq = _Tower(self.num_buckets, tuple(self.hidden), name="query_tower")(q)  # [b, h]
    vd = _Tower(self.num_buckets, tuple(self.hidden), name="doc_tower")(d)  # [b, n, h]
    return self.gamma * jnp.einsum("bh,bnh->bn", _unit(vq), _unit(vd))


class CDSSM(nn.Module):
  """Convolutional DSSM: trigram vectors per word, conv over ``window`` words, max-pool, tanh layer, cosine."""
  num_buckets: int = 4096
  filters: int = 300
  window: int = 3
  features: int = 128
  gamma: float = 10.0

  @nn.compact
  def __call__(self, inputs) -> Array:
    q, d = _ids(self, inputs, self.num_buckets, trigrams=True)

    def side(tri, name):  # tri [B, l, T] -> [B, features]
      table = _embed(self.num_buckets, self.filters * self.window, f"{name}_conv")
      rows = (table(tri) * (tri > 0)[..., None]).sum(-2) * 0.1  # [B, l, window * filters]: each word's filter taps
      rows = rows.reshape(*rows.shape[:-1], self.window, self.filters)
      length = tri.shape[-2]
      pad = jnp.pad(rows, ((0, 0), (0, self.window - 1), (0, 0), (0, 0)))
      conv = sum(pad[:, k:k + length, k] for k in range(self.window))  # window sums of the taps: a 1D convolution
      bias = self.param(f"{name}_bias", layers.partitioned(nn.initializers.zeros_init(), ("mlp",)), (self.filters,))
      h = jnp.tanh(conv + bias)
      real = (tri > 0).any(-1)[..., None]
      h = jnp.max(jnp.where(real, h, -1.0), axis=-2)  # max over positions
      return jnp.tanh(layers.dense(self.features, name=f"{name}_semantic")(h))

    b, n, ld, t = d.shape
    vq = side(q, "query")
    vd = side(d.reshape(b * n, ld, t), "doc").reshape(b, n, -1)
    return self.gamma * jnp.einsum("bh,bnh->bn", _unit(vq), _unit(vd))


def kernel_mus_sigmas(num_kernels: int = 11, sigma: float = 0.1, exact_sigma: float = 1e-3,
                      exact_match: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """K-NRM's kernels: ``mu = 1`` (sigma ``exact_sigma``) then ``num_kernels - 1`` means spaced 2 / (num_kernels - 1)
  from ``1 - 1 / (num_kernels - 1)`` down (0.9, 0.7, ..., -0.9 for 11), sigma ``sigma``."""
  step = 2.0 / (num_kernels - 1)
  soft = [1.0 - step / 2 - i * step for i in range(num_kernels - 1)]
  mus, sigmas = soft, [sigma] * len(soft)
  if exact_match:
    mus, sigmas = [1.0] + mus, [exact_sigma] + sigmas
  return np.asarray(mus, np.float32), np.asarray(sigmas, np.float32)


def _cosine_matrix(module, inputs, vocab_size, embed_dim, shared: bool = True, tables=None):
  """Word-embedding cosines ``[b, n, lq, ld]`` and the masks ``[b, 1, lq, 1]``, ``[b, n, 1, ld]``; ``shared=False``
  embeds documents with a second table; ``tables``: the (query, doc) embedding modules if already built."""
  q, d = _ids(module, inputs, vocab_size)
  if tables is None:
    emb = _embed(vocab_size, embed_dim, "embedding")
    tables = (emb, emb if shared else _embed(vocab_size, embed_dim, "doc_embedding"))
  m = jnp.einsum("bqe,bnde->bnqd", _unit(tables[0](q)), _unit(tables[1](d)))
  return m, (q > 0)[:, None, :, None], (d > 0)[:, :, None, :], q, d


class KNRM(nn.Module):
  """Kernel-based neural ranking (module docstring).

  Attributes:
    vocab_size, embed_dim: the word embeddings (the paper: 300-d, trained end to end).
    num_kernels, sigma, exact_sigma: the kernels (11, 0.1, 1e-3).
    exact_match: keep the ``mu = 1`` exact-match kernel (the paper's method); False drops it.
    shared_embeddings: query and document words in one embedding table (the paper's method), so that a word
      matches itself (cosine 1) whether or not training ever saw it. False gives documents their own table: the
      ablation of term matching, which turns the model into a learned translation between two vocabularies.
  """
  vocab_size: int
  embed_dim: int = 300
  num_kernels: int = 11
  sigma: float = 0.1
  exact_sigma: float = 1e-3
  exact_match: bool = True
  shared_embeddings: bool = True

  def setup(self):
    self.embedding = _embed(self.vocab_size, self.embed_dim, None)
    self.doc_embedding = (self.embedding if self.shared_embeddings
                          else _embed(self.vocab_size, self.embed_dim, None))
    self.dense = layers.dense(1)

  def features(self, inputs) -> Array:
    """The soft-TF features ``phi [b, n, kernels]``."""
    m, qmask, dmask, _, _ = _cosine_matrix(self, inputs, self.vocab_size, self.embed_dim,
                                           tables=(self.embedding, self.doc_embedding))
    mus, sigmas = kernel_mus_sigmas(self.num_kernels, self.sigma, self.exact_sigma, self.exact_match)
    k = jnp.exp(-((m[..., None] - mus) ** 2) / (2 * sigmas ** 2)) * dmask[..., None]  # [b, n, lq, ld, K]
    soft_tf = k.sum(3)  # [b, n, lq, K]
    return (0.01 * jnp.log(jnp.maximum(soft_tf, 1e-10)) * qmask[..., 0, None]).sum(2)

  def __call__(self, inputs) -> Array:
    return jnp.tanh(self.dense(self.features(inputs)))[..., 0]


class DRMM(nn.Module):
  """Deep Relevance Matching Model: matching histograms, a term scorer, an idf term gate (module docstring)."""
  vocab_size: int
  embed_dim: int = 300
  bins: int = 30
  hidden: Sequence[int] = (5,)

  @nn.compact
  def __call__(self, inputs) -> Array:
    m, qmask, dmask, q, _ = _cosine_matrix(self, inputs, self.vocab_size, self.embed_dim)
    idf = _get(inputs, "query_idf", type(self).__name__, "batch length", batch=q.shape[0], length=q.shape[1])
    m = jax.lax.stop_gradient(m)  # a histogram has no gradient (DRMM keeps pretrained embeddings fixed)
    exact = m >= 1.0 - 1e-6
    edges = self.bins - 1
    idx = jnp.where(exact, edges, jnp.clip(jnp.floor((m + 1.0) / 2.0 * edges), 0, edges - 1)).astype(jnp.int32)
    hist = (jax.nn.one_hot(idx, self.bins) * dmask[..., None]).sum(3)  # [b, n, lq, bins]
    h = jnp.log1p(hist)  # log-count histogram (LCH)
    for i, f in enumerate(self.hidden):
      h = jnp.tanh(layers.dense(f, name=f"term_{i}")(h))
    term = jnp.tanh(layers.dense(1, name="term_out")(h))[..., 0]  # [b, n, lq]
    w = self.param("gate", layers.partitioned(nn.initializers.constant(1.0), (None,)), (1,))
    gate = jax.nn.softmax(jnp.where(q > 0, w * idf.astype(jnp.float32), -jnp.inf), axis=-1)  # [b, lq]
    return jnp.einsum("bnq,bq->bn", term, gate)


class MatchPyramid(nn.Module):
  """The matching matrix as an image: conv (ReLU) -> dynamic max-pooling to ``pool`` -> MLP (module docstring)."""
  vocab_size: int
  embed_dim: int = 300
  filters: int = 8
  kernel: tuple[int, int] = (3, 3)
  pool: tuple[int, int] = (3, 8)
  hidden: int = 32

  @nn.compact
  def __call__(self, inputs) -> Array:
    q, d = _ids(self, inputs, self.vocab_size)
    emb = _embed(self.vocab_size, self.embed_dim, "embedding")
    eq, ed = emb(q) * (q > 0)[..., None], emb(d) * (d > 0)[..., None]
    m = jnp.einsum("bqe,bnde->bnqd", eq, ed)  # dot-product matching matrix (the paper's best)
    b, n, lq, ld = m.shape
    x = jax.nn.relu(layers.conv(self.filters, self.kernel, name="conv")(m.reshape(b * n, lq, ld, 1)))
    pq, pd = self.pool
    if lq % pq or ld % pd:
      raise ValueError(f"MatchPyramid: query/doc lengths ({lq}, {ld}) must be multiples of pool={self.pool}.")
    x = x.reshape(b * n, pq, lq // pq, pd, ld // pd, self.filters).max((2, 4)).reshape(b * n, -1)
    x = jax.nn.relu(layers.dense(self.hidden, name="dense")(x))
    return layers.dense(1, name="out")(x).reshape(b, n)


class Duet(nn.Module):
  """Local (exact match) + distributed (letter-trigram) model; score = local + distributed (module docstring)."""
  vocab_size: int
  num_buckets: int = 4096
  filters: int = 64
  hidden: int = 64
  window: int = 3

  @nn.compact
  def __call__(self, inputs) -> Array:
    q, d = _ids(self, inputs, self.vocab_size)
    qt, dt = _ids(self, inputs, self.num_buckets, trigrams=True)
    b, n, ld = d.shape
    # local model: exact-match matrix [b, n, ld, lq]; a filter spanning all query terms at each document position
    match = ((q[:, None, None, :] == d[..., None]) & (q[:, None, None, :] > 0)).astype(jnp.float32)
    local = jnp.tanh(layers.dense(self.filters, name="local_conv")(match))  # [b, n, ld, filters]
    local = jnp.tanh(layers.dense(self.hidden, name="local_dense")(local.reshape(b, n, -1)))
    local = layers.dense(1, name="local_out")(local)[..., 0]
    # distributed model: trigram bags per word, conv over windows, max-pool (query: all; doc: windows of words)
    def words(tri, name):
      table = _embed(self.num_buckets, self.filters, f"{name}_trigrams")
      return jnp.tanh((table(tri) * (tri > 0)[..., None]).sum(-2) * 0.1)  # [..., l, filters]
    vq = words(qt, "query").max(-2)  # [b, filters]
    vd = words(dt, "doc")  # [b, n, ld, filters]
    pad = jnp.pad(vd, ((0, 0), (0, 0), (0, self.window - 1), (0, 0)))
    vd = sum(pad[:, :, k:k + ld] for k in range(self.window)).max(-2) / self.window  # [b, n, filters]
    dist = jnp.tanh(layers.dense(self.hidden, name="dist_dense")(vq[:, None] * vd))
    dist = layers.dense(1, name="dist_out")(dist)[..., 0]
    return local + dist
