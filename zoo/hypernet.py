"""Hypernetworks: one module that emits the weights of any zoo model.

One :class:`HyperNetwork` serves three papers:

* "A Brief Review of Hypernetworks in Deep Learning" (Chauhan, Zhou, Lu, Molaei, Clifton, 2023, arXiv 2306.06955):
  the survey's design axes are the module's attributes. Conditioning (``conditioning``): a learned task embedding
  (``'task'``), a data / hyperparameter vector (``'data'``), noise ``z ~ N(0, I)`` (``'noise'``), or nothing
  (``'none'``, a static hypernetwork that compresses one weight set, Ha et al. 2017). Output (``output``): all
  weights at once (``'full'``), one layer at a time with learned layer embeddings (``'component'``), or fixed-size
  chunks with learned chunk embeddings (``'chunk'``, von Oswald et al. 2020). Architecture (``arch``): an MLP, self-
  attention over the chunk tokens, or an LSTM over the chunks. Weights are dynamic when they depend on the input
  (``'data'`` conditioning) and static otherwise. Initialisation (``init_scheme``): hyperfan-in / hyperfan-out (Chang,
  Flokas, Lipson, "Principled Weight Initialization for Hypernetworks", ICLR 2020) or the standard (LeCun) init.
* "Magnitude Invariant Parametrizations Improve Hypernetwork Learning" (Ortiz, Guttag, Dalca, ICLR 2024, arXiv
  2304.07645): ``input_encoding='cossin'`` maps ``gamma in [0, 1]^k`` to ``[cos(pi gamma / 2), sin(pi gamma / 2)]``
  (constant norm), and ``residual=True`` outputs ``theta = theta_0 + h(E(gamma))`` with ``theta_0`` an independent
  learnable weight set in the target's standard init (in the reference code, hyperlight, ``theta_0`` is the output
  layer's bias; the same thing). The default hypernetwork has zero biases and ReLU, so ``h(c gamma) = c h(gamma)``:
  the magnitude of the weights follows ``|gamma|``, the problem MIP fixes.
* "Continual Learning with Dependency Preserving Hypernetworks" (Chandra, Varshney, Srijith, Gupta, WACV 2023,
  arXiv 2209.07712): ``arch='lstm'`` with ``output='chunk'``: an LSTM runs over the chunks in layer order with input
  ``[e_t; c_l]`` and a linear head turns each hidden state into chunk ``theta_l``, so later chunks depend on earlier
  ones. ``arch='mlp'`` is the independent-chunk hypernetwork of von Oswald et al. (the paper's baseline).

The target is any Linen module: :func:`target_shapes` reads its parameter shapes with ``jax.eval_shape``, and
:func:`apply_target` applies it with a generated weight pytree (``model.apply({'params': weights}, x)``).

Public names:

* ``HyperNetwork(target, target_input, ...)`` (``target``: a module, or ``{'name': 'core.MLP', **fields}`` from a
  config): ``cond -> weights``, a pytree shaped like the target's
  ``'params'`` with a leading batch axis on every leaf. ``cond``: task ids ``[batch]`` int (``'task'``), a vector
  ``[batch, cond_dim]`` float (``'data'``; any trailing shape is flattened), ``z [batch, embedding_dim]`` float or an
  int sample count (``'noise'``, drawn from the ``'noise'`` rng), or an int batch size (``'none'``).
* ``HyperModel(hypernet)`` (``hypernet``: a ``HyperNetwork`` or a dict of its fields, from a config): a
  trainer-facing model. ``inputs = {cond_key: cond [batch, ...], x_key: x [batch,
  ...]}`` -> the target's outputs ``[batch, ...]``, each example through the weights generated for its condition.
* ``TaskEmbedding(num_tasks, features)``: ids ``[batch]`` -> ``[batch, features]``, N(0, 1) init, ids range-checked.
* ``ChunkEmbedding(num_chunks, features)``: ``() -> [num_chunks, features]`` learned, N(0, 1) init.
* ``hyperfan_init(fan, hidden, gain)``: the head-kernel initializer with per-output-column variance
  ``gain / (fan_p * hidden)`` (``fan``: one fan per output column).
* ``target_shapes(model, target_input)``, ``apply_target(model, weights, x, batched=False)``,
  ``flat_size(shapes)``, ``target_fans(shapes, mode)``, ``encode_input(gamma, mode)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo import registry
from zoo.kernels import attention as attention_lib
from zoo.layers import check_shape, dense

__all__ = ["ChunkEmbedding", "HyperModel", "HyperNetwork", "TaskEmbedding", "apply_target", "encode_input",
           "flat_size", "hyperfan_init", "target_fans", "target_shapes"]

_CONDITIONING = ("task", "data", "noise", "none")
_OUTPUTS = ("full", "component", "chunk")
_ARCHS = ("mlp", "attention", "lstm")
_INITS = ("hyperfan_in", "hyperfan_out", "default")
_ENCODINGS = ("none", "cossin")


def _as_dict(block, what: str) -> dict:
  if hasattr(block, "to_dict"):
    block = block.to_dict()
  if not hasattr(block, "keys"):
    raise TypeError(f"HyperNetwork: `{what}` must be a Linen module or a dict of its fields; got "
                    f"{type(block).__name__}.")
  return {k: registry._tuples(v) for k, v in dict(block).items()}  # pylint: disable=protected-access


def _build(block, what: str) -> nn.Module:
  kwargs = _as_dict(block, what)
  if "name" not in kwargs:
    raise ValueError(f"HyperNetwork: a `{what}` dict needs a 'name' ('family.Class', e.g. 'core.MLP'); got keys "
                     f"{sorted(kwargs)}.")
  return registry.build_model(kwargs.pop("name"), **kwargs)


def target_shapes(model: nn.Module, target_input: Sequence[int]):
  """The ``'params'`` shapes of ``model`` applied to one input of shape ``target_input`` (no batch axis).

  Returns a nested dict of ``jax.ShapeDtypeStruct`` (nothing is computed: ``jax.eval_shape``).
  """
  model = model.clone(parent=None)
  x = jax.ShapeDtypeStruct((1, *target_input), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  if "params" not in variables:
    raise ValueError(f"target_shapes: {type(model).__name__} has no 'params' to generate.")
  return nn.meta.unbox(variables["params"])


def flat_size(shapes) -> int:
  """Total number of target weights."""
  return int(sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)))


def target_fans(shapes, mode: str = "hyperfan_in") -> tuple[np.ndarray, np.ndarray]:
  """Per flat target weight: its layer's fan (in or out) and whether it is a bias (rank-1 leaf).

  Fans follow the flattening order of :class:`HyperNetwork`. A kernel ``[..., in, out]`` has fan-in
  ``prod(shape[:-1])`` and fan-out ``shape[-1] * prod(shape[:-2])`` (the receptive field counts for convolutions).
  """
  fans, is_bias = [], []
  for leaf in jax.tree.leaves(shapes):
    shape, n = leaf.shape, int(np.prod(leaf.shape))
    if len(shape) <= 1:
      fan = 1
    elif mode == "hyperfan_out":
      fan = shape[-1] * int(np.prod(shape[:-2]))
    else:
      fan = int(np.prod(shape[:-1]))
    fans.append(np.full(n, fan, np.float64))
    is_bias.append(np.full(n, len(shape) <= 1))
  return np.concatenate(fans), np.concatenate(is_bias)


def hyperfan_init(variance: np.ndarray):
  """A head-kernel initializer ``[hidden, out]`` with column ``p`` drawn from ``N(0, variance[p])``.

  Chang et al. (2020): with head input ``e`` of ``hidden`` units and unit second moment, hyperfan-in sets
  ``Var(H_{:,p}) = gain / (2 fan_in_p hidden)`` for a kernel entry and ``gain / (2 hidden)`` for a bias entry, so
  that the target's preactivations keep the variance of its inputs (half from the weights, half from the bias);
  :class:`HyperNetwork` computes ``variance`` from the target's shapes.
  """
  variance = np.asarray(variance, np.float32)

  def init(key, shape, dtype=jnp.float32):
    if shape[-1] != variance.shape[0]:
      raise ValueError(f"hyperfan_init: head has {shape[-1]} outputs but {variance.shape[0]} variances were given.")
    return (jax.random.normal(key, shape, dtype) * jnp.sqrt(jnp.asarray(variance, dtype))).astype(dtype)
  return init


def encode_input(gamma, mode: str = "cossin"):
  """MIP's input encoding: ``[..., k] -> [..., 2k]`` = ``[cos(pi gamma / 2), sin(pi gamma / 2)]`` (or identity)."""
  if mode == "none":
    return gamma
  if mode != "cossin":
    raise ValueError(f"encode_input: `mode` must be one of {_ENCODINGS}; got {mode!r}.")
  angle = jnp.pi * gamma / 2.0
  return jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def apply_target(model: nn.Module, weights, x, *, batched: bool = False, **kwargs):
  """``model`` applied to ``x`` with the generated ``weights`` (a ``'params'`` pytree).

  With ``batched=True`` every leaf of ``weights`` has a leading axis of the size of ``x``'s first axis and each
  example ``x[i]`` goes through its own weights ``weights[i]`` (output ``[batch, ...]``).
  """
  model = model.clone(parent=None)
  if not batched:
    return model.apply({"params": weights}, x, **kwargs)
  return jax.vmap(lambda w, xi: model.apply({"params": w}, xi[None], **kwargs)[0])(weights, x)


