"""Graphs for node classification and link prediction, available offline and deterministic by seed.

Every split of a graph dataset holds the *same* graph(s) (transductive node classification); the splits differ in
which nodes they score. Each example is one whole graph, as fixed-shape arrays (``G`` graphs per split):

* ``nodes``: ``[G, nodes, features]`` float32 node features;
* ``edges``: ``[G, edges, 2]`` int32 ``(sender, receiver)``, both directions of every undirected edge, padded to the
  largest graph with ``edge_mask`` False (padding edges point at node 0);
* ``edge_mask``: ``[G, edges]`` bool;
* ``labels``: ``[G, nodes]`` int32 classes; in the ``train`` split only the labelled (training) nodes carry their
  class and every other node is -1, so a procedure cannot read a test label during training;
* ``train_mask``: ``[G, nodes]`` bool, the labelled nodes (their labels may be used as input, e.g. ForwardGNN's
  virtual-node edges);
* ``mask``: ``[G, nodes]`` bool, the nodes this split scores (``train``: the labelled nodes, ``validation`` and
  ``test``: held-out nodes).

Datasets (``zoo.recipes.data.load(name, **kwargs)``):

* ``karate_club``: Zachary's karate club (34 members, 78 friendships; networkx), labelled by the club each member
  joined after the split (Mr. Hi = 0, Officer = 1). Features are one-hot node ids, as in Kipf & Welling's karate
  demo, so a graph-free model cannot generalise to unlabelled nodes.
* ``sbm``: planted-partition stochastic block models (``networkx.stochastic_block_model``, seeded from the dataset
  seed): ``num_blocks`` communities of ``block_size`` nodes (node ``i`` in community ``i // block_size``), an edge
  inside a community with probability ``p_in`` and across with ``p_out``; features are the community's mean
  (a random Gaussian vector of norm ``signal``) plus unit Gaussian noise per dimension, so features alone are
  informative but noisy and neighbourhood averaging helps. ``num_graphs`` independent graphs with the same
  community means (a batch of graphs shards over the data-parallel mesh).

Labelled/validation nodes are sklearn's stratified ``train_test_split`` (twice: training vs the rest, then validation
vs test), ``round(train_fraction * nodes)`` / ``round(val_fraction * nodes)`` nodes in the classes' proportions, with at
least one node per class in each and at least one test node per class (else a ValueError); the rest are test nodes.

Link prediction (``sbm_links``): the same planted-partition graphs, with a random ``val_fraction``/``test_fraction``
of the undirected edges held out (the split of PyG's ``RandomLinkSplit`` that ForwardGNN's reference code uses,
0.16 / 0.2, one negative per positive). Every split holds the whole graph(s) with these keys:

* ``nodes`` ``[G, nodes, features]``; ``edges`` ``[G, edges, 2]`` and ``edge_mask`` ``[G, edges]``: the message-passing
  edges, both directions: the training edges in ``train`` and ``validation``, training + validation edges in
  ``test`` (as ``RandomLinkSplit``); padded to one edge count for all splits, so a held-out edge is never visible
  to the split that scores it;
* ``pairs`` ``[G, pairs, 2]`` int32 node pairs to score (once per undirected pair, ``u < v``): the split's positive
  edges followed by as many negative pairs, drawn once, uniformly among the pairs that are no edge of the full graph,
  distinct and disjoint across the splits; ``pair_labels`` ``[G, pairs]`` float32 (1 positive, 0 negative);
  ``pair_mask`` ``[G, pairs]`` bool (False: padding, to one pair count for every split and graph);
* ``labels`` ``[G, nodes]`` int32: the planted communities (for analysis; no link model reads them).
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["karate_club", "planted_partition", "sbm", "sbm_links"]


def _stratified_masks(labels: np.ndarray, train_fraction: float, val_fraction: float, rng: np.random.Generator):
  """``(train, val, test)`` boolean masks ``[n]``: sklearn's stratified ``train_test_split``, twice.

  ``round(train_fraction * n)`` training nodes (at least one per class), then ``round(val_fraction * n)`` validation
  nodes of the rest (at least one per class if ``val_fraction > 0``); every class keeps at least one test node. The
  splits' ``random_state`` are drawn from ``rng``, so the masks are deterministic by the dataset seed.
  """
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top
  if not 0 < train_fraction < 1 or not 0 <= val_fraction < 1 or train_fraction + val_fraction >= 1:
    raise ValueError(f"need 0 < train_fraction, 0 <= val_fraction and train_fraction + val_fraction < 1; got "
                     f"{train_fraction}, {val_fraction}.")
  classes, counts = np.unique(labels, return_counts=True)
  n, num_classes = len(labels), len(classes)
  # At least one node of every class per split: a split of fewer nodes than classes cannot be stratified.
  n_train = max(num_classes, int(round(train_fraction * n)))
  n_val = max(num_classes, int(round(val_fraction * n))) if val_fraction > 0 else 0
  needed = 2 + (val_fraction > 0)
  if counts.min() < needed or n_train + n_val + num_classes > n:
    c = classes[np.argmin(counts)]
    raise ValueError(f"class {c} has {counts.min()} of {n} nodes ({num_classes} classes): too few for {n_train} "
                     f"training and {n_val} validation nodes with at least one node of every class in each split "
                     f"and at least one test node per class.")
  index = np.arange(n)
  train_idx, rest = model_selection.train_test_split(index, train_size=n_train, stratify=labels,
                                                     random_state=int(rng.integers(2**32)))
  val_idx = rest[:0]
  if n_val:
    val_idx, _ = model_selection.train_test_split(rest, train_size=n_val, stratify=labels[rest],
                                                  random_state=int(rng.integers(2**32)))
  train = np.isin(index, train_idx)
  val = np.isin(index, val_idx)
  test = ~(train | val)
  # sklearn stratifies proportionally; a class much smaller than the others can still get no node of a split.
  for name, mask, required in (("training", train, True), ("validation", val, n_val > 0), ("test", test, True)):
    missing = np.setdiff1d(classes, labels[mask])
    if required and len(missing):
      raise ValueError(f"class {missing[0]} has {counts[classes == missing[0]][0]} of {n} nodes: too few for a "
                       f"stratified split with train_fraction {train_fraction} and val_fraction {val_fraction} to "
                       f"give it a {name} node.")
  return train, val, test


def _splits(graphs: list[dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
  """Stacks graphs (padding edges) into the three splits."""
  num_edges = max(len(g["edges"]) for g in graphs)
  nodes = np.stack([g["nodes"] for g in graphs]).astype(np.float32)
  edges = np.zeros((len(graphs), num_edges, 2), np.int32)
  edge_mask = np.zeros((len(graphs), num_edges), bool)
  for i, g in enumerate(graphs):
    edges[i, :len(g["edges"])] = g["edges"]
    edge_mask[i, :len(g["edges"])] = True
  labels = np.stack([g["labels"] for g in graphs]).astype(np.int32)
  train, val, test = (np.stack([g[k] for g in graphs]) for k in ("train", "val", "test"))
  common = {"nodes": nodes, "edges": edges, "edge_mask": edge_mask, "train_mask": train}
  return {
      "train": {**common, "labels": np.where(train, labels, -1).astype(np.int32), "mask": train},
      "validation": {**common, "labels": labels, "mask": val},
      "test": {**common, "labels": labels, "mask": test},
  }


def _both_directions(undirected: np.ndarray) -> np.ndarray:
  return np.concatenate([undirected, undirected[:, ::-1]], 0).astype(np.int32)


@data.register("karate_club", version="2.0.0")
def karate_club(seed: int = 0, train_fraction: float = 0.25, val_fraction: float = 0.1) -> data.Generated:
  """Zachary's karate club (networkx): 34 nodes, 156 directed edges, one-hot id features, 2 clubs."""
  import networkx as nx  # pylint: disable=g-import-not-at-top
  g = nx.karate_club_graph()
  num_nodes = g.number_of_nodes()
  labels = np.array([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(num_nodes)], np.int32)
  undirected = np.array(sorted(tuple(sorted(e)) for e in g.edges()), np.int32)
  rng = np.random.default_rng(seed)
  train, val, test = _stratified_masks(labels, train_fraction, val_fraction, rng)
  graph = {"nodes": np.eye(num_nodes, dtype=np.float32), "edges": _both_directions(undirected), "labels": labels,
           "train": train, "val": val, "test": test}
  return data.Generated(_splits([graph]), metadata={"num_classes": 2, "num_nodes": num_nodes,
                                                     "num_features": num_nodes, "num_graphs": 1})


