"""A network whose last hidden layer is grown by gradient boosting: T stages of J units behind one unit mask.

Paper: Seyedsaman Emami, Gonzalo Martinez-Munoz, "Sequential Training of Neural Networks with Gradient Boosting"
(2019; IEEE Access 2023), arXiv:1909.12098. Reference implementation read to match the structure:
github.com/GAA-UAM/GBNN (``GNEGNE``, ``to_NN``). The training procedure is ``zoo.recipes.procedures.boosting``.

GBNN reads a one-hidden-layer network as an additive expansion ``F(x) = b + sum_u v_u sigma(w_u . phi(x) + a_u)``
and trains it as gradient boosting does: stage ``t`` fits a fresh J-unit network to the pseudo-residuals of the
stages before it, and its output weights and intercept, scaled by the shrinkage and the line-search step, become
rows of the final output layer. :class:`BoostedNet` holds that final network at every point of training:

    phi = trunk(x)                                   # any zoo model ([batch, features]); flattened x without one
    h   = sigma(phi W_hidden + a)                    # [batch, T * J], sigma the logistic function (the paper's)
    F   = (h * mask) W_out + b + sum_t on_t c_t      # [batch, outputs]

``mask [T * J]`` switches units on and off, and ``on_t`` is 1 for a stage with any unit on. ``b`` is the constant
model ``F_0`` and ``c_t`` (``stage_bias [T, outputs]``) stage t's own intercept, kept apart so that switching off
the stages trained last gives exactly the boosted sum truncated there (the reference's ``staged_score``); with every
unit on, ``b + sum_t c_t`` is the single bias of the assembled network (:func:`to_single_network`). The mask is the
variable ``('boosting', 'mask')`` (all ones at initialisation, so a freshly built model is an ordinary dense network
that backprop can train as the baseline), or the ``units`` argument of a call: a float mask ``[T * J]`` or an int n
(the first n units, i.e. switching off the units trained last, the paper's speed/accuracy knob). Units
``[t J, (t + 1) J)`` belong to stage ``t``.

The hidden kernel of each stage is initialised like the reference's fresh ``MLPRegressor(hidden=(J,),
activation='logistic')`` (sklearn's Glorot uniform for the logistic function over the stage's own fan-in/fan-out,
``U(+-sqrt(2 / (fan_in + J)))``, for the hidden weights and biases, and ``U(+-sqrt(2 / (J + outputs)))`` for the
output rows), so every stage starts as the reference's independent network does.

Public names:

* :class:`BoostedNet` ``(outputs, num_stages=200, stage_units=1, trunk=None, activation='sigmoid')``:
  ``__call__(x, *, train=False, units=None) -> [batch, outputs]``; methods ``features(x) -> [batch, f]``,
  ``hidden(x) -> [batch, T * J]``, ``readout(h, units=None) -> [batch, outputs]`` and ``probe(x) -> [batch,
  outputs]`` (a linear classifier on the trunk's features, used only to pre-train the trunk).
* :func:`to_single_network` ``(model, variables) -> (core.MLP, variables)``: the assembled network (without a
  trunk) as a plain ``zoo.core.MLP((T * J, outputs))`` with the masked units' rows zeroed and one bias.
* :func:`unit_mask` ``(units, num_units) -> [num_units]``: a float mask from an int count or a mask.
* :func:`stage_slice` ``(stage, stage_units) -> slice``: the units of one stage.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import registry
from zoo import layers
from zoo.layers import check_shape, dense, partitioned

__all__ = ["BoostedNet", "stage_slice", "to_single_network", "unit_mask"]

Dtype = Any


def stage_slice(stage: int, stage_units: int) -> slice:
  """The hidden units that stage ``stage`` trains: ``[stage * J, (stage + 1) * J)``."""
  return slice(stage * stage_units, (stage + 1) * stage_units)


def unit_mask(units, num_units: int) -> jax.Array:
  """``units`` as a float mask ``[num_units]``: an int n switches on the first n units; a mask is checked."""
  if isinstance(units, int) or (hasattr(units, "ndim") and units.ndim == 0):
    return (jnp.arange(num_units) < units).astype(jnp.float32)
  check_shape(units, "units", "units", where="BoostedNet", units=num_units)
  return jnp.asarray(units, jnp.float32)


def _glorot_logistic(fan_in: int, fan_out: int):
  """sklearn's MLP initialisation for the logistic activation: ``U(+-sqrt(2 / (fan_in + fan_out)))``."""
  bound = math.sqrt(2.0 / (fan_in + fan_out))
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class _StageDense(nn.Module):
  """``x W + b`` whose kernel ``[in, out]`` and bias are initialised per stage as a fresh reference network's:
  ``U(+-sqrt(2 / (fan_in + fan_out)))`` with the stage's own fan-in/out (``fan_in`` None: the input width)."""
  features: int
  fan_out: int
  axes: tuple[str, str]
  fan_in: int | None = None
  init_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    check_shape(x, "x", "... features", where="BoostedNet/" + self.name if self.name else "BoostedNet",
                features=layers.dim(layers.param_shape(self, "kernel"), 0))
    init = _glorot_logistic(self.fan_in or x.shape[-1], self.fan_out)
    kernel = self.param("kernel", partitioned(init, self.axes), (x.shape[-1], self.features), self.param_dtype)
    bias_init = init if self.init_bias else nn.initializers.zeros_init()
    bias = self.param("bias", partitioned(bias_init, self.axes[1:]), (self.features,), self.param_dtype)
    dtype = self.dtype or jnp.result_type(x, kernel)
    return jnp.dot(x.astype(dtype), kernel.astype(dtype)) + bias.astype(dtype)


