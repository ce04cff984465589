"""Small mechanisms every family shares: parameters with logical axis names, and input checks.

Parameters carry *logical* axis names (``'embed'``, ``'mlp'``, ``'heads'`` ...); the one table that maps them to
mesh axes lives in ``zoo.recipes.sharding``. A model never names a mesh axis. The vocabulary:

=============  ==========================================================
``batch``      examples (activations only)
``length``     sequence / set / spatial positions (activations only)
``embed``      the model width, and the input features of a layer
``mlp``        the hidden width of an MLP / the output features of a layer
``heads``      attention heads
``kv``         features per head
``vocab``      token vocabulary
``classes``    classifier outputs
``conv_in``    input channels of a convolution
``conv_out``   output channels of a convolution
``norm``       scale/bias of a normalisation layer
=============  ==========================================================

Inputs are checked once at the module boundary with :func:`check_shape`, so a wrong rank, size or dtype raises a
``ValueError``/``TypeError`` naming the argument, the expected shape and the received one, at trace time and
before XLA sees anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Conv", "Dense", "Embed", "check_indices", "check_rate", "check_shape", "dim", "param_shape", "conv", "dense", "dropout", "layer_norm", "partitioned"]

default_kernel_init = nn.initializers.lecun_normal()


def partitioned(init, names: Sequence[str | None]):
  """``init`` whose parameter carries the logical axis ``names`` (one per dimension)."""
  return nn.with_logical_partitioning(init, tuple(names))


def param_shape(module: nn.Module, *path: str, collection: str = "params") -> tuple[int, ...] | None:
  """Shape of ``module``'s existing variable at ``path`` (``None`` while initialising or if absent).

  For input checks at apply time, before flax meets a mismatch deep inside (``ScopeParamShapeError``)::

    check_shape(x, 'x', '... features', where=..., features=dim(param_shape(self, 'coef'), 1))
  """
  if module.scope is None or module.is_initializing():
    return None
  tree = module.variables.get(collection, {})
  for key in path:
    if not hasattr(tree, "get") or key not in tree:
      return None
    tree = tree[key]
  return tuple(jnp.shape(nn.meta.unbox(tree)))


def dim(shape: tuple[int, ...] | None, axis: int) -> int | None:
  """``shape[axis]``, or ``None`` for an absent shape (see :func:`param_shape`)."""
  return None if shape is None else shape[axis]


def _where(layer: nn.Module) -> str:
  """``'TopModel/sub/layer'``: the layer's path under the model the user applied."""
  root = layer
  while isinstance(root.parent, nn.Module):
    root = root.parent
  return "/".join((type(root).__name__, *layer.scope.path))


def _check_width(layer: nn.Module, inputs, width: int, kind: str) -> None:
  """At apply time, a wrong input width as a ValueError naming the layer, not flax's ScopeParamShapeError."""
  if layer.is_initializing() or not layer.has_variable("params", "kernel"):
    return
  kernel = nn.meta.unbox(layer.get_variable("params", "kernel"))
  expected = kernel.shape[-2] * width
  if jnp.ndim(inputs) < 1 or jnp.shape(inputs)[-1] != expected:
    raise ValueError(f"{_where(layer)}: this {kind} was initialised for inputs with last dimension {expected} (kernel "
                     f"{tuple(kernel.shape)}); got inputs of shape {tuple(jnp.shape(inputs))}. Apply the model to "
                     "inputs with the feature size it was initialised with.")


class Dense(nn.Dense):
  """``nn.Dense`` that reports a wrong input width at apply time by the layer's path (what :func:`dense` builds)."""

  @nn.compact
  def __call__(self, inputs):
    _check_width(self, inputs, 1, "dense layer")
    # The unwrapped body of nn.Dense.__call__, so this stays one module call (super() would be a second one,
    # seen twice by nn.intercept_methods and capture_intermediates).
    return nn.Dense.__call__.__wrapped__(self, inputs)


class Conv(nn.Conv):
  """``nn.Conv`` that reports a wrong number of input channels at apply time (what :func:`conv` builds)."""

  @nn.compact
  def __call__(self, inputs):
    _check_width(self, inputs, self.feature_group_count, "convolution")
    return nn.Conv.__call__.__wrapped__(self, inputs)  # one module call, as Dense


def check_indices(idx: Any, name: str, size: int, *, where: str, valid: Any = None) -> bool:
  """Raises a ValueError if concrete integer ``idx`` has an entry outside ``[0, size)`` (only where ``valid``).

  Returns True when the values were checked, False when ``idx`` is traced (inside ``jit``/``vmap``), where the caller
  must make an invalid index visible (NaN outputs) instead, since a traced value cannot raise.
  """
  try:
    values = np.asarray(idx)
    keep = None if valid is None else np.asarray(valid).astype(bool)
  except jax.errors.TracerArrayConversionError:
    return False
  bad = (values < 0) | (values >= size)
  if keep is not None:
    bad = bad & np.broadcast_to(keep.reshape(keep.shape + (1,) * (bad.ndim - keep.ndim)), bad.shape)
  if bad.any():
    first = np.argwhere(bad)[0]
    raise ValueError(f"{where}: `{name}` must hold indices in [0, {size}); {int(bad.sum())} of {bad.size} are "
                     f"outside it (first: {int(values[tuple(first)])} at position {tuple(int(i) for i in first)}).")
  return True


