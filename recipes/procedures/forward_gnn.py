"""ForwardGNN: layer-wise forward learning of graph neural networks, without backpropagation across layers.

Paper: Park, Wang, Simoulin, Yang, Yang, Rossi, Trivedi & Ahmed, "Forward Learning of Graph Neural Networks"
(ICLR 2024, arXiv 2403.11004); reference code github.com/facebookresearch/forwardgnn (read to match the
definitions; nothing is copied).

Every layer of a GNN (``zoo.gnn``: GCN, GraphSAGE or GAT layers) is trained by its own loss and its own optimizer
state, on the ``stop_gradient`` of the layer below's output, with a row-wise L2 normalisation before every layer
(the paper's "LayerNorm"), so no error crosses a layer boundary. Node classification variants (``variant``):

* ``'ff_label_appending'`` (FF-LA, paper §3.1): forward-forward with positive and negative graphs made by
  appending a one-hot label to every labelled node's features (its true class: positive; a wrong class: negative;
  unlabelled nodes get the uniform vector 1/C). Goodness ``sum_i h_i^2``; per layer the loss is
  ``BCE(sigmoid(goodness - theta), 1)`` on the positive graph plus the mean over negative graphs of
  ``BCE(..., 0)``, on the labelled nodes. Prediction: for every class ``c`` append ``c`` to the scored nodes, sum
  the layers' goodness ``mean_i h_i^2 - theta``, take the argmax over ``c``.
* ``'ff_virtual_nodes'`` (FF-VN, §3.1): one virtual node per class with random N(0, 1) features; the positive graph
  links every labelled node to its class's virtual node, a negative graph to a wrong class's virtual node
  (``aug_edge_direction``: both directions or node -> virtual node only). Same goodness loss on the labelled nodes;
  prediction links the scored nodes to each class's virtual node in turn and takes the argmax of the summed
  goodness.
* ``'sf'`` (single-forward, §3.2): one augmented graph with virtual nodes linked to the labelled nodes of their
  class; per layer ``logits = h_train h_virtual^T / temperature`` with cross-entropy on the labelled nodes.
  Prediction: argmax of the per-layer softmaxes summed.
* ``'sf_top2loss'`` (§3.3): SF where layer ``l``'s embedding in the loss is the mean of its own output and the
  (normalised, detached) outputs of the layers above from the previous step; all layers learn at every step.
* ``'sf_top2input'`` (§3.3): SF where layer ``l``'s input is ``[norm(h_{l-1}), norm(h_{l+1})]``, the layer above's
  output from the previous step (the top layer reads the label vectors); even layers update before odd ones
  (the reference scripts' ``--alternating-update``). Prediction runs ``test_time_steps`` recurrent sweeps from a
  bottom-up pass (upper inputs zero) and sums the softmaxes of every layer over sweeps ``2 ... test_time_steps-1``.

Options as in the reference code: ``append_label`` ``'input'``/``'all'`` appends label vectors to the first /
every layer's input in SF and FF-VN (FF-LA always appends at the input); ``num_negs`` negative graphs (0: all C-1
wrong classes, the paper's setting); ``theta`` 2.0; ``temperature`` 1.0.

Schedules: FF and SF train the layers one after the other (the paper's greedy layer-wise training):
``layer_steps`` steps for layer 0, then layer 1 ... (the schedule is state the step reads: the active layer is
``min(step // layer_steps, L - 1)``; a layer's parameters and optimizer state change only while it is active).
``layer_steps=0`` trains all layers at every step. The top-down variants always train all layers together and
carry the layers' node states from step to step (as the reference's time steps), so every batch must hold the
same graphs (the transductive setting: batch size = graphs in the split).

Link prediction (:class:`ForwardGNNLink`, reference ``linkpred/gnn_forward.py``): every layer embeds the nodes by
message passing over the training edges, from the stop-gradient of the layer below, and learns to tell the
positive pairs (training edges) from the negative pairs (sampled non-edges) by their own ``z_u * z_v``: ``'sf'``
(the reference's FL-CE: BCE of ``sum(z_u * z_v)``, one forward pass) or ``'ff'`` (BCE of the goodness
``||z_u * z_v||^2 - theta``). Prediction: the mean of the layers' ``sigmoid`` scores, scored by ROC-AUC.

The mechanism switch (both procedures): ``learn_layers`` (default True, the paper's method). False is the
ablation: no layer ever updates, so the model is its random initialisation with the same augmentation, scores and
prediction rule.

Deviations from the paper (stated, not hidden): no validation early stopping or best-epoch restore per layer
(fixed ``layer_steps``); Adam without its L2 weight decay unless the config adds one; relational edge types
(RGCN/RGAT over virtual-node edges) are not modelled; the top-down link-prediction variant
(``gnn_topdown_forward.py``) is not implemented; link negatives are drawn once by the dataset (as the reference's
``RandomLinkSplit``), not per step. The virtual node features are drawn once from the procedure's seed.

Public names:

* :class:`NodeClassification`: the task (masked cross-entropy and accuracy over ``mask`` nodes of each graph);
  ``task.name = 'forward_gnn.NodeClassification'``. Used by the backprop baseline too.
* :class:`ForwardGNN`: the procedure; ``procedure.name = 'forward_gnn.ForwardGNN'``; built from a ``zoo.gnn.GNN``
  whose ``num_classes`` is the number of classes (ForwardGNN replaces its classifier layer by virtual nodes or
  goodness, every layer has ``hidden_features``).
* :func:`augment_with_virtual_nodes`, :func:`label_vectors`, :func:`negative_labels`: the graph augmentations.
* :func:`ff_train`, :func:`sf_train`, :func:`sf_topdown_train`: ``zoo.recipes.train.fit`` with this procedure.
* Link prediction (the paper's second task) is ``zoo.recipes.procedures.forward_gnn_link``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo import gnn as gnn_lib

__all__ = ["ForwardGNN", "ForwardGNNState", "NodeClassification", "VARIANTS", "augment_with_virtual_nodes", "ff_train",
           "label_vectors", "negative_labels", "sf_topdown_train", "sf_train"]

VARIANTS = ("ff_label_appending", "ff_virtual_nodes", "sf", "sf_top2loss", "sf_top2input")


# ------------------------------------------------------------------------------------------------------------ task


def _get(batch, key: str, where: str):
  if key not in batch:
    raise KeyError(f"{where}: the batch has no key {key!r}; it has {sorted(batch)}. Graph datasets "
                   "(zoo.recipes.datasets.graphs) provide nodes, edges, edge_mask, labels, train_mask and mask.")
  return batch[key]


def _masked_mean(values, mask):
  """Mean of ``values [batch, nodes]`` over the ``mask`` nodes of every graph -> ``[batch]``."""
  mask = mask.astype(jnp.float32)
  return jnp.sum(values * mask, -1) / jnp.maximum(jnp.sum(mask, -1), 1.0)


@dataclasses.dataclass(frozen=True)
class NodeClassification:
  """Node classification on whole graphs: per-graph mean cross-entropy / accuracy over the ``mask`` nodes.

  outputs: logits ``[batch, nodes, classes]``; ``labels [batch, nodes]`` (-1 allowed outside ``mask``);
  ``mask [batch, nodes]``. A graph's loss and metrics are means over its masked nodes (the loop then averages over
  graphs). ``inputs(batch)`` is the graph mapping ``{nodes, edges, edge_mask}`` that ``zoo.gnn`` models take.
  """
  target_key: str = "labels"
  mask_key: str = "mask"
  train_mask_key: str = "train_mask"
  graph_keys: tuple[str, ...] = ("nodes", "edges", "edge_mask")

  def inputs(self, batch):
    return {k: _get(batch, k, "NodeClassification") for k in self.graph_keys if k in batch or k != "edge_mask"}

  def _per_node_loss(self, logits, batch):
    labels = _get(batch, self.target_key, "NodeClassification")
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
      raise ValueError(f"NodeClassification: logits must be [batch, nodes, classes] and labels [batch, nodes]; got "
                       f"{logits.shape} and {labels.shape}.")
    safe = jnp.clip(labels, 0, logits.shape[-1] - 1)
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)

  def loss(self, logits, batch):
    return _masked_mean(self._per_node_loss(logits, batch), _get(batch, self.mask_key, "NodeClassification"))

  def metrics(self, logits, batch):
    mask = _get(batch, self.mask_key, "NodeClassification")
    labels = _get(batch, self.target_key, "NodeClassification")
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {"loss": _masked_mean(self._per_node_loss(logits, batch), mask), "accuracy": _masked_mean(correct, mask)}


# --------------------------------------------------------------------------------------------- graph augmentation


def label_vectors(labels, labelled, num_classes: int):
  """One-hot ``labels`` on ``labelled`` nodes, the uniform vector ``1/C`` elsewhere: ``[batch, nodes, C]``."""
  one_hot = jax.nn.one_hot(jnp.clip(labels, 0, num_classes - 1), num_classes)
  return jnp.where(labelled[..., None], one_hot, 1.0 / num_classes)


def augment_with_virtual_nodes(nodes, edges, edge_mask, labels, linked, virtual_nodes, *,
                               bidirectional: bool = True):
  """Adds one virtual node per class and links every ``linked`` node to the virtual node of its ``labels`` class.

  Args:
    nodes: ``[batch, n, f]``; edges ``[batch, e, 2]``; edge_mask ``[batch, e]``.
    labels: ``[batch, n]`` int, the class each node is linked to (ignored where not ``linked``).
    linked: ``[batch, n]`` bool.
    virtual_nodes: ``[C, f]`` features of the virtual nodes (the same for every graph).
    bidirectional: add virtual -> node edges too.

  Returns:
    ``(nodes [batch, n + C, f], edges [batch, e + n (* 2), 2], edge_mask)``; virtual node ``c`` is node ``n + c``.
    The shapes are fixed (an edge slot per node and direction, masked where the node is not linked).
  """
  batch, n = labels.shape
  num_classes = virtual_nodes.shape[0]
  ids = jnp.broadcast_to(jnp.arange(n, dtype=edges.dtype), (batch, n))
  virtual_ids = n + jnp.clip(labels, 0, num_classes - 1).astype(edges.dtype)
  new_edges = [jnp.stack([ids, virtual_ids], -1)]
  new_mask = [linked]
  if bidirectional:
    new_edges.append(jnp.stack([virtual_ids, ids], -1))
    new_mask.append(linked)
  aug_nodes = jnp.concatenate([nodes, jnp.broadcast_to(virtual_nodes.astype(nodes.dtype),
                                                       (batch, *virtual_nodes.shape))], 1)
  aug_edges = jnp.concatenate([edges, *new_edges], 1)
  aug_mask = jnp.concatenate([edge_mask.astype(jnp.float32), *(m.astype(jnp.float32) for m in new_mask)], 1)
  return aug_nodes, aug_edges, aug_mask


def negative_labels(rng, labels, num_classes: int, num_negs: int):
  """``[num_negs, batch, nodes]`` distinct wrong classes per node (a random order of the C - 1 wrong classes)."""
  order = jnp.argsort(jax.random.uniform(rng, (*labels.shape, num_classes - 1)), axis=-1)[..., :num_negs]
  negatives = (jnp.clip(labels, 0, num_classes - 1)[..., None] + 1 + order) % num_classes
  return jnp.moveaxis(negatives, -1, 0)


def _bce_goodness(h, target: float, theta: float, mask):
  """Forward-forward loss of one graph batch: ``BCE(sum h^2 - theta, target)`` averaged over ``mask`` nodes."""
  logits = jnp.sum(h.astype(jnp.float32) ** 2, -1) - theta
  loss = optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target))
  mask = mask.astype(jnp.float32)
  return jnp.sum(loss * mask) / jnp.maximum(jnp.sum(mask), 1.0), jnp.sum(logits * mask) / jnp.maximum(
      jnp.sum(mask), 1.0)


def _virtual_logits(h, num_real: int, temperature: float):
  """``h_real h_virtual^T / T``: ``[batch, n, C]`` from ``h [batch, n + C, d]``."""
  return jnp.einsum("bnd,bcd->bnc", h[:, :num_real], h[:, num_real:]).astype(jnp.float32) / temperature


def _ce(logits, labels, mask):
  labels = jnp.clip(labels, 0, logits.shape[-1] - 1)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  mask = mask.astype(jnp.float32)
  return jnp.sum(loss * mask) / jnp.maximum(jnp.sum(mask), 1.0)


# ------------------------------------------------------------------------------------------ layer-local updates


def _active_layers(step, num_layers: int, layer_steps: int, together: bool, learn: bool) -> jax.Array:
  """``[L]`` bool: the layers that learn at ``step``: one in the sequential schedule, all if ``together`` or
  ``layer_steps == 0``, none without ``learn`` (the ablation)."""
  if not learn:
    return jnp.zeros((num_layers,), bool)
  if together or layer_steps == 0:
    return jnp.ones((num_layers,), bool)
  return jnp.arange(num_layers) == jnp.minimum(step // layer_steps, num_layers - 1)


def _trained_layers(step, num_layers: int, layer_steps: int, together: bool, learn: bool) -> jax.Array:
  """``[L]`` bool: the layers prediction uses: those trained so far (all when frozen or trained together)."""
  if not learn or together or layer_steps == 0:
    return jnp.ones((num_layers,), bool)
  return jnp.arange(num_layers) <= jnp.minimum(step // layer_steps, num_layers - 1)


def _local_updates(optimizer, active, params, opt_state, layer_losses):
  """One update of every ``active`` layer by its own loss: ``(params, opt_state, losses, metrics, aux)``.

  ``layer_losses(params) -> (losses [L], metrics, aux)``; each loss reaches only its own layer (the layers read
  ``stop_gradient`` inputs), so the gradient of the sum gives every layer its own gradient in one backward pass.
  A layer's parameters and optimizer state change only where ``active``.
  """
  num_layers = len(opt_state)

  def total(p):
    losses, metrics, aux = layer_losses(p)
    return jnp.sum(losses), (losses, metrics, aux)

  (_, (losses, metrics, aux)), grads = jax.value_and_grad(total, has_aux=True)(params)
  new_params, new_opt_states = dict(params), []
  for k in range(num_layers):
    name = f"layer_{k}"
    updates, new_opt = optimizer.update(grads[name], opt_state[k], params[name])
    updated = optax.apply_updates(params[name], updates)
    new_params[name] = jax.tree.map(lambda new, old: jnp.where(active[k], new, old), updated, params[name])
    new_opt_states.append(jax.tree.map(lambda new, old: jnp.where(active[k], new, old), new_opt, opt_state[k]))
  metrics = {**metrics, **{f"loss_layer_{k}": losses[k] for k in range(num_layers)},
             "loss": jnp.sum(jnp.where(active, losses, 0.0)),
             "active_layer": jnp.argmax(active).astype(jnp.float32)}
  return new_params, tuple(new_opt_states), losses, metrics, aux


# ------------------------------------------------------------------------------------------------------ procedure


class ForwardGNNState(flax.struct.PyTreeNode):
  """What a ForwardGNN run carries.

  Attributes:
    step: int32 scalar.
    params: ``{'layer_0': ..., 'layer_{L-1}': ...}``.
    opt_state: a tuple, one optimizer state per layer (every layer has its own optimizer, as in the paper).
    virtual_nodes: ``[C, features]`` fixed random features of the virtual nodes.
    node_states: the top-down variants' per-layer node states from the previous step (``()`` otherwise).
    rng: PRNG key (negative classes are drawn from it once, as the reference draws them once per run).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  virtual_nodes: jax.Array
  node_states: Any
  rng: jax.Array


