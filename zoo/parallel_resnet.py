"""Deep residual stacks and their first-order shallow replacement: "Make Deep Networks Shallow Again".

Paper: "Make Deep Networks Shallow Again" (Bermeitinger, Hrycej, Pavone and Handschuh, 2023, arXiv 2309.08414).
A residual stack ``(I + f_L) o ... o (I + f_1)(x)`` expands like a Taylor series into
``x + sum_i f_i(x) + (cross terms of second and higher order)``; truncating after the first-order terms gives one
broad layer ``y = x + sum_i f_i(x)`` whose ``L`` branches all read the same input, at the same parameter count.

Public names (``x: [batch, height, width, channels]`` float):

* :class:`ResidualStack` ``(features, num_blocks, kernel_size=3, num_classes=None)``: an optional stem convolution
  to ``features`` channels, ``num_blocks`` blocks ``x <- x + s * act(conv_i(x))`` (same-channel ``'SAME'``
  convolutions), and, with ``num_classes``, a flatten + dense classifier head -> logits ``[batch, num_classes]``
  (else the body's output ``[batch, H, W, features]``). ``s = branch_scale`` (1 by default) is the ``epsilon`` of the
  paper's expansion.
* :class:`ParallelShallow`: the same stem, head and branch parameters, but ``y = x + s * sum_i act(conv_i(x))``:
  the ``L`` branch kernels ``[k, k, C, C]`` are stacked into one wide convolution ``[k, k, C, L*C]`` (one matmul for
  all branches, the issue's kernel note) whose output groups are summed. ``first_order=False`` drops the branch sum
  (``y = x``, the zeroth-order truncation): the ablation of the parallel branches.
* :func:`to_parallel` ``(stack_params) -> parallel_params``: the :class:`ParallelShallow` parameters holding exactly a
  :class:`ResidualStack`'s weights (the kernels concatenated along the output axis).
* :func:`expansion_gap` ``(stack, variables, x, *, order=1) -> float``: ``||deep(x) - shallow(x)|| / ||x||`` between
  a :class:`ResidualStack` and its truncation with the same weights (``order=1``: the parallel net; ``order=0``:
  the identity). With ``branch_scale = eps`` it is ``O(eps^2)`` for ``order=1`` and ``O(eps)`` for ``order=0``.

Deviation: the paper's experiments use conv blocks with an activation on MNIST/CIFAR-10; the exact placement of the
activation inside ``f_i`` is ``act(conv(x))`` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo import transformer

__all__ = ["ParallelShallow", "ResidualStack", "expansion_gap", "to_parallel"]

Dtype = Any


class _Base(nn.Module):
  features: int = 16
  num_blocks: int = 6
  kernel_size: int = 3
  num_classes: int | None = None
  stem: bool = True
  branch_scale: float = 1.0
  activation: Any = "relu"
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def _check(self, x):
    where = type(self).__name__
    layers.check_shape(x, "x", "batch height width channels", where=where, dtype="floating")
    for name in ("features", "num_blocks", "kernel_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: `{name}` must be an integer >= 1; got {value!r}.")
    if x.shape[0] == 0:
      raise ValueError(f"{where}: `x` must hold at least one example; got shape {tuple(x.shape)}.")
    if not self.stem and x.shape[-1] != self.features:
      raise ValueError(f"{where}: without a stem `x` must have features={self.features} channels; got shape "
                       f"{tuple(x.shape)}.")

  def _conv(self, features, name):
    return layers.conv(features, (self.kernel_size, self.kernel_size), dtype=self.dtype,
                       param_dtype=self.param_dtype, name=name)

  def _stem(self, x):
    return self._conv(self.features, "stem")(x) if self.stem else x

  def _head(self, x):
    if self.num_classes is None:
      return x
    x = x.reshape(x.shape[0], -1)
    return layers.dense(self.num_classes, axes=("embed", "classes"), dtype=self.dtype, param_dtype=self.param_dtype,
                        name="head")(x)


class ResidualStack(_Base):
  """The deep residual stack ``(I + f_L) o ... o (I + f_1)``, ``f_i(x) = branch_scale * act(conv_i(x))``.

  Attributes:
    features: channels of the residual stream (every block is ``features -> features``).
    num_blocks: ``L``.
    kernel_size: square window of each convolution (``'SAME'`` padding).
    num_classes: if set, a flatten + dense head to logits; else the body's output is returned.
    stem: a convolution from the input channels to ``features`` first (False: the input must have ``features``).
    branch_scale: ``epsilon`` multiplying every ``f_i`` (the expansion's small parameter; 1 for training).
    activation: name in ``zoo.transformer.ACTIVATIONS`` or a callable.

  Call: ``x: [batch, H, W, C]`` -> ``[batch, num_classes]`` or ``[batch, H, W, features]``.
  """

  @nn.compact
  def __call__(self, x):
    self._check(x)
    act = transformer.get_activation(self.activation)
    x = self._stem(x)
    for i in range(self.num_blocks):
      x = x + self.branch_scale * act(self._conv(self.features, f"block_{i}")(x))
    return self._head(x)


class ParallelShallow(_Base):
  """The first-order truncation ``x + sum_i f_i(x)``: all ``L`` branches read the same input, in one wide conv.

  Attributes: as :class:`ResidualStack`, and ``first_order``: True (default, the paper's shallow net) adds the
  branch sum; False returns ``x`` after the stem (the zeroth-order truncation, the ablation).

  Parameters: ``branches/kernel: [k, k, features, num_blocks * features]`` and ``branches/bias``, block ``i``'s
  kernel being output columns ``i * features : (i + 1) * features`` (see :func:`to_parallel`).

  Call: ``x: [batch, H, W, C]`` -> ``[batch, num_classes]`` or ``[batch, H, W, features]``.
  """
  first_order: bool = True

  @nn.compact
  def __call__(self, x):
    self._check(x)
    act = transformer.get_activation(self.activation)
    x = self._stem(x)
    h = act(self._conv(self.num_blocks * self.features, "branches")(x))  # [b, H, W, L*C], one convolution
    h = h.reshape(*h.shape[:-1], self.num_blocks, self.features).sum(-2)
    if self.first_order:
      x = x + self.branch_scale * h
    return self._head(x)


def to_parallel(stack_params: Mapping[str, Any]) -> dict[str, Any]:
  """A :class:`ResidualStack`'s ``params`` -> the :class:`ParallelShallow` ``params`` with the same weights."""
  params = nn.unbox(dict(stack_params))
  blocks = sorted((k for k in params if k.startswith("block_")), key=lambda k: int(k.split("_")[1]))
  if not blocks:
    raise ValueError("to_parallel: `stack_params` has no block_<i> entries; pass a ResidualStack's params.")
  out = {k: v for k, v in params.items() if not k.startswith("block_")}
  out["branches"] = {"kernel": jnp.concatenate([params[b]["kernel"] for b in blocks], axis=-1),
                     "bias": jnp.concatenate([params[b]["bias"] for b in blocks], axis=-1)}
  return out


def expansion_gap(stack: ResidualStack, variables, x, *, order: int = 1) -> jax.Array:
  """Relative gap ``||deep(x) - shallow(x)|| / ||x||`` between ``stack`` and its truncation with the same weights.

  Args:
    stack: a :class:`ResidualStack` (any ``branch_scale``).
    variables: its variables (``{'params': ...}``).
    x: ``[batch, H, W, C]`` input.
    order: 1: the first-order truncation (:class:`ParallelShallow`); 0: the zeroth order (the identity after the
      stem, ``first_order=False``).

  Returns:
    a scalar, ``O(branch_scale^2)`` for ``order=1`` and ``O(branch_scale)`` for ``order=0``.
  """
  if not isinstance(stack, ResidualStack):
    raise TypeError(f"expansion_gap: `stack` must be a ResidualStack; got {type(stack).__name__}.")
  if order not in (0, 1):
    raise ValueError(f"expansion_gap: `order` must be 0 or 1; got {order!r}.")
  fields = {f: getattr(stack, f) for f in ("features", "num_blocks", "kernel_size", "num_classes", "stem",
                                           "branch_scale", "activation", "dtype", "param_dtype")}
  shallow = ParallelShallow(**fields, first_order=order == 1)
  deep = stack.apply(variables, x)
  flat = shallow.apply({"params": to_parallel(variables["params"])}, x)
  return jnp.linalg.norm((deep - flat).ravel()) / jnp.linalg.norm(jnp.asarray(x).ravel())
