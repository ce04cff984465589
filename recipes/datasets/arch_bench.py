"""Generated architecture corpora: the ONNX-Net mini-bench and the ArchBERT caption/reasoning corpus.

* The **mini-bench** (ONNX-Net, Qin et al. 2025, arXiv 2510.04938, scaled down as PAPERS.md block 33 says): 200
  space-A MLPs and 120 space-B CNNs (``zoo.archtext``) drawn by :func:`minibench_configs`, each trained for
  ``STEPS`` = 200 Adam steps (lr 1e-3, batch 32, cross-entropy, LeCun-normal init) on the 1297 load_digits training
  images and scored by accuracy on the 500 held-out ones. :func:`train_configs` groups the configs by parameter
  shapes and trains every group in one jitted, vmapped call (activation, normalisation and pooling kind are
  per-member switch indices). :func:`build_minibench` writes the table (configs, parameter counts, accuracies) to
  ``onnx_minibench.json`` next to this file; it is shipped, since training 320 nets does not fit a unit test
  (``python -m zoo.recipes.datasets.arch_bench`` rebuilds it, a few minutes of CPU). Dataset ``onnx_minibench``:
  ``tokens [n, 128]`` (chain_slim ids, :class:`zoo.archtext.ArchTokenizer`), ``y`` the accuracy, ``params``,
  ``space`` (0 = A, 1 = B); train = the first 150 A-nets and 20 B-nets (by a seeded shuffle), test = the rest.
* The **ArchBERT corpus** (Akbari et al. 2022, arXiv 2301.00040; see ``zoo.archbert``): :func:`arch_corpus` draws
  configs of both spaces, a template caption for each ("CNN, 2 conv (relu) 8-16 channels kernel 3-5 + maxpool,
  1 dense") and true/false reasoning statements ("it has batch normalisation", "it has more than 2 conv layers"...),
  labelled by the config itself.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo import archtext
from zoo.recipes import data

__all__ = ["MINIBENCH_PATH", "STATEMENTS", "STEPS", "arch_captions", "arch_corpus", "archbert_arrays",
           "build_minibench", "load_minibench", "minibench_configs",
           "minibench_arrays", "minibench_split", "onnx_minibench", "train_configs"]

STEPS = 200
MINIBENCH_PATH = os.path.join(os.path.dirname(__file__), "onnx_minibench.json")
_ACTS = list(archtext.ACTIVATIONS)
_NORMS = list(archtext.NORMS)


def _act(i, x):
  return jax.lax.switch(i, [jax.nn.relu, jnp.tanh, jax.nn.sigmoid, jax.nn.gelu, jax.nn.elu], x)


def minibench_configs(seed: int = 0, num_a: int = 200, num_b: int = 120) -> list[dict[str, Any]]:
  """``num_a`` distinct space-A configs (of 300) and ``num_b`` space-B configs (3 activation/pool variants of each
  of ``num_b // 3`` distinct layer structures), seeded."""
  rng = np.random.default_rng(seed)
  grid = list(itertools.product((1, 2, 3, 4), (8, 16, 32, 64, 128), _ACTS, _NORMS))
  a = [dict(space="A", depth=d, width=w, activation=act, norm=n)
       for d, w, act, n in (grid[i] for i in rng.permutation(len(grid))[:num_a])]
  structures = set()
  while len(structures) < num_b // 3:
    layers = int(rng.integers(1, 4))
    ch = tuple(int(c) for c in rng.choice((4, 8, 16, 32), layers))
    ks = tuple(int(k) for k in rng.choice((1, 3, 5), layers))
    pooled = tuple(bool(p) for p in rng.random(layers) < 0.5)
    structures.add((ch, ks, pooled))
  b = []
  for ch, ks, pooled in sorted(structures):
    variants = rng.permutation(len(_ACTS) * 2)[:3]
    for v in variants:
      act, kind = _ACTS[v // 2], ("max", "avg")[v % 2]
      b.append(dict(space="B", channels=ch, kernels=ks, pools=tuple(kind if p else "none" for p in pooled),
                    activation=act))
  return a + b


def _digits():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  x, y = load_digits(return_X_y=True)
  x = (x / 16.0).astype(np.float32)
  return train_test_split(x, y.astype(np.int32), test_size=500, random_state=0, stratify=y)


def _structure(c: Mapping[str, Any]):
  if c["space"] == "A":
    return ("A", c["depth"], c["width"])
  return ("B", tuple(c["channels"]), tuple(c["kernels"]), tuple(p != "none" for p in c["pools"]))


def _init(structure, key):
  params = []
  if structure[0] == "A":
    _, depth, width = structure
    sizes = [archtext.IN_FEATURES] + [width] * depth + [archtext.CLASSES]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      k = jax.random.fold_in(key, i)
      params.append({"w": jax.random.normal(k, (n_in, n_out)) / np.sqrt(n_in), "b": jnp.zeros(n_out),
                     "g": jnp.ones(n_out), "be": jnp.zeros(n_out)})
    return params
  _, ch, ks, pooled = structure
  c_in, side = 1, archtext.IMAGE
  for i, (c, k, p) in enumerate(zip(ch, ks, pooled)):
    params.append({"w": jax.random.normal(jax.random.fold_in(key, i), (k, k, c_in, c)) / np.sqrt(k * k * c_in),
                   "b": jnp.zeros(c)})
    c_in, side = c, side // 2 if p else side
  n_in = c_in * side * side
  params.append({"w": jax.random.normal(jax.random.fold_in(key, 99), (n_in, archtext.CLASSES)) / np.sqrt(n_in),
                 "b": jnp.zeros(archtext.CLASSES)})
  return params


def _apply(structure, params, act, extra, x):
  """Logits of one net; ``act`` the activation index, ``extra`` the norm index (A) or pooling kind 0 max/1 avg (B)."""
  if structure[0] == "A":
    h = x
    for layer in params[:-1]:
      h = h @ layer["w"] + layer["b"]
      ln = (h - h.mean(-1, keepdims=True)) * jax.lax.rsqrt(h.var(-1, keepdims=True) + 1e-5)
      bn = (h - h.mean(0, keepdims=True)) * jax.lax.rsqrt(h.var(0, keepdims=True) + 1e-5)  # batch statistics
      normed = jnp.where(extra == 1, ln, bn) * layer["g"] + layer["be"]
      h = _act(act, jnp.where(extra == 0, h, normed))
    return h @ params[-1]["w"] + params[-1]["b"]
  _, _, _, pooled = structure
  h = x.reshape(-1, archtext.IMAGE, archtext.IMAGE, 1)
  for layer, p in zip(params[:-1], pooled):
    h = jax.lax.conv_general_dilated(h, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    h = _act(act, h + layer["b"])
    if p:
      mx = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
      av = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0
      h = jnp.where(extra == 0, mx, av)
  h = h.reshape(h.shape[0], -1)
  return h @ params[-1]["w"] + params[-1]["b"]


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _train_group(structure, keys, act, extra, arrays, steps, batch_size):
  xtr, ytr, xte, yte, order = arrays
  opt = optax.adam(1e-3)

  def one(key, a, e):
    params = _init(structure, key)

    def loss(p, xb, yb):
      return optax.softmax_cross_entropy_with_integer_labels(_apply(structure, p, a, e, xb), yb).mean()

    def step(carry, idx):
      p, s = carry
      g = jax.grad(loss)(p, xtr[idx], ytr[idx])
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), order[:steps])
    return (jnp.argmax(_apply(structure, params, a, e, xte), -1) == yte).mean()

  return jax.vmap(one)(keys, act, extra)


def train_configs(configs: Sequence[Mapping[str, Any]], *, steps: int = STEPS, batch_size: int = 32,
                  seed: int = 0) -> np.ndarray:
  """Test accuracy of every config after ``steps`` Adam steps on load_digits, one vmapped call per shape group.

  Net ``i`` is initialised from ``fold_in(PRNGKey(seed), i_global)`` where ``i_global`` is its ``'index'`` field if
  it has one (so a subset retrains exactly as in the full bench), else its position; every net sees the same batches.
  """
  for c in configs:
    archtext.check_config(c)
  xtr, xte, ytr, yte = _digits()
  order = np.random.default_rng(seed).integers(0, len(xtr), (steps, batch_size))
  arrays = tuple(jnp.asarray(a) for a in (xtr, ytr, xte, yte, order))
  groups: dict[Any, list[int]] = {}
  for i, c in enumerate(configs):
    groups.setdefault(_structure(c), []).append(i)
  acc = np.zeros(len(configs))
  for structure, members in groups.items():
    cs = [configs[i] for i in members]
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seed), int(c.get("index", i)))
                      for c, i in zip(cs, members)])
    act = jnp.asarray([_ACTS.index(c["activation"]) for c in cs])
    if structure[0] == "A":
      extra = jnp.asarray([_NORMS.index(c["norm"]) for c in cs])
    else:
      extra = jnp.asarray([1 if "avg" in c["pools"] else 0 for c in cs])
    acc[members] = np.asarray(_train_group(structure, keys, act, extra, arrays, steps, batch_size))
  return acc


