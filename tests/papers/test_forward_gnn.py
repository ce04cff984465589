"""Effect test: "Forward Learning of Graph Neural Networks" (Park et al., ICLR 2024, arXiv 2403.11004).

Claim: GNNs trained layer by layer with forward learning (no backpropagation across layers) are competitive with
the same GNNs trained by backpropagation on node classification.

Setting (PAPERS.md): a 2-layer GCN (64 hidden), Adam 1e-3, full-graph steps; ForwardGNN trains layer 0 for 200
steps then layer 1 for 200 (FF variants: 1000 + 1000), backprop 200 steps. Graphs from ``zoo.recipes.datasets.
graphs``: the planted partition ``sbm`` (4 blocks x 60 nodes, p_in 0.08, p_out 0.008, class-mean features + unit
noise, 20% labelled) and Zachary's ``karate_club`` (one-hot node features, 4 labelled members per club, 22 test
members). Baseline without the graph: the same stack with ``conv='mlp'``.

Measured test accuracy (``--durations`` run on this machine; graphs / splits of seeds 0-4; mean):

=====================  ==================================  ==================================
                       sbm                                 karate_club
=====================  ==================================  ==================================
backprop GCN           .940 .952 .923 .952 .964   (.946)   .909 .955 .955 1.00 .955   (.955)
MLP (no graph)         .530 .506 .548 .613 .524   (.544)   .591 .500 .545 .545 .364   (.509)
SF                     .917 .881 .857 .929 .964   (.910)   .636 .682 .955 .864 .773   (.782)
SF, node->VN edges     .946 .929 .869 .952 .952   (.930)   .727 .864 .955 .909 .909   (.873)
SF top2input           .917 .946 .946 .958 .976   (.949)   .909 .773 .955 .909 .500   (.809)
SF top2loss            .893 .887 .887 .935 .952   (.911)   .636 .636 .955 .909 .773   (.782)
FF label appending     .911 .899 .839 .929 .905   (.897)   .727 .818 .909 .955 .864   (.855)
FF virtual nodes       .708 .619 .786 .732 .774   (.724)   .682 .818 .864 .909 .773   (.809)
=====================  ==================================  ==================================

What holds: on the SBM forward learning is competitive: SF trails backprop by 0.036 on average (PAPERS.md asks
>= BP - 0.05: true on average, not on every graph: 0.071 and 0.066 behind on seeds 1 and 2), the top-down SF
variant matches it (+0.003), FF with label appending trails by 0.049, and all are far above the graph-free MLP
(+0.37). The layer-2 loss has exactly zero gradient with respect to layer-1 parameters.

What did not reproduce: on the karate club with one-hot features and 8 labels, forward learning is *not*
competitive: every variant trails backprop by 0.08-0.17 on average (per-layer training only reaches the embedding
rows of nodes near labelled nodes, and the graph is too small to average that out), although all beat the MLP
(+0.27 or more). FF with virtual nodes is the weakest variant on the SBM (-0.22), as it is the paper's weakest.

The default tests run seed 0; ``-m slow`` runs the five graphs and every variant.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import gnn
from zoo.recipes import data
from zoo.recipes.procedures import forward_gnn as fg
from zoo.recipes import train

HIDDEN = 64


@functools.cache
def _splits(name, seed):
  sources, info = data.load(name, seed=seed)
  return sources["train"].arrays, sources["test"].arrays, info.num_classes


def _accuracy(name, seed, mesh, procedure="backprop", conv="gcn", steps=200, **procedure_kwargs):
  train_set, test_set, num_classes = _splits(name, seed)
  model = gnn.GNN(num_classes=num_classes, hidden_features=HIDDEN, num_layers=2, conv=conv)
  result = train.fit(model, train_set, task=fg.NodeClassification(), procedure=procedure,
                     procedure_kwargs=procedure_kwargs, optimizer=optax.adam(1e-3), steps=steps, batch_size=1,
                     eval_data=test_set, eval_batch_size=1, mesh=mesh, seed=seed)
  return result.metrics["accuracy"]


METHODS = {
    "backprop": dict(),
    "mlp": dict(conv="mlp"),
    "sf": dict(procedure=fg.ForwardGNN, variant="sf", steps=400, layer_steps=200),
    "sf_unidirectional": dict(procedure=fg.ForwardGNN, variant="sf", steps=400, layer_steps=200,
                              aug_edge_direction="unidirection"),
    "sf_top2input": dict(procedure=fg.ForwardGNN, variant="sf_top2input", steps=400),
    "sf_top2loss": dict(procedure=fg.ForwardGNN, variant="sf_top2loss", steps=400),
    "ff_label_appending": dict(procedure=fg.ForwardGNN, variant="ff_label_appending", steps=2000,
                               layer_steps=1000),
    "ff_virtual_nodes": dict(procedure=fg.ForwardGNN, variant="ff_virtual_nodes", steps=2000, layer_steps=1000),
}


def test_layer_two_loss_has_no_gradient_into_layer_one():
  train_set, _, num_classes = _splits("sbm", 0)
  batch = {k: jnp.asarray(v) for k, v in train_set.items()}
  proc = fg.ForwardGNN(model=gnn.GNN(num_classes=num_classes, hidden_features=HIDDEN), task=fg.NodeClassification(),
                       optimizer=optax.adam(1e-3))
  state = nn.unbox(jax.jit(proc.init)(jax.random.key(0), batch))
  grads = jax.jit(jax.grad(lambda p: proc.layer_losses(p, state, batch)[0][1]))(state.params)
  assert float(optax.tree.norm(grads["layer_0"])) == 0.0
  assert float(optax.tree.norm(grads["layer_1"])) > 0.0


def test_sbm_forward_learning_is_competitive(single_device_mesh):
  acc = {m: _accuracy("sbm", 0, single_device_mesh, **METHODS[m]) for m in ("backprop", "mlp", "sf")}
  print("sbm seed 0:", {k: round(v, 3) for k, v in acc.items()})
  assert acc["backprop"] >= 0.90
  assert acc["sf"] >= acc["backprop"] - 0.08  # measured 0.917 vs 0.940 (0.036 behind on average over 5 graphs)
  assert acc["sf"] >= acc["mlp"] + 0.15  # PAPERS.md; measured +0.39


def test_karate_club_what_holds(single_device_mesh):
  acc = {m: _accuracy("karate_club", 0, single_device_mesh, **METHODS[m])
         for m in ("backprop", "mlp", "sf_unidirectional")}
  print("karate seed 0:", {k: round(v, 3) for k, v in acc.items()})
  assert acc["backprop"] >= 0.85
  # Forward learning beats the graph-free baseline (measured +0.14 with node->virtual-node edges) ...
  assert acc["sf_unidirectional"] >= acc["mlp"] + 0.1
  # ... but is not competitive with backprop here (measured 0.18 behind): the claim does not reproduce.
  assert acc["backprop"] - acc["sf_unidirectional"] > 0.05


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sbm", "karate_club"])
def test_every_variant_over_five_graphs(name, single_device_mesh):
  acc = {m: np.mean([_accuracy(name, seed, single_device_mesh, **kw) for seed in range(5)])
         for m, kw in METHODS.items()}
  print(name, {k: round(float(v), 3) for k, v in acc.items()})
  forward = [m for m in METHODS if m not in ("backprop", "mlp")]
  for m in forward:
    assert acc[m] >= acc["mlp"] + 0.15, m
  if name == "sbm":
    assert acc["sf"] >= acc["backprop"] - 0.05  # PAPERS.md's margin, on average (measured 0.036)
    assert acc["sf_top2input"] >= acc["backprop"] - 0.02  # measured +0.003
    assert acc["ff_label_appending"] >= acc["backprop"] - 0.08  # measured 0.049
  else:
    for m in forward:  # not competitive on the karate club (measured 0.08-0.17 behind)
      assert acc[m] <= acc["backprop"] - 0.05, m
