"""ArchBERT: a bi-modal encoder of neural architectures (as graphs) and natural-language descriptions.

Paper: "ArchBERT: Bi-Modal Understanding of Neural Architectures and Natural Languages", Akbari et al., CoNLL 2023
(arXiv 2301.00040; official code github.com/vbdi/archbert). A text encoder (BERT) and an architecture encoder read
a caption and a computational graph; each side is mean-pooled to one embedding. Pre-training aligns the two with a
cosine-similarity matching loss on matched and unmatched (architecture, text) pairs, and *Masked Architecture
Modelling* (MAM): node tokens are masked and predicted from the architecture encoder's states after
cross-attention to the text. Downstream tasks (architectural reasoning, clone detection, QA, captioning) put heads on
the two embeddings.

Scaled down (PAPERS.md block 36): the text encoder is the zoo transformer trained from scratch; the graph encoder is
a transformer over node tokens whose self-attention is restricted by the graph adjacency (a node sees itself and its
graph neighbours), through :class:`zoo.transformer.MultiHeadAttention` (the one attention function) with a ``mask``.
Graphs are the ONNX graphs of ``zoo.archtext`` configs.

Public names (``b`` batch, ``n`` nodes, ``s`` slots per node, ``l`` text length, ``e`` features):

* :func:`arch_nodes` ``(config | onnx model, max_nodes) -> (node_tokens [n, 7] int, adjacency [n, n] bool)``: node
  slots (op type, kernel, stride, pad, up to three output dims) as :class:`zoo.archtext.ArchTokenizer` ids, 0 =
  empty; adjacency symmetric with self loops, zero rows for padding nodes.
* :class:`CaptionTokenizer`: a fixed word vocabulary of the caption/statement templates; unknown words raise.
* :class:`ArchGraphEncoder` ``(node_tokens [b, n, s], adjacency [b, n, n]) -> [b, n, e]``: slot embeddings summed
  per node, node-index positions, ``num_layers`` pre-norm blocks of adjacency-masked self-attention + MLP.
* :class:`TextEncoder` ``(tokens [b, l]) -> [b, l, e]``: embedding + :class:`zoo.transformer.Encoder`.
* :class:`ArchBERT`: ``__call__(node_tokens, adjacency, text) -> (arch_emb [b, e], text_emb [b, e])``;
  ``initialize`` (the same, touching every head: use it as ``init``'s ``method``);
  ``mam_logits(node_tokens, adjacency, text) -> [b, n, vocab]`` (cross-attention from nodes to text);
  ``reason_logit(arch_emb, text_emb) -> [b]`` (the reasoning head on ``[a, t, a*t, |a-t|]``).
* :func:`alignment_loss` ``(arch_emb, text_emb, match [b]) -> scalar``: ``mean((cos(a, t) - match)^2)``.
* :func:`mam_loss` ``(logits [b, n, V], targets [b, n], masked [b, n]) -> scalar``: cross-entropy on masked nodes.
* :func:`recall_at_k` ``(text_emb [m, e], arch_emb [m, e], k) -> float``: text -> architecture retrieval.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo import archtext
from zoo import layers
from zoo import transformer

__all__ = ["ArchBERT", "ArchGraphEncoder", "CaptionTokenizer", "TextEncoder", "alignment_loss", "arch_nodes",
           "mam_loss", "recall_at_k"]

SLOTS = 7  # op, k, s, p, three output dims


def arch_nodes(arch, max_nodes: int = 16) -> tuple[np.ndarray, np.ndarray]:
  """Node slot ids ``[max_nodes, 7]`` and adjacency ``[max_nodes, max_nodes]`` of a config or ONNX model."""
  model = arch if hasattr(arch, "graph") else archtext.to_onnx(arch)
  nodes = archtext.graph_nodes(model)
  if len(nodes) > max_nodes:
    raise ValueError(f"arch_nodes: the graph has {len(nodes)} nodes > max_nodes={max_nodes}.")
  vocab = archtext.ArchTokenizer().vocab
  tokens = np.zeros((max_nodes, SLOTS), np.int32)
  adj = np.zeros((max_nodes, max_nodes), bool)
  for i, node in enumerate(nodes):
    tokens[i, 0] = vocab[node["op"]]
    for j, key in enumerate(("k", "s", "p")):
      if key in node["attrs"]:
        tokens[i, 1 + j] = vocab[str(node["attrs"][key])]
    for j, d in enumerate(node["shape"][:3]):
      tokens[i, 4 + j] = vocab[str(d)]
    adj[i, i] = True
    for r in node["inputs"]:
      if r >= 0:
        adj[i, r] = adj[r, i] = True
  return tokens, adj


_TEXT_WORD = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")


class CaptionTokenizer:
  """Word-level ids for the generated captions and statements (id 0 padding, 1 [CLS]); unknown words raise."""

  WORDS = ("mlp cnn dense conv width no norm layernorm batchnorm output channels kernel pooling maxpool avgpool "
           "relu tanh sigmoid gelu elu it is a convolutional network has batch normalisation layer uses max average "
           "more than layers activations wider larger , ( ) + - /").split()

  def __init__(self, max_int: int = 128):
    words = ["<pad>", "<cls>"] + list(self.WORDS) + [str(i) for i in range(max_int + 1)]
    self.vocab = {w: i for i, w in enumerate(words)}
    self.vocab_size = len(words)

  def encode(self, texts: str | Sequence[str], max_length: int) -> np.ndarray:
    texts = [texts] if isinstance(texts, str) else list(texts)
    ids = np.zeros((len(texts), max_length), np.int32)
    for i, text in enumerate(texts):
      words = ["<cls>"] + _TEXT_WORD.findall(text.lower())
      bad = [w for w in words if w not in self.vocab]
      if bad:
        raise ValueError(f"CaptionTokenizer.encode: unknown word {bad[0]!r} in text {i}.")
      if len(words) > max_length:
        raise ValueError(f"CaptionTokenizer.encode: text {i} has {len(words)} tokens > max_length={max_length}.")
      ids[i, :len(words)] = [self.vocab[w] for w in words]
    return ids


def _embed(vocab, features, name):
  return layers.Embed(vocab, features, name=name,
                      embedding_init=layers.partitioned(nn.initializers.normal(0.02), ("vocab", "embed")))


class ArchGraphEncoder(nn.Module):
  """Node tokens -> node states with graph-adjacency-masked self-attention (module docstring).

  Attributes:
    vocab_size: slot vocabulary (``ArchTokenizer().vocab_size``).
    features, num_layers, num_heads, mlp_dim: of the blocks; max_nodes: the position table's size.
  """
  vocab_size: int
  features: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  max_nodes: int = 16
  impl: str = "auto"

  @nn.compact
  def __call__(self, node_tokens: jax.Array, adjacency: jax.Array) -> jax.Array:
    where = type(self).__name__
    layers.check_shape(node_tokens, "node_tokens", "batch nodes slots", where=where, dtype="integer")
    n = node_tokens.shape[1]
    layers.check_shape(adjacency, "adjacency", "batch nodes nodes2", where=where, batch=node_tokens.shape[0],
                       nodes=n, nodes2=n)
    if adjacency.dtype != jnp.bool_:
      raise TypeError(f"{where}: `adjacency` must be bool (True = edge or self loop); got {adjacency.dtype}.")
    if n > self.max_nodes:
      raise ValueError(f"{where}: {n} nodes > max_nodes={self.max_nodes}.")
    slot_valid = (node_tokens != 0)[..., None]
    x = (_embed(self.vocab_size, self.features, "embed")(node_tokens) * slot_valid).sum(2)
    x = x + self.param("slot_position", layers.partitioned(nn.initializers.normal(0.02), ("length", "embed")),
                       (self.max_nodes, self.features))[None, :n]
    # A padding node has an all-False row; give it a self loop so its (discarded) softmax row is well defined.
    mask = (adjacency | jnp.eye(n, dtype=bool)[None])[:, None]
    for i in range(self.num_layers):
      h = layers.layer_norm(name=f"norm_attention_{i}")(x)
      x = x + transformer.MultiHeadAttention(self.num_heads, impl=self.impl, name=f"attention_{i}")(h, mask=mask)
      h = layers.layer_norm(name=f"norm_mlp_{i}")(x)
      x = x + transformer.MLPBlock(self.mlp_dim, name=f"mlp_{i}")(h)
    return layers.layer_norm(name="norm")(x)


class TextEncoder(nn.Module):
  """Caption ids ``[b, l]`` (0 = padding) -> token states ``[b, l, e]``."""
  vocab_size: int
  features: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  max_length: int = 48
  impl: str = "auto"

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    layers.check_shape(tokens, "tokens", "batch length", where=type(self).__name__, dtype="integer")
    x = _embed(self.vocab_size, self.features, "embed")(tokens)
    return transformer.Encoder(self.num_layers, self.num_heads, self.mlp_dim, max_length=self.max_length,
                               impl=self.impl, name="encoder")(x, mask=tokens != 0)


def _mean(h, valid):
  w = valid.astype(h.dtype)[..., None]
  return (h * w).sum(1) / jnp.maximum(w.sum(1), 1.0)


class ArchBERT(nn.Module):
  """The bi-modal model: :class:`ArchGraphEncoder` + :class:`TextEncoder`, the MAM head, the reasoning head."""
  arch_vocab_size: int
  text_vocab_size: int
  features: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  max_nodes: int = 16
  max_length: int = 48
  impl: str = "auto"

  def setup(self):
    kw = dict(features=self.features, num_layers=self.num_layers, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
              impl=self.impl)
    self.arch_encoder = ArchGraphEncoder(self.arch_vocab_size, max_nodes=self.max_nodes, **kw)
    self.text_encoder = TextEncoder(self.text_vocab_size, max_length=self.max_length, **kw)
    self.cross = transformer.MultiHeadAttention(self.num_heads, impl=self.impl)
    self.cross_norm = layers.layer_norm()
    self.mam_head = layers.dense(self.arch_vocab_size, axes=("embed", "vocab"))
    self.reason_hidden = layers.dense(self.features, axes=("embed", "mlp"))
    self.reason_out = layers.dense(1, axes=("mlp", None))

  def _check_nodes(self, node_tokens):
    layers.check_indices(node_tokens, "node_tokens", self.arch_vocab_size, where=type(self).__name__)

  def encode_arch(self, node_tokens, adjacency):
    """-> node states ``[b, n, e]`` and the pooled embedding ``[b, e]`` (mean over real nodes)."""
    self._check_nodes(node_tokens)
    h = self.arch_encoder(node_tokens, adjacency)
    return h, _mean(h, node_tokens[..., 0] != 0)

  def encode_text(self, text):
    """-> token states ``[b, l, e]`` and the pooled embedding ``[b, e]`` (mean over real tokens)."""
    h = self.text_encoder(text)
    return h, _mean(h, text != 0)

  def __call__(self, node_tokens, adjacency, text):
    _, a = self.encode_arch(node_tokens, adjacency)
    _, t = self.encode_text(text)
    return a, t

  def initialize(self, node_tokens, adjacency, text):
    """Touches every part (``model.init(rng, ..., method=ArchBERT.initialize)``) -> ``(arch_emb, text_emb)``."""
    a, t = self(node_tokens, adjacency, text)
    self.mam_logits(node_tokens, adjacency, text)
    self.reason_logit(a, t)
    return a, t

  def mam_logits(self, node_tokens, adjacency, text):
    """Masked architecture modelling: node states attend to the text's tokens -> slot-0 logits ``[b, n, V]``."""
    h, _ = self.encode_arch(node_tokens, adjacency)
    th, _ = self.encode_text(text)
    h = h + self.cross(self.cross_norm(h), th, mask=transformer.key_padding_mask(text != 0))
    return self.mam_head(h)

  def reason_logit(self, arch_emb, text_emb):
    z = jnp.concatenate([arch_emb, text_emb, arch_emb * text_emb, jnp.abs(arch_emb - text_emb)], -1)
    return self.reason_out(nn.gelu(self.reason_hidden(z)))[:, 0]