@dataclasses.dataclass(frozen=True)
class ForwardGNN:
  """Layer-wise forward learning of a ``zoo.gnn.GNN`` (module docstring).

  Attributes:
    model: a ``zoo.gnn.GNN``; its ``conv``, ``hidden_features``, ``num_layers`` and ``heads`` define the layers and
      its ``num_classes`` is the number of classes.
    task: a :class:`NodeClassification` (its keys name the batch arrays).
    optimizer: optax transformation, instantiated once per layer.
    variant: one of :data:`VARIANTS`.
    layer_steps: steps per layer in the sequential schedule (FF/SF); 0 trains all layers at every step.
    append_label: ``None``, ``'input'`` or ``'all'`` (SF and FF-VN; FF-LA always appends at the input).
    aug_edge_direction: ``'bidirection'`` or ``'unidirection'`` virtual-node edges.
    temperature: of the SF softmax.
    theta: goodness threshold of the FF loss.
    num_negs: negative graphs per step for FF (0: all C - 1 wrong classes).
    test_time_steps: recurrent sweeps at prediction for ``sf_top2input``; sweeps from index 2 on are summed.
    alternating_update: ``sf_top2input`` updates even layers before odd ones.
    learn_layers: the mechanism switch. True (the paper's method): every layer learns from its own forward loss.
      False: the ablation: no layer ever updates (they stay at their random initialisation), while the graph
      augmentation, the virtual nodes and the prediction rule are unchanged; every layer counts at prediction.
  """
  model: nn.Module
  task: Any
  optimizer: optax.GradientTransformation
  variant: str = "sf"
  layer_steps: int = 200
  append_label: str | None = None
  aug_edge_direction: str = "bidirection"
  temperature: float = 1.0
  theta: float = 2.0
  num_negs: int = 0
  test_time_steps: int = 10
  alternating_update: bool = True
  learn_layers: bool = True

  def __post_init__(self):
    if not isinstance(self.model, gnn_lib.GNN):
      raise TypeError(f"ForwardGNN: `model` must be a zoo.gnn.GNN; got {type(self.model).__name__}.")
    if not self.model.num_classes or self.model.num_classes < 2:
      raise ValueError("ForwardGNN: the model's `num_classes` must be the number of classes (>= 2); got "
                       f"{self.model.num_classes}.")
    if self.variant not in VARIANTS:
      raise ValueError(f"ForwardGNN: `variant` must be one of {VARIANTS}; got {self.variant!r}.")
    if self.append_label not in (None, "none", "input", "all"):
      raise ValueError(f"ForwardGNN: `append_label` must be None, 'input' or 'all'; got {self.append_label!r}.")
    if self.variant.startswith("sf_top") and self.append_label == "all":
      raise ValueError("ForwardGNN: the top-down variants take append_label None or 'input' (as the reference).")
    if self.aug_edge_direction not in ("bidirection", "unidirection"):
      raise ValueError("ForwardGNN: `aug_edge_direction` must be 'bidirection' or 'unidirection'; got "
                       f"{self.aug_edge_direction!r}.")
    if self.layer_steps < 0 or self.num_negs < 0 or self.temperature <= 0:
      raise ValueError("ForwardGNN: layer_steps and num_negs must be >= 0 and temperature > 0.")
    if self.variant == "sf_top2input" and self.test_time_steps < 3:
      raise ValueError("ForwardGNN: sf_top2input needs test_time_steps >= 3 (sweeps 2.. are summed).")

  # ----------------------------------------------------------------------------------------------- structure

  @property
  def num_classes(self) -> int:
    return self.model.num_classes

  @property
  def num_layers(self) -> int:
    return self.model.num_layers

  @property
  def _append(self) -> str | None:
    if self.variant == "ff_label_appending":
      return "input"
    return None if self.append_label in (None, "none") else self.append_label

  @property
  def _top_down(self) -> bool:
    return self.variant in ("sf_top2loss", "sf_top2input")

  def _layer(self, index: int) -> gnn_lib.GNNLayer:
    del index  # every layer has the same form; the input width (first layer, appended labels) comes from init
    m = self.model
    # top2input normalises the two halves of its input itself; the others normalise every layer's input.
    return gnn_lib.GNNLayer(conv=m.conv, features=m.hidden_features, heads=m.heads,
                            normalize_input=self.variant != "sf_top2input", dtype=m.dtype, param_dtype=m.param_dtype)

  def _apply_layer(self, params, index: int, x, edges, edge_mask):
    return self._layer(index).apply({"params": params[f"layer_{index}"]}, x, edges, edge_mask)

  def _graph(self, batch):
    nodes, edges, edge_mask, batched = gnn_lib.check_graph(self.task.inputs(batch), "ForwardGNN")
    if not batched:
      raise ValueError("ForwardGNN: the batch must hold a leading graph axis ([batch, nodes, features]).")
    labels = _get(batch, self.task.target_key, "ForwardGNN")
    labelled = _get(batch, self.task.train_mask_key, "ForwardGNN").astype(bool)
    # Only labelled nodes' labels are ever read as inputs (the train split hides the others as -1 anyway).
    labels = jnp.where(labelled, labels, 0)
    return nodes, edges, edge_mask, labels, labelled

  # --------------------------------------------------------------------------------------------- the inputs

  def _sf_graph(self, batch, virtual_nodes, linked_labels=None, linked=None, vector_labels=None, vector_known=None):
    """The augmented graph of SF / FF-VN: ``(x0, edges, edge_mask, label_vecs, num_real)``.

    Nodes in ``linked`` are linked to the virtual node of ``linked_labels`` (default: the labelled nodes to their
    class); the label vectors are one-hot ``vector_labels`` on ``vector_known`` nodes (default: the labelled nodes'
    classes), uniform elsewhere, and one-hot ``c`` on virtual node ``c``.
    """
    nodes, edges, edge_mask, labels, labelled = self._graph(batch)
    if linked_labels is None:
      linked_labels, linked = labels, labelled
    if vector_labels is None:
      vector_labels, vector_known = labels, labelled
    x, aug_edges, aug_mask = augment_with_virtual_nodes(
        nodes, edges, edge_mask, linked_labels, linked, virtual_nodes,
        bidirectional=self.aug_edge_direction == "bidirection")
    num_real = nodes.shape[1]
    # Label vectors: the labelled nodes' one-hot (true class), uniform elsewhere; virtual node c gets class c.
    real_vecs = label_vectors(vector_labels, vector_known, self.num_classes)
    virtual_vecs = jnp.broadcast_to(jnp.eye(self.num_classes), (nodes.shape[0], self.num_classes, self.num_classes))
    vecs = jnp.concatenate([real_vecs, virtual_vecs], 1)
    if self._append is not None:
      x = jnp.concatenate([x, vecs.astype(x.dtype)], -1)
    return x, aug_edges, aug_mask, vecs, num_real

  def _next_input(self, h, vecs):
    return jnp.concatenate([h, vecs.astype(h.dtype)], -1) if self._append == "all" else h

  # ------------------------------------------------------------------------------------------------- losses

  def layer_losses(self, params, state: ForwardGNNState, batch):
    """Every layer's own loss on ``batch``: ``(losses [L], metrics, new node_states)``.

    Each layer's input is ``stop_gradient``-ed, so ``d losses[l] / d params[layer_k]`` is exactly 0 for ``k != l``.
    """
    if self.variant == "sf":
      return self._sf_losses(params, state, batch)
    if self.variant == "ff_label_appending":
      return self._ff_la_losses(params, state, batch)
    if self.variant == "ff_virtual_nodes":
      return self._ff_vn_losses(params, state, batch)
    if self.variant == "sf_top2loss":
      return self._top2loss_losses(params, state, batch)
    return self._top2input_losses(params, state, batch)

  def _sf_losses(self, params, state, batch):
    x, edges, edge_mask, vecs, n = self._sf_graph(batch, state.virtual_nodes)
    _, _, _, labels, labelled = self._graph(batch)
    losses, h = [], x
    for k in range(self.num_layers):
      out = self._apply_layer(params, k, jax.lax.stop_gradient(h), edges, edge_mask)
      losses.append(_ce(_virtual_logits(out, n, self.temperature), labels, labelled))
      h = self._next_input(out, vecs)
    return jnp.stack(losses), {}, state.node_states

  def _negatives(self, state, labels):
    num_negs = min(self.num_negs or self.num_classes - 1, self.num_classes - 1)
    return negative_labels(jax.random.fold_in(state.rng, 1), labels, self.num_classes, num_negs)

  def _ff_la_losses(self, params, state, batch):
    nodes, edges, edge_mask, labels, labelled = self._graph(batch)
    negatives = self._negatives(state, labels)
    pos = jnp.concatenate([nodes, label_vectors(labels, labelled, self.num_classes).astype(nodes.dtype)], -1)
    negs = [jnp.concatenate([nodes, label_vectors(neg, labelled, self.num_classes).astype(nodes.dtype)], -1)
            for neg in negatives]
    losses, good_pos, good_neg = [], [], []
    for k in range(self.num_layers):
      out_pos = self._apply_layer(params, k, jax.lax.stop_gradient(pos), edges, edge_mask)
      out_negs = [self._apply_layer(params, k, jax.lax.stop_gradient(neg), edges, edge_mask) for neg in negs]
      loss_pos, g_pos = _bce_goodness(out_pos, 1.0, self.theta, labelled)
      neg_terms = [_bce_goodness(o, 0.0, self.theta, labelled) for o in out_negs]
      losses.append(loss_pos + jnp.mean(jnp.stack([t[0] for t in neg_terms])))
      good_pos.append(g_pos)
      good_neg.append(jnp.mean(jnp.stack([t[1] for t in neg_terms])))
      pos, negs = out_pos, out_negs
    metrics = {f"goodness_pos_{k}": g for k, g in enumerate(good_pos)}
    metrics.update({f"goodness_neg_{k}": g for k, g in enumerate(good_neg)})
    return jnp.stack(losses), metrics, state.node_states

  def _ff_vn_losses(self, params, state, batch):
    _, _, _, labels, labelled = self._graph(batch)
    negatives = self._negatives(state, labels)
    x, pos_edges, pos_mask, vecs, n = self._sf_graph(batch, state.virtual_nodes)
    neg_graphs = [self._sf_graph(batch, state.virtual_nodes, neg, labelled)[1:3] for neg in negatives]
    node_mask = jnp.concatenate([labelled, jnp.zeros((labelled.shape[0], self.num_classes), bool)], 1)
    losses, good_pos, good_neg, h = [], [], [], x
    for k in range(self.num_layers):
      inp = jax.lax.stop_gradient(h)
      out_pos = self._apply_layer(params, k, inp, pos_edges, pos_mask)
      out_negs = [self._apply_layer(params, k, inp, e, m) for e, m in neg_graphs]
      loss_pos, g_pos = _bce_goodness(out_pos, 1.0, self.theta, node_mask)
      neg_terms = [_bce_goodness(o, 0.0, self.theta, node_mask) for o in out_negs]
      losses.append(loss_pos + jnp.mean(jnp.stack([t[0] for t in neg_terms])))
      good_pos.append(g_pos)
      good_neg.append(jnp.mean(jnp.stack([t[1] for t in neg_terms])))
      # The next layer reads the positive graph's output on every graph (negatives differ only in their edges).
      h = self._next_input(out_pos, vecs)
    metrics = {f"goodness_pos_{k}": g for k, g in enumerate(good_pos)}
    metrics.update({f"goodness_neg_{k}": g for k, g in enumerate(good_neg)})
    return jnp.stack(losses), metrics, state.node_states

  # ---------------------------------------------------------------------------------------- top-down variants

  def _top2loss_bottom_up(self, params, x, edges, edge_mask):
    states = [gnn_lib.l2_normalize_rows(x)]
    for k in range(self.num_layers):
      states.append(gnn_lib.l2_normalize_rows(self._apply_layer(params, k, states[-1], edges, edge_mask)))
    return [jax.lax.stop_gradient(s) for s in states]

  def _top2loss_embeddings(self, params, states, edges, edge_mask):
    """Per layer: the mean of its output on ``states[l]`` and the (detached) states of the layers above."""
    outs, embs = [], []
    for k in range(self.num_layers):
      out = self._apply_layer(params, k, states[k], edges, edge_mask)
      above = [jax.lax.stop_gradient(s) for s in states[k + 2:]]
      embs.append(jnp.mean(jnp.stack([out, *above]), 0))
      outs.append(out)
    return outs, embs

  def _top2loss_losses(self, params, state, batch):
    x, edges, edge_mask, _, n = self._sf_graph(batch, state.virtual_nodes)
    _, _, _, labels, labelled = self._graph(batch)
    states = [gnn_lib.l2_normalize_rows(x), *state.node_states]
    outs, embs = self._top2loss_embeddings(params, states, edges, edge_mask)
    losses = jnp.stack([_ce(_virtual_logits(e, n, self.temperature), labels, labelled) for e in embs])
    new_states = tuple(jax.lax.stop_gradient(gnn_lib.l2_normalize_rows(o)) for o in outs)
    return losses, {}, new_states

  def _top2input_forward(self, params, k, x_prev, x_next, edges, edge_mask):
    inp = jnp.concatenate([gnn_lib.l2_normalize_rows(x_prev), gnn_lib.l2_normalize_rows(x_next)], -1)
    return self._apply_layer(params, k, jax.lax.stop_gradient(inp), edges, edge_mask)

  def _top2input_bottom_up(self, params, x, vecs, edges, edge_mask):
    """``[x, h_1 ... h_L, y]`` from one bottom-up pass with zero top-down inputs."""
    states = [x]
    for k in range(self.num_layers):
      width = self.model.hidden_features if k < self.num_layers - 1 else self.num_classes
      zeros = jnp.zeros((*x.shape[:-1], width), x.dtype)
      states.append(jax.lax.stop_gradient(self._top2input_forward(params, k, states[-1], zeros, edges, edge_mask)))
    return states + [vecs.astype(x.dtype)]

  def _top2input_sweep(self, params, states, edges, edge_mask):
    """One recurrent sweep over the layers; returns (new states, per-layer outputs)."""
    groups = ([[k for k in range(self.num_layers) if k % 2 == 0], [k for k in range(self.num_layers) if k % 2]]
              if self.alternating_update else [list(range(self.num_layers))])
    new = [states[0]] + [None] * self.num_layers + [states[-1]]
    outs = [None] * self.num_layers
    for group in groups:
      for k in group:
        prev = new[k] if (self.alternating_update and new[k] is not None) else states[k]
        nxt = new[k + 2] if (self.alternating_update and new[k + 2] is not None) else states[k + 2]
        outs[k] = self._top2input_forward(params, k, prev, nxt, edges, edge_mask)
        new[k + 1] = jax.lax.stop_gradient(outs[k])
    return new, outs

  def _top2input_losses(self, params, state, batch):
    x, edges, edge_mask, vecs, n = self._sf_graph(batch, state.virtual_nodes)
    _, _, _, labels, labelled = self._graph(batch)
    states = [x, *state.node_states, vecs.astype(x.dtype)]
    new, outs = self._top2input_sweep(params, states, edges, edge_mask)
    losses = jnp.stack([_ce(_virtual_logits(o, n, self.temperature), labels, labelled) for o in outs])
    return losses, {}, tuple(new[1:-1])

  def _initial_node_states(self, params, batch, virtual_nodes):
    if not self._top_down:
      return ()
    x, edges, edge_mask, vecs, _ = self._sf_graph(batch, virtual_nodes)
    if self.variant == "sf_top2loss":
      return tuple(self._top2loss_bottom_up(params, x, edges, edge_mask)[1:])
    return tuple(self._top2input_bottom_up(params, x, vecs, edges, edge_mask)[1:-1])

  # ------------------------------------------------------------------------------------------------ protocol

  def _layer_inputs(self, batch, virtual_nodes):
    """Example inputs of every layer, for initialisation: ``[(x, edges, edge_mask)]``."""
    if self.variant == "ff_label_appending":
      nodes, edges, edge_mask, labels, labelled = self._graph(batch)
      x = jnp.concatenate([nodes, label_vectors(labels, labelled, self.num_classes).astype(nodes.dtype)], -1)
    else:
      x, edges, edge_mask, _, _ = self._sf_graph(batch, virtual_nodes)
    hidden, num_layers = self.model.hidden_features, self.num_layers
    if self.variant == "sf_top2input":
      # [norm(h_{l-1}), norm(h_{l+1})]: the input (or hidden) below, the hidden state (or labels) above.
      widths = [(x.shape[-1] if k == 0 else hidden) + (hidden if k < num_layers - 1 else self.num_classes)
                for k in range(num_layers)]
    else:
      extra = self.num_classes if self._append == "all" else 0
      widths = [x.shape[-1]] + [hidden + extra] * (num_layers - 1)
    return [(jnp.zeros((*x.shape[:-1], w), x.dtype), edges, edge_mask) for w in widths]

  def init(self, rng, batch) -> ForwardGNNState:
    params_rng, virtual_rng, state_rng = jax.random.split(rng, 3)
    nodes = self.task.inputs(batch)["nodes"]
    virtual_nodes = jax.random.normal(virtual_rng, (self.num_classes, nodes.shape[-1]), jnp.float32)
    params = {}
    for k, (x, edges, edge_mask) in enumerate(self._layer_inputs(batch, virtual_nodes)):
      variables = self._layer(k).init(jax.random.fold_in(params_rng, k), x, edges, edge_mask)
      params[f"layer_{k}"] = variables["params"]
    opt_state = tuple(self.optimizer.init(params[f"layer_{k}"]) for k in range(self.num_layers))
    node_states = self._initial_node_states(nn.unbox(params), batch, virtual_nodes)
    return ForwardGNNState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                           virtual_nodes=virtual_nodes, node_states=node_states, rng=state_rng)

  def active_layers(self, step) -> jax.Array:
    """``[L]`` bool: the layers that learn at ``step`` (one in the sequential schedule, all otherwise)."""
    return _active_layers(step, self.num_layers, self.layer_steps, self._top_down, self.learn_layers)

  def trained_layers(self, step) -> jax.Array:
    """``[L]`` bool: layers that have been (or are being) trained; prediction sums only these."""
    return _trained_layers(step, self.num_layers, self.layer_steps, self._top_down, self.learn_layers)

  def step(self, state: ForwardGNNState, batch):
    params, opt_state, losses, metrics, node_states = _local_updates(
        self.optimizer, self.active_layers(state.step), state.params, state.opt_state,
        lambda p: self.layer_losses(p, state, batch))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, node_states=node_states), metrics

  def variables(self, state: ForwardGNNState):
    """``{'params': {'layer_l': ...}, 'forward_gnn': {'virtual_nodes': [C, f]}}``.

    For ``variant='sf'`` without appended labels, ``zoo.gnn.GNN(num_classes=None, normalize_layer_inputs=True,
    ...)`` applied to ``{'params': ...}`` gives the last layer's node embeddings of a graph without virtual nodes;
    class predictions need the virtual nodes (:meth:`predict`).
    """
    return {"params": state.params, "forward_gnn": {"virtual_nodes": state.virtual_nodes}}

  # ------------------------------------------------------------------------------------------------- predict

  def class_scores(self, state: ForwardGNNState, batch):
    """``(scores [batch, nodes, C], per-layer scores [L, batch, nodes, C])``: summed softmaxes (SF) or goodness
    (FF) of the trained layers; the prediction is the argmax."""
    params = state.params
    trained = self.trained_layers(state.step)
    if self.variant == "sf":
      x, edges, edge_mask, vecs, n = self._sf_graph(batch, state.virtual_nodes)
      per_layer, h = [], x
      for k in range(self.num_layers):
        out = self._apply_layer(params, k, h, edges, edge_mask)
        per_layer.append(jax.nn.softmax(_virtual_logits(out, n, self.temperature), -1))
        h = self._next_input(out, vecs)
    elif self.variant == "sf_top2loss":
      x, edges, edge_mask, _, n = self._sf_graph(batch, state.virtual_nodes)
      states = self._top2loss_bottom_up(params, x, edges, edge_mask)
      _, embs = self._top2loss_embeddings(params, states, edges, edge_mask)
      per_layer = [jax.nn.softmax(_virtual_logits(e, n, self.temperature), -1) for e in embs]
    elif self.variant == "sf_top2input":
      x, edges, edge_mask, vecs, n = self._sf_graph(batch, state.virtual_nodes)
      states = self._top2input_bottom_up(params, x, vecs, edges, edge_mask)
      per_layer = [0.0] * self.num_layers
      for t in range(self.test_time_steps):
        states, outs = self._top2input_sweep(params, states, edges, edge_mask)
        if t >= 2:
          for k, o in enumerate(outs):
            per_layer[k] = per_layer[k] + jax.nn.softmax(_virtual_logits(o, n, self.temperature), -1)
    else:
      per_layer = self._ff_goodness(params, state, batch)
    per_layer = jnp.stack(per_layer)
    weights = trained.astype(per_layer.dtype).reshape(-1, *([1] * (per_layer.ndim - 1)))
    return jnp.sum(per_layer * weights, 0), per_layer

  def _ff_goodness(self, params, state, batch):
    """Per layer ``[batch, nodes, C]``: goodness ``mean h^2 - theta`` with every scored node assigned class c."""
    nodes, edges, edge_mask, labels, labelled = self._graph(batch)
    # The scored nodes are assigned class c in turn; the other labelled nodes keep their own labels as context.
    scored = _get(batch, self.task.mask_key, "ForwardGNN").astype(bool)

    def for_class(c):
      assigned = jnp.where(scored, c, labels)
      known = labelled | scored
      if self.variant == "ff_label_appending":
        h = jnp.concatenate([nodes, label_vectors(assigned, known, self.num_classes).astype(nodes.dtype)], -1)
        e, m, n = edges, edge_mask, nodes.shape[1]
        vecs = None
      else:
        # Scored nodes are linked to virtual node c (and carry c as their appended label, if labels are appended).
        h, e, m, vecs, n = self._sf_graph(batch, state.virtual_nodes, assigned, known, assigned, known)
      goodness = []
      for k in range(self.num_layers):
        h = self._apply_layer(params, k, h, e, m)
        goodness.append(jnp.mean(h[:, :n].astype(jnp.float32) ** 2, -1) - self.theta)
        if vecs is not None:
          h = self._next_input(h, vecs)
      return jnp.stack(goodness)  # [L, batch, nodes]

    scores = jax.vmap(for_class, out_axes=-1)(jnp.arange(self.num_classes))  # [L, batch, nodes, C]
    return list(scores)

  def predict(self, state: ForwardGNNState, batch):
    """``[batch, nodes]`` predicted classes."""
    return jnp.argmax(self.class_scores(state, batch)[0], -1)

  def evaluate(self, state: ForwardGNNState, batch):
    scores, per_layer = self.class_scores(state, batch)
    labels = _get(batch, self.task.target_key, "ForwardGNN")
    mask = _get(batch, self.task.mask_key, "ForwardGNN")
    metrics = {"accuracy": _masked_mean((jnp.argmax(scores, -1) == labels).astype(jnp.float32), mask)}
    for k in range(self.num_layers):
      metrics[f"accuracy_layer_{k}"] = _masked_mean(
          (jnp.argmax(per_layer[k], -1) == labels).astype(jnp.float32), mask)
    return metrics