def _to_hashable(value):
  if isinstance(value, Mapping):
    return flax.core.FrozenDict({k: _to_hashable(v) for k, v in value.items()})
  if isinstance(value, list):
    return tuple(_to_hashable(v) for v in value)
  return value


class BoostedNet(nn.Module):
  """A trunk and one boosted hidden layer of ``num_stages * stage_units`` units (module docstring).

  Attributes:
    outputs: output width (classes, or regression targets).
    num_stages: T, the boosting stages (the paper's hidden layer has T * J units).
    stage_units: J, the units each stage adds (the paper's default is 1).
    trunk: None (the boosted layer reads the flattened input: the paper's shallow GBNN), a zoo Linen module
      mapping ``x`` to ``[batch, features]`` (e.g. ``core.ConvNet(num_classes=64, hidden=())`` for the paper's
      CNN + GBNN), or a mapping ``{'name': 'core.ConvNet', **fields}`` (config files).
    activation: the hidden nonlinearity, a function or a ``flax.linen`` name (the paper's is the logistic
      sigmoid).

  Call: ``x: [batch, ...]`` float (what the trunk takes) -> ``[batch, outputs]``.
  """
  outputs: int
  num_stages: int = 200
  stage_units: int = 1
  trunk: Any = None
  activation: str | Callable[[jax.Array], jax.Array] = "sigmoid"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def __post_init__(self):
    if isinstance(self.trunk, Mapping):
      object.__setattr__(self, "trunk", _to_hashable(self.trunk))
    super().__post_init__()

  @property
  def num_units(self) -> int:
    return self.num_stages * self.stage_units

  def setup(self):
    if self.num_stages < 1 or self.stage_units < 1 or self.outputs < 1:
      raise ValueError(f"BoostedNet: `num_stages`, `stage_units` and `outputs` must be >= 1; got {self.num_stages}, "
                       f"{self.stage_units}, {self.outputs}.")
    if isinstance(self.trunk, nn.Module):
      self.net = self.trunk
    elif isinstance(self.trunk, Mapping):
      spec = dict(self.trunk)
      name = spec.pop("name", None)
      if not name:
        raise ValueError(f"BoostedNet: a `trunk` given as a mapping needs name='family.Class' (e.g. 'core.ConvNet'); "
                         f"got {dict(self.trunk)!r}.")
      spec = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in spec.items()}
      self.net = registry.build_model(name, **spec).clone(parent=self, name="trunk")
    elif self.trunk is not None:
      raise TypeError(f"BoostedNet: `trunk` must be None, a Linen module or a mapping with a 'name'; got "
                      f"{type(self.trunk).__name__}.")
    self.mask = self.variable("boosting", "mask", lambda: jnp.ones((self.num_units,), jnp.float32))
    self.hidden_layer = _StageDense(self.num_units, self.stage_units, ("embed", "mlp"), dtype=self.dtype,
                                    param_dtype=self.param_dtype, name="hidden")
    # The output bias starts at 0: the procedure sets it to the constant model F_0 before the first stage.
    self.readout_layer = _StageDense(self.outputs, self.outputs, ("mlp", "classes"), fan_in=self.stage_units,
                                     init_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name="readout")
    # The stages' own output intercepts c_t, one row per stage (0 at initialisation).
    self.stage_bias = self.param("stage_bias", partitioned(nn.initializers.zeros_init(), (None, "classes")),
                                 (self.num_stages, self.outputs), self.param_dtype)
    self.probe_layer = dense(self.outputs, axes=("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                             name="probe")

  def _act(self):
    fn = self.activation
    if callable(fn):
      return fn
    resolved = getattr(nn, fn, None) if isinstance(fn, str) else None
    if not callable(resolved):
      raise ValueError(f"BoostedNet: `activation` must be a function or a flax.linen activation name such as "
                       f"'sigmoid', 'relu', 'tanh'; got {fn!r}.")
    return resolved

  def features(self, x, *, train: bool = False):
    """``phi(x)``: the trunk's output ``[batch, f]`` (or the flattened input without a trunk)."""
    check_shape(x, "x", "... features", where="BoostedNet", dtype="floating")
    if x.ndim < 2:
      raise ValueError(f"BoostedNet: `x` must have shape [batch, ...] (rank >= 2); got shape {tuple(x.shape)}.")
    if self.trunk is not None:
      takes_train = "train" in inspect.signature(type(self.net).__call__).parameters
      x = self.net(x, train=train) if takes_train else self.net(x)
      if x.ndim != 2:
        raise ValueError(f"BoostedNet: the trunk must return [batch, features]; it returned shape {tuple(x.shape)}.")
    return x.reshape(x.shape[0], -1)

  def hidden(self, x, *, train: bool = False):
    """``sigma(phi(x) W_hidden + a)``: every unit's activation ``[batch, T * J]`` (no mask)."""
    return self._act()(self.hidden_layer(self.features(x, train=train)))

  def readout(self, h, units=None):
    """``(h * mask) W_out + b + stage_on C``: ``h [batch, T * J]`` -> ``[batch, outputs]``; ``units`` as in
    ``__call__``. ``stage_on [T]`` is 1 for a stage with any unit switched on."""
    check_shape(h, "h", "batch units", where="BoostedNet", dtype="floating", units=self.num_units)
    mask = self.mask.value if units is None else unit_mask(units, self.num_units)
    stage_on = jnp.max(mask.reshape(self.num_stages, self.stage_units), axis=-1)
    out = self.readout_layer(h * mask.astype(h.dtype))
    return out + jnp.dot(stage_on.astype(out.dtype), self.stage_bias.astype(out.dtype))

  def probe(self, x, *, train: bool = False):
    """A linear map of the trunk's features to ``[batch, outputs]``, to pre-train the trunk before boosting."""
    return self.probe_layer(self.features(x, train=train))

  def init_all(self, x, *, train: bool = False):
    """Creates every parameter (the boosted network and the trunk's probe); returns ``__call__``'s output."""
    self.probe(x, train=train)
    return self(x, train=train)

  def __call__(self, x, *, train: bool = False, units=None):
    return self.readout(self.hidden(x, train=train), units)


def to_single_network(model: BoostedNet, variables) -> tuple[nn.Module, dict[str, Any]]:
  """The assembled ``BoostedNet`` (no trunk) as ``zoo.core.MLP((T * J, outputs))`` and its variables.

  The output rows of switched-off units are zeroed and the bias is ``b + sum_t on_t c_t``, so the MLP computes
  what ``model.apply(variables, x)`` does.
  """
  from zoo import core  # pylint: disable=g-import-not-at-top
  if model.trunk is not None:
    raise ValueError("to_single_network: the BoostedNet has a trunk; export its head by hand (trunk + MLP).")
  params = nn.unbox(variables["params"])
  mask = jnp.asarray(variables.get("boosting", {}).get("mask", jnp.ones((model.num_units,))), jnp.float32)
  stage_on = jnp.max(mask.reshape(model.num_stages, model.stage_units), axis=-1)
  readout = params["readout"]
  mlp = core.MLP((model.num_units, model.outputs), activation=model.activation)
  mlp_params = {"dense_0": dict(params["hidden"]),
                "dense_1": {"kernel": readout["kernel"] * mask[:, None].astype(readout["kernel"].dtype),
                            "bias": readout["bias"] + stage_on @ params["stage_bias"]}}
  return mlp, {"params": mlp_params}
