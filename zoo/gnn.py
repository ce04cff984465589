"""Graph neural networks over fixed-shape edge lists: GCN, GraphSAGE and GAT layers and a node-classification stack.

Papers:

* GCN: Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks" (2017, arXiv 1609.02907).
* GraphSAGE: Hamilton, Ying & Leskovec, "Inductive Representation Learning on Large Graphs" (2017, arXiv
  1706.02216), with the mean aggregator.
* GAT: Velickovic et al., "Graph Attention Networks" (2018, arXiv 1710.10903).

They are the layers that "Forward Learning of Graph Neural Networks" (Park et al., ICLR 2024, arXiv 2403.11004)
trains without backpropagation (``zoo.recipes.procedures.forward_gnn``). Message passing is ``jax.ops.segment_sum`` /
``segment_max`` over an edge list (jraph is archived, so nothing here depends on it).

A graph is a mapping of fixed-shape arrays, one graph or a batch of graphs padded to the same sizes:

* ``nodes``: ``[batch, nodes, features]`` float node features;
* ``edges``: ``[batch, edges, 2]`` int, ``(sender, receiver)`` pairs; a message flows from sender to receiver, so an
  undirected graph lists both directions; no self loops (the layers add them where the paper does);
* ``edge_mask`` (optional): ``[batch, edges]`` bool or float; 0 marks a padding edge. A float value is the edge's
  weight for GCN and the SAGE mean (GAT uses it only as a mask). Padding edges may point at any node.

The unbatched forms (``nodes [nodes, features]``, ``edges [edges, 2]``, ``edge_mask [edges]``) are accepted too, and
give unbatched outputs. The aggregation is ``vmap``-ed over the batch, so a batch sharded over the mesh's data axes
stays local to its devices; kernels carry logical axis names (``'embed'``, ``'mlp'``, ``'heads'``, ``'kv'``).

Public names:

* :class:`GCNConv` ``(features)``: ``X' = D^-1/2 (A + I) D^-1/2 X W + b`` (with edge weights in ``A``).
  ``(x [batch, nodes, in], edges, edge_mask) -> [batch, nodes, features]``.
* :class:`SAGEConv` ``(features)``: ``x_i' = W_1 x_i + W_2 mean_{j in N(i)} x_j + b``. Same call.
* :class:`GATConv` ``(features, heads=4)``: ``heads`` attention heads of ``features // heads`` each, concatenated;
  ``alpha_ij = softmax_j LeakyReLU(a_s . W x_j + a_d . W x_i)`` over ``N(i) + {i}``. Same call.
* :class:`DenseConv` ``(features)``: a per-node ``Dense`` that ignores the edges, the graph-free (MLP) baseline.
* :class:`GNNLayer` ``(conv, features, heads=4, normalize_input=False, activation=relu)``: optional row-wise L2
  normalisation of the input (ForwardGNN's "LayerNorm"), a conv, an activation. Same call.
* :class:`GNN` ``(num_classes, hidden_features=128, num_layers=2, conv='gcn')``: ``num_layers`` layers; with
  ``num_classes`` the last one is a conv to ``num_classes`` logits without activation (the backprop baseline of
  ForwardGNN, as PyG's ``GCN``/``GraphSAGE``/``GAT`` models); with ``num_classes=None`` every layer is a
  ``GNNLayer`` of ``hidden_features`` (the stack ForwardGNN trains layer by layer; its parameters are
  ``layer_0 ... layer_{L-1}``). ``graph`` mapping as above ``-> [batch, nodes, num_classes or hidden_features]``.
* :func:`check_graph` ``(graph, where) -> (nodes, edges, edge_mask, batched)``: validated, batched arrays.
* :func:`gcn_coefficients`, :func:`segment_softmax`: the normalisation and edge-softmax used by the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo.layers import check_shape, dense, partitioned

__all__ = ["CONVS", "DenseConv", "GATConv", "GCNConv", "GNN", "GNNLayer", "SAGEConv", "check_graph",
           "gcn_coefficients", "l2_normalize_rows", "segment_softmax"]

Dtype = Any


# ---------------------------------------------------------------------------------------------------- graph input


def _batched(x, edges, edge_mask, where: str):
  """Checks one layer's inputs; returns them with a leading batch axis and whether the input had one."""
  check_shape(x, "x", "... nodes features", where=where, dtype="floating")
  if x.ndim not in (2, 3):
    raise ValueError(f"{where}: `x` must have shape [nodes, features] or [batch, nodes, features]; got shape "
                     f"{tuple(x.shape)}.")
  batched = x.ndim == 3
  spec = "batch edges pair" if batched else "edges pair"
  check_shape(edges, "edges", spec, where=where, dtype="integer", pair=2,
              batch=x.shape[0] if batched else None)
  if edge_mask is None:
    edge_mask = jnp.ones(edges.shape[:-1], jnp.float32)
  else:
    check_shape(edge_mask, "edge_mask", "batch edges" if batched else "edges", where=where,
                batch=x.shape[0] if batched else None, edges=edges.shape[-2])
    if not (jnp.issubdtype(edge_mask.dtype, jnp.bool_) or jnp.issubdtype(edge_mask.dtype, jnp.number)):
      raise TypeError(f"{where}: `edge_mask` must be bool or numeric; got {edge_mask.dtype}.")
  num_nodes = x.shape[-2]
  checked = layers.check_indices(edges, "edges", num_nodes, where=where, valid=edge_mask != 0)
  if not batched:
    x, edges, edge_mask = x[None], edges[None], edge_mask[None]
  if not checked:
    # Traced: an unmasked edge outside [0, nodes) cannot raise, so its graph's features become NaN (visible, and
    # the trainer stops on the NaN loss) rather than silently gathering a clipped or wrapped node.
    bad = ((edges < 0) | (edges >= num_nodes)).any(-1) & (edge_mask != 0)
    x = jnp.where(bad.any(-1)[:, None, None], jnp.nan, x)
  return x, edges, edge_mask.astype(jnp.float32), batched


