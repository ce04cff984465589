"""Architectures as text: real ONNX graphs of small MLP/CNN configs, the "chain_slim" text, and a text surrogate.

Paper: "ONNX-Net: Towards Universal Representations and Instant Performance Prediction for Neural Architectures",
Qin et al., 2025 (arXiv 2510.04938; official code github.com/shiwenqin/ONNX-Net). Every network is exported to an
ONNX graph and the graph is written as text; a language-model encoder reads the text and regresses the network's
accuracy, so one predictor serves any search space. The "chain_slim" encoding lists the graph's nodes in
topological order, each with its op type, key attributes, output shape and the nodes it reads.

Here (scaled down, as PAPERS.md block 33 states) the configs come from two small spaces, and the text is derived from
a real ONNX graph: :func:`to_onnx` builds it with ``onnx.helper`` (weights are graph inputs with shapes only, no
data), checks it with ``onnx.checker`` and runs ``onnx.shape_inference``; :func:`graph_nodes` reads the nodes back
(op type, attributes, inferred output shape, producer of each input) and :func:`arch_to_text` writes them, one line
per node::

  Conv k=3 s=1 p=1 [8,8,8] <- input
  Relu [8,8,8] <- 0
  MaxPool k=2 s=2 [8,4,4] <- 1

(shapes without the batch axis; ``<- i`` is the i-th node, ``<- input`` the graph input).

Configs (plain dicts; :func:`check_config` raises a ValueError naming the bad field, e.g. an unknown op type):

* space ``'A'``, MLPs on 64 features: ``{'space': 'A', 'depth': 1-4, 'width': int, 'activation': one of
  ACTIVATIONS, 'norm': 'none' | 'layer' | 'batch'}``: depth x (Gemm -> norm -> activation), then Gemm to 10 classes.
* space ``'B'``, CNNs on 8x8x1 images: ``{'space': 'B', 'channels': (c1, ...), 'kernels': (k1, ...), 'pools':
  ('none' | 'max' | 'avg', ...), 'activation': ...}``: per layer Conv(k, same) -> activation -> optional 2x2 pool,
  then Flatten and Gemm to 10 classes.

Public names:

* :func:`check_config`, :func:`to_onnx` ``(config) -> onnx.ModelProto``, :func:`graph_nodes` ``(model) -> list``,
  :func:`param_count` ``(config) -> int`` (from the graph's weight shapes).
* :func:`arch_to_text` ``(config | ModelProto, *, attributes=True, shapes=True) -> str``; the flags give the
  ablated encodings (no attributes / no shapes: op types and wiring only).
* :class:`ArchTokenizer`: a fixed word-level vocabulary (op types, attribute keys, integers 0..2048, node
  references); ``encode(texts, max_length) -> ids [n, max_length] int32`` (0 = padding); unknown words raise.
* :class:`ArchTextSurrogate` ``(tokens [b, l] int) -> [b]``: token embedding, :class:`zoo.transformer.Encoder`
  (bidirectional, padding masked), mean pooling over real tokens, a linear regression head.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo import transformer

__all__ = [
    "ACTIVATIONS", "ArchTextSurrogate", "ArchTokenizer", "NORMS", "POOLS", "arch_to_text", "check_config",
    "graph_nodes", "param_count", "to_onnx",
]

ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "Gelu", "elu": "Elu"}
"""Config activation name -> ONNX op type."""
NORMS = {"none": None, "layer": "LayerNormalization", "batch": "BatchNormalization"}
POOLS = {"none": None, "max": "MaxPool", "avg": "AveragePool"}
IN_FEATURES, IMAGE, CLASSES = 64, 8, 10
OPSET = 20  # Gelu is an ONNX op from opset 20


def check_config(config: Mapping[str, Any]) -> None:
  """Raises a ValueError naming the field when ``config`` is not a valid space-A or space-B config."""
  if not isinstance(config, Mapping):
    raise TypeError(f"check_config: `config` must be a dict; got {type(config).__name__}.")
  space = config.get("space")
  act = config.get("activation")
  if act not in ACTIVATIONS:
    raise ValueError(f"check_config: unknown op type for `activation`: {act!r}; expected one of "
                     f"{sorted(ACTIVATIONS)}.")
  if space == "A":
    if not isinstance(config.get("depth"), int) or not 1 <= config["depth"] <= 8:
      raise ValueError(f"check_config: space A `depth` must be an int in [1, 8]; got {config.get('depth')!r}.")
    if not isinstance(config.get("width"), int) or not 1 <= config["width"] <= 2048:
      raise ValueError(f"check_config: space A `width` must be an int in [1, 2048]; got {config.get('width')!r}.")
    if config.get("norm") not in NORMS:
      raise ValueError(f"check_config: unknown op type for `norm`: {config.get('norm')!r}; expected one of "
                       f"{sorted(NORMS)}.")
  elif space == "B":
    ch, ks, ps = (tuple(config.get(k, ())) for k in ("channels", "kernels", "pools"))
    if not 1 <= len(ch) <= 4 or len(ks) != len(ch) or len(ps) != len(ch):
      raise ValueError(f"check_config: space B needs 1-4 layers with equally long `channels`, `kernels`, `pools`; "
                       f"got {ch}, {ks}, {ps}.")
    if any(not isinstance(c, int) or not 1 <= c <= 64 for c in ch):
      raise ValueError(f"check_config: space B `channels` must be ints in [1, 64]; got {ch}.")
    if any(k not in (1, 3, 5, 7) for k in ks):
      raise ValueError(f"check_config: space B `kernels` must be odd in {{1, 3, 5, 7}}; got {ks}.")
    bad = [p for p in ps if p not in POOLS]
    if bad:
      raise ValueError(f"check_config: unknown op type for `pools`: {bad[0]!r}; expected one of {sorted(POOLS)}.")
    if sum(p != "none" for p in ps) > 3:
      raise ValueError(f"check_config: at most 3 pools fit an 8x8 image; got `pools`={ps}.")
  else:
    raise ValueError(f"check_config: `space` must be 'A' or 'B'; got {space!r}.")


def to_onnx(config: Mapping[str, Any]):
  """The ONNX graph of ``config`` (batch 1, float32), checked and shape-inferred."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import helper, TensorProto  # pylint: disable=g-import-not-at-top
  check_config(config)
  nodes, weights = [], []
  f32 = TensorProto.FLOAT

  def weight(name, shape):
    weights.append(helper.make_tensor_value_info(name, f32, list(shape)))
    return name

  def add(op, inputs, **attrs):
    out = f"t{len(nodes)}"
    nodes.append(helper.make_node(op, inputs, [out], name=f"n{len(nodes)}", **attrs))
    return out

  act = ACTIVATIONS[config["activation"]]
  if config["space"] == "A":
    x = inp = helper.make_tensor_value_info("input", f32, [1, IN_FEATURES])
    h, width_in = "input", IN_FEATURES
    for i in range(config["depth"]):
      w = config["width"]
      h = add("Gemm", [h, weight(f"w{i}", (w, width_in)), weight(f"b{i}", (w,))], transB=1)
      if config["norm"] == "layer":
        h = add("LayerNormalization", [h, weight(f"g{i}", (w,)), weight(f"be{i}", (w,))], axis=-1)
      elif config["norm"] == "batch":
        h = add("BatchNormalization", [h, weight(f"g{i}", (w,)), weight(f"be{i}", (w,)), weight(f"m{i}", (w,)),
                                       weight(f"v{i}", (w,))])
      h = add(act, [h])
      width_in = w
  else:
    x = inp = helper.make_tensor_value_info("input", f32, [1, 1, IMAGE, IMAGE])
    h, c_in, side = "input", 1, IMAGE
    for i, (c, k, p) in enumerate(zip(config["channels"], config["kernels"], config["pools"])):
      h = add("Conv", [h, weight(f"w{i}", (c, c_in, k, k)), weight(f"b{i}", (c,))], kernel_shape=[k, k],
              pads=[k // 2] * 4, strides=[1, 1])
      h = add(act, [h])
      if p != "none":
        h = add(POOLS[p], [h], kernel_shape=[2, 2], strides=[2, 2])
        side //= 2
      c_in = c
    h = add("Flatten", [h], axis=1)
    width_in = c_in * side * side
  i = len(weights)
  h = add("Gemm", [h, weight(f"w{i}", (CLASSES, width_in)), weight(f"b{i}", (CLASSES,))], transB=1)
  out = helper.make_tensor_value_info(h, f32, [1, CLASSES])
  graph = helper.make_graph(nodes, f"space{config['space']}", [inp] + weights, [out])
  del x
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
  onnx.checker.check_model(model)
  return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _shape(value_info) -> tuple[int, ...]:
  return tuple(int(d.dim_value) for d in value_info.type.tensor_type.shape.dim)


def graph_nodes(model) -> list[dict[str, Any]]:
  """The nodes of an ONNX ``model`` in topological order: ``{'op', 'attrs', 'shape', 'inputs'}``.

  ``attrs`` are the key integer attributes (kernel, stride, pad as one number each: the spaces are square), ``shape``
  the inferred output shape without the batch axis, ``inputs`` the indices of the producing nodes (-1: the graph
  input); weights (graph inputs other than the first) are not listed.
  """
  from onnx import helper  # pylint: disable=g-import-not-at-top
  g = model.graph
  shapes = {v.name: _shape(v) for v in list(g.value_info) + list(g.output) + list(g.input)}
  data_input = g.input[0].name
  producer, out = {data_input: -1}, []
  for node in g.node:
    refs = []
    for name in node.input:
      if name in producer:
        refs.append(producer[name])
      elif name not in shapes:
        raise ValueError(f"graph_nodes: node {node.name} reads {name!r} before it is produced (not topological).")
    attrs = {}
    for a in node.attribute:
      v = helper.get_attribute_value(a)
      key = {"kernel_shape": "k", "strides": "s", "pads": "p"}.get(a.name)
      if key is not None:
        attrs[key] = int(v[0])
    shape = shapes.get(node.output[0])
    if not shape:
      raise ValueError(f"graph_nodes: no inferred shape for the output of node {node.name} ({node.op_type}).")
    out.append({"op": node.op_type, "attrs": attrs, "shape": shape[1:], "inputs": refs})
    producer[node.output[0]] = len(out) - 1
  return out


def param_count(config: Mapping[str, Any]) -> int:
  """Trainable parameters of ``config``, summed over its ONNX graph's weight inputs (BatchNorm statistics
  excluded)."""
  model = to_onnx(config)
  return int(sum(np.prod(_shape(v)) for v in model.graph.input[1:] if not v.name[0] in "mv"))


def arch_to_text(arch, *, attributes: bool = True, shapes: bool = True) -> str:
  """The chain_slim text of a config or an ONNX ``ModelProto`` (module docstring); one line per node."""
  model = arch if hasattr(arch, "graph") else to_onnx(arch)
  lines = []
  for node in graph_nodes(model):
    parts = [node["op"]]
    if attributes:
      parts += [f"{k}={v}" for k, v in node["attrs"].items()]
    if shapes:
      parts.append("[" + ",".join(str(d) for d in node["shape"]) + "]")
    parts.append("<- " + ",".join("input" if r < 0 else str(r) for r in node["inputs"]))
    lines.append(" ".join(parts))
  return "\n".join(lines)


_WORD = re.compile(r"<-|\[|[A-Za-z_]+|\d+|[^\s]")
_DROP = {",", "]", "="}


class ArchTokenizer:
  """Word-level tokenizer of chain_slim text with a fixed vocabulary (no data-dependent fitting).

  Words: the ONNX op types of both spaces, attribute keys ``k s p``, ``input``, ``<-`` (inputs follow), ``[``
  (a shape follows), a line break token ``|``, integers ``0..max_int``. ``,`` ``]`` ``=`` are dropped. Id 0 is
  padding, 1 a [CLS]-like start token, 2 [MASK].
  """

  def __init__(self, max_int: int = 2048):
    ops = sorted(set(ACTIVATIONS.values()) | {v for v in NORMS.values() if v} | {v for v in POOLS.values() if v}
                 | {"Gemm", "Conv", "Flatten"})
    words = ["<pad>", "<cls>", "<mask>", "|", "<-", "[", "input", "k", "s", "p"] + ops
    words += [str(i) for i in range(max_int + 1)]
    self.vocab = {w: i for i, w in enumerate(words)}
    self.words = words

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  def tokenize(self, text: str) -> list[str]:
    out = ["<cls>"]
    for line in text.split("\n"):
      out += [w for w in _WORD.findall(line) if w not in _DROP] + ["|"]
    return out

  def encode(self, texts: str | Sequence[str], max_length: int) -> np.ndarray:
    """``texts`` -> ids ``[n, max_length]`` int32, zero-padded; raises on an unknown word or a too long text."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    ids = np.zeros((len(texts), max_length), np.int32)
    for i, text in enumerate(texts):
      words = self.tokenize(text)
      unknown = [w for w in words if w not in self.vocab]
      if unknown:
        raise ValueError(f"ArchTokenizer.encode: unknown word {unknown[0]!r} in text {i} (an op type or number "
                         f"outside the vocabulary of {self.vocab_size} words).")
      if len(words) > max_length:
        raise ValueError(f"ArchTokenizer.encode: text {i} has {len(words)} tokens > max_length={max_length}.")
      ids[i, :len(words)] = [self.vocab[w] for w in words]
    return ids


class ArchTextSurrogate(nn.Module):
  """Accuracy regressor over chain_slim tokens: embedding + bidirectional :class:`zoo.transformer.Encoder` + mean
  pooling over real tokens + a linear head (the paper's fine-tuned LM encoder, here small and trained from scratch).

  Attributes:
    vocab_size: token vocabulary (``ArchTokenizer().vocab_size``).
    features, num_layers, num_heads, mlp_dim, max_length, dropout_rate: of the encoder.
  """
  vocab_size: int
  features: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  max_length: int = 128
  dropout_rate: float = 0.0
  impl: str = "auto"

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
    """``tokens [batch, length]`` int (0 = padding) -> predicted (standardised) accuracy ``[batch]``."""
    where = type(self).__name__
    layers.check_shape(tokens, "tokens", "batch length", where=where, dtype="integer")
    if tokens.shape[1] > self.max_length:
      raise ValueError(f"{where}: `tokens` has length {tokens.shape[1]} > max_length={self.max_length}.")
    valid = tokens != 0
    x = layers.Embed(self.vocab_size, self.features, name="embed",
                     embedding_init=layers.partitioned(nn.initializers.normal(0.02), ("vocab", "embed")))(tokens)
    h = transformer.Encoder(self.num_layers, self.num_heads, self.mlp_dim, dropout_rate=self.dropout_rate,
                            max_length=self.max_length, impl=self.impl, name="encoder")(x, mask=valid, train=train)
    w = valid.astype(h.dtype)[..., None]
    pooled = (h * w).sum(1) / jnp.maximum(w.sum(1), 1.0)
    return layers.dense(1, axes=("embed", None), name="head")(pooled)[:, 0]