class TaskEmbedding(nn.Module):
  """Learned task embeddings ``e_t`` (N(0, 1) init). ids ``[batch]`` int -> ``[batch, features]``."""
  num_tasks: int
  features: int = 8

  @nn.compact
  def __call__(self, ids):
    check_shape(ids, "task ids", "batch", where="TaskEmbedding", dtype="integer")
    return layers.Embed(self.num_tasks, self.features, embedding_init=nn.initializers.normal(1.0),
                        name="embedding")(ids)


class ChunkEmbedding(nn.Module):
  """Learned chunk (or layer) embeddings ``c_l`` (N(0, 1) init): ``() -> [num_chunks, features]``."""
  num_chunks: int
  features: int = 8

  @nn.compact
  def __call__(self):
    return self.param("embedding", layers.partitioned(nn.initializers.normal(1.0), (None, "embed")),
                      (self.num_chunks, self.features))


class HyperNetwork(nn.Module):
  """Generates the weights of ``target`` from a condition (module docstring for the papers).

  Attributes:
    target: any Linen module; the weights of its ``'params'`` are generated.
    target_input: shape of one input example of the target, without the batch axis (e.g. ``(1,)``, ``(8, 8, 1)``).
    conditioning: ``'task'`` | ``'data'`` | ``'noise'`` | ``'none'``.
    num_tasks: number of task embeddings (``'task'``).
    embedding_dim: size of the task embedding / noise vector / static embedding.
    output: ``'full'`` (one head emits every weight), ``'component'`` (one target layer per step, with a learned
      layer embedding; the shared head emits the largest layer and each layer keeps its first entries), ``'chunk'``
      (``chunk_size`` weights per step, with learned chunk embeddings; the last chunk is padded).
    chunk_size: weights per chunk (``'chunk'``).
    chunk_embedding_dim: size of the chunk / layer embeddings.
    arch: ``'mlp'`` (steps independent), ``'attention'`` (self-attention over the steps' tokens) or ``'lstm'``
      (an LSTM over the steps in layer order: the dependency-preserving hypernetwork); the last two need
      ``output != 'full'``.
    hidden: hidden widths of the MLP body (``'mlp'``), or ``(width,) * layers`` of the attention / LSTM body.
    num_heads: attention heads (``'attention'``).
    activation: the body's nonlinearity (a ``flax.linen`` name or a function).
    init_scheme: ``'hyperfan_in'`` | ``'hyperfan_out'`` (Chang et al. 2020) | ``'default'`` (LeCun normal head).
    target_gain: the target's preactivation gain in the hyperfan variances (1: preactivation variance = input
      variance, Chang et al.'s setting; 2 keeps it through ReLU layers).
    input_encoding: ``'none'`` | ``'cossin'`` (MIP), for ``'data'`` conditioning in ``[0, 1]``.
    residual: MIP's ``theta = theta_0 + h(E(gamma))``, ``theta_0`` learnable in the target's standard init
      (LeCun-normal kernels, zero biases).
    residual_scale: with ``residual=True``, multiplies the head's initial kernel, so that ``theta_0`` dominates at
      init (MIP's "last layer scaled small"; 0.1 is our choice, the paper gives no single value).
    use_bias: biases in the hypernetwork's own layers (zero-initialised either way).
  """
  target: Any
  target_input: Sequence[int]
  conditioning: str = "task"
  num_tasks: int | None = None
  embedding_dim: int = 8
  output: str = "chunk"
  chunk_size: int = 64
  chunk_embedding_dim: int = 8
  arch: str = "mlp"
  hidden: Sequence[int] = (64, 64)
  num_heads: int = 2
  activation: Any = "relu"
  init_scheme: str = "hyperfan_in"
  target_gain: float = 1.0
  input_encoding: str = "none"
  residual: bool = False
  residual_scale: float = 0.1
  use_bias: bool = True

  def __post_init__(self):
    # A config names the target as {'name': 'family.Class', **fields} (the registry builds it).
    if not isinstance(self.target, nn.Module):
      object.__setattr__(self, "target", _build(self.target, "target"))
    super().__post_init__()

  def _check_config(self):
    where = "HyperNetwork"
    for name, value, options in (("conditioning", self.conditioning, _CONDITIONING), ("output", self.output, _OUTPUTS),
                                 ("arch", self.arch, _ARCHS), ("init_scheme", self.init_scheme, _INITS),
                                 ("input_encoding", self.input_encoding, _ENCODINGS)):
      if value not in options:
        raise ValueError(f"{where}: `{name}` must be one of {options}; got {value!r}.")
    if self.conditioning == "task" and (self.num_tasks is None or self.num_tasks < 1):
      raise ValueError(f"{where}: conditioning='task' needs `num_tasks` >= 1; got {self.num_tasks!r}.")
    if self.arch != "mlp" and self.output == "full":
      raise ValueError(f"{where}: arch={self.arch!r} runs over chunks or components; use output='chunk' or "
                       "'component' (output='full' has a single step).")
    if self.output == "chunk" and self.chunk_size < 1:
      raise ValueError(f"{where}: `chunk_size` must be >= 1; got {self.chunk_size}.")
    if not self.hidden:
      raise ValueError(f"{where}: `hidden` must list at least one width.")
    if self.arch == "attention" and self.hidden[0] % self.num_heads:
      raise ValueError(f"{where}: attention width hidden[0]={self.hidden[0]} must be divisible by "
                       f"num_heads={self.num_heads}.")

  # -- the target's layout ---------------------------------------------------------------------------------------

  def layout(self):
    """``(shapes, units, unit_size, index)``: target shapes; steps; weights per step; flat target index per
    generated entry (``-1`` = padding), an int array ``[units, unit_size]``."""
    shapes = target_shapes(self.target, tuple(self.target_input))
    total = flat_size(shapes)
    if self.output == "full":
      return shapes, 1, total, np.arange(total)[None]
    if self.output == "chunk":
      units = -(-total // self.chunk_size)
      index = np.arange(units * self.chunk_size)
      return shapes, units, self.chunk_size, np.where(index < total, index, -1).reshape(units, self.chunk_size)
    # component: one top-level entry of the params tree (a layer) per step
    sizes = [flat_size(shapes[k]) for k in shapes]
    width = max(sizes)
    index, start = np.full((len(sizes), width), -1), 0
    for i, n in enumerate(sizes):
      index[i, :n] = np.arange(start, start + n)
      start += n
    return shapes, len(sizes), width, index

  def _head_variance(self, index, shapes, hidden: int) -> np.ndarray:
    """Per head column, the hyperfan variance.

    ``'full'``: exact (Chang et al.). Columns shared by several steps (``'chunk'``, ``'component'``) cannot give
    every target entry its own variance: they take the median over the steps of the kernel variance
    ``gain / (fan * hidden)`` (a column holds mostly kernel entries; a few bias entries then start small).
    """
    fans, is_bias = target_fans(shapes, self.init_scheme)
    if self.output == "full":
      if self.init_scheme == "hyperfan_in":
        # Chang et al.: half of the preactivation variance from the weights, half from the bias.
        var = np.where(is_bias, self.target_gain / (2.0 * hidden), self.target_gain / (2.0 * fans * hidden))
      else:  # hyperfan_out on the kernels; biases start at 0 as in the standard init
        var = np.where(is_bias, 0.0, self.target_gain / (fans * hidden))
      return var[index[0]]
    kernel_fans = np.where(is_bias, np.nan, fans)
    per = np.where(index >= 0, kernel_fans[np.maximum(index, 0)], np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # an all-padding / all-bias column
      fan = np.nanmedian(per, axis=0)
    fan = np.where(np.isnan(fan), np.nanmedian(kernel_fans), fan)
    return self.target_gain / (fan * hidden)

  # -- the generator -----------------------------------------------------------------------------------------------

  def _embedding(self, cond):
    where = "HyperNetwork"
    if self.conditioning == "task":
      return TaskEmbedding(self.num_tasks, self.embedding_dim, name="task_embedding")(cond)
    if self.conditioning == "data":
      check_shape(cond, "cond", "batch ...", where=where, dtype="floating")
      flat = jnp.reshape(cond, (cond.shape[0], -1)).astype(jnp.float32)
      return encode_input(flat, self.input_encoding)
    if self.conditioning == "noise":
      if isinstance(cond, (int, np.integer)):
        if cond < 1:
          raise ValueError(f"{where}: a noise sample count must be >= 1; got {cond}.")
        return jax.random.normal(self.make_rng("noise"), (int(cond), self.embedding_dim))
      check_shape(cond, "cond (noise z)", "batch features", where=where, dtype="floating",
                  features=self.embedding_dim)
      return cond.astype(jnp.float32)
    # 'none': one learned embedding shared by every call (a static hypernetwork)
    if not isinstance(cond, (int, np.integer)) or cond < 1:
      raise ValueError(f"{where}: conditioning='none' takes the number of weight sets to emit (an int >= 1); got "
                       f"{cond!r}.")
    e = self.param("static_embedding", layers.partitioned(nn.initializers.normal(1.0), ("embed",)),
                   (self.embedding_dim,))
    return jnp.broadcast_to(e, (int(cond), self.embedding_dim))

  def _body(self, tokens):
    """``tokens [batch, units, d] -> [batch, units, hidden[-1]]``."""
    act = nn.activation.__dict__.get(self.activation) if isinstance(self.activation, str) else self.activation
    if act is None or not callable(act):
      raise ValueError(f"HyperNetwork: unknown `activation` {self.activation!r}.")
    he = nn.initializers.variance_scaling(2.0, "fan_in", "normal")  # He init keeps E[h^2] through ReLU layers
    if self.arch == "mlp":
      h = tokens
      for i, width in enumerate(self.hidden):
        h = act(dense(width, kernel_init=he, use_bias=self.use_bias, name=f"body_{i}")(h))
      return h
    if self.arch == "lstm":
      width = self.hidden[0]
      h = tokens
      for i in range(len(self.hidden)):
        h = nn.RNN(nn.OptimizedLSTMCell(width), name=f"lstm_{i}")(h)
      return h
    width = self.hidden[0]
    h = dense(width, kernel_init=he, use_bias=self.use_bias, name="embed_tokens")(tokens)
    head_dim = width // self.num_heads
    for i in range(len(self.hidden)):
      y = layers.layer_norm(name=f"ln_{i}")(h)
      qkv = dense(3 * width, use_bias=self.use_bias, name=f"qkv_{i}")(y)
      q, k, v = (t.reshape(*t.shape[:-1], self.num_heads, head_dim) for t in jnp.split(qkv, 3, axis=-1))
      out = attention_lib.attention(q, k, v).reshape(h.shape)
      h = h + dense(width, use_bias=self.use_bias, name=f"attn_out_{i}")(out)
      y = layers.layer_norm(name=f"ln_mlp_{i}")(h)
      h = h + dense(width, use_bias=self.use_bias, name=f"mlp_out_{i}")(
          act(dense(2 * width, kernel_init=he, use_bias=self.use_bias, name=f"mlp_in_{i}")(y)))
    return h

  @nn.compact
  def __call__(self, cond):
    self._check_config()
    shapes, units, unit_size, index = self.layout()
    e = self._embedding(cond)  # [batch, d]
    batch = e.shape[0]
    tokens = e[:, None, :]
    if self.output != "full":
      c = ChunkEmbedding(units, self.chunk_embedding_dim, name="chunk_embedding")()
      tokens = jnp.concatenate([jnp.broadcast_to(tokens, (batch, units, e.shape[-1])),
                                jnp.broadcast_to(c[None], (batch, units, c.shape[-1]))], axis=-1)
    h = self._body(tokens)
    if self.init_scheme == "default":
      head_init = nn.initializers.lecun_normal()
    else:
      head_init = hyperfan_init(self._head_variance(index, shapes, h.shape[-1]))
    if self.residual and self.residual_scale != 1.0:
      base, scale = head_init, self.residual_scale
      head_init = lambda key, shape, dtype=jnp.float32: scale * base(key, shape, dtype)  # noqa: E731
    out = dense(unit_size, kernel_init=head_init, use_bias=self.use_bias, axes=("mlp", None), name="head")(h)
    # Gather the flat target vector from the generated steps (padding entries are dropped).
    total = flat_size(shapes)
    position = np.zeros(total, np.int64)
    valid = index >= 0
    position[index[valid]] = np.flatnonzero(valid)
    flat = out.reshape(batch, units * unit_size)[:, position]  # [batch, total]
    if self.residual:
      theta0 = self.param("theta0", self._theta0_init(shapes), (total,))
      flat = flat + theta0[None]
    leaves, treedef = jax.tree.flatten(shapes)
    splits = np.cumsum([int(np.prod(s.shape)) for s in leaves])[:-1]
    parts = jnp.split(flat, splits, axis=-1)
    return jax.tree.unflatten(treedef, [p.reshape(batch, *s.shape) for p, s in zip(parts, leaves)])

  def _theta0_init(self, shapes):
    """The target's standard init, flattened: LeCun-normal kernels (variance 1 / fan_in), zero biases."""
    fans, is_bias = target_fans(shapes, "hyperfan_in")
    std = np.where(is_bias, 0.0, 1.0 / np.sqrt(fans)).astype(np.float32)

    def init(key, shape, dtype=jnp.float32):
      return jax.random.normal(key, shape, dtype) * jnp.asarray(std, dtype)
    return init


def check_indices_ok(ids, num_tasks: int) -> bool:
  """Task ids ``[batch]`` int: a ValueError when concrete and out of range; False when traced (not checkable)."""
  check_shape(ids, "task", "batch", where="HyperModel", dtype="integer")
  return layers.check_indices(ids, "task", num_tasks, where="HyperModel")


class HyperModel(nn.Module):
  """A hypernetwork and its target as one model: each example goes through the weights of its condition.

  ``inputs = {cond_key: cond [batch, ...], x_key: x [batch, *target_input]}`` -> target outputs ``[batch, ...]``.
  Methods: ``weights(cond)`` -> the generated pytree (leading batch axis).
  """
  hypernet: Any
  cond_key: str = "task"
  x_key: str = "x"

  def __post_init__(self):
    # A config gives the hypernetwork as a dict of HyperNetwork fields (its target as {'name': ..., ...}).
    if not isinstance(self.hypernet, nn.Module):
      object.__setattr__(self, "hypernet", HyperNetwork(**_as_dict(self.hypernet, "hypernet")))
    super().__post_init__()

  def weights(self, cond):
    return self.hypernet(cond)

  def __call__(self, inputs):
    if not isinstance(inputs, dict) or self.cond_key not in inputs or self.x_key not in inputs:
      got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
      raise ValueError(f"HyperModel: inputs must be a dict with keys {self.cond_key!r} (the condition) and "
                       f"{self.x_key!r} (the target's input); got {got}.")
    cond, x = inputs[self.cond_key], inputs[self.x_key]
    check_shape(x, self.x_key, "batch " + " ".join(f"d{i}" for i in range(len(self.hypernet.target_input))),
                where="HyperModel", **{f"d{i}": n for i, n in enumerate(self.hypernet.target_input)})
    if hasattr(cond, "shape") and cond.shape[:1] != x.shape[:1]:
      raise ValueError(f"HyperModel: `{self.cond_key}` and `{self.x_key}` must have the same batch size; got "
                       f"{tuple(cond.shape)} and {tuple(x.shape)}.")
    hn = self.hypernet
    if hn.conditioning == "task":
      # One weight set per task, gathered per example: the generator runs num_tasks times, not batch times.
      if not check_indices_ok(cond, hn.num_tasks):
        cond = jnp.where((cond < 0) | (cond >= hn.num_tasks), hn.num_tasks, cond)  # traced: out of range -> NaN
      table = hn(jnp.arange(hn.num_tasks))
      weights = jax.tree.map(lambda w: jnp.take(w, cond, axis=0, mode="fill", fill_value=jnp.nan), table)
    elif hn.conditioning == "none":
      weights = jax.tree.map(lambda w: jnp.broadcast_to(w, (x.shape[0], *w.shape[1:])), hn(1))
    else:
      weights = hn(cond if hasattr(cond, "shape") else x.shape[0])
    return apply_target(hn.target, weights, x, batched=True)