def _cosine(a, t):
  return (a * t).sum(-1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(t, axis=-1) + 1e-6)


def alignment_loss(arch_emb, text_emb, match) -> jax.Array:
  """Cosine matching: ``mean((cos(arch_emb, text_emb) - match)^2)``, ``match`` 1 for a paired and 0 for an
  unpaired (negative) example."""
  if arch_emb.shape != text_emb.shape or match.shape != arch_emb.shape[:1]:
    raise ValueError(f"alignment_loss: need arch_emb and text_emb [b, e] and match [b]; got {arch_emb.shape}, "
                     f"{text_emb.shape}, {match.shape}.")
  return jnp.mean((_cosine(arch_emb, text_emb) - match.astype(jnp.float32)) ** 2)


def mam_loss(logits, targets, masked) -> jax.Array:
  """Mean cross-entropy of ``logits [b, n, V]`` against ``targets [b, n]`` over the ``masked [b, n]`` nodes."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  w = masked.astype(ce.dtype)
  return (ce * w).sum() / jnp.maximum(w.sum(), 1.0)


def recall_at_k(text_emb, arch_emb, k: int = 5) -> float:
  """Fraction of texts ``i`` whose architecture ``i`` is among the ``k`` most cosine-similar of all ``m``."""
  t = np.asarray(text_emb) / np.linalg.norm(text_emb, axis=-1, keepdims=True)
  a = np.asarray(arch_emb) / np.linalg.norm(arch_emb, axis=-1, keepdims=True)
  sim = t @ a.T
  rank = (sim > np.diag(sim)[:, None]).sum(1)
  return float((rank < k).mean())