# ------------------------------------------------------------------------------------------------ conveniences


def _fit(variant: str, model, train_data: Mapping[str, Any], **kwargs):
  from zoo.recipes import train  # pylint: disable=g-import-not-at-top  (train imports procedures lazily)
  procedure_kwargs = dict(kwargs.pop("procedure_kwargs", {}) or {})
  procedure_kwargs["variant"] = procedure_kwargs.get("variant", variant)
  kwargs.setdefault("task", NodeClassification())
  kwargs.setdefault("batch_size", len(next(iter(train_data.values()))))
  kwargs.setdefault("eval_batch_size", kwargs["batch_size"])
  return train.fit(model, train_data, procedure=ForwardGNN, procedure_kwargs=procedure_kwargs, **kwargs)


def ff_train(model, train_data, *, virtual_nodes: bool = False, **kwargs):
  """Forward-forward training (label appending, or virtual nodes) with ``zoo.recipes.train.fit``."""
  return _fit("ff_virtual_nodes" if virtual_nodes else "ff_label_appending", model, train_data, **kwargs)


def sf_train(model, train_data, **kwargs):
  """Single-forward training with ``zoo.recipes.train.fit`` (returns its ``FitResult``)."""
  return _fit("sf", model, train_data, **kwargs)


def sf_topdown_train(model, train_data, *, top2: str = "loss", **kwargs):
  """Single-forward training with top-down signals (``top2='loss'`` or ``'input'``) with ``fit``."""
  if top2 not in ("loss", "input"):
    raise ValueError(f"sf_topdown_train: `top2` must be 'loss' or 'input'; got {top2!r}.")
  return _fit(f"sf_top2{top2}", model, train_data, **kwargs)