def build_minibench(path: str = MINIBENCH_PATH, seed: int = 0) -> list[dict[str, Any]]:
  """Trains the mini-bench and writes ``[{config..., 'index', 'params', 'accuracy'}]`` as JSON to ``path``."""
  configs = [dict(c, index=i) for i, c in enumerate(minibench_configs(seed))]
  acc = train_configs(configs, seed=seed)
  rows = [dict(c, params=archtext.param_count(c), accuracy=round(float(a), 4)) for c, a in zip(configs, acc)]
  with open(path, "w") as f:
    json.dump(rows, f, indent=0)
  return rows


def load_minibench(path: str = MINIBENCH_PATH) -> list[dict[str, Any]]:
  """The shipped mini-bench table (tuples restored)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"load_minibench: no table at {path}; build it with "
                            "`python -m zoo.recipes.datasets.arch_bench` (trains the 320 nets, a few CPU minutes).")
  with open(path) as f:
    rows = json.load(f)
  for r in rows:
    for k in ("channels", "kernels", "pools"):
      if k in r:
        r[k] = tuple(r[k])
  return rows


def _config(row):
  return {k: v for k, v in row.items() if k not in ("params", "accuracy", "index")}


def minibench_split(rows, seed: int = 0, train_a: int = 150, train_b: int = 20):
  """Indices ``(train, test_a, test_b)`` into ``rows``: ``train_a`` A-nets and ``train_b`` B-nets for training,
  the other A- and B-nets held out (a seeded shuffle)."""
  rng = np.random.default_rng(seed)
  a = rng.permutation([i for i, r in enumerate(rows) if r["space"] == "A"])
  b = rng.permutation([i for i, r in enumerate(rows) if r["space"] == "B"])
  return np.concatenate([a[:train_a], b[:train_b]]), a[train_a:], b[train_b:]


def minibench_arrays(rows, *, attributes: bool = True, shapes: bool = True, max_length: int = 128):
  """``{'tokens', 'y', 'params', 'space'}`` arrays of the table's nets."""
  tok = archtext.ArchTokenizer()
  texts = [archtext.arch_to_text(_config(r), attributes=attributes, shapes=shapes) for r in rows]
  return {"tokens": tok.encode(texts, max_length), "y": np.asarray([r["accuracy"] for r in rows], np.float32),
          "params": np.asarray([r["params"] for r in rows], np.float32),
          "space": np.asarray([r["space"] == "B" for r in rows], np.int32)}


