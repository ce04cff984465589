"""ForwardGNN for link prediction (Park et al., "Forward Learning of Graph Neural Networks", ICLR 2024, arXiv
2403.11004): every GNN layer learns from its own forward loss on training edges (positives) against sampled non-edges
(negatives); no error crosses layers. Node classification and the shared layer-local update live in
``zoo.recipes.procedures.forward_gnn``.

* :class:`LinkPrediction`: the link task (BCE of ``h_u . h_v`` over ``pairs``; metrics ``loss``, ``auc``);
  ``task.name = 'forward_gnn_link.LinkPrediction'``; the backprop baseline uses it too.
* :class:`ForwardGNNLink`: the procedure (``procedure.name = 'forward_gnn_link.ForwardGNNLink'``), variants
  :data:`LINK_VARIANTS` (``'sf'``: FL-CE of ``sum(z_u z_v)``; ``'ff'``: BCE of ``||z_u z_v||^2 - theta``);
  ``learn_layers=False`` is the ablation (layers frozen at init); :func:`link_train` runs it with ``fit``.
* :func:`roc_auc` ``(scores [batch, pairs], labels, mask) -> [batch]``; :func:`pair_products` ``h_u * h_v``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo import gnn as gnn_lib
from zoo.recipes.procedures.forward_gnn import _active_layers, _get, _local_updates, _masked_mean, _trained_layers

__all__ = ["ForwardGNNLink", "ForwardGNNLinkState", "LINK_VARIANTS", "LinkPrediction", "link_train", "pair_products",
           "roc_auc"]


# ------------------------------------------------------------------------------------------------ link prediction


def roc_auc(scores, labels, mask):
  """ROC-AUC of ``scores [batch, pairs]`` against 0/1 ``labels`` over the ``mask`` pairs of every graph -> ``[batch]``.

  The probability that a positive pair outscores a negative one, ties counting one half (the Mann-Whitney form;
  ``[pairs, pairs]`` comparisons per graph). A graph without a positive or a negative pair gets 0.5.
  """
  mask = mask.astype(bool)
  pos = (labels > 0.5) & mask
  neg = (labels <= 0.5) & mask
  diff = scores[:, :, None] - scores[:, None, :]  # [batch, pos candidate, neg candidate]
  wins = jnp.where(diff > 0, 1.0, jnp.where(diff == 0, 0.5, 0.0))
  both = (pos[:, :, None] & neg[:, None, :]).astype(jnp.float32)
  count = jnp.sum(both, (1, 2))
  return jnp.where(count > 0, jnp.sum(wins * both, (1, 2)) / jnp.maximum(count, 1.0), 0.5)


def pair_products(h, pairs):
  """``h_u * h_v`` per pair: ``[batch, pairs, d]`` from ``h [batch, nodes, d]`` and ``pairs [batch, pairs, 2]``."""
  take = jax.vmap(lambda h, idx: h[idx])
  return take(h, pairs[..., 0]) * take(h, pairs[..., 1])


@dataclasses.dataclass(frozen=True)
class LinkPrediction:
  """Link prediction on whole graphs: a pair's logit is the dot product of its nodes' embeddings.

  outputs: node embeddings ``[batch, nodes, d]``; ``pairs [batch, pairs, 2]``, ``pair_labels [batch, pairs]``
  (1 edge, 0 sampled non-edge), ``pair_mask [batch, pairs]`` (``zoo.recipes.datasets.graphs.sbm_links``). Loss:
  binary cross-entropy of ``h_u . h_v`` averaged over a graph's pairs (ForwardGNN's backprop baseline, as PyG's
  link-prediction example); metrics ``loss`` and ``auc`` (:func:`roc_auc`) per graph.
  """
  pairs_key: str = "pairs"
  pair_labels_key: str = "pair_labels"
  pair_mask_key: str = "pair_mask"
  graph_keys: tuple[str, ...] = ("nodes", "edges", "edge_mask")

  def inputs(self, batch):
    return {k: _get(batch, k, "LinkPrediction") for k in self.graph_keys if k in batch or k != "edge_mask"}

  def pairs(self, batch):
    """``(pairs, labels, mask)`` of the batch, checked."""
    pairs = _get(batch, self.pairs_key, "LinkPrediction")
    labels = _get(batch, self.pair_labels_key, "LinkPrediction")
    mask = batch.get(self.pair_mask_key, jnp.ones(labels.shape, bool))
    if pairs.ndim != 3 or pairs.shape[-1] != 2 or labels.shape != pairs.shape[:2] or mask.shape != labels.shape:
      raise ValueError(f"LinkPrediction: pairs must be [batch, pairs, 2] with pair_labels and pair_mask [batch, "
                       f"pairs]; got {pairs.shape}, {labels.shape}, {mask.shape}.")
    return pairs, labels.astype(jnp.float32), mask

  def logits(self, h, batch):
    if h.ndim != 3:
      raise ValueError(f"LinkPrediction: outputs must be node embeddings [batch, nodes, d]; got {h.shape}.")
    return jnp.sum(pair_products(h, self.pairs(batch)[0]).astype(jnp.float32), -1)

  def loss(self, h, batch):
    _, labels, mask = self.pairs(batch)
    return _masked_mean(optax.sigmoid_binary_cross_entropy(self.logits(h, batch), labels), mask)

  def metrics(self, h, batch):
    _, labels, mask = self.pairs(batch)
    logits = self.logits(h, batch)
    return {"loss": _masked_mean(optax.sigmoid_binary_cross_entropy(logits, labels), mask),
            "auc": roc_auc(logits, labels, mask)}


LINK_VARIANTS = ("sf", "ff")


class ForwardGNNLinkState(flax.struct.PyTreeNode):
  """What a ForwardGNNLink run carries: ``step``, ``params`` ``{'layer_l': ...}``, one optimizer state per layer."""
  step: jax.Array
  params: Any
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class ForwardGNNLink:
  """Layer-wise forward learning of a GNN for link prediction (paper §3, reference ``linkpred/gnn_forward.py``).

  Every layer ``l`` (a ``zoo.gnn.GNNLayer``: row-wise L2 normalisation, conv, ReLU; ``hidden_features`` wide)
  embeds the nodes from the ``stop_gradient`` of the layer below, by message passing over the batch's ``edges``;
  the positive data are the split's edges and the negative data the sampled non-edges, both ``pairs`` of the
  batch, scored from the layer's own embeddings ``z`` by ``z_u * z_v``. Per layer:

  * ``'sf'`` (single forward, the paper's FL-CE models, one forward pass, no negative graph): logit
    ``sum(z_u * z_v)``, binary cross-entropy against the pair label;
  * ``'ff'`` (forward-forward): goodness ``||z_u * z_v||^2 - theta``, binary cross-entropy (the FF loss: positive
    pairs' goodness up, negatives' down).

  Prediction: the mean over the (trained) layers of ``sigmoid(logit)`` per pair, scored by ROC-AUC
  (:func:`roc_auc`), as the reference's ``eval_model``. Schedule: as :class:`ForwardGNN` (``layer_steps`` per
  layer, then the next; 0: all layers every step).

  Attributes:
    model: a ``zoo.gnn.GNN``; its ``conv``, ``hidden_features``, ``num_layers``, ``heads`` define the layers (its
      ``num_classes`` is not used: every layer is a hidden layer).
    task: a :class:`LinkPrediction` (its keys name the batch arrays).
    optimizer: optax transformation, instantiated once per layer.
    variant: ``'sf'`` or ``'ff'``.
    layer_steps: steps per layer in the sequential schedule; 0 trains all layers at every step.
    theta: the goodness threshold of ``'ff'``.
    learn_layers: the mechanism switch. True (the paper's method): every layer learns from its own forward loss
      on positive vs negative pairs. False: the ablation: no layer ever updates (random-initialised layers, the
      same embedding, pair score and prediction rule).

  Deviations: the negative pairs are the dataset's, drawn once (as ``RandomLinkSplit`` in the reference); no
  validation early stopping per layer; no top-down link variant (``gnn_topdown_forward.py``).
  """
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation
  variant: str = "sf"
  layer_steps: int = 200
  theta: float = 2.0
  learn_layers: bool = True

  def __post_init__(self):
    if not isinstance(self.model, gnn_lib.GNN):
      raise TypeError(f"ForwardGNNLink: `model` must be a zoo.gnn.GNN; got {type(self.model).__name__}.")
    if self.variant not in LINK_VARIANTS:
      raise ValueError(f"ForwardGNNLink: `variant` must be one of {LINK_VARIANTS}; got {self.variant!r}.")
    if self.layer_steps < 0:
      raise ValueError(f"ForwardGNNLink: `layer_steps` must be >= 0; got {self.layer_steps}.")

  @property
  def num_layers(self) -> int:
    return self.model.num_layers

  def _layer(self) -> gnn_lib.GNNLayer:
    m = self.model
    return gnn_lib.GNNLayer(conv=m.conv, features=m.hidden_features, heads=m.heads, normalize_input=True,
                            dtype=m.dtype, param_dtype=m.param_dtype)

  def _graph(self, batch):
    nodes, edges, edge_mask, batched = gnn_lib.check_graph(self.task.inputs(batch), "ForwardGNNLink")
    if not batched:
      raise ValueError("ForwardGNNLink: the batch must hold a leading graph axis ([batch, nodes, features]).")
    return nodes, edges, edge_mask

  def pair_logits(self, z, pairs):
    """A layer's logit per pair: ``sum(z_u z_v)`` (SF) or ``||z_u z_v||^2 - theta`` (FF): ``[batch, pairs]``."""
    prod = pair_products(z, pairs).astype(jnp.float32)
    return jnp.sum(prod, -1) if self.variant == "sf" else jnp.sum(prod ** 2, -1) - self.theta

  def layer_logits(self, params, batch):
    """``[L, batch, pairs]``: every layer's pair logits, each layer reading the stop_gradient of the one below."""
    h, edges, edge_mask = self._graph(batch)
    pairs, _, _ = self.task.pairs(batch)
    logits = []
    for k in range(self.num_layers):
      h = self._layer().apply({"params": params[f"layer_{k}"]}, jax.lax.stop_gradient(h), edges, edge_mask)
      logits.append(self.pair_logits(h, pairs))
    return jnp.stack(logits)

  def layer_losses(self, params, batch):
    """``(losses [L], metrics)``: each layer's BCE of positive vs negative pairs, mean over graphs."""
    _, labels, mask = self.task.pairs(batch)
    logits = self.layer_logits(params, batch)
    bce = optax.sigmoid_binary_cross_entropy(logits, jnp.broadcast_to(labels, logits.shape))
    losses = jnp.mean(jax.vmap(_masked_mean, in_axes=(0, None))(bce, mask), -1)
    pos, neg = mask & (labels > 0.5), mask & (labels <= 0.5)
    metrics = {}
    for k in range(self.num_layers):
      metrics[f"logit_pos_{k}"] = jnp.mean(_masked_mean(logits[k], pos))
      metrics[f"logit_neg_{k}"] = jnp.mean(_masked_mean(logits[k], neg))
    return losses, metrics

  def init(self, rng, batch) -> ForwardGNNLinkState:
    h, edges, edge_mask = self._graph(batch)
    params = {}
    for k in range(self.num_layers):
      width = h.shape[-1] if k == 0 else self.model.hidden_features
      x = jnp.zeros((*h.shape[:-1], width), h.dtype)
      params[f"layer_{k}"] = self._layer().init(jax.random.fold_in(rng, k), x, edges, edge_mask)["params"]
    opt_state = tuple(self.optimizer.init(params[f"layer_{k}"]) for k in range(self.num_layers))
    return ForwardGNNLinkState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)

  def active_layers(self, step) -> jax.Array:
    """``[L]`` bool: the layers that learn at ``step``."""
    return _active_layers(step, self.num_layers, self.layer_steps, False, self.learn_layers)

  def trained_layers(self, step) -> jax.Array:
    """``[L]`` bool: the layers whose scores prediction averages."""
    return _trained_layers(step, self.num_layers, self.layer_steps, False, self.learn_layers)

  def step(self, state: ForwardGNNLinkState, batch):
    params, opt_state, _, metrics, _ = _local_updates(
        self.optimizer, self.active_layers(state.step), state.params, state.opt_state,
        lambda p: (*self.layer_losses(p, batch), ()))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  def variables(self, state: ForwardGNNLinkState):
    """``{'params': {'layer_l': ...}}``: ``zoo.gnn.GNN(num_classes=None, normalize_layer_inputs=True, ...)``
    applied to them gives the last layer's node embeddings."""
    return {"params": state.params}

  def pair_scores(self, state: ForwardGNNLinkState, batch):
    """``(scores [batch, pairs], per-layer sigmoids [L, batch, pairs])``: the mean of the trained layers'
    ``sigmoid(logit)``."""
    per_layer = jax.nn.sigmoid(self.layer_logits(state.params, batch))
    weights = self.trained_layers(state.step).astype(per_layer.dtype)[:, None, None]
    return jnp.sum(per_layer * weights, 0) / jnp.sum(weights), per_layer

  def evaluate(self, state: ForwardGNNLinkState, batch):
    _, labels, mask = self.task.pairs(batch)
    scores, per_layer = self.pair_scores(state, batch)
    metrics = {"auc": roc_auc(scores, labels, mask)}
    for k in range(self.num_layers):
      metrics[f"auc_layer_{k}"] = roc_auc(per_layer[k], labels, mask)
    return metrics


def link_train(model, train_data, *, variant: str = "sf", **kwargs):
  """Forward learning for link prediction (:class:`ForwardGNNLink`) with ``zoo.recipes.train.fit``."""
  from zoo.recipes import train  # pylint: disable=g-import-not-at-top
  procedure_kwargs = {"variant": variant, **dict(kwargs.pop("procedure_kwargs", {}) or {})}
  kwargs.setdefault("task", LinkPrediction())
  kwargs.setdefault("batch_size", len(next(iter(train_data.values()))))
  kwargs.setdefault("eval_batch_size", kwargs["batch_size"])
  return train.fit(model, train_data, procedure=ForwardGNNLink, procedure_kwargs=procedure_kwargs, **kwargs)