def planted_partition(rng: np.random.Generator, *, num_blocks: int, block_size: int, p_in: float, p_out: float,
                      num_features: int, signal: float, means: np.ndarray | None = None):
  """One SBM graph: ``(nodes [n, f], undirected edges [m, 2], labels [n], class means [blocks, f])``.

  The edges are ``networkx.stochastic_block_model`` (seeded from ``rng``) as sorted pairs ``u < v``; node ``i`` is in
  block ``i // block_size`` (networkx numbers the blocks' nodes in order). ``means`` (drawn here if None) are the
  communities' feature means; the graphs of one dataset share them, so a class means the same thing in every graph.
  """
  import networkx as nx  # pylint: disable=g-import-not-at-top
  n = num_blocks * block_size
  labels = np.repeat(np.arange(num_blocks), block_size).astype(np.int32)
  prob = np.where(np.eye(num_blocks, dtype=bool), p_in, p_out).tolist()
  g = nx.stochastic_block_model([block_size] * num_blocks, prob, seed=int(rng.integers(2**32)))
  undirected = np.array(sorted((min(u, v), max(u, v)) for u, v in g.edges()), np.int32).reshape(-1, 2)
  if means is None:
    means = rng.normal(size=(num_blocks, num_features))
    means *= signal / np.linalg.norm(means, axis=1, keepdims=True)
  nodes = means[labels] + rng.normal(size=(n, num_features))
  return nodes.astype(np.float32), undirected, labels, means


