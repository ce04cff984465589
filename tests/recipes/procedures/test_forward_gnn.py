"""Unit tests of zoo.recipes.procedures.forward_gnn: the tasks, the graph augmentations, layer locality, the schedule, no
label leakage, the frozen-layer ablation, link prediction (ROC-AUC, the held-out-edge data, ForwardGNNLink) and short
runs through the trainer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import gnn
from zoo.recipes.procedures import forward_gnn as fg
from zoo.recipes.procedures import forward_gnn_link as fgl
from zoo.recipes.datasets import graphs

C = 3


@pytest.fixture(scope="module")
def tiny():
  """A 3-community SBM of 24 nodes as (train split, test split), through the dataset function."""
  splits = graphs.sbm(seed=0, num_blocks=C, block_size=8, p_in=0.5, p_out=0.05, num_features=6,
                      train_fraction=0.4, val_fraction=0.1).splits
  return ({k: jnp.asarray(v) for k, v in splits["train"].items()},
          {k: jnp.asarray(v) for k, v in splits["test"].items()})


def _procedure(variant, conv="gcn", **kwargs):
  model = gnn.GNN(num_classes=C, hidden_features=8, num_layers=2, conv=conv)
  return fg.ForwardGNN(model=model, task=fg.NodeClassification(), optimizer=optax.adam(1e-2), variant=variant,
                       **kwargs)


def test_node_classification_task_masks_and_ignores_hidden_labels():
  task = fg.NodeClassification()
  logits = jnp.array([[[2.0, 0.0], [0.0, 2.0], [5.0, 0.0]]])
  batch = {"labels": jnp.array([[0, 0, -1]]), "mask": jnp.array([[True, True, False]])}
  metrics = task.metrics(logits, batch)
  np.testing.assert_allclose(metrics["accuracy"], [0.5])
  expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(2.0))) / 2
  np.testing.assert_allclose(task.loss(logits, batch), [expected], rtol=1e-6)
  graph = task.inputs({"nodes": 1, "edges": 2, "labels": 3})
  assert sorted(graph) == ["edges", "nodes"]
  with pytest.raises(KeyError, match="no key 'mask'"):
    task.loss(logits, {"labels": batch["labels"]})


def test_augmentations():
  nodes = jnp.zeros((1, 4, 2))
  edges = jnp.array([[[0, 1], [1, 0]]])
  labels = jnp.array([[2, 0, 1, 1]])
  linked = jnp.array([[True, False, True, False]])
  virtual = jnp.arange(6.0).reshape(3, 2)
  x, e, m = fg.augment_with_virtual_nodes(nodes, edges, jnp.ones((1, 2)), labels, linked, virtual)
  assert x.shape == (1, 7, 2) and e.shape == (1, 2 + 8, 2) and m.shape == (1, 10)
  np.testing.assert_array_equal(x[0, 4:], virtual)
  kept = {tuple(map(int, pair)) for pair, on in zip(e[0], m[0]) if on}
  assert kept == {(0, 1), (1, 0), (0, 6), (6, 0), (2, 5), (5, 2)}
  _, e1, m1 = fg.augment_with_virtual_nodes(nodes, edges, jnp.ones((1, 2)), labels, linked, virtual,
                                            bidirectional=False)
  assert e1.shape == (1, 6, 2) and int(m1.sum()) == 4
  vecs = fg.label_vectors(labels, linked, 3)
  np.testing.assert_allclose(vecs[0], [[0, 0, 1], [1 / 3] * 3, [0, 1, 0], [1 / 3] * 3])
  negs = fg.negative_labels(jax.random.key(0), jnp.array([[0, 1, 2, 2, 1]]), 3, 2)
  assert negs.shape == (2, 1, 5)
  assert bool(jnp.all(negs != jnp.array([[0, 1, 2, 2, 1]])))
  assert bool(jnp.all(negs[0] != negs[1]))  # every wrong class once


@pytest.mark.parametrize("variant", fg.VARIANTS)
def test_layers_are_local_and_prediction_never_reads_scored_labels(variant, tiny):
  train_batch, test_batch = tiny
  # Every conv appears once: GraphSAGE and GAT layers train forward like GCN layers.
  conv = {"sf": "gat", "sf_top2loss": "sage"}.get(variant, "gcn")
  proc = _procedure(variant, conv=conv, append_label="input" if variant == "sf" else None)
  state = nn.unbox(jax.jit(proc.init)(jax.random.key(0), train_batch))
  # d loss_l / d params_k is exactly 0 for k != l (stop_gradient between layers) and non-zero for k == l.
  jac = jax.jit(jax.jacrev(lambda p: proc.layer_losses(p, state, train_batch)[0]))(state.params)
  for loss_layer in range(2):
    for param_layer in range(2):
      norm = optax.tree.norm(jax.tree.map(lambda g: g[loss_layer], jac[f"layer_{param_layer}"]))
      if loss_layer == param_layer:
        assert norm > 0, (variant, loss_layer)
      else:
        assert norm == 0.0, (variant, loss_layer, param_layer)
  # Prediction: shuffling the labels of every unlabelled node must not move the class scores.
  scores_fn = jax.jit(proc.class_scores)
  state = state.replace(step=jnp.asarray(10_000))
  scores, per_layer = scores_fn(state, test_batch)
  assert scores.shape == (1, 24, C) and per_layer.shape == (2, 1, 24, C)
  hidden = ~test_batch["train_mask"]
  shuffled = dict(test_batch, labels=jnp.where(hidden, (test_batch["labels"] + 1) % C, test_batch["labels"]))
  np.testing.assert_array_equal(scores_fn(state, shuffled)[0], scores)


def test_sequential_schedule_freezes_other_layers(tiny):
  train_batch, _ = tiny
  proc = _procedure("sf", layer_steps=2)
  state = nn.unbox(jax.jit(proc.init)(jax.random.key(0), train_batch))
  step = jax.jit(proc.step)
  before = state.params
  for _ in range(2):
    state, metrics = step(state, train_batch)
    assert float(metrics["active_layer"]) == 0.0
  assert optax.tree.norm(jax.tree.map(jnp.subtract, state.params["layer_0"], before["layer_0"])) > 0
  assert optax.tree.norm(jax.tree.map(jnp.subtract, state.params["layer_1"], before["layer_1"])) == 0.0
  middle = state.params
  state, metrics = step(state, train_batch)
  assert float(metrics["active_layer"]) == 1.0
  assert optax.tree.norm(jax.tree.map(jnp.subtract, state.params["layer_0"], middle["layer_0"])) == 0.0
  assert optax.tree.norm(jax.tree.map(jnp.subtract, state.params["layer_1"], middle["layer_1"])) > 0
  np.testing.assert_array_equal(proc.trained_layers(jnp.asarray(1)), [True, False])


def test_short_run_through_the_trainer(tiny, single_device_mesh):
  train_batch, test_batch = tiny
  arrays = {k: np.asarray(v) for k, v in train_batch.items()}
  result = fg.sf_train(gnn.GNN(num_classes=C, hidden_features=8), arrays, steps=40,
                       procedure_kwargs={"layer_steps": 20}, optimizer=optax.adam(1e-2),
                       eval_data={k: np.asarray(v) for k, v in test_batch.items()}, mesh=single_device_mesh)
  assert set(result.metrics) == {"accuracy", "accuracy_layer_0", "accuracy_layer_1"}
  assert result.metrics["accuracy"] > 1 / C + 0.2  # a well-separated 3-community graph
  assert sorted(result.variables["params"]) == ["layer_0", "layer_1"]
  # The variables of plain SF are a GNN embedding stack's parameters.
  embeddings = gnn.GNN(num_classes=None, hidden_features=8, normalize_layer_inputs=True).apply(
      {"params": result.variables["params"]}, {k: arrays[k] for k in ("nodes", "edges", "edge_mask")})
  assert embeddings.shape == (1, 24, 8)


def test_learn_layers_false_freezes_every_layer(tiny):
  train_batch, _ = tiny
  proc = _procedure("sf", layer_steps=2, learn_layers=False)
  state = nn.unbox(jax.jit(proc.init)(jax.random.key(0), train_batch))
  new, metrics = jax.jit(proc.step)(state, train_batch)
  for k in range(2):
    assert optax.tree.norm(jax.tree.map(jnp.subtract, new.params[f"layer_{k}"], state.params[f"layer_{k}"])) == 0.0
    assert float(metrics[f"loss_layer_{k}"]) > 0  # the losses are still computed (and logged)
  np.testing.assert_array_equal(proc.trained_layers(jnp.asarray(0)), [True, True])  # prediction uses both layers


# ------------------------------------------------------------------------------------------------ link prediction


@pytest.fixture(scope="module")
def tiny_links():
  """A 3-community SBM of 30 nodes with held-out edges: {split: batch}."""
  splits = graphs.sbm_links(seed=0, num_blocks=C, block_size=10, p_in=0.6, p_out=0.03, num_features=6).splits
  return {s: {k: jnp.asarray(v) for k, v in arrays.items()} for s, arrays in splits.items()}


def test_roc_auc_matches_the_rank_definition():
  rng = np.random.default_rng(0)
  scores = np.round(rng.normal(size=(2, 40)), 1)  # rounded: ties happen
  labels = (rng.random((2, 40)) < 0.5).astype(np.float32)
  mask = rng.random((2, 40)) < 0.8
  got = fgl.roc_auc(jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(mask))
  for b in range(2):
    pos = scores[b][mask[b] & (labels[b] == 1)]
    neg = scores[b][mask[b] & (labels[b] == 0)]
    expected = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    np.testing.assert_allclose(got[b], expected, rtol=1e-6)
  np.testing.assert_allclose(fgl.roc_auc(jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 0.0]]), jnp.ones((1, 2))), [0.0])
  np.testing.assert_allclose(fgl.roc_auc(jnp.array([[1.0, 2.0]]), jnp.ones((1, 2)), jnp.ones((1, 2))), [0.5])


def test_link_prediction_task():
  task = fgl.LinkPrediction()
  h = jnp.array([[[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]]])
  batch = {"pairs": jnp.array([[[0, 1], [1, 2], [0, 2]]]), "pair_labels": jnp.array([[1.0, 1.0, 0.0]]),
           "pair_mask": jnp.array([[True, True, False]])}
  np.testing.assert_allclose(task.logits(h, batch), [[2.0, 3.0, 0.0]])
  expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-3.0))) / 2
  np.testing.assert_allclose(task.loss(h, batch), [expected], rtol=1e-6)
  assert set(task.metrics(h, batch)) == {"loss", "auc"}
  with pytest.raises(KeyError, match="no key 'pairs'"):
    task.loss(h, {"pair_labels": batch["pair_labels"]})


def test_sbm_links_holds_out_edges(tiny_links):
  full = graphs.sbm_links(seed=0, num_blocks=C, block_size=10, p_in=0.6, p_out=0.03, num_features=6).splits
  again = graphs.sbm_links(seed=0, num_blocks=C, block_size=10, p_in=0.6, p_out=0.03, num_features=6).splits
  for split in full:
    for key in full[split]:
      np.testing.assert_array_equal(full[split][key], again[split][key])  # deterministic by seed

  def edge_set(arrays):
    return {tuple(sorted(map(int, e))) for e, on in zip(arrays["edges"][0], arrays["edge_mask"][0]) if on}

  def pair_sets(arrays):
    pairs = [tuple(map(int, p)) for p, on in zip(arrays["pairs"][0], arrays["pair_mask"][0]) if on]
    labels = [float(y) for y, on in zip(arrays["pair_labels"][0], arrays["pair_mask"][0]) if on]
    return {p for p, y in zip(pairs, labels) if y == 1}, {p for p, y in zip(pairs, labels) if y == 0}

  message = {s: edge_set(full[s]) for s in full}
  pos = {s: pair_sets(full[s])[0] for s in full}
  neg = {s: pair_sets(full[s])[1] for s in full}
  all_edges = message["train"] | pos["validation"] | pos["test"]
  assert message["validation"] == message["train"] == pos["train"]
  assert message["test"] == message["train"] | pos["validation"]
  for s in full:
    assert len(neg[s]) == len(pos[s]) > 0
    assert not pos[s] & (message[s] if s != "train" else set())  # a scored edge is not a message edge
    assert not neg[s] & all_edges and all(u < v for u, v in neg[s])  # negatives are non-edges
  assert not (neg["train"] & neg["validation"]) and not (neg["train"] & neg["test"])
  assert not (neg["validation"] & neg["test"])
  n_val, n_test = len(pos["validation"]), len(pos["test"])
  assert n_val == int(0.16 * len(all_edges)) and n_test == int(0.2 * len(all_edges))
  assert {full[s]["pairs"].shape for s in full} == {full["train"]["pairs"].shape}  # one shape for every split


def _link_procedure(variant="sf", **kwargs):
  return fgl.ForwardGNNLink(model=gnn.GNN(hidden_features=8, num_layers=2), task=fgl.LinkPrediction(),
                           optimizer=optax.adam(1e-2), variant=variant, **kwargs)


@pytest.mark.parametrize("variant", fgl.LINK_VARIANTS)
def test_link_layers_are_local(variant, tiny_links):
  batch = tiny_links["train"]
  proc = _link_procedure(variant)
  state = jax.jit(proc.init)(jax.random.key(0), batch)
  jac = jax.jit(jax.jacrev(lambda p: proc.layer_losses(p, batch)[0]))(state.params)
  for loss_layer in range(2):
    for param_layer in range(2):
      norm = optax.tree.norm(jax.tree.map(lambda g: g[loss_layer], jac[f"layer_{param_layer}"]))
      assert (norm > 0) if loss_layer == param_layer else (norm == 0.0), (variant, loss_layer, param_layer)
  # The layer logits are the pair scores of each layer's own embeddings (dot product or goodness).
  h = proc._layer().apply({"params": state.params["layer_0"]}, batch["nodes"], batch["edges"], batch["edge_mask"])
  prod = h[0, batch["pairs"][0, :, 0]] * h[0, batch["pairs"][0, :, 1]]
  expected = prod.sum(-1) if variant == "sf" else (prod ** 2).sum(-1) - 2.0
  np.testing.assert_allclose(proc.layer_logits(state.params, batch)[0, 0], expected, rtol=1e-5, atol=1e-6)


def test_link_schedule_and_frozen_ablation(tiny_links):
  batch = tiny_links["train"]
  proc = _link_procedure(layer_steps=1)
  state = jax.jit(proc.init)(jax.random.key(0), batch)
  step = jax.jit(proc.step)
  s1, _ = step(state, batch)
  diff = lambda a, b, k: float(optax.tree.norm(jax.tree.map(jnp.subtract, a.params[f"layer_{k}"],
                                                            b.params[f"layer_{k}"])))
  assert diff(s1, state, 0) > 0 and diff(s1, state, 1) == 0.0
  s2, _ = step(s1, batch)
  assert diff(s2, s1, 0) == 0.0 and diff(s2, s1, 1) > 0
  frozen = _link_procedure(layer_steps=1, learn_layers=False)
  f1, _ = jax.jit(frozen.step)(state, batch)
  assert diff(f1, state, 0) == 0.0 and diff(f1, state, 1) == 0.0
  np.testing.assert_array_equal(frozen.trained_layers(jnp.asarray(0)), [True, True])
  np.testing.assert_array_equal(proc.trained_layers(jnp.asarray(0)), [True, False])
  scores, per_layer = proc.pair_scores(state, batch)  # step 0: layer 0 is the only one trained so far
  np.testing.assert_allclose(scores, per_layer[0], rtol=1e-6)


def test_link_short_run_through_the_trainer(tiny_links, single_device_mesh):
  arrays = {s: {k: np.asarray(v) for k, v in b.items()} for s, b in tiny_links.items()}
  result = fgl.link_train(gnn.GNN(hidden_features=8), arrays["train"], steps=60, procedure_kwargs={"layer_steps": 30},
                         optimizer=optax.adam(1e-2), eval_data=arrays["test"], mesh=single_device_mesh)
  assert set(result.metrics) == {"auc", "auc_layer_0", "auc_layer_1"}
  assert result.metrics["auc"] > 0.7  # a well-separated 3-community graph
  embeddings = gnn.GNN(num_classes=None, hidden_features=8, normalize_layer_inputs=True).apply(
      result.variables, {k: arrays["test"][k] for k in ("nodes", "edges", "edge_mask")})
  assert embeddings.shape == (1, 30, 8)


def test_clear_errors():
  with pytest.raises(ValueError, match="`variant` must be one of"):
    _link_procedure("bp")
  with pytest.raises(TypeError, match="must be a zoo.gnn.GNN"):
    fgl.ForwardGNNLink(model=nn.Dense(3), task=fgl.LinkPrediction(), optimizer=optax.adam(1e-3))
  with pytest.raises(ValueError, match="val_fraction"):
    graphs.sbm_links(val_fraction=0.5, test_fraction=0.5)
  task = fg.NodeClassification()
  with pytest.raises(TypeError, match="must be a zoo.gnn.GNN"):
    fg.ForwardGNN(model=nn.Dense(3), task=task, optimizer=optax.adam(1e-3))
  with pytest.raises(ValueError, match="num_classes"):
    fg.ForwardGNN(model=gnn.GNN(num_classes=None), task=task, optimizer=optax.adam(1e-3))
  with pytest.raises(ValueError, match="`variant` must be one of"):
    _procedure("ff")
  with pytest.raises(ValueError, match="append_label"):
    _procedure("sf", append_label="output")
  with pytest.raises(ValueError, match="top-down variants"):
    _procedure("sf_top2input", append_label="all")
  with pytest.raises(ValueError, match="'top2' must be|`top2` must be"):
    fg.sf_topdown_train(gnn.GNN(num_classes=C), {}, top2="output")
