"""Neural memory networks: an LSTM controller with a content-addressed slot memory, and a synthetic-gradient module.

Paper: Tharindu Fernando, Simon Denman, Sridha Sridharan, Clinton Fookes, "Fast & Slow Learning: Incorporating
Synthetic Gradients in Neural Memory Controllers" (2020), arXiv:2011.05438. The synthetic-gradient module is the
decoupled neural interface of Jaderberg et al., "Decoupled Neural Interfaces using Synthetic Gradients" (ICML 2017),
arXiv:1608.05343. The memory follows the Neural Turing Machine's content addressing and erase/add write (Graves et
al., 2014, arXiv:1410.5401). The training procedure (fast synthetic-gradient updates of the controller within an
episode, slow backprop across episodes) is ``zoo.recipes.procedures.synthetic_gradients``.

A neural memory network (NMN) reads a sequence ``x [batch, time, in]``. At every step ``t`` the controller, an LSTM
(flax's ``nn.OptimizedLSTMCell``), reads the input and the previous memory read, and emits the interface:

    h_t = LSTM([x_t, r_{t-1}], (c_{t-1}, h_{t-1}))                 # the controller state, [features]
    k^w, beta^w, e, a, k^r, beta^r = split(W_i h_t + b_i)          # keys [M], strengths >= 0, erase in (0, 1), add
    w^w = softmax(beta^w cos(k^w, M_i))                             # content addressing over the N slots
    M  <- M * (1 - w^w e^T) + w^w a^T                               # erase, then add
    r_t = sum_i softmax(beta^r cos(k^r, M_i))_i M_i                 # read from the updated memory
    y_t = W_o [h_t, r_t] + b_o

The controller state ``s_t = [c_t, h_t]`` (the LSTM's cell and output, ``[2 * features]``) is where the synthetic
gradient attaches (the decoupling point): the controller's weights reach the rest of the network and every later
step only through it. :class:`NeuralMemoryNetwork` can return every ``s_t``, add a given offset to each
(``state_offset``: the gradient of a loss with respect to it is the true ``dL/ds_t``, through the memory, the output
and every later step), and cut the recurrence out of the backward pass (``truncate=True``: each step's carry enters
as a constant, so the vector-Jacobian product of ``s`` with respect to the controller's weights is the sum over
steps of the *local* products ``(ds_t / dtheta)^T g_t``, the update a decoupled module makes from its own gradient
estimate without waiting for the rest of the network; with the true ``g_t`` it is exactly backprop's
``dL/dtheta``).

Public names:

* :func:`content_weights` ``(memory [b, N, M], key [b, M], strength [b]) -> [b, N]``.
* :func:`memory_read` ``(memory [b, N, M], weights [b, N]) -> [b, M]``.
* :func:`memory_write` ``(memory [b, N, M], weights [b, N], erase [b, M], add [b, M]) -> [b, N, M]``.
* :class:`SlotMemory` ``(num_slots, slot_size)``: the learned initial memory ``[N, M]``; ``__call__(batch) ->
  [batch, N, M]``.
* :class:`MemoryController` ``(features, num_slots, slot_size)``: one step of the controller and the memory
  (the cell that :class:`NeuralMemoryNetwork` scans over time).
* :class:`NeuralMemoryNetwork` ``(outputs, features=64, num_slots=16, slot_size=16)``:
  ``__call__(x [b, t, in], *, state_offset=None, truncate=False, return_state=False) -> y [b, t, outputs]``
  (and ``s [b, t, 2 * features]`` with ``return_state``). The controller's own weights (the LSTM) are
  ``params['controller']['lstm']`` (:data:`CONTROLLER_PATH`); ``state_size`` is ``2 * features``.
* :class:`SyntheticGradient` ``(features, hidden=(64, 64), zero_init=True)``: ``(s [..., features],
  context [..., c] | None) -> g_hat [..., features]``, an MLP whose last layer starts at zero (DNI's
  initialisation, so an untrained module predicts no gradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo import layers
from zoo.layers import check_shape, dense, partitioned

__all__ = ["CONTROLLER_PATH", "MemoryController", "NeuralMemoryNetwork", "SlotMemory", "SyntheticGradient",
           "content_weights", "memory_read", "memory_write"]

Dtype = Any

CONTROLLER_PATH = ("controller", "lstm")
"""Where the controller's own weights live in a :class:`NeuralMemoryNetwork`'s ``params``."""


def content_weights(memory, key, strength):
  """``softmax_i(strength * cos(key, memory_i))``: ``[b, N, M], [b, M], [b] -> [b, N]``."""
  eps = 1e-6
  mem_norm = memory * jax.lax.rsqrt(jnp.sum(memory ** 2, -1, keepdims=True) + eps)
  key_norm = key * jax.lax.rsqrt(jnp.sum(key ** 2, -1, keepdims=True) + eps)
  similarity = jnp.einsum("bnm,bm->bn", mem_norm, key_norm)
  return jax.nn.softmax(strength[:, None] * similarity, axis=-1)


def memory_read(memory, weights):
  """``sum_i w_i M_i``: ``[b, N, M], [b, N] -> [b, M]``."""
  return jnp.einsum("bnm,bn->bm", memory, weights)


def memory_write(memory, weights, erase, add):
  """NTM write: ``M * (1 - w e^T) + w a^T`` for ``[b, N, M], [b, N], [b, M], [b, M]``."""
  return memory * (1.0 - weights[:, :, None] * erase[:, None, :]) + weights[:, :, None] * add[:, None, :]


class SlotMemory(nn.Module):
  """The learned initial content of an ``num_slots x slot_size`` memory, broadcast over a batch.

  Starts as ``N(0, 0.1^2)`` values, so content addressing can tell the slots apart from the first write.
  Call: ``batch`` (int) -> ``[batch, num_slots, slot_size]``.
  """
  num_slots: int = 16
  slot_size: int = 16
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, batch: int):
    if self.num_slots < 1 or self.slot_size < 1:
      raise ValueError(f"SlotMemory: `num_slots` and `slot_size` must be >= 1; got {self.num_slots}, "
                       f"{self.slot_size}.")
    init = self.param("initial", partitioned(nn.initializers.normal(0.1), (None, None)),
                      (self.num_slots, self.slot_size), self.param_dtype)
    return jnp.broadcast_to(init, (batch, self.num_slots, self.slot_size))


class MemoryController(nn.Module):
  """One step: the LSTM controller, its memory interface, the write and the read (module docstring).

  Call: ``(carry, (x_t [b, in], offset_t [b, 2 * features]))`` with ``carry = ((c, h), memory [b, N, M],
  read [b, M])`` -> ``(carry, (s_t [b, 2 * features], h_t [b, features], read_t [b, M]))``, ``s_t = [c_t, h_t]``.
  ``offset_t`` is added to ``s_t`` wherever it is used (interface, output, next step), so its gradient is
  ``dL/ds_t``; ``s_t`` is returned without it, ``h_t`` with it.
  """
  features: int = 64
  num_slots: int = 16
  slot_size: int = 16
  truncate: bool = False
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, carry, inputs):
    x_t, offset_t = inputs
    if self.truncate:
      carry = jax.lax.stop_gradient(carry)
    (c, h_prev), memory, read = carry
    lstm = nn.OptimizedLSTMCell(
        self.features, kernel_init=partitioned(nn.initializers.lecun_normal(), ("embed", "mlp")),
        recurrent_kernel_init=partitioned(nn.initializers.orthogonal(), ("embed", "mlp")),
        bias_init=partitioned(nn.initializers.zeros_init(), ("mlp",)), dtype=self.dtype,
        param_dtype=self.param_dtype, name="lstm")
    (c, h), _ = lstm((c, h_prev), jnp.concatenate([x_t, read.astype(x_t.dtype)], axis=-1))
    state = jnp.concatenate([c, h], axis=-1)
    c_used = c + offset_t[:, :self.features].astype(c.dtype)
    h_used = h + offset_t[:, self.features:].astype(h.dtype)
    m = self.slot_size
    interface = dense(4 * m + 2, axes=("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype,
                      name="interface")(h_used).astype(jnp.float32)
    write_key, add, erase, read_key = (interface[:, i * m:(i + 1) * m] for i in range(4))
    write_strength, read_strength = (nn.softplus(interface[:, 4 * m + i]) for i in range(2))
    memory = memory_write(memory, content_weights(memory, write_key, write_strength), nn.sigmoid(erase),
                          jnp.tanh(add))
    read = memory_read(memory, content_weights(memory, read_key, read_strength))
    return ((c_used, h_used), memory, read), (state, h_used, read)


class NeuralMemoryNetwork(nn.Module):
  """An LSTM-controlled slot-memory network over sequences (module docstring).

  Attributes:
    outputs: width of ``y_t``.
    features: the controller's (LSTM's) width.
    num_slots: N, memory slots.
    slot_size: M, the width of a slot.

  Call: ``x: [batch, time, in]`` float -> ``y [batch, time, outputs]``; with ``return_state=True`` also the
  controller states ``s [batch, time, 2 * features]`` (``[c_t, h_t]``). ``state_offset [batch, time, 2 *
  features]`` is added to the controller states (its gradient is ``dL/ds``); ``truncate=True`` cuts every step's
  carry out of the backward pass.
  """
  outputs: int
  features: int = 64
  num_slots: int = 16
  slot_size: int = 16
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @property
  def state_size(self) -> int:
    """Width of the controller state ``s_t = [c_t, h_t]``."""
    return 2 * self.features

  @nn.compact
  def __call__(self, x, *, state_offset=None, truncate: bool = False, return_state: bool = False):
    ii = layers.param_shape(self, *CONTROLLER_PATH, "ii", "kernel")  # [in_features + slot_size, features]
    check_shape(x, "x", "batch time in_features", where="NeuralMemoryNetwork", dtype="floating",
                in_features=None if ii is None else ii[0] - self.slot_size)
    if self.outputs < 1 or self.features < 1:
      raise ValueError(f"NeuralMemoryNetwork: `outputs` and `features` must be >= 1; got {self.outputs}, "
                       f"{self.features}.")
    batch, time = x.shape[:2]
    if state_offset is None:
      state_offset = jnp.zeros((batch, time, self.state_size), x.dtype)
    check_shape(state_offset, "state_offset", "batch time state", where="NeuralMemoryNetwork", dtype="floating",
                batch=batch, time=time, state=self.state_size)
    memory = SlotMemory(self.num_slots, self.slot_size, self.param_dtype, name="memory")(batch)
    zeros = jnp.zeros((batch, self.features), jnp.float32)
    carry = ((zeros, zeros), memory.astype(jnp.float32), jnp.zeros((batch, self.slot_size), jnp.float32))
    scan = nn.scan(MemoryController, variable_broadcast="params", split_rngs={"params": False}, in_axes=1,
                   out_axes=1)
    _, (states, h, reads) = scan(features=self.features, num_slots=self.num_slots, slot_size=self.slot_size,
                         truncate=truncate, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="controller")(carry, (x, state_offset))
    y = dense(self.outputs, axes=("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype, name="head")(
        jnp.concatenate([h, reads.astype(h.dtype)], axis=-1))
    return (y, states) if return_state else y


class SyntheticGradient(nn.Module):
  """DNI's synthetic-gradient module: ``g_hat = MLP([s, context])``, predicting ``dL/ds``.

  Attributes:
    features: width of the state ``s`` (and of ``g_hat``).
    hidden: hidden widths of the MLP (ReLU).
    zero_init: start the output layer at zero (Jaderberg et al.: an untrained module sends no gradient).

  Call: ``s: [..., features]`` float, ``context: [..., c]`` or None (e.g. the step's input, which carries the
  label in meta-learning) -> ``[..., features]``.
  """
  features: int
  hidden: Sequence[int] = (64, 64)
  zero_init: bool = True
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, s, context=None):
    check_shape(s, "s", "... features", where="SyntheticGradient", dtype="floating", features=self.features)
    z = s
    if context is not None:
      check_shape(context, "context", "... context", where="SyntheticGradient", dtype="floating")
      if context.shape[:-1] != s.shape[:-1]:
        raise ValueError(f"SyntheticGradient: `context` must have the leading shape of `s` {tuple(s.shape[:-1])}; "
                         f"got shape {tuple(context.shape)}.")
      z = jnp.concatenate([s, context.astype(s.dtype)], axis=-1)
    for i, width in enumerate(self.hidden):
      z = nn.relu(dense(width, axes=("embed", "mlp"), param_dtype=self.param_dtype, name=f"dense_{i}")(z))
    out_init = nn.initializers.zeros_init() if self.zero_init else nn.initializers.lecun_normal()
    return dense(self.features, axes=("mlp", "embed"), kernel_init=out_init, param_dtype=self.param_dtype,
                 name="out")(z)