@data.register("onnx_minibench", version="1.0.0")
def onnx_minibench(seed: int = 0, attributes: bool = True, shapes: bool = True) -> data.Generated:
  """The shipped ONNX-Net mini-bench as chain_slim tokens; train 150 A + 20 B nets, test the rest."""
  rows = load_minibench()
  arrays = minibench_arrays(rows, attributes=attributes, shapes=shapes)
  tr, te_a, te_b = minibench_split(rows, seed)
  te = np.concatenate([te_a, te_b])
  return data.Generated({"train": {k: v[tr] for k, v in arrays.items()},
                         "test": {k: v[te] for k, v in arrays.items()}},
                        metadata={"vocab_size": archtext.ArchTokenizer().vocab_size, "max_length": 128})


# ----------------------------------------------------------------------------------------------- ArchBERT corpus


def _caption(c) -> str:
  if c["space"] == "A":
    norm = {"none": "no norm", "layer": "layernorm", "batch": "batchnorm"}[c["norm"]]
    return f"MLP, {c['depth']} dense ({c['activation']}) width {c['width']}, {norm}, 1 output dense"
  pools = sorted({p for p in c["pools"] if p != "none"})
  pool = " + " + "/".join(f"{p}pool" for p in pools) if pools else ", no pooling"
  ch = "-".join(str(x) for x in c["channels"])
  ks = "-".join(str(x) for x in c["kernels"])
  return f"CNN, {len(c['channels'])} conv ({c['activation']}) {ch} channels kernel {ks}{pool}, 1 dense"


