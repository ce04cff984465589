"""Layer stacks for local (back-propagation-free) learning rules: counter-current learning and forward-forward.

The training procedures live in ``zoo.recipes`` (``counter_current``, ``forward_forward``; feedback alignment,
``zoo.recipes.procedures.feedback_alignment``, needs no special model: it trains any zoo model made of ``nn.Dense``/``nn.Conv``
layers). The models here expose what those rules need: every layer's activity, with the input of every layer cut
from the gradient, so a layer's local loss can only reach that layer's parameters.

Papers:

* Counter-current learning (CCL): Chia-Hsiang Kao, Bharath Hariharan, "Counter-Current Learning: A Biologically
  Plausible Dual Network Approach for Deep Learning" (NeurIPS 2024), arXiv:2409.19841. Reference code (read, not
  copied): github.com/IandRover/CCL-NeurIPS24.
* Forward-forward (FF): Geoffrey Hinton, "The Forward-Forward Algorithm: Some Preliminary Investigations" (2022),
  arXiv:2212.13345.

Public names:

* :class:`CounterCurrentMLP` ``(features=(256, 256, 10), activation='elu', feedback_activation='elu')``: a forward
  network ``a_{l+1} = phi(W_l sg(a_l))`` (the last layer linear: logits) and a feedback network ``c_l =
  psi(B_l sg(c_{l+1}))`` (the bottom one linear) with ``W_l: d_l -> d_{l+1}`` and a separate ``B_l: d_{l+1} ->
  d_l``, no biases (the reference's MLP). ``__call__(x [batch, ...]) -> logits [batch, classes]``;
  ``__call__(x, targets [m, classes]) -> (activations, signals)``: ``activations = [a_0 = x flattened, a_1, ...,
  a_L = logits]`` (``a_l: [batch, d_l]``) and ``signals = [c_0, ..., c_{L-1}, c_L = targets]`` (``c_l: [m, d_l]``).
* :class:`CounterCurrentConvNet` ``(num_classes=10, features=(32, 64), kernel_size=3)``: the convolutional version
  (the reference's ``C2Conv``): forward ``phi(conv_stride2(sg(a_l)))``, feedback ``psi(conv(upsample2(sg(c_{l+1}))))``
  cropped to ``a_l``'s size, then a dense ``W_L / B_L`` pair between the flattened last map and the classes.
  ``a_l: [batch, H_l, W_l, C_l]``, ``c_l: [m, H_l, W_l, C_l]``; same call signature as the MLP.
* :class:`ForwardForwardMLP` ``(features=(256, 256), num_classes=10)``: layers ``h_l = relu(W_l n(sg(h_{l-1})) + b_l)``,
  ``n(v) = v / (||v|| + 1e-4)``, on the input with the label appended as a one-hot (scaled by ``label_scale``).
  ``goodness(x, labels [batch]) -> [layers, batch]`` (``mean_j h_lj^2``); ``__call__(x) -> [batch, classes]``, the
  goodness of each candidate label summed over the layers (all but the first when there are several, as Hinton
  does), the FF prediction being its argmax.

Every parameter carries logical axis names; inputs are checked at the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo.layers import check_shape

__all__ = ["CounterCurrentConvNet", "CounterCurrentMLP", "ForwardForwardMLP"]

Dtype = Any

ACTIVATIONS = {"elu": nn.elu, "relu": nn.relu, "tanh": jnp.tanh, "leaky_relu": nn.leaky_relu, "selu": nn.selu,
               "gelu": nn.gelu}

# PyTorch's default Linear/Conv initialisation (uniform, variance 1/(3 fan_in)): the reference's learning rates were
# tuned with it.
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _activation(name: str, where: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"{where}: activation must be one of {sorted(ACTIVATIONS)}; got {name!r}.")
  return ACTIVATIONS[name]


def _check_batched(x, where: str):
  check_shape(x, "x", "... features", where=where, dtype="floating")
  if x.ndim < 2:
    raise ValueError(f"{where}: `x` must have shape [batch, ...] (rank >= 2); got shape {tuple(x.shape)}.")


def _dense(features, axes, use_bias, dtype, param_dtype, name):
  return layers.dense(features, axes=axes, use_bias=use_bias, kernel_init=torch_default_init, dtype=dtype,
                      param_dtype=param_dtype, name=name)


def _conv(features, kernel_size, strides, use_bias, dtype, param_dtype, name):
  return layers.conv(features, kernel_size, strides=strides, padding="SAME", use_bias=use_bias,
                     kernel_init=torch_default_init, dtype=dtype, param_dtype=param_dtype, name=name)


# ------------------------------------------------------------------------------------------ counter-current: MLP


class CounterCurrentMLP(nn.Module):
  """Forward and feedback networks of counter-current learning, dense layers (see the module docstring).

  Attributes:
    features: output widths of the forward layers, the last one the number of classes (reference on MNIST:
      ``(256,) * 5 + (10,)``; the effect test uses ``(256, 256, 10)``).
    activation: the forward nonlinearity ``phi`` (reference: ELU).
    feedback_activation: the feedback nonlinearity ``psi`` (reference: ELU).
    use_bias: biases in both networks (reference: none).

  Call: ``x [batch, ...]`` -> logits ``[batch, features[-1]]``; ``(x, targets [m, features[-1]])`` ->
  ``(activations, signals)``, lists of ``len(features) + 1`` arrays as in the module docstring.
  """
  features: Sequence[int] = (256, 256, 10)
  activation: str = "elu"
  feedback_activation: str = "elu"
  use_bias: bool = False
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, targets=None):
    where = "CounterCurrentMLP"
    if not self.features:
      raise ValueError(f"{where}: `features` must list at least one layer width; got {self.features!r}.")
    phi, psi = _activation(self.activation, where), _activation(self.feedback_activation, where)
    _check_batched(x, where)
    a = x.reshape(x.shape[0], -1)
    widths = (a.shape[-1], *self.features)
    depth = len(self.features)
    activations = [a]
    for l in range(depth):
      h = _dense(widths[l + 1], ("embed", "mlp"), self.use_bias, self.dtype, self.param_dtype,
                 f"forward_{l}")(jax.lax.stop_gradient(activations[-1]))
      activations.append(h if l == depth - 1 else phi(h))
    if targets is None:
      return activations[-1]
    check_shape(targets, "targets", "m classes", where=where, dtype="floating", classes=self.features[-1])
    signals = [targets]
    for l in reversed(range(depth)):
      c = _dense(widths[l], ("mlp", "embed"), self.use_bias, self.dtype, self.param_dtype,
                 f"feedback_{l}")(jax.lax.stop_gradient(signals[0]))
      signals.insert(0, c if l == 0 else psi(c))
    return activations, signals


# ---------------------------------------------------------------------------------------- counter-current: conv


def _upsample2(x, size):
  """Nearest-neighbour 2x upsampling of ``[m, H, W, C]``, cropped to ``size = (H', W')``."""
  x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return x[:, :size[0], :size[1]]


class CounterCurrentConvNet(nn.Module):
  """Counter-current learning with convolutions (the reference's ``C2Conv`` stack and a dense output pair).

  Forward layer l: ``a_{l+1} = phi(conv_{3x3, stride 2}(sg(a_l)))``; feedback: ``c_l = psi(conv_{3x3}(upsample2(
  sg(c_{l+1}))))`` (the bottom one linear). Then ``logits = W_L flatten(sg(a_L))`` and ``c_L = psi(B_L sg(targets))``
  reshaped to ``a_L``'s map. Convolutions have biases (as the reference's ``C2Conv``); the dense pair has none.

  Attributes:
    num_classes: number of classes.
    features: channels of the convolutions.
    kernel_size: convolution window.
    activation, feedback_activation: ``phi`` and ``psi`` (reference: ELU).

  Call: ``x [batch, H, W, C]`` -> logits ``[batch, num_classes]``; ``(x, targets [m, num_classes])`` ->
  ``(activations, signals)``: ``[x, a_1, ..., a_L (maps), logits]`` and ``[c_0, ..., c_L (maps), targets]``.
  """
  num_classes: int = 10
  features: Sequence[int] = (32, 64)
  kernel_size: Sequence[int] = (3, 3)
  activation: str = "elu"
  feedback_activation: str = "elu"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, targets=None):
    where = "CounterCurrentConvNet"
    phi, psi = _activation(self.activation, where), _activation(self.feedback_activation, where)
    check_shape(x, "x", "batch height width channels", where=where, dtype="floating")
    if not self.features:
      raise ValueError(f"{where}: `features` must list at least one convolution; got {self.features!r}.")
    activations = [x]
    for l, ch in enumerate(self.features):
      h = _conv(ch, self.kernel_size, 2, True, self.dtype, self.param_dtype, f"forward_{l}")(
          jax.lax.stop_gradient(activations[-1]))
      activations.append(phi(h))
    top = activations[-1]
    logits = _dense(self.num_classes, ("embed", "classes"), False, self.dtype, self.param_dtype, "forward_out")(
        jax.lax.stop_gradient(top.reshape(top.shape[0], -1)))
    activations.append(logits)
    if targets is None:
      return logits
    check_shape(targets, "targets", "m classes", where=where, dtype="floating", classes=self.num_classes)
    c = _dense(math.prod(top.shape[1:]), ("classes", "embed"), False, self.dtype, self.param_dtype,
               "feedback_out")(jax.lax.stop_gradient(targets))
    signals = [psi(c).reshape(targets.shape[0], *top.shape[1:]), targets]
    for l in reversed(range(len(self.features))):
      below = activations[l]
      up = _upsample2(jax.lax.stop_gradient(signals[0]), below.shape[1:3])
      c = _conv(below.shape[-1], self.kernel_size, 1, True, self.dtype, self.param_dtype, f"feedback_{l}")(up)
      signals.insert(0, c if l == 0 else psi(c))
    return activations, signals


# --------------------------------------------------------------------------------------------- forward-forward


class ForwardForwardMLP(nn.Module):
  """The forward-forward network (Hinton, 2022): ReLU layers on length-normalised inputs, label in the input.

  Attributes:
    features: widths of the layers (each trained by its own goodness loss).
    num_classes: number of labels (one-hot appended to the flattened input).
    label_scale: value of the one-hot entry (Hinton replaces the first pixels of an MNIST image by the one-hot).

  Call: ``x [batch, ...]`` -> ``[batch, num_classes]`` goodness of every candidate label (summed over the layers,
  without the first when there are several); ``goodness(x, labels [batch] int) -> [layers, batch]``.
  """
  features: Sequence[int] = (256, 256)
  num_classes: int = 10
  label_scale: float = 1.0
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def setup(self):
    if not self.features:
      raise ValueError(f"ForwardForwardMLP: `features` must list at least one layer width; got {self.features!r}.")
    self.layers = [_dense(w, ("embed", "mlp"), True, self.dtype, self.param_dtype, f"layer_{i}")
                   for i, w in enumerate(self.features)]

  def goodness(self, x, labels):
    """``mean_j h_lj^2`` of every layer for ``x`` labelled ``labels``: ``[layers, batch]``; each layer's input is
    cut from the gradient."""
    _check_batched(x, "ForwardForwardMLP")
    check_shape(labels, "labels", "batch", where="ForwardForwardMLP", dtype="integer", batch=x.shape[0])
    h = jnp.concatenate([x.reshape(x.shape[0], -1).astype(jnp.float32),
                         self.label_scale * jax.nn.one_hot(labels, self.num_classes)], axis=-1)
    out = []
    for layer in self.layers:
      h = jax.lax.stop_gradient(h)
      h = nn.relu(layer(h / (jnp.linalg.norm(h, axis=-1, keepdims=True) + 1e-4)))
      out.append(jnp.mean(h.astype(jnp.float32) ** 2, axis=-1))
    return jnp.stack(out)

  def __call__(self, x):
    _check_batched(x, "ForwardForwardMLP")
    labels = jnp.arange(self.num_classes)
    # Every (example, label) pair in one batch: [classes * batch].
    xs = jnp.tile(x, (self.num_classes,) + (1,) * (x.ndim - 1))
    g = self.goodness(xs, jnp.repeat(labels, x.shape[0]))      # [layers, classes * batch]
    g = g[1:] if g.shape[0] > 1 else g
    return jnp.sum(g, axis=0).reshape(self.num_classes, x.shape[0]).T