def check_graph(graph: Mapping[str, Any], where: str = "graph"):
  """Validates a graph mapping (module docstring); returns ``(nodes, edges, edge_mask, batched)``, batched."""
  if not isinstance(graph, Mapping):
    raise TypeError(f"{where}: the input must be a mapping with keys 'nodes' [batch, nodes, features], 'edges' "
                    f"[batch, edges, 2] and optionally 'edge_mask' [batch, edges]; got {type(graph).__name__}.")
  missing = [k for k in ("nodes", "edges") if k not in graph]
  if missing:
    raise KeyError(f"{where}: the graph has no {missing}; it has {sorted(graph)}. Expected 'nodes' "
                   "[batch, nodes, features], 'edges' [batch, edges, 2], optional 'edge_mask' [batch, edges].")
  return _batched(graph["nodes"], graph["edges"], graph.get("edge_mask"), where)


# ---------------------------------------------------------------------------------------------- message passing


def gcn_coefficients(edges, edge_weight, num_nodes: int, add_self_loops: bool = True):
  """Symmetric GCN normalisation of one graph.

  Args:
    edges: ``[edges, 2]`` int ``(sender, receiver)``.
    edge_weight: ``[edges]`` float (0 for padding).
    num_nodes: nodes of the graph.
    add_self_loops: add a self loop of weight 1 to every node (Kipf & Welling's ``A + I``).

  Returns:
    ``(coef [edges], self_coef [nodes])``: ``w_ji / sqrt(d_j d_i)`` per edge and ``1 / d_i`` for the self loop
    (0 without self loops), ``d`` the (weighted) in-degree including the self loop.
  """
  receivers = edges[:, 1]
  senders = edges[:, 0]
  degree = jax.ops.segment_sum(edge_weight, receivers, num_segments=num_nodes)
  if add_self_loops:
    degree = degree + 1.0
  inv_sqrt = jnp.where(degree > 0, jax.lax.rsqrt(jnp.maximum(degree, 1e-12)), 0.0)
  coef = inv_sqrt[senders] * edge_weight * inv_sqrt[receivers]
  self_coef = inv_sqrt * inv_sqrt if add_self_loops else jnp.zeros_like(degree)
  return coef, self_coef


