"""Dendrite nodes for any zoo model, as Perforated Backpropagation adds them.

Paper: Brenner & Itti, "Perforated Backpropagation: A Neuroscience Inspired Extension to Artificial Neural
Networks" (2025, arXiv 2501.18018); reference API github.com/PerforatedAI/PerforatedAI (read to match the
structure; nothing is copied). The training procedure (neuron phases, dendrite phases, cycles) is
``zoo.recipes.procedures.perforated``.

:class:`Perforated` wraps any Linen model (an MLP, a ConvNet, a GNN ...) and gives every ``nn.Dense`` and
``nn.Conv`` inside it (found with ``nn.intercept_methods``, so the wrapped model's code is untouched) up to
``num_dendrites`` *dendrite nodes per neuron*. A neuron is one output feature of such a layer (for a convolution,
one channel at every position). Dendrite ``k`` of the layer is a copy of the layer with its own weights, reading the
layer's input ``x`` and the outputs of the earlier dendrites of the same neuron (cascade connections, as in
cascade-correlation):

    d_k = activation(W_k x + b_k + sum_{j<k} v_kj * d_j)                 # [..., features], one per neuron
    y   = W x + b + sum_{k < active} c_k * stop_gradient(d_k)             # the neuron's pre-activation

``c_k`` (``to_neuron``, initialised to 0) is learned with the neurons. The ``stop_gradient`` is the "perforation":
no error flows into a dendrite or through it to earlier layers; dendrites learn only in their own phase, by
maximising the correlation of their output with the neuron's remaining error (``zoo.recipes.procedures.perforated``). Earlier
dendrites' outputs enter the cascade as constants too, so a dendrite's objective reaches only its own weights.

Parameters per wrapped layer live beside the wrapped model's, under ``dendrites_<layer path>``:
``slot_k/{kernel, bias}`` (the layer's own shapes and logical axis names), ``cascade [K, K, features]`` and
``to_neuron [K, features]``. Dendrite weights start as ``init_scale`` x N(0, 1) (the reference's candidate weight
initialisation multiplier, 0.01).

Public names:

* :class:`Perforated` ``(base, num_dendrites=1)``: call ``(x, *, train=False, active_dendrites=None)`` -> what
  ``base`` returns. ``active_dendrites`` (int, may be traced) is how many dendrites per neuron are switched in;
  ``None`` reads the ``'perforation'`` collection's ``active`` counter (0 at init, so a freshly built model is
  exactly its base). With the ``'intermediates'`` collection mutable, every wrapped layer sows ``dendrites``:
  all K dendrite outputs ``[K, ..., features]``; with a ``'perturbations'`` collection passed in, the gradient
  with respect to ``perturbations[<bank>]['error']`` is the layer's error ``dL/dy``.
* :func:`dendrite_paths` ``(params) -> [name]``: the dendrite banks in a parameter tree.
* :func:`is_dendrite_weight` ``(path) -> bool``: whether a parameter path is a dendrite's own weight (``slot_*``
  or ``cascade``; not ``to_neuron``, which learns with the neurons).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo.layers import partitioned

__all__ = ["DendriteBank", "Perforated", "dendrite_paths", "is_dendrite_weight"]

BANK_PREFIX = "dendrites_"


def _scaled_normal_like(init: Callable, scale: float) -> Callable:
  """An initialiser returning ``scale * N(0, 1)`` values with the same metadata (logical axes) as ``init``'s."""
  def new_init(key, shape, dtype=jnp.float32):
    boxed = init(key, shape, dtype)
    value = scale * jax.random.normal(key, shape, dtype)
    return boxed.replace_boxed(value) if isinstance(boxed, nn.meta.AxisMetadata) else value
  return new_init


class DendriteBank(nn.Module):
  """The dendrites of one wrapped layer (module docstring).

  Attributes:
    make_slot: ``(parent, name) -> module``: a copy of the wrapped layer (same class, shapes and axis names).
    num_dendrites: K.
    activation: the dendrites' nonlinearity (the reference's default is the sigmoid).

  Call: ``(x, y, active)`` with the layer's input ``x``, its output ``y [..., features]`` and the number of active
  dendrites -> ``y + sum_{k < active} c_k * stop_gradient(d_k)``.
  """
  make_slot: Callable[..., nn.Module]
  num_dendrites: int
  activation: Callable[[jax.Array], jax.Array] = nn.sigmoid

  @nn.compact
  def __call__(self, x, y, active):
    features = y.shape[-1]
    k_count = self.num_dendrites
    x = jax.lax.stop_gradient(x)
    # Small per-neuron vectors: replicated (the wrapped layer's output axis name is not known here).
    cascade = self.param("cascade", partitioned(nn.initializers.zeros_init(), (None, None, None)),
                         (k_count, k_count, features))
    to_neuron = self.param("to_neuron", partitioned(nn.initializers.zeros_init(), (None, None)), (k_count, features))
    outs = []
    for k in range(k_count):
      pre = self.make_slot(self, f"slot_{k}")(x)
      for j in range(k):
        # Earlier dendrites are frozen constants here: a dendrite's objective reaches only its own weights.
        pre = pre + cascade[k, j].astype(pre.dtype) * jax.lax.stop_gradient(outs[j])
      outs.append(self.activation(pre))
    dendrites = jnp.stack(outs)  # [K, ..., features]
    self.sow("intermediates", "dendrites", dendrites)
    on = (jnp.arange(k_count) < active).astype(y.dtype)
    weights = (to_neuron.astype(y.dtype) * on[:, None]).reshape((k_count,) + (1,) * (y.ndim - 1) + (features,))
    y = y + jnp.sum(weights * jax.lax.stop_gradient(dendrites).astype(y.dtype), 0)
    if not self.is_initializing():
      y = self.perturb("error", y)
    return y


