"""The classic blocks every family reuses: MLP, a LeNet-style ConvNet, recurrent encoders and autoencoders.

From "A Review of Deep Learning with Special Emphasis on Architectures, Applications and Recent Trends"
(Sengupta et al., 2019, arXiv:1905.13294), which surveys these architectures and, as an application, fault
detection with an autoencoder trained on normal data only (``zoo.recipes.procedures.fault_detection``).

Every module is a Flax Linen module whose parameters carry logical axis names (``zoo.layers``), checks its input
once at the boundary (a wrong rank, size or dtype raises a ``ValueError``/``TypeError`` naming the argument), and is
called as ``model.apply(variables, x, train=...)``.

Public names:

* :class:`MLP` ``(features, activation=relu, dropout_rate=0)``: a multilayer perceptron, the last layer linear.
  ``x: [batch, ...]`` (trailing dims flattened) -> ``[batch, features[-1]]``; with ``flatten=False`` it acts on
  the last axis, ``x: [..., in] -> [..., features[-1]]``.
* :class:`ConvNet` ``(num_classes, features=(6, 16), hidden=(120, 84))``: LeNet-style (LeCun et al., 1998)
  convolution/pooling stack and a dense head. ``x: [batch, height, width, channels]`` -> logits
  ``[batch, num_classes]``.
* Recurrent encoders over ``x: [batch, time, in_features]`` (float) or token ids ``[batch, time]`` (int, when
  ``vocab_size`` is set), scanned with ``nn.RNN`` over flax's own cells:

  - :class:`ElmanRNN` (``nn.SimpleCell``, h_t = tanh(W x_t + U h_{t-1} + b); Elman, 1990),
  - :class:`LSTM` (``nn.OptimizedLSTMCell``; Hochreiter & Schmidhuber, 1997) with the forget-gate bias initialised
    to ``forget_bias = 1`` (Gers et al., 2000; the review's recommendation), all other biases 0; ``gated=False``
    fixes every gate open, ``memory_cell=False`` cuts the cell's self-connection (the two ablations),
  - :class:`GRU` (``nn.GRUCell``; Cho et al., 2014).

  Without ``num_classes`` they return every step's hidden state ``[batch, time, features]``; with it, logits
  ``[batch, num_classes]`` of a linear classifier on the last step's hidden state.
* Autoencoders, ``x: [batch, ...]`` float -> reconstruction of the same shape (trailing dims are flattened inside):

  - :class:`Autoencoder` ``(latent, hidden=(64,))``: encoder MLP ``hidden -> latent`` (linear bottleneck), decoder
    MLP ``reversed(hidden) -> input size``; ``encode(x) -> [batch, latent]``, ``decode(z, shape) -> [batch, *shape]``.
  - :class:`DenoisingAutoencoder`: the same, but during training (``train=True``) the input is corrupted with the
    ``'noise'`` rng (masking noise or additive Gaussian noise; Vincent et al., 2008) and the clean input is the
    target (the ``reconstruction`` task compares the output with the clean batch).
  - :class:`SparseAutoencoder` ``(latent, sparsity_target=0.05, sparsity_weight=0.1)``: sigmoid hidden units with
    the penalty ``sparsity_weight * sum_j KL(rho || rho_hat_j)``, rho_hat_j the batch-mean activation of unit j
    (Ng's sparse autoencoder notes), reported as ``self.sow('losses', 'sparsity', value)`` so the backprop procedure
    adds it to the reconstruction loss.

* :func:`reconstruction_error` ``(model, variables, x) -> [batch]``: ``||x - model(x)||^2`` per example.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo.layers import check_shape, conv, dense, partitioned

__all__ = ["GRU", "LSTM", "MLP", "Autoencoder", "ConvNet", "DenoisingAutoencoder", "ElmanRNN", "SparseAutoencoder",
           "reconstruction_error"]

Dtype = Any


def _check_batched(x: Any, name: str, where: str, min_rank: int = 2) -> None:
  """``x`` must be a float array ``[batch, ...]`` with at least ``min_rank`` dims."""
  check_shape(x, name, "... features", where=where, dtype="floating")
  if x.ndim < min_rank:
    raise ValueError(f"{where}: `{name}` must have shape [batch, ...] (rank >= {min_rank}); got shape "
                     f"{tuple(x.shape)}.")


def _activation(fn: str | Callable[[jax.Array], jax.Array] | None, field: str, where: str):
  """An activation given as a function or by its ``flax.linen`` name (``'relu'``, ``'tanh'`` ...), for configs."""
  if fn is None or callable(fn):
    return fn
  resolved = getattr(nn, fn, None) if isinstance(fn, str) else None
  if not callable(resolved):
    raise ValueError(f"{where}: `{field}` must be a function or the name of a flax.linen activation such as "
                     f"'relu', 'tanh', 'sigmoid', 'gelu'; got {fn!r}.")
  return resolved


def _flatten(x):
  return x.reshape(x.shape[0], math.prod(x.shape[1:]))


# ------------------------------------------------------------------------------------------------------------ MLP


class MLP(nn.Module):
  """Multilayer perceptron: ``Dense -> activation -> dropout`` for every width but the last, which is linear.

  Attributes:
    features: output widths of the layers, e.g. ``(256, 256, 10)``.
    activation: the hidden nonlinearity (default ReLU), a function or a ``flax.linen`` name such as ``'tanh'``.
    dropout_rate: dropout after each hidden activation (uses the ``'dropout'`` rng when ``train=True``).
    flatten: if True (default) the input ``[batch, ...]`` is flattened to ``[batch, in]`` first, so the MLP
      works on images; if False it maps the last axis, ``[..., in] -> [..., features[-1]]``.

  Call: ``x: [batch, ...]`` float -> ``[batch, features[-1]]`` (or ``[..., features[-1]]`` with
  ``flatten=False``).
  """
  features: Sequence[int]
  activation: str | Callable[[jax.Array], jax.Array] = nn.relu
  dropout_rate: float = 0.0
  flatten: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if not self.features:
      raise ValueError("MLP: `features` must list at least one layer width; got an empty sequence.")
    _check_batched(x, "x", "MLP", min_rank=2 if self.flatten else 1)
    activation = _activation(self.activation, "activation", "MLP")
    if self.flatten:
      x = _flatten(x)
    for i, width in enumerate(self.features):
      # Alternate the logical axes so consecutive kernels shard as (embed, mlp), (mlp, embed), ...
      axes = ("embed", "mlp") if i % 2 == 0 else ("mlp", "embed")
      x = dense(width, axes=axes, dtype=self.dtype, param_dtype=self.param_dtype, name=f"dense_{i}")(x)
      if i < len(self.features) - 1:
        x = activation(x)
        if self.dropout_rate:
          x = layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)(x)
    return x


# -------------------------------------------------------------------------------------------------------- ConvNet


class ConvNet(nn.Module):
  """LeNet-style classifier: ``[conv -> activation -> 2x2 pool] * len(features)``, then a dense head.

  LeNet-5 (LeCun et al., 1998) uses 5x5 convolutions with 6 and 16 maps and a 120-84 head; the defaults follow it
  with 'SAME' padding (so small images such as 8x8 digits keep a spatial extent) and ReLU.

  Attributes:
    num_classes: number of output logits.
    features: output channels of each convolution.
    kernel_size: convolution window.
    hidden: widths of the dense layers between the flattened maps and the logits.
    activation: the nonlinearity (a function or a ``flax.linen`` name).
    pool: ``'max'`` or ``'avg'`` 2x2 pooling with stride 2 (a dimension of size 1 is not pooled).
    dropout_rate: dropout before each dense layer of the head (``'dropout'`` rng, ``train=True``).

  Call: ``x: [batch, height, width, channels]`` float -> logits ``[batch, num_classes]``.
  """
  num_classes: int = 10
  features: Sequence[int] = (6, 16)
  kernel_size: Sequence[int] = (5, 5)
  hidden: Sequence[int] = (120, 84)
  activation: str | Callable[[jax.Array], jax.Array] = nn.relu
  pool: str = "max"
  dropout_rate: float = 0.0
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    check_shape(x, "x", "batch height width channels", where="ConvNet", dtype="floating")
    if self.pool not in ("max", "avg"):
      raise ValueError(f"ConvNet: `pool` must be 'max' or 'avg'; got {self.pool!r}.")
    pool_fn = nn.max_pool if self.pool == "max" else nn.avg_pool
    activation = _activation(self.activation, "activation", "ConvNet")
    for i, channels in enumerate(self.features):
      x = conv(channels, self.kernel_size, dtype=self.dtype, param_dtype=self.param_dtype, name=f"conv_{i}")(x)
      x = activation(x)
      window = tuple(2 if d >= 2 else 1 for d in x.shape[1:3])
      x = pool_fn(x, window, strides=window)
    x = _flatten(x)
    for i, width in enumerate(self.hidden):
      if self.dropout_rate:
        x = layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)(x)
      x = dense(width, axes=("embed", "mlp"), dtype=self.dtype, param_dtype=self.param_dtype, name=f"dense_{i}")(x)
      x = activation(x)
    if self.dropout_rate:
      x = layers.dropout(self.dropout_rate, deterministic=not train, where=type(self).__name__)(x)
    return dense(self.num_classes, axes=("mlp", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                 name="head")(x)


# ------------------------------------------------------------------------------------------------------ recurrent


class _RecurrentEncoder(nn.Module):
  """Shared body of the recurrent encoders: optional embedding, ``num_layers`` ``nn.RNN`` scans, optional head."""
  features: int = 64
  num_classes: int | None = None
  vocab_size: int | None = None
  num_layers: int = 1
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def _cell(self, name: str) -> nn.RNNCellBase:
    raise TypeError(f"{type(self).__name__} is abstract: use ElmanRNN, LSTM or GRU, which name their flax cell.")

  def _inits(self) -> dict[str, Any]:
    """The cells' default initialisers (lecun/orthogonal/zeros), with logical axis names."""
    return dict(kernel_init=partitioned(nn.initializers.lecun_normal(), ("embed", "mlp")),
                recurrent_kernel_init=partitioned(nn.initializers.orthogonal(), ("embed", "mlp")),
                bias_init=partitioned(nn.initializers.zeros_init(), ("mlp",)),
                dtype=self.dtype, param_dtype=self.param_dtype)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train  # no dropout or noise in these encoders; the keyword is the trainer's contract
    where = type(self).__name__
    if self.vocab_size is not None:
      check_shape(x, "x", "batch time", where=where, dtype="integer")
      x = layers.Embed(self.vocab_size, self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                   embedding_init=partitioned(nn.initializers.normal(1.0), ("vocab", "embed")), name="embed")(x)
    else:
      cell = self.variables.get("params", {}).get("cell_0", {}) if not self.is_initializing() else {}
      # The first cell's input kernels ('i', 'ii', 'ir', ...) are [in_features, features].
      inputs = [layers.param_shape(self, "cell_0", k, "kernel") for k in sorted(cell) if k.startswith("i")]
      check_shape(x, "x", "batch time in_features", where=where, dtype="floating",
                  in_features=layers.dim(inputs[0], 0) if inputs else None)
    for layer in range(self.num_layers):
      x = nn.RNN(self._cell(f"cell_{layer}"), name=f"rnn_{layer}")(x)  # [batch, time, features]
    if self.num_classes is None:
      return x
    return dense(self.num_classes, axes=("mlp", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                 name="head")(x[:, -1])


class ElmanRNN(_RecurrentEncoder):
  """Elman (simple) recurrent network, ``h_t = tanh(W x_t + U h_{t-1} + b)``, with flax's ``nn.SimpleCell``.

  Attributes:
    features: hidden width.
    num_classes: if set, a linear classifier on the last step's hidden state.
    vocab_size: if set, ``x`` holds token ids ``[batch, time]`` embedded to ``features`` first.
    num_layers: stacked recurrent layers.

  Call: ``x: [batch, time, in_features]`` float (or ``[batch, time]`` int ids) -> ``[batch, time, features]``, or
  logits ``[batch, num_classes]``.
  """

  def _cell(self, name):
    return nn.SimpleCell(self.features, name=name, **self._inits())


class GRU(_RecurrentEncoder):
  """Gated recurrent unit encoder (Cho et al., 2014) with flax's ``nn.GRUCell``; attributes as :class:`ElmanRNN`."""

  def _cell(self, name):
    return nn.GRUCell(self.features, name=name, **self._inits())


def _with_forget_bias(value: float):
  """``trans_out_fn`` for ``nn.map_variables``: sets the forget-gate bias (``hf/bias``) of an LSTM cell to ``value``.

  Setting (not adding) makes it idempotent: the cell may be traced several times while ``nn.RNN`` initialises it.
  """
  def set_bias(variables):
    params = dict(variables.get("params", {}))
    if "hf" not in params:
      return variables
    bias = params["hf"]["bias"]
    if isinstance(bias, nn.meta.AxisMetadata):
      bias = bias.replace_boxed(jnp.full_like(bias.unbox(), value))
    else:
      bias = jnp.full_like(bias, value)
    params["hf"] = {**params["hf"], "bias": bias}
    return {**variables, "params": params}
  return set_bias


class _AblatedLSTMCell(nn.RNNCellBase):
  """The LSTM's equations with one of its two mechanisms switched off (the ablations of :class:`LSTM`).

  ``gated=False`` fixes the input, forget and output gates open (``i = f = o = 1``):
  ``c_t = c_{t-1} + tanh(W x_t + U h_{t-1} + b)``, ``h_t = tanh(c_t)``; the additive memory cell (the "constant
  error carousel", Hochreiter & Schmidhuber, 1997) stays, but nothing decides what enters, stays or is shown.
  ``memory_cell=False`` cuts the cell's self-connection (``c_t = i * g``, no ``f * c_{t-1}`` term), so the state
  is carried only through ``h_t = o * tanh(c_t)`` and its recurrent weights, as in an Elman network; the gates
  stay. Carry ``(c, h)`` and parameters (``i{i,f,g,o}`` input kernels, ``h{i,f,g,o}`` recurrent kernels with the
  bias) as flax's ``nn.LSTMCell``, whose equations it computes with both switches on (checked in the tests).
  """
  features: int
  gated: bool = True
  memory_cell: bool = True
  kernel_init: Any = nn.initializers.lecun_normal()
  recurrent_kernel_init: Any = nn.initializers.orthogonal()
  bias_init: Any = nn.initializers.zeros_init()
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, inputs):
    c, h = carry
    dense = functools.partial(nn.Dense, self.features, dtype=self.dtype, param_dtype=self.param_dtype)

    def pre(name):  # W x_t + U h_{t-1} + b for one gate (or the candidate), laid out as flax's LSTMCell
      return (dense(use_bias=False, kernel_init=self.kernel_init, name=f"i{name}")(inputs)
              + dense(kernel_init=self.recurrent_kernel_init, bias_init=self.bias_init, name=f"h{name}")(h))

    g = jnp.tanh(pre("g"))
    if self.gated:
      i, o = nn.sigmoid(pre("i")), nn.sigmoid(pre("o"))
      f = nn.sigmoid(pre("f")) if self.memory_cell else 0.0
    else:
      i = f = o = 1.0
    new_c = f * c + i * g if self.memory_cell else i * g
    new_h = o * jnp.tanh(new_c)
    return (new_c, new_h), new_h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    shape = tuple(input_shape[:-1]) + (self.features,)
    return jnp.zeros(shape, self.param_dtype), jnp.zeros(shape, self.param_dtype)

  @property
  def num_feature_axes(self) -> int:
    return 1