def _gcn_propagate(h, edges, edge_weight, add_self_loops: bool):
  """``D^-1/2 (A + I) D^-1/2 h`` for one graph; ``h: [nodes, features]``."""
  num_nodes = h.shape[0]
  coef, self_coef = gcn_coefficients(edges, edge_weight, num_nodes, add_self_loops)
  messages = coef[:, None].astype(h.dtype) * h[edges[:, 0]]
  return jax.ops.segment_sum(messages, edges[:, 1], num_segments=num_nodes) + self_coef[:, None].astype(h.dtype) * h


def _mean_neighbours(h, edges, edge_weight):
  """Weighted mean of the senders' ``h`` at every receiver (0 for a node without in-edges)."""
  num_nodes = h.shape[0]
  total = jax.ops.segment_sum(edge_weight[:, None].astype(h.dtype) * h[edges[:, 0]], edges[:, 1],
                              num_segments=num_nodes)
  count = jax.ops.segment_sum(edge_weight, edges[:, 1], num_segments=num_nodes)
  return total / jnp.maximum(count, 1.0)[:, None].astype(h.dtype)


def segment_softmax(logits, segment_ids, num_segments: int, mask=None):
  """Softmax of ``logits [edges, ...]`` over the edges that share a segment (receiver); masked edges get 0."""
  if mask is not None:
    mask = mask.reshape(mask.shape + (1,) * (logits.ndim - mask.ndim)) > 0
    logits = jnp.where(mask, logits, -jnp.inf)
  seg_max = jax.ops.segment_max(logits, segment_ids, num_segments=num_segments)
  seg_max = jnp.where(jnp.isfinite(seg_max), seg_max, 0.0)
  unnorm = jnp.exp(logits - seg_max[segment_ids])
  if mask is not None:
    unnorm = jnp.where(mask, unnorm, 0.0)
  denom = jax.ops.segment_sum(unnorm, segment_ids, num_segments=num_segments)
  return unnorm / jnp.maximum(denom[segment_ids], 1e-16)


# ------------------------------------------------------------------------------------------------------- layers


class GCNConv(nn.Module):
  """Graph convolution (Kipf & Welling, 2017): ``X' = D^-1/2 (A + I) D^-1/2 X W + b``.

  Attributes:
    features: output features.
    add_self_loops: add ``I`` to the adjacency (the paper's renormalisation trick).
    use_bias: add ``b`` after the aggregation.

  Call: ``x [batch, nodes, in]`` (or ``[nodes, in]``), ``edges [batch, edges, 2]``, ``edge_mask [batch, edges]``
  (optional) ``-> [batch, nodes, features]``.
  """
  features: int
  add_self_loops: bool = True
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, edges, edge_mask=None):
    x, edges, edge_mask, batched = _batched(x, edges, edge_mask, "GCNConv")
    h = dense(self.features, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
              kernel_init=nn.initializers.glorot_uniform(), name="linear")(x)
    out = jax.vmap(_gcn_propagate, in_axes=(0, 0, 0, None))(h, edges, edge_mask, self.add_self_loops)
    if self.use_bias:
      out = out + self.param("bias", partitioned(nn.initializers.zeros_init(), ("mlp",)), (self.features,),
                             self.param_dtype).astype(out.dtype)
    return out if batched else out[0]


class SAGEConv(nn.Module):
  """GraphSAGE with the mean aggregator (Hamilton et al., 2017): ``x_i' = W_1 x_i + W_2 mean_j x_j + b``.

  Attributes:
    features: output features.
    root_weight: include the node's own ``W_1 x_i`` term.

  Call: as :class:`GCNConv`.
  """
  features: int
  root_weight: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, edges, edge_mask=None):
    x, edges, edge_mask, batched = _batched(x, edges, edge_mask, "SAGEConv")
    neighbours = jax.vmap(_mean_neighbours)(x, edges, edge_mask)
    out = dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="neighbours")(neighbours)
    if self.root_weight:
      out = out + dense(self.features, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                        name="root")(x)
    return out if batched else out[0]