@data.register("sbm", version="2.0.0")
def sbm(seed: int = 0, num_blocks: int = 4, block_size: int = 60, p_in: float = 0.08, p_out: float = 0.008,
        num_features: int = 16, signal: float = 1.5, train_fraction: float = 0.2, val_fraction: float = 0.1,
        num_graphs: int = 1) -> data.Generated:
  """Planted-partition SBM graph(s) with community labels and noisy class-mean features."""
  if num_blocks < 2 or block_size < 3 or num_graphs < 1:
    raise ValueError(f"sbm: need num_blocks >= 2, block_size >= 3, num_graphs >= 1; got {num_blocks}, "
                     f"{block_size}, {num_graphs}.")
  if not (0 <= p_out <= 1 and 0 <= p_in <= 1):
    raise ValueError(f"sbm: p_in and p_out must be probabilities; got {p_in}, {p_out}.")
  rng = np.random.default_rng(seed)
  graphs, means = [], None
  for _ in range(num_graphs):
    nodes, undirected, labels, means = planted_partition(
        rng, num_blocks=num_blocks, block_size=block_size, p_in=p_in, p_out=p_out, num_features=num_features,
        signal=signal, means=means)
    train, val, test = _stratified_masks(labels, train_fraction, val_fraction, rng)
    graphs.append({"nodes": nodes, "edges": _both_directions(undirected), "labels": labels, "train": train,
                   "val": val, "test": test})
  splits = _splits(graphs)
  return data.Generated(splits, metadata={"num_classes": num_blocks, "num_nodes": num_blocks * block_size,
                                          "num_features": num_features, "num_graphs": num_graphs,
                                          "num_edges": int(splits["train"]["edges"].shape[1])})


def _negative_pairs(rng: np.random.Generator, num_nodes: int, taken: set[tuple[int, int]], count: int) -> np.ndarray:
  """``count`` distinct undirected pairs ``u < v`` outside ``taken``, uniformly at random (``taken`` grows)."""
  out = []
  while len(out) < count:
    u, v = (int(i) for i in rng.integers(0, num_nodes, size=2))
    pair = (min(u, v), max(u, v))
    if u != v and pair not in taken:
      taken.add(pair)
      out.append(pair)
  return np.array(out, np.int32).reshape(count, 2)


