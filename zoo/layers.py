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
import jax.numpy as jnp
import numpy as np

__all__ = ["check_shape", "conv", "dense", "layer_norm", "partitioned"]

default_kernel_init = nn.initializers.lecun_normal()


def partitioned(init, names: Sequence[str | None]):
  """``init`` whose parameter carries the logical axis ``names`` (one per dimension)."""
  return nn.with_logical_partitioning(init, tuple(names))


def dense(features: int, *, axes: tuple[str | None, str | None] = ("embed", "mlp"), use_bias: bool = True,
          kernel_init=default_kernel_init, bias_init=nn.initializers.zeros_init(), dtype=None,
          param_dtype=jnp.float32, name: str | None = None) -> nn.Dense:
  """``nn.Dense`` whose kernel ``[in, features]`` has logical axes ``axes`` and bias ``[features]`` ``axes[1]``."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                  kernel_init=partitioned(kernel_init, axes), bias_init=partitioned(bias_init, axes[1:]),
                  name=name)


def conv(features: int, kernel_size: Sequence[int], *, strides: int | Sequence[int] = 1, padding: Any = "SAME",
         use_bias: bool = True, kernel_init=default_kernel_init, dtype=None, param_dtype=jnp.float32,
         name: str | None = None) -> nn.Conv:
  """``nn.Conv`` whose kernel ``[*window, in, out]`` has logical axes ``(None, ..., 'conv_in', 'conv_out')``."""
  window = (None,) * len(kernel_size)
  return nn.Conv(features, tuple(kernel_size), strides=strides, padding=padding, use_bias=use_bias, dtype=dtype,
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
    **sizes: required sizes of named dimensions (``features=16``); a ``None`` size is not checked.

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
    want = sizes.get(d)
    if want is not None and n != want:
      raise ValueError(f"{where}: `{name}` must have shape {expected}; got shape {shape} ({d}={n}, expected {want}).")
  if dtype is not None and not jnp.issubdtype(np.dtype(x.dtype), _DTYPE_KINDS[dtype]):
    raise TypeError(f"{where}: `{name}` must have a {dtype} dtype; got {np.dtype(x.dtype)} (shape {shape}).")