class GATConv(nn.Module):
  """Graph attention (Velickovic et al., 2018): ``heads`` heads of ``features // heads`` features, concatenated.

  ``alpha_ij = softmax_{j in N(i) + {i}} LeakyReLU(a_s . h_j + a_d . h_i)``, ``h = x W``, ``x_i' = sum_j alpha_ij
  h_j + b`` per head.

  Attributes:
    features: output features (all heads together); must be divisible by ``heads``.
    heads: attention heads.
    negative_slope: of the LeakyReLU on the attention logits.
    add_self_loops: let every node attend to itself.

  Call: as :class:`GCNConv`.
  """
  features: int
  heads: int = 4
  negative_slope: float = 0.2
  add_self_loops: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, edges, edge_mask=None):
    if self.heads < 1 or self.features % self.heads:
      raise ValueError(f"GATConv: `features` ({self.features}) must be a positive multiple of `heads` "
                       f"({self.heads}).")
    x, edges, edge_mask, batched = _batched(x, edges, edge_mask, "GATConv")
    per_head = self.features // self.heads
    h = dense(self.features, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
              kernel_init=nn.initializers.glorot_uniform(), name="linear")(x)
    h = h.reshape(*h.shape[:-1], self.heads, per_head)
    att_init = partitioned(nn.initializers.glorot_uniform(), ("heads", "kv"))
    att_src = self.param("att_src", att_init, (self.heads, per_head), self.param_dtype).astype(h.dtype)
    att_dst = self.param("att_dst", att_init, (self.heads, per_head), self.param_dtype).astype(h.dtype)

    def attend(h, edges, mask):
      num_nodes = h.shape[0]
      if self.add_self_loops:
        loops = jnp.arange(num_nodes, dtype=edges.dtype)
        edges = jnp.concatenate([edges, jnp.stack([loops, loops], -1)], 0)
        mask = jnp.concatenate([mask, jnp.ones((num_nodes,), mask.dtype)], 0)
      senders, receivers = edges[:, 0], edges[:, 1]
      score_src = jnp.sum(h * att_src, -1)  # [nodes, heads]
      score_dst = jnp.sum(h * att_dst, -1)
      logits = nn.leaky_relu(score_src[senders] + score_dst[receivers], self.negative_slope)
      alpha = segment_softmax(logits.astype(jnp.float32), receivers, num_nodes, mask).astype(h.dtype)
      return jax.ops.segment_sum(alpha[..., None] * h[senders], receivers, num_segments=num_nodes)

    out = jax.vmap(attend)(h, edges, edge_mask).reshape(*x.shape[:-1], self.features)
    out = out + self.param("bias", partitioned(nn.initializers.zeros_init(), ("mlp",)), (self.features,),
                           self.param_dtype).astype(out.dtype)
    return out if batched else out[0]


class DenseConv(nn.Module):
  """A per-node ``Dense`` that ignores the edges: the graph-free (MLP) baseline in the same stack.

  Call: as :class:`GCNConv` (``edges`` and ``edge_mask`` are checked, then unused).
  """
  features: int
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, edges, edge_mask=None):
    x, _, _, batched = _batched(x, edges, edge_mask, "DenseConv")
    out = dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="linear")(x)
    return out if batched else out[0]


CONVS: dict[str, type[nn.Module]] = {"gcn": GCNConv, "sage": SAGEConv, "gat": GATConv, "mlp": DenseConv}


def _make_conv(conv: str, features: int, heads: int, dtype, param_dtype, name: str | None = None) -> nn.Module:
  if conv not in CONVS:
    raise ValueError(f"`conv` must be one of {sorted(CONVS)}; got {conv!r}.")
  kwargs = dict(dtype=dtype, param_dtype=param_dtype, name=name)
  if conv == "gat":
    kwargs["heads"] = heads
  return CONVS[conv](features, **kwargs)


