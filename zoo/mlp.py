"""MLP families: the plain MLP and the inverted-bottleneck MLP of "Scaling MLPs", and the hourglass MLP.

Papers:

* "Scaling MLPs: A Tale of Inductive Bias" (Bachmann, Anagnostidis and Hofmann, 2023, arXiv 2306.13575):
  :class:`StandardMLP` and :class:`BottleneckMLP` with the paper's ``B-L/Wi-w`` presets (:data:`PRESETS`,
  :func:`bottleneck_mlp`). The training recipe (LAMB, label smoothing, MixUp, random shifts) lives in ``zoo.recipes``
  (``optax.lamb``, the classification task's ``label_smoothing``, ``zoo.recipes.augment`` and the
  ``augmented.Augmented`` procedure).
* "Rethinking the shape convention of an MLP" (Chen, Lee, Liao and Shiu, 2025, arXiv 2510.01796):
  :class:`HourglassBlock` / :class:`HourglassMLP` (wide residual stream, narrow bottlenecks, a frozen random lift)
  against :class:`ConventionalResMLP` (narrow stream, expanded hidden layers).

All residual networks here share one block, :class:`ResidualMLPBlock`, ``z <- z + W_2 act(W_1 LN(z))`` (pre-LN; the
MLP is ``zoo.transformer.MLPBlock``): with ``hidden > width`` it is the inverted bottleneck of Scaling MLPs and of the
conventional residual MLP, with ``hidden < width`` it is the hourglass block. The families differ only in the widths
they pick and in how the input reaches the stream (a trained ``linear_in`` or the frozen lift ``P``).

Public names (``b`` batch; inputs ``x: [b, ...]`` float are flattened to ``[b, d_in]``):

* :class:`ResidualMLPBlock` ``(hidden_features)``: ``z: [b, width] -> [b, width]``; ``residual=False`` drops the skip
  (``z <- W_2 act(W_1 LN(z))``), the ablation of the skip path.
* :class:`HourglassBlock`: a :class:`ResidualMLPBlock` whose hidden width must be below the stream's (the hourglass).
* :class:`StandardMLP` ``(num_classes, width, depth)``: ``linear_in``, then ``depth`` times
  ``LN -> GELU -> Linear(width)``, then ``linear_out``: ``x -> [b, num_classes]``.
* :class:`BottleneckMLP` ``(num_classes, width, depth, expansion=4)``: ``linear_in`` (``d_in -> w``), ``depth``
  blocks ``x + Linear(4w -> w)(GELU(Linear(w -> 4w)(LN(x))))``, ``linear_out``: ``x -> [b, num_classes]``.
* :data:`PRESETS` and :func:`bottleneck_mlp` ``(name, num_classes)``: the paper's ``B_L-Wi_w[-E_e]`` names
  (``'B_12-Wi_1024'``: 12 blocks, width 1024, expansion 4).
* :class:`HourglassMLP` ``(out_features, width, hidden, depth)``: ``z_0 = P x`` with ``P: [d_in, width]`` drawn
  ``N(0, 1/d_in)`` at init and kept in the non-trainable ``'constants'`` collection (``trainable_lift=True`` makes it
  a parameter, the paper's comparison), ``depth`` hourglass blocks, a linear readout: ``x -> [b, out_features]``.
* :class:`ConventionalResMLP` ``(out_features, width, hidden, depth)``: the baseline: trained ``linear_in`` to a
  narrow stream of ``width``, ``depth`` blocks with ``hidden > width``, linear readout: ``x -> [b, out_features]``.
* :func:`param_count` ``(variables) -> int``: trainable parameters (the ``'params'`` collection only).

Deviations: kernels use zoo's default LeCun-normal init (PyTorch's ``nn.Linear`` default in the Scaling MLPs code
is uniform with variance ``1 / (3 fan_in)``); the hourglass paper's exact lift variance is not stated in the issue's
summary, ``1/d_in`` keeps ``|z_0| ~ |x|``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo import transformer

__all__ = ["PRESETS", "BottleneckMLP", "ConventionalResMLP", "HourglassBlock", "HourglassMLP", "ResidualMLPBlock",
           "StandardMLP", "bottleneck_mlp", "param_count", "parse_preset"]

Dtype = Any


def _flatten_input(x, where: str):
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    raise TypeError(f"{where}: `x` must be an array of shape [batch, ...]; got {type(x).__name__}.")
  if x.ndim < 2:
    raise ValueError(f"{where}: `x` must have shape [batch, ...] (rank >= 2); got shape {tuple(x.shape)}.")
  layers.check_shape(x, "x", "... features", where=where, dtype="floating")
  if x.shape[0] == 0 or math.prod(x.shape[1:]) == 0:
    raise ValueError(f"{where}: `x` must be non-empty; got shape {tuple(x.shape)}.")
  return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _positive(where: str, **values) -> None:
  for name, value in values.items():
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{where}: `{name}` must be an integer >= 1; got {value!r}.")


def param_count(variables) -> int:
  """Number of trainable parameters (the ``'params'`` collection; frozen ``'constants'`` are not counted)."""
  params = variables.get("params", variables) if isinstance(variables, dict) or hasattr(variables, "get") else variables
  return int(sum(x.size for x in jax.tree.leaves(nn.unbox(params))))


# ------------------------------------------------------------------------------------------------------ block


class ResidualMLPBlock(nn.Module):
  """The one residual MLP block of this family: ``z + W_2 act(W_1 LN(z))`` (pre-LN).

  Attributes:
    hidden_features: width of the hidden layer (``4w`` in Scaling MLPs' bottleneck block, ``d_h << d_z`` in the
      hourglass block).
    activation: name in ``zoo.transformer.ACTIVATIONS`` or a callable (GELU by default, as both papers).
    residual: True (default): add the skip. False: ``z <- W_2 act(W_1 LN(z))``, the ablation without the skip path.

  Call: ``z: [..., width]`` float -> ``[..., width]``.
  """
  hidden_features: int
  activation: Any = "gelu"
  residual: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z):
    where = type(self).__name__
    layers.check_shape(z, "z", "... width", where=where, dtype="floating")
    _positive(where, hidden_features=self.hidden_features)
    self._check_widths(z)
    h = layers.layer_norm(dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(z)
    h = transformer.MLPBlock(self.hidden_features, activation=self.activation, dtype=self.dtype,
                             param_dtype=self.param_dtype, name="mlp")(h)
    return z + h if self.residual else h

  def _check_widths(self, z) -> None:
    del z  # any hidden width: the shapes are what distinguishes the families built on this block


class HourglassBlock(ResidualMLPBlock):
  """Hourglass block (Chen et al., 2025): ``z + W_up act(W_down LN(z))`` with ``d_h = hidden_features < d_z``.

  The skip lives in the wide space ``d_z``; the computation goes through the narrow bottleneck ``d_h``. It is
  :class:`ResidualMLPBlock` with that shape enforced. Call: ``z: [..., d_z]`` -> ``[..., d_z]``.
  """

  def _check_widths(self, z) -> None:
    if self.hidden_features >= z.shape[-1]:
      raise ValueError(f"HourglassBlock: `hidden_features` ({self.hidden_features}) must be below the stream width "
                       f"d_z = {z.shape[-1]} (narrow bottleneck, wide skip); use ResidualMLPBlock otherwise.")


# --------------------------------------------------------------------------------------------- Scaling MLPs


class StandardMLP(nn.Module):
  """The plain MLP of Scaling MLPs: ``linear_in``, ``depth`` x ``(LN -> GELU -> Linear)``, ``linear_out``.

  Attributes:
    num_classes: output width.
    width: the hidden width of every layer.
    depth: number of ``LN -> GELU -> Linear`` layers after ``linear_in``.

  Call: ``x: [batch, ...]`` float (flattened) -> logits ``[batch, num_classes]``.
  """
  num_classes: int = 10
  width: int = 1024
  depth: int = 6
  activation: Any = "gelu"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    _positive("StandardMLP", num_classes=self.num_classes, width=self.width, depth=self.depth)
    x = _flatten_input(x, "StandardMLP")
    act = transformer.get_activation(self.activation)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    z = layers.dense(self.width, axes=("embed", "mlp"), name="linear_in", **kw)(x)
    for i in range(self.depth):
      z = act(layers.layer_norm(name=f"norm_{i}", **kw)(z))
      z = layers.dense(self.width, axes=("mlp", "mlp"), name=f"dense_{i}", **kw)(z)
    return layers.dense(self.num_classes, axes=("mlp", "classes"), name="linear_out", **kw)(z)


class BottleneckMLP(nn.Module):
  """The inverted-bottleneck MLP of Scaling MLPs (``B-depth/Wi-width``).

  ``linear_in: d_in -> w``, then ``depth`` blocks ``x + Linear(e w -> w)(GELU(Linear(w -> e w)(LN(x))))``
  (:class:`ResidualMLPBlock` with ``hidden = expansion * width``), then ``linear_out: w -> num_classes``. As the
  authors' code, there is no norm before ``linear_out``.

  Attributes:
    num_classes: output width.
    width: the residual stream's width ``w`` ("Wi").
    depth: number of blocks ("B").
    expansion: hidden width factor of each block (4 in the paper).

  Call: ``x: [batch, ...]`` float (flattened) -> logits ``[batch, num_classes]``.
  """
  num_classes: int = 10
  width: int = 1024
  depth: int = 6
  expansion: int = 4
  activation: Any = "gelu"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    _positive("BottleneckMLP", num_classes=self.num_classes, width=self.width, depth=self.depth,
              expansion=self.expansion)
    x = _flatten_input(x, "BottleneckMLP")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    z = layers.dense(self.width, axes=("embed", "mlp"), name="linear_in", **kw)(x)
    for i in range(self.depth):
      z = ResidualMLPBlock(self.expansion * self.width, activation=self.activation, name=f"block_{i}", **kw)(z)
    return layers.dense(self.num_classes, axes=("mlp", "classes"), name="linear_out", **kw)(z)


_PRESET_RE = re.compile(r"^B_(\d+)-Wi_(\d+)(?:-E_(\d+))?$")


def parse_preset(name: str) -> dict[str, int]:
  """``'B_12-Wi_1024'`` (optionally ``'-E_4'``) -> ``{'depth': 12, 'width': 1024, 'expansion': 4}``."""
  m = _PRESET_RE.match(name) if isinstance(name, str) else None
  if m is None:
    raise ValueError(f"bottleneck_mlp: preset name must look like 'B_12-Wi_1024' or 'B_6-Wi_512-E_4'; got {name!r}. "
                     f"Known presets: {', '.join(PRESETS)}.")
  return {"depth": int(m.group(1)), "width": int(m.group(2)), "expansion": int(m.group(3) or 4)}


PRESETS: dict[str, dict[str, int]] = {
    name: parse_preset(name) for name in ("B_6-Wi_512", "B_12-Wi_512", "B_6-Wi_1024", "B_12-Wi_1024")}
"""The paper's B-MLP sizes (blocks, width; expansion 4): B-12/Wi-1024 is the one reaching 95% on CIFAR-10."""