def _takes_train(module: nn.Module) -> bool:
  return "train" in inspect.signature(type(module).__call__).parameters


def _to_hashable(value):
  if isinstance(value, Mapping):
    return flax.core.FrozenDict({k: _to_hashable(v) for k, v in value.items()})
  if isinstance(value, list):
    return tuple(_to_hashable(v) for v in value)
  return value


def _build_base(spec: Mapping[str, Any], name: str) -> nn.Module:
  kwargs = dict(spec)
  model_name = kwargs.pop("name", None)
  if not model_name or "." not in model_name:
    raise ValueError(f"Perforated: a `base` given as a mapping needs name='family.Class' (e.g. 'core.MLP'); got "
                     f"{dict(spec)!r}.")
  family, _, cls_name = model_name.rpartition(".")
  cls = getattr(importlib.import_module(f"zoo.{family}"), cls_name, None)
  if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
    raise ValueError(f"Perforated: base {model_name!r} is not a zoo model.")
  kwargs = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in kwargs.items()}
  return cls(**kwargs, name=name)


class Perforated(nn.Module):
  """Any zoo model with dendrite nodes on its ``Dense``/``Conv`` neurons (module docstring).

  Attributes:
    base: the wrapped model (a Linen module), or a mapping ``{'name': 'core.MLP', **fields}`` (config files).
    num_dendrites: dendrite slots per neuron (one per cycle of Perforated Backpropagation).
    activation: the dendrites' nonlinearity (sigmoid, the reference's default).
    init_scale: dendrite weights start as ``init_scale * N(0, 1)``.
    exclude: names of wrapped layers (their module names, e.g. ``'head'``) that get no dendrites.

  Call: ``x`` as ``base`` takes it, ``train``, ``active_dendrites`` -> ``base``'s output.
  """
  base: Any
  num_dendrites: int = 1
  activation: Callable[[jax.Array], jax.Array] = nn.sigmoid
  init_scale: float = 0.01
  exclude: tuple[str, ...] = ()

  def __post_init__(self):
    if isinstance(self.base, Mapping):
      object.__setattr__(self, "base", _to_hashable(self.base))
    if isinstance(self.exclude, list):
      object.__setattr__(self, "exclude", tuple(self.exclude))
    super().__post_init__()

  def _base_module(self) -> nn.Module:
    if isinstance(self.base, nn.Module):
      return self.base
    if isinstance(self.base, Mapping):
      return _build_base(self.base, name="base")
    raise TypeError(f"Perforated: `base` must be a Linen module or a mapping with a 'name'; got "
                    f"{type(self.base).__name__}.")

  @nn.compact
  def __call__(self, x, *, train: bool = False, active_dendrites=None):
    if self.num_dendrites < 1:
      raise ValueError(f"Perforated: `num_dendrites` must be >= 1; got {self.num_dendrites}.")
    counter = self.variable("perforation", "active", lambda: jnp.zeros((), jnp.int32))
    active = counter.value if active_dendrites is None else jnp.asarray(active_dendrites, jnp.int32)
    base = self._base_module()
    prefix = (*self.path, "base")
    banks: dict[str, DendriteBank] = {}  # a layer called twice (shared weights) keeps one set of dendrites

    def interceptor(next_fun, args, kwargs, context):
      module = context.module
      if (context.method_name != "__call__" or not isinstance(module, (nn.Dense, nn.Conv))
          or tuple(module.path[:len(prefix)]) != prefix or module.name in self.exclude):
        return next_fun(*args, **kwargs)
      y = next_fun(*args, **kwargs)
      inner = tuple(module.path[len(prefix):])
      make_slot = lambda parent, name, m=module: m.clone(
          parent=parent, name=name, kernel_init=_scaled_normal_like(m.kernel_init, self.init_scale),
          bias_init=_scaled_normal_like(m.bias_init, self.init_scale))
      name = BANK_PREFIX + "__".join(inner)
      if name not in banks:
        banks[name] = DendriteBank(make_slot, self.num_dendrites, self.activation, parent=self, name=name)
      return banks[name](args[0], y, active)

    kwargs = {"train": train} if _takes_train(base) else {}
    with nn.intercept_methods(interceptor):
      return base(x, **kwargs)


def dendrite_paths(params) -> list[str]:
  """Names of the dendrite banks (``dendrites_<layer>``) at the top of a ``Perforated`` parameter tree."""
  return sorted(k for k in params if str(k).startswith(BANK_PREFIX))


def is_dendrite_weight(path) -> bool:
  """True for a dendrite's own weights (``dendrites_*/slot_*/...`` and ``dendrites_*/cascade``)."""
  keys = [getattr(p, "key", getattr(p, "name", p)) for p in path]
  keys = [str(k) for k in keys]
  for i, key in enumerate(keys[:-1]):
    if key.startswith(BANK_PREFIX):
      return keys[i + 1].startswith("slot_") or keys[i + 1] == "cascade"
  return False