def l2_normalize_rows(x, eps: float = 1e-8):
  """``x / (||x||_2 + eps)`` over the last axis (ForwardGNN's per-node "layer normalisation")."""
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + eps)


class GNNLayer(nn.Module):
  """``activation(conv(normalize(x)))``: one layer of a GNN stack.

  Attributes:
    conv: ``'gcn'``, ``'sage'``, ``'gat'`` or ``'mlp'`` (no message passing).
    features: output features.
    heads: attention heads (GAT only).
    normalize_input: divide every node's input by its L2 norm first (ForwardGNN normalises each layer's input so
      that a layer cannot read the previous layer's goodness off the norm).
    activation: applied to the conv output (ReLU, as ForwardGNN's ``GNNConv``); ``None`` for none.

  Call: ``x [batch, nodes, in]``, ``edges [batch, edges, 2]``, ``edge_mask [batch, edges]`` (optional)
  ``-> [batch, nodes, features]``.
  """
  conv: str = "gcn"
  features: int = 128
  heads: int = 4
  normalize_input: bool = False
  activation: Callable[[jax.Array], jax.Array] | None = nn.relu
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, edges, edge_mask=None):
    if self.normalize_input:
      check_shape(x, "x", "... nodes features", where="GNNLayer", dtype="floating")
      x = l2_normalize_rows(x)
    x = _make_conv(self.conv, self.features, self.heads, self.dtype, self.param_dtype, name="conv")(
        x, edges, edge_mask)
    return self.activation(x) if self.activation is not None else x


class GNN(nn.Module):
  """A stack of ``num_layers`` graph convolutions for node classification (or node embeddings).

  Attributes:
    num_classes: logits per node; ``None`` for an embedding stack whose every layer is a :class:`GNNLayer` of
      ``hidden_features`` with activation (the form ForwardGNN trains layer by layer).
    hidden_features: width of the hidden layers (ForwardGNN's experiments use 128).
    num_layers: graph convolutions in all (>= 1).
    conv: ``'gcn'``, ``'sage'``, ``'gat'`` or ``'mlp'``.
    heads: GAT heads of the hidden layers (the classifier layer has one).
    normalize_layer_inputs: L2-normalise every layer's input rows (ForwardGNN); off for the backprop baseline.
    dropout_rate: dropout on every hidden layer's output (``'dropout'`` rng, ``train=True``); ForwardGNN's
      baselines use 0.

  Call: ``graph`` mapping (module docstring) ``-> [batch, nodes, num_classes or hidden_features]``.
  """
  num_classes: int | None = None
  hidden_features: int = 128
  num_layers: int = 2
  conv: str = "gcn"
  heads: int = 4
  normalize_layer_inputs: bool = False
  dropout_rate: float = 0.0
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def layer(self, index: int, name: str | None = None) -> GNNLayer:
    """The unbound module of layer ``index`` (what ``__call__`` builds as ``layer_{index}``)."""
    if not 0 <= index < self.num_layers:
      raise ValueError(f"GNN: layer index {index} out of range for num_layers={self.num_layers}.")
    last = index == self.num_layers - 1 and self.num_classes is not None
    # A GAT classifier layer has one head (as the GAT paper's output layer on Cora).
    return GNNLayer(conv=self.conv, features=self.num_classes if last else self.hidden_features,
                    heads=1 if last else self.heads,
                    normalize_input=self.normalize_layer_inputs, activation=None if last else nn.relu,
                    dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  @nn.compact
  def __call__(self, graph: Mapping[str, Any], *, train: bool = False):
    if self.num_layers < 1:
      raise ValueError(f"GNN: `num_layers` must be >= 1; got {self.num_layers}.")
    if self.num_classes is not None and self.num_classes < 1:
      raise ValueError(f"GNN: `num_classes` must be >= 1 or None; got {self.num_classes}.")
    x, edges, edge_mask, batched = check_graph(graph, "GNN")
    for i in range(self.num_layers):
      x = self.layer(i, name=f"layer_{i}")(x, edges, edge_mask)
      if self.dropout_rate and i < self.num_layers - 1:
        x = layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)(x)
    return x if batched else x[0]