def bottleneck_mlp(name: str = "B_12-Wi_1024", num_classes: int = 10, **kwargs) -> BottleneckMLP:
  """A :class:`BottleneckMLP` from a preset or any ``B_L-Wi_w[-E_e]`` name; ``kwargs`` override fields."""
  return BottleneckMLP(num_classes=num_classes, **{**parse_preset(name), **kwargs})


# --------------------------------------------------------------------------------------------------- hourglass


class HourglassMLP(nn.Module):
  """The hourglass MLP (Chen et al., 2025): a frozen random lift to a wide stream, hourglass blocks, linear readout.

  ``z_0 = x P`` with ``P: [d_in, width]`` Gaussian ``N(0, 1/d_in)``, drawn from the ``'params'`` rng at init and
  stored in the non-trainable ``'constants'`` collection (so no optimizer ever sees it and it is not counted by
  :func:`param_count`); then ``depth`` :class:`HourglassBlock` ``z <- z + W_up GELU(W_down LN(z))`` with
  ``d_h = hidden < d_z = width``; then ``y = Linear(z)``.

  Attributes:
    out_features: output width (pixels for restoration, classes for classification).
    width: ``d_z``, the wide residual stream.
    hidden: ``d_h``, the narrow bottleneck of every block.
    depth: number of hourglass blocks.
    trainable_lift: False (default, the paper): ``P`` is frozen in ``'constants'``. True: ``P`` is a parameter
      (the paper's comparison: a frozen lift costs nothing in quality).
    residual: True (default): skips in the wide space. False: the ablation without skips.

  Call: ``x: [batch, ...]`` float (flattened) -> ``[batch, out_features]``.
  """
  out_features: int
  width: int = 256
  hidden: int = 32
  depth: int = 4
  trainable_lift: bool = False
  residual: bool = True
  activation: Any = "gelu"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    _positive("HourglassMLP", out_features=self.out_features, width=self.width, hidden=self.hidden, depth=self.depth)
    x = _flatten_input(x, "HourglassMLP")
    d_in = x.shape[-1]
    init = layers.partitioned(nn.initializers.normal(stddev=1.0 / math.sqrt(d_in)), ("embed", "mlp"))
    if self.trainable_lift:
      lift = self.param("lift", init, (d_in, self.width), self.param_dtype)
    else:
      # A variable in 'constants' is created from the 'params' rng at init and is never differentiated: the trainer
      # and procedures only update the 'params' collection.
      lift = self.variable("constants", "lift", lambda: init(self.make_rng("params"), (d_in, self.width),
                                                             self.param_dtype)).value
    z = jnp.dot(x, nn.unbox(lift).astype(self.dtype or x.dtype))
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    for i in range(self.depth):
      z = HourglassBlock(self.hidden, activation=self.activation, residual=self.residual, name=f"block_{i}", **kw)(z)
    return layers.dense(self.out_features, axes=("mlp", "embed"), name="readout", **kw)(z)