class LSTM(_RecurrentEncoder):
  """Long short-term memory encoder with flax's ``nn.OptimizedLSTMCell``; attributes as :class:`ElmanRNN`, plus:

  Attributes:
    forget_bias: initial value of the forget-gate bias (the cell's ``hf/bias``); 1 as Gers et al. (2000) and the
      review prescribe, so the cell remembers by default early in training. The input, cell and output gate biases
      start at 0. The cell itself is flax's, unchanged: the value is written into its parameters at
      initialisation with ``nn.map_variables``.
    gated: True (default). False: the ablation of the gates, every gate fixed open (``i = f = o = 1``): the cell
      keeps its additive memory ``c_t = c_{t-1} + tanh(W x_t + U h_{t-1} + b)``, ``h_t = tanh(c_t)``, but
      cannot choose what to store, keep or read.
    memory_cell: True (default). False: the ablation of the memory cell, ``c_t = i * g`` without the
      ``f * c_{t-1}`` self-connection, so the state travels only through ``h`` and the recurrent weights (as in
      an Elman network) while the gates stay. Either ablation uses a hand-written cell (:class:`_AblatedLSTMCell`)
      with the same equations and no forget gate (fixed open, or absent with the self-connection), so
      ``forget_bias`` is unused there.
  """
  forget_bias: float = 1.0
  gated: bool = True
  memory_cell: bool = True

  def _cell(self, name):
    if not (self.gated and self.memory_cell):
      return _AblatedLSTMCell(self.features, gated=self.gated, memory_cell=self.memory_cell, name=name,
                              **self._inits())
    initializing = self.is_initializing()
    cell_cls = nn.map_variables(nn.OptimizedLSTMCell, "params",
                                trans_out_fn=_with_forget_bias(self.forget_bias) if initializing else (lambda v: v),
                                init=initializing, mutable=initializing)
    return cell_cls(self.features, name=name, **self._inits())