class Embed(nn.Embed):
  """``nn.Embed`` whose token ids are range-checked when concrete (traced out-of-range ids give NaN rows)."""

  def __call__(self, inputs):
    if not check_indices(inputs, "tokens", self.num_embeddings, where=_where(self)):
      # Traced: send negative ids out of bounds too (jnp.take would wrap them), so every invalid id reads NaN.
      inputs = jnp.where(inputs < 0, self.num_embeddings, inputs)
    return nn.Embed.__call__.__wrapped__(self, inputs)  # one module call, as Dense


def check_rate(rate: Any, name: str, *, where: str) -> None:
  """Raises unless ``rate`` (a dropout probability) is a number in [0, 1)."""
  if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)) or not 0.0 <= rate < 1.0:
    raise ValueError(f"{where}: `{name}` must be a number in [0, 1); got {rate!r}.")


def dropout(rate: float, *, deterministic: bool, where: str = "Dropout", name: str | None = None) -> nn.Dropout:
  """``nn.Dropout`` whose rate is checked to lie in [0, 1) (flax zeroes the output at 1 and ignores negatives)."""
  check_rate(rate, "dropout_rate", where=where)
  return nn.Dropout(rate, deterministic=deterministic, name=name)


def dense(features: int, *, axes: tuple[str | None, str | None] = ("embed", "mlp"), use_bias: bool = True,
          kernel_init=default_kernel_init, bias_init=nn.initializers.zeros_init(), dtype=None,
          param_dtype=jnp.float32, name: str | None = None) -> nn.Dense:
  """:class:`Dense` whose kernel ``[in, features]`` has logical axes ``axes`` and bias ``[features]`` ``axes[1]``."""
  return Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                  kernel_init=partitioned(kernel_init, axes), bias_init=partitioned(bias_init, axes[1:]),
                  name=name)


def conv(features: int, kernel_size: Sequence[int], *, strides: int | Sequence[int] = 1, padding: Any = "SAME",
         use_bias: bool = True, kernel_init=default_kernel_init, dtype=None, param_dtype=jnp.float32,
         name: str | None = None) -> nn.Conv:
  """:class:`Conv` whose kernel ``[*window, in, out]`` has logical axes ``(None, ..., 'conv_in', 'conv_out')``."""
  window = (None,) * len(kernel_size)
  return Conv(features, tuple(kernel_size), strides=strides, padding=padding, use_bias=use_bias, dtype=dtype,
                 param_dtype=param_dtype, kernel_init=partitioned(kernel_init, window + ("conv_in", "conv_out")),
                 bias_init=partitioned(nn.initializers.zeros_init(), ("conv_out",)), name=name)


def layer_norm(*, use_scale: bool = True, use_bias: bool = True, epsilon: float = 1e-5, dtype=None,
               param_dtype=jnp.float32, name: str | None = None) -> nn.LayerNorm:
  """``nn.LayerNorm`` over the last axis, its scale and bias on the logical axis ``'norm'``."""
  return nn.LayerNorm(epsilon=epsilon, use_scale=use_scale, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                      scale_init=partitioned(nn.initializers.ones_init(), ("norm",)),
                      bias_init=partitioned(nn.initializers.zeros_init(), ("norm",)), name=name)


_DTYPE_KINDS = {"floating": jnp.floating, "integer": jnp.integer, "number": jnp.number}


def check_shape(x: Any, name: str, spec: str, *, where: str, dtype: str | None = None, **sizes: int | None) -> None:
  """Raises a clear error unless ``x`` has the shape described by ``spec``.

  Args:
    x: the array-like argument to check (a jax or numpy array, or a tracer).
    name: the argument's name, as the user passed it.
    spec: space-separated dimension names, optionally starting with ``...`` for any number of leading axes,
      e.g. ``'batch length features'`` or ``'... queries features'``.
    where: what is checking (usually the module's class name), for the message.
    dtype: ``'floating'``, ``'integer'`` or ``'number'`` to also require that kind of dtype.
    **sizes: required sizes of named dimensions (``features=16``); a ``None`` size is not checked. A dimension
      named ``batch`` must be non-empty.

  Raises:
    TypeError: ``x`` is not an array, or has the wrong kind of dtype.
    ValueError: wrong rank or a named dimension of the wrong size.
  """
  names = spec.split()
  leading = bool(names) and names[0] == "..."
  dims = names[1:] if leading else names
  expected = "[" + ", ".join(
      (f"{d}={sizes[d]}" if sizes.get(d) is not None else d) for d in names) + "]"
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    raise TypeError(f"{where}: `{name}` must be an array of shape {expected}; got {type(x).__name__}.")
  shape = tuple(x.shape)
  if (len(shape) < len(dims)) if leading else (len(shape) != len(dims)):
    rank = f"rank >= {len(dims)}" if leading else f"rank {len(dims)}"
    raise ValueError(f"{where}: `{name}` must have shape {expected} ({rank}); got shape {shape}.")
  for d, n in zip(dims, shape[len(shape) - len(dims):]):
    if d == "batch" and n == 0:  # an empty batch would otherwise end in a ZeroDivisionError or NaN means
      raise ValueError(f"{where}: `{name}` has an empty batch (shape {shape}); pass at least one example.")
    want = sizes.get(d)
    if want is not None and n != want:
      raise ValueError(f"{where}: `{name}` must have shape {expected}; got shape {shape} ({d}={n}, expected {want}).")
  if dtype is not None and not jnp.issubdtype(np.dtype(x.dtype), _DTYPE_KINDS[dtype]):
    raise TypeError(f"{where}: `{name}` must have a {dtype} dtype; got {np.dtype(x.dtype)} (shape {shape}).")
