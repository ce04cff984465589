"""The infinite-width limit of a network as a procedure: ridgeless NNGP/NTK kernel classification in closed form.

"Wide and Deep Neural Networks Achieve Consistency for Classification" (Radhakrishnan, Belkin, Uhler, PNAS 2023,
arXiv 2204.14126): an infinitely wide network of ``L`` hidden layers trained to convergence is the kernel machine
``sign(y^T K^{-1} k(x))`` with the NTK (or, for the NNGP posterior mean, the NNGP kernel) given by the depth
recursion of ``zoo.ntk``. This procedure fits that limit of a ``zoo.ntk.NTKMLP`` (its ``depth`` and ``activation``
define the kernel; its weights are never used) inside the one training loop: each step appends its batch to a
fixed-capacity training buffer, and evaluation solves the ridgeless system on everything seen so far. Targets are
the one-hot labels (``model.outputs`` classes), so the outputs are per-class kernel regressions whose argmax is the
paper's sign classifier for two classes.

Config: ``procedure.name = 'deep_kernel.InfiniteWidthKernel'``, ``kernel = 'nngp' | 'ntk'``, ``capacity`` (training
points kept; one pass over a training set no larger than it gives the exact solution), ``ridge`` (0 = ridgeless),
``log_space`` (NNGP of an activation with ``xi(0) = 0``: the recursion on ``log|Sigma|``, see ``zoo.ntk``).
The task is ``'classification'`` with ``input_key`` unit vectors ``[batch, features]``; the optimizer is not used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from zoo import ntk
from zoo.layers import check_shape

__all__ = ["InfiniteWidthKernel", "KernelState"]


class KernelState(flax.struct.PyTreeNode):
  """The training buffer. ``x``: ``[capacity, features]``; ``y``: one-hot ``[capacity, classes]``; ``count``."""
  step: jax.Array
  x: jax.Array
  y: jax.Array
  count: jax.Array


@dataclasses.dataclass(frozen=True)
class InfiniteWidthKernel:
  """Ridgeless kernel classification with the NNGP/NTK of ``model`` (a ``zoo.ntk.NTKMLP``); module docstring.

  Attributes:
    model: an ``NTKMLP``: ``depth``, ``activation`` and ``outputs`` (classes) are read from it.
    task: a classification task. optimizer: unused.
    kernel: ``'nngp'`` or ``'ntk'``. capacity: training points kept. ridge: ``>= 0``.
    log_space: run the NNGP recursion on ``log|Sigma|`` (needs ``xi(0) = 0``).
  """
  model: Any
  task: Any
  optimizer: optax.GradientTransformation | None = None
  kernel: str = "nngp"
  capacity: int = 512
  ridge: float = 0.0
  log_space: bool = True

  def __post_init__(self):
    if not isinstance(self.model, ntk.NTKMLP):
      raise TypeError(f"InfiniteWidthKernel: `model` must be a zoo.ntk.NTKMLP; got {type(self.model).__name__}.")
    if self.kernel not in ("nngp", "ntk"):
      raise ValueError(f"InfiniteWidthKernel: `kernel` must be 'nngp' or 'ntk'; got {self.kernel!r}.")
    if self.capacity < 1 or not self.ridge >= 0:
      raise ValueError(f"InfiniteWidthKernel: need capacity >= 1 and ridge >= 0; got {self.capacity}, {self.ridge}.")
    if self.log_space and self.kernel == "ntk":
      raise ValueError("InfiniteWidthKernel: log_space applies to the NNGP only; set log_space=False for the NTK.")

  @property
  def _activation(self):
    act = self.model.activation
    return act if isinstance(act, str) else tuple(act)

  def init(self, rng, batch) -> KernelState:
    del rng
    x = self.task.inputs(batch)
    check_shape(x, self.task.input_key, "batch features", where="InfiniteWidthKernel", dtype="floating")
    if x.shape[0] > self.capacity:
      raise ValueError(f"InfiniteWidthKernel: the batch ({x.shape[0]}) must fit the buffer (capacity "
                       f"{self.capacity}).")
    return KernelState(step=jnp.zeros((), jnp.int32), x=jnp.zeros((self.capacity, x.shape[1]), x.dtype),
                       y=jnp.zeros((self.capacity, self.model.outputs), jnp.float32),
                       count=jnp.zeros((), jnp.int32))

  def _scores(self, state: KernelState, x_test):
    mask = jnp.arange(self.capacity) < state.count
    pair = mask[:, None] & mask[None, :]
    depth, act = self.model.depth, self._activation
    if self.kernel == "ntk":
      k_train = jnp.where(pair, ntk.deep_ntk(state.x, state.x, depth, act, normalize=True), jnp.eye(self.capacity))
      k_test = jnp.where(mask[:, None], ntk.deep_ntk(state.x, x_test, depth, act, normalize=True), 0.0)
    elif self.log_space:
      s_train, l_train = ntk.deep_nngp(state.x, state.x, depth, act, log_space=True)
      s_test, l_test = ntk.deep_nngp(state.x, x_test, depth, act, log_space=True)
      # unseen buffer rows: identity in the Gram matrix, no weight on a test point
      k_train = (jnp.where(pair, s_train, jnp.eye(self.capacity)), jnp.where(pair, l_train, 0.0))
      k_test = (jnp.where(mask[:, None], s_test, 0.0), l_test)
    else:
      k_train = jnp.where(pair, ntk.deep_nngp(state.x, state.x, depth, act), jnp.eye(self.capacity))
      k_test = jnp.where(mask[:, None], ntk.deep_nngp(state.x, x_test, depth, act), 0.0)
    y = jnp.where(mask[:, None], state.y, 0.0)
    return ntk.kernel_regress(k_train, y, k_test, self.ridge)

  def step(self, state: KernelState, batch):
    x = self.task.inputs(batch)
    labels = batch[self.task.target_key]
    y = jax.nn.one_hot(labels, self.model.outputs, dtype=jnp.float32)
    start = jnp.minimum(state.count, self.capacity - x.shape[0])  # a full buffer keeps its first points
    keep = state.count + x.shape[0] <= self.capacity
    new_x = jnp.where(keep, jax.lax.dynamic_update_slice(state.x, x.astype(state.x.dtype), (start, 0)), state.x)
    new_y = jnp.where(keep, jax.lax.dynamic_update_slice(state.y, y, (start, 0)), state.y)
    count = jnp.where(keep, state.count + x.shape[0], state.count)
    state = state.replace(step=state.step + 1, x=new_x, y=new_y, count=count)
    scores = self._scores(state, x)
    metrics = {"accuracy": jnp.mean((jnp.argmax(scores, -1) == labels).astype(jnp.float32)),
               "train_points": count.astype(jnp.float32)}
    return state, metrics

  def variables(self, state: KernelState):
    return {"x_train": state.x, "y_train": state.y, "count": state.count}

  def evaluate(self, state: KernelState, batch):
    scores = self._scores(state, self.task.inputs(batch))
    return self.task.metrics(scores.astype(jnp.float32), batch)