# --------------------------------------------------------------------------------------------------- autoencoders


class _Decoder(nn.Module):
  """MLP ``hidden -> prod(shape)``, reshaped to ``[batch, *shape]`` (the output size is known at call time)."""
  hidden: Sequence[int]
  activation: str | Callable[[jax.Array], jax.Array]
  output_activation: str | Callable[[jax.Array], jax.Array] | None
  dtype: Dtype | None
  param_dtype: Dtype

  @nn.compact
  def __call__(self, z, shape: tuple[int, ...]):
    y = MLP((*self.hidden, math.prod(shape)), activation=self.activation, dtype=self.dtype,
            param_dtype=self.param_dtype, name="mlp")(z)
    output_activation = _activation(self.output_activation, "output_activation", "Autoencoder")
    if output_activation is not None:
      y = output_activation(y)
    return y.reshape(z.shape[0], *shape)


class Autoencoder(nn.Module):
  """Undercomplete autoencoder: ``x -> encoder MLP -> z [latent] -> decoder MLP -> x_hat``.

  Attributes:
    latent: bottleneck width (linear units).
    hidden: hidden widths of the encoder; the decoder uses them reversed.
    activation: hidden nonlinearity (a function or a ``flax.linen`` name such as ``'tanh'``).
    output_activation: applied to the reconstruction (e.g. ``nn.sigmoid`` or ``'sigmoid'`` for data in [0, 1]);
      None = linear.

  Call: ``x: [batch, ...]`` float -> ``x_hat``, same shape. Methods: ``encode(x) -> [batch, latent]``,
  ``decode(z, shape) -> [batch, *shape]`` (use ``model.apply(variables, x, method='encode')``).
  """
  latent: int
  hidden: Sequence[int] = (64,)
  activation: str | Callable[[jax.Array], jax.Array] = nn.relu
  output_activation: str | Callable[[jax.Array], jax.Array] | None = None
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def setup(self):
    if self.latent < 1:
      raise ValueError(f"{type(self).__name__}: `latent` must be >= 1; got {self.latent}.")
    _activation(self.activation, "activation", type(self).__name__)
    _activation(self.output_activation, "output_activation", type(self).__name__)
    self.encoder = MLP((*self.hidden, self.latent), activation=self.activation, dtype=self.dtype,
                       param_dtype=self.param_dtype)
    self.decoder = _Decoder(tuple(reversed(tuple(self.hidden))), self.activation, self.output_activation,
                            self.dtype, self.param_dtype)

  def encode(self, x):
    """``x: [batch, ...]`` -> codes ``[batch, latent]``."""
    _check_batched(x, "x", type(self).__name__)
    return self.encoder(x)

  def decode(self, z, shape: Sequence[int]):
    """``z: [batch, latent]`` -> reconstruction ``[batch, *shape]``."""
    check_shape(z, "z", "batch latent", where=type(self).__name__, dtype="floating", latent=self.latent)
    return self.decoder(z, tuple(shape))

  def __call__(self, x, *, train: bool = False):
    del train
    return self.decode(self.encode(x), x.shape[1:])