@data.register("sbm_links", version="2.0.0")
def sbm_links(seed: int = 0, num_blocks: int = 4, block_size: int = 60, p_in: float = 0.08, p_out: float = 0.008,
              num_features: int = 16, signal: float = 1.5, val_fraction: float = 0.16, test_fraction: float = 0.2,
              num_graphs: int = 1) -> data.Generated:
  """Planted-partition SBM graph(s) with held-out edges and sampled non-edges for link prediction (module doc)."""
  if num_blocks < 1 or block_size < 2 or num_graphs < 1:
    raise ValueError(f"sbm_links: need num_blocks >= 1, block_size >= 2, num_graphs >= 1; got {num_blocks}, "
                     f"{block_size}, {num_graphs}.")
  if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
    raise ValueError(f"sbm_links: need 0 < val_fraction, test_fraction and val_fraction + test_fraction < 1; got "
                     f"{val_fraction}, {test_fraction}.")
  rng = np.random.default_rng(seed)
  n = num_blocks * block_size
  graphs, means = [], None
  for _ in range(num_graphs):
    nodes, undirected, labels, means = planted_partition(
        rng, num_blocks=num_blocks, block_size=block_size, p_in=p_in, p_out=p_out, num_features=num_features,
        signal=signal, means=means)
    m = len(undirected)
    n_val, n_test = max(1, int(np.floor(val_fraction * m))), max(1, int(np.floor(test_fraction * m)))
    if n_val + n_test >= m or 2 * m > n * (n - 1) // 2:
      raise ValueError(f"sbm_links: a graph has {m} edges: too few to hold out {n_val} + {n_test}, or too dense "
                       "to sample as many non-edges.")
    order = rng.permutation(m)
    split_edges = {"validation": undirected[order[:n_val]], "test": undirected[order[n_val:n_val + n_test]],
                   "train": undirected[order[n_val + n_test:]]}
    taken = {tuple(map(int, e)) for e in undirected}
    pairs = {}
    for split in ("train", "validation", "test"):
      pos = split_edges[split]
      neg = _negative_pairs(rng, n, taken, len(pos))
      pairs[split] = (np.concatenate([pos, neg]), np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))
    message = {"train": split_edges["train"], "validation": split_edges["train"],
               "test": np.concatenate([split_edges["train"], split_edges["validation"]])}
    graphs.append({"nodes": nodes, "labels": labels, "pairs": pairs,
                   "edges": {k: _both_directions(v) for k, v in message.items()}})
  # One edge count and one pair count for every split (the splits share the feature shapes).
  num_edges = max(len(g["edges"]["test"]) for g in graphs)
  num_pairs = max(len(g["pairs"][split][0]) for g in graphs for split in g["pairs"])
  splits = {}
  for split in ("train", "validation", "test"):
    arrays = {"nodes": np.stack([g["nodes"] for g in graphs]).astype(np.float32),
              "labels": np.stack([g["labels"] for g in graphs]).astype(np.int32),
              "edges": np.zeros((num_graphs, num_edges, 2), np.int32),
              "edge_mask": np.zeros((num_graphs, num_edges), bool),
              "pairs": np.zeros((num_graphs, num_pairs, 2), np.int32),
              "pair_labels": np.zeros((num_graphs, num_pairs), np.float32),
              "pair_mask": np.zeros((num_graphs, num_pairs), bool)}
    for i, g in enumerate(graphs):
      e = g["edges"][split]
      arrays["edges"][i, :len(e)], arrays["edge_mask"][i, :len(e)] = e, True
      p, y = g["pairs"][split]
      arrays["pairs"][i, :len(p)], arrays["pair_labels"][i, :len(p)], arrays["pair_mask"][i, :len(p)] = p, y, True
    splits[split] = arrays
  return data.Generated(splits, metadata={"num_nodes": n, "num_features": num_features, "num_graphs": num_graphs,
                                          "num_edges": num_edges, "num_classes": num_blocks,
                                          "num_test_pairs": int(splits["test"]["pairs"].shape[1])})