def _facts(c) -> dict[str, bool]:
  conv = len(c.get("channels", ()))
  dense = c.get("depth", 0) + 1
  return {
      "it is a convolutional network": c["space"] == "B",
      "it has batch normalisation": c.get("norm") == "batch",
      "it has layer normalisation": c.get("norm") == "layer",
      "it uses max pooling": "max" in c.get("pools", ()),
      "it uses average pooling": "avg" in c.get("pools", ()),
      "it has more than 2 conv layers": conv > 2,
      "it has more than 2 dense layers": dense > 2,
      "it uses relu activations": c["activation"] == "relu",
      "it uses tanh activations": c["activation"] == "tanh",
      "it uses sigmoid activations": c["activation"] == "sigmoid",
      "it has a layer wider than 32": max(c.get("channels", ()) + (c.get("width", 0),)) > 32,
      "it has a kernel larger than 3": max(c.get("kernels", (0,))) > 3,
  }


STATEMENTS = tuple(_facts({"space": "A", "depth": 1, "width": 8, "activation": "relu", "norm": "none"}))


def _random_config(rng):
  act = _ACTS[int(rng.integers(len(_ACTS)))]
  if rng.random() < 0.5:
    return dict(space="A", depth=int(rng.integers(1, 5)), width=int(rng.choice((8, 16, 32, 64, 128))),
                activation=act, norm=_NORMS[int(rng.integers(3))])
  layers = int(rng.integers(1, 4))
  kind = ("max", "avg")[int(rng.integers(2))]
  return dict(space="B", channels=tuple(int(x) for x in rng.choice((4, 8, 16, 32), layers)),
              kernels=tuple(int(x) for x in rng.choice((1, 3, 5), layers)),
              pools=tuple(kind if p else "none" for p in rng.random(layers) < 0.5), activation=act)


def arch_corpus(n: int, seed: int = 0) -> dict[str, Any]:
  """``n`` distinct random configs of both spaces with ``captions``, and per config one reasoning statement
  (``statement`` index into :data:`STATEMENTS`) with its truth ``label``, balanced true/false."""
  rng = np.random.default_rng(seed)
  seen, configs = set(), []
  while len(configs) < n:
    c = _random_config(rng)
    key = json.dumps(c, sort_keys=True)
    if key not in seen:
      seen.add(key)
      configs.append(c)
  statement, label = [], []
  for c in configs:
    facts = _facts(c)
    want = bool(rng.random() < 0.5)
    options = [i for i, s in enumerate(STATEMENTS) if facts[s] == want] or list(range(len(STATEMENTS)))
    j = int(rng.choice(options))
    statement.append(j)
    label.append(int(facts[STATEMENTS[j]]))
  return {"configs": configs, "captions": [_caption(c) for c in configs], "statement": np.asarray(statement),
          "label": np.asarray(label, np.int32)}


def archbert_arrays(n: int, seed: int = 0, max_nodes: int = 16, text_length: int = 32) -> dict[str, np.ndarray]:
  """:func:`arch_corpus` as arrays: ``nodes [n, max_nodes, 7]``, ``adjacency [n, max_nodes, max_nodes]`` (uint8),
  ``caption`` / ``statement`` ids ``[n, text_length]`` (``zoo.archbert.CaptionTokenizer``), ``label [n]``."""
  from zoo import archbert  # pylint: disable=g-import-not-at-top
  corpus = arch_corpus(n, seed)
  graphs = [archbert.arch_nodes(c, max_nodes) for c in corpus["configs"]]
  tok = archbert.CaptionTokenizer()
  return {"nodes": np.stack([g[0] for g in graphs]), "adjacency": np.stack([g[1] for g in graphs]).astype(np.uint8),
          "caption": tok.encode(corpus["captions"], text_length),
          "statement": tok.encode([STATEMENTS[j] for j in corpus["statement"]], text_length),
          "label": corpus["label"]}


@data.register("arch_captions", version="1.0.0")
def arch_captions(num_train: int = 1800, num_test: int = 200, seed: int = 0) -> data.Generated:
  """ArchBERT corpus: distinct configs of both spaces as node tokens + adjacency, captions, statements, labels."""
  arrays = archbert_arrays(num_train + num_test, seed)
  return data.Generated({"train": {k: v[:num_train] for k, v in arrays.items()},
                         "test": {k: v[num_train:] for k, v in arrays.items()}})


if __name__ == "__main__":
  table = build_minibench()
  print(f"wrote {len(table)} nets to {MINIBENCH_PATH}")