class DenoisingAutoencoder(Autoencoder):
  """Autoencoder trained to undo input corruption (Vincent et al., 2008); attributes as :class:`Autoencoder`, plus:

  Attributes:
    corruption: ``'mask'`` (each input value set to 0 with probability ``noise_level``, the paper's masking noise)
      or ``'gaussian'`` (add ``noise_level * N(0, 1)``).
    noise_level: masking probability or Gaussian standard deviation.

  Call: ``x: [batch, ...]`` float -> ``x_hat``, same shape. With ``train=True`` it needs the ``'noise'`` rng and
  reconstructs from a corrupted copy of ``x``; with ``train=False`` it reconstructs ``x`` itself.
  """
  corruption: str = "mask"
  noise_level: float = 0.25

  def corrupt(self, x, rng):
    """The corrupted copy of ``x`` (same shape and dtype)."""
    if self.corruption == "mask":
      keep = jax.random.bernoulli(rng, 1.0 - self.noise_level, x.shape)
      return jnp.where(keep, x, jnp.zeros_like(x))
    if self.corruption == "gaussian":
      return x + self.noise_level * jax.random.normal(rng, x.shape, x.dtype)
    raise ValueError(f"DenoisingAutoencoder: `corruption` must be 'mask' or 'gaussian'; got {self.corruption!r}.")

  def __call__(self, x, *, train: bool = False):
    _check_batched(x, "x", type(self).__name__)
    inputs = self.corrupt(x, self.make_rng("noise")) if train and self.noise_level > 0 else x
    return self.decode(self.encode(inputs), x.shape[1:])