class ConventionalResMLP(nn.Module):
  """The conventional residual MLP (the hourglass paper's baseline): a narrow stream, expanded hidden layers.

  ``z_0 = Linear(x)`` (trained) to ``width``, ``depth`` :class:`ResidualMLPBlock` with ``hidden > width``, a linear
  readout.

  Attributes:
    out_features: output width.
    width: the narrow residual stream.
    hidden: the expanded hidden width of every block (``>= width``).
    depth: number of blocks.

  Call: ``x: [batch, ...]`` float (flattened) -> ``[batch, out_features]``.
  """
  out_features: int
  width: int = 64
  hidden: int = 256
  depth: int = 4
  activation: Any = "gelu"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    _positive("ConventionalResMLP", out_features=self.out_features, width=self.width, hidden=self.hidden,
              depth=self.depth)
    if self.hidden < self.width:
      raise ValueError(f"ConventionalResMLP: `hidden` ({self.hidden}) must be >= `width` ({self.width}) (expanded "
                       "hidden layers); a narrow hidden layer in a wide stream is HourglassMLP.")
    x = _flatten_input(x, "ConventionalResMLP")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    z = layers.dense(self.width, axes=("embed", "mlp"), name="linear_in", **kw)(x)
    for i in range(self.depth):
      z = ResidualMLPBlock(self.hidden, activation=self.activation, name=f"block_{i}", **kw)(z)
    return layers.dense(self.out_features, axes=("mlp", "embed"), name="readout", **kw)(z)