def kl_sparsity(rho: float, rho_hat: jax.Array) -> jax.Array:
  """``sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j))`` (rho_hat clipped away from 0 and 1)."""
  rho_hat = jnp.clip(rho_hat, 1e-6, 1.0 - 1e-6)
  return jnp.sum(rho * jnp.log(rho / rho_hat) + (1.0 - rho) * jnp.log((1.0 - rho) / (1.0 - rho_hat)))


class SparseAutoencoder(Autoencoder):
  """Autoencoder with sigmoid code units and a KL sparsity penalty on their mean activation.

  ``h = sigmoid(encoder(x))``, ``rho_hat_j = mean_batch h_j``; the penalty
  ``sparsity_weight * sum_j KL(rho || rho_hat_j)`` is sown as ``('losses', 'sparsity')``, which the backprop
  procedure adds to the task loss. The code is usually overcomplete (``latent`` > input size is fine) and
  ``hidden`` is empty by default (one sigmoid layer, as in Ng's notes). ``sparsity_weight`` multiplies the sum over
  units while the reconstruction task averages over input values, so it is smaller than the notes' beta = 3.

  Attributes (besides :class:`Autoencoder`'s):
    sparsity_target: rho, the desired mean activation of each code unit.
    sparsity_weight: beta, the penalty's weight.

  Call: ``x: [batch, ...]`` float -> ``x_hat``, same shape; ``encode(x)`` gives the sigmoid codes ``[batch, latent]``.
  """
  hidden: Sequence[int] = ()
  sparsity_target: float = 0.05
  sparsity_weight: float = 0.1

  def encode(self, x):
    return nn.sigmoid(super().encode(x))

  def __call__(self, x, *, train: bool = False):
    del train
    if not 0.0 < self.sparsity_target < 1.0:
      raise ValueError(f"SparseAutoencoder: `sparsity_target` must be in (0, 1); got {self.sparsity_target}.")
    h = self.encode(x)
    rho_hat = jnp.mean(h.astype(jnp.float32), axis=0)
    self.sow("losses", "sparsity", self.sparsity_weight * kl_sparsity(self.sparsity_target, rho_hat))
    return self.decode(h, x.shape[1:])


# -------------------------------------------------------------------------------------------------------- helpers


def _error_fn(model):
  def squared_error(variables, x):
    x_hat = model.apply(variables, x)
    err = (x_hat.astype(jnp.float32) - x.astype(jnp.float32)) ** 2
    return jnp.sum(err.reshape(err.shape[0], -1), axis=-1)
  return jax.jit(squared_error)


_cached_error_fn = functools.lru_cache(maxsize=32)(_error_fn)


def reconstruction_error(model: nn.Module, variables, x) -> jax.Array:
  """``||x - model(x)||^2`` per example (inference mode), for autoencoder anomaly scores.

  Args:
    model: an autoencoder (any module whose output has the input's shape).
    variables: its variables (``{'params': ...}``).
    x: ``[batch, ...]`` float.

  Returns:
    ``[batch]`` float32 sums of squared errors over each example's values.
  """
  _check_batched(x, "x", "reconstruction_error")
  try:
    fn = _cached_error_fn(model)  # compiled once per (hashable) model
  except TypeError:  # a module with list-valued fields (e.g. built from a JSON config) is not hashable
    fn = _error_fn(model)
  return fn(variables, jnp.asarray(x))
