"""Continual learning with hypernetworks: the output regulariser, the task loop, and forgetting metrics.

The method of von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks" (ICLR 2020, arXiv
1906.00695), which the dependency-preserving hypernetwork of Chandra, Varshney, Srijith, Gupta (WACV 2023, arXiv
2209.07712) keeps: a hypernetwork ``h(e_t; Theta)`` emits the target weights of task ``t`` from a learned task
embedding, and training task ``t`` minimises

  L_task(f(x; h(e_t; Theta))) + beta / (t - 1) * sum_{t' < t} || h(e_t'; Theta) - h(e_t'; Theta*) ||^2

(tasks counted from 1 here as in the papers; ``Theta*`` is a snapshot of the hypernetwork taken before task ``t``).
Only the current task's embedding is trained (earlier embeddings are frozen, as in the reference code: their
gradients are masked, and the optimizer restarts at every task boundary so a zero gradient is a zero update).
Evaluation is task-incremental: the task id is given. We implement the plain output regulariser (no look-ahead
``Delta Theta``); the importance-weighted variant and the network growth of Chandra et al. were not reproduced
(the paper was not available offline to confirm their exact form; see docs/papers.md).

Public names:

* ``output_regularizer(weights, snapshot_weights, seen)``: ``sum_{t' in seen} ||w_t' - w*_t'||^2 / max(#seen, 1)``
  over pytrees with a leading task axis ``[tasks, ...]``; ``seen [tasks]`` bool.
* ``HyperCL``: the procedure (``init`` / ``step`` / ``evaluate`` / ``variables``). ``step`` reads the current task
  as ``step // steps_per_task``; the loss counts only the batch's examples of that task (``batch[task_key]``), so
  the one training loop can feed shuffled batches of every task. With a plain model (not a
  ``zoo.hypernet.HyperModel``) it is sequential fine-tuning, the papers' baseline.
* ``TaskIncremental``: the task (cross-entropy of the within-task label; the model sees ``{'task', 'x'}``).
* ``run_tasks(proc, rng, train_batches, test)``: trains task after task and returns the accuracy matrix ``R [T, T]``
  (``R[i, j]``: accuracy on task ``j`` after training task ``i``); jit-able and vmap-able over seeds.
* ``average_accuracy(R)`` = ``mean_j R[-1, j]``; ``forgetting(R)`` = ``max_{i < T-1} R[i, j] - R[-1, j]`` per task
  ``j < T - 1`` (Chaudhry et al. 2018).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from zoo import hypernet as hypernet_lib
from zoo.recipes.tasks import LabelError

__all__ = ["CLState", "HyperCL", "TaskIncremental", "average_accuracy", "forgetting", "output_regularizer",
           "run_tasks"]


def output_regularizer(weights, snapshot_weights, seen) -> jax.Array:
  """Mean over the ``seen`` tasks of the squared L2 distance between generated and snapshot weights."""
  dist = sum(jnp.sum((w - s).reshape(w.shape[0], -1) ** 2, axis=-1)
             for w, s in zip(jax.tree.leaves(weights), jax.tree.leaves(jax.lax.stop_gradient(snapshot_weights))))
  seen = seen.astype(jnp.float32)
  return jnp.sum(dist * seen) / jnp.maximum(jnp.sum(seen), 1.0)


@dataclasses.dataclass(frozen=True)
class TaskIncremental:
  """Classification with the task id known: logits ``[batch, classes]`` vs ``batch[target_key]`` (within-task)."""
  input_key: str = "image"
  target_key: str = "label"
  task_key: str = "task"

  def inputs(self, batch):
    for key in (self.input_key, self.task_key):
      if key not in batch:
        raise KeyError(f"TaskIncremental: the batch has no key {key!r}; it has {sorted(batch)}.")
    return {"task": batch[self.task_key], "x": batch[self.input_key]}

  def loss(self, logits, batch):
    labels = batch[self.target_key]
    if labels.shape != logits.shape[:-1] or not jnp.issubdtype(labels.dtype, jnp.integer):
      raise LabelError(f"TaskIncremental: batch key {self.target_key!r} must hold integer labels of shape "
                       f"{tuple(logits.shape[:-1])}; got {labels.dtype}{tuple(labels.shape)}.")
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)

  def metrics(self, logits, batch):
    return {"loss": self.loss(logits, batch),
            "accuracy": (jnp.argmax(logits, -1) == batch[self.target_key]).astype(jnp.float32)}


class CLState(flax.struct.PyTreeNode):
  """``step``; ``params``; ``opt_state``; ``snapshot``: the parameters at the start of the current task; ``rng``."""
  step: jax.Array
  params: Any
  opt_state: Any
  snapshot: Any
  rng: jax.Array


def _is_task_embedding(path) -> bool:
  return any(getattr(k, "key", None) == "task_embedding" for k in path)


@dataclasses.dataclass(frozen=True)
class HyperCL:
  """Task-incremental continual learning of a hypernetwork with the output regulariser (module docstring).

  Attributes:
    model: a ``zoo.hypernet.HyperModel`` with ``'task'`` conditioning, or any model of ``inputs['x']`` for the
      fine-tuning baseline.
    task: ``TaskIncremental`` (or any task whose ``inputs`` gives ``{'task', 'x'}``).
    optimizer: an optax transformation; restarted at every task boundary.
    num_tasks: number of tasks ``T``.
    steps_per_task: training steps per task.
    beta: the regulariser's weight (von Oswald et al. use 0.01 - 0.05).
    output_regularizer: the mechanism's flag (False: the hypernetwork is fine-tuned task after task).
    task_key: the batch key of the task id.
  """
  model: nn.Module
  task: Any = TaskIncremental()
  optimizer: optax.GradientTransformation = optax.adam(1e-3)
  num_tasks: int = 5
  steps_per_task: int = 200
  beta: float = 0.01
  output_regularizer: bool = True
  task_key: str = "task"

  def __post_init__(self):
    if self.num_tasks < 1 or self.steps_per_task < 1:
      raise ValueError(f"HyperCL: need num_tasks >= 1 and steps_per_task >= 1; got {self.num_tasks}, "
                       f"{self.steps_per_task}.")
    if self.beta < 0:
      raise ValueError(f"HyperCL: `beta` must be >= 0; got {self.beta}.")
    if self.hyper and self.model.hypernet.conditioning != "task":
      raise ValueError("HyperCL: the hypernetwork must be task-conditioned (conditioning='task').")

  @property
  def hyper(self) -> bool:
    return isinstance(self.model, hypernet_lib.HyperModel)

  def _apply(self, params, inputs):
    if self.hyper:
      return self.model.apply({"params": params}, inputs)
    return self.model.apply({"params": params}, inputs["x"])

  def init(self, rng, batch) -> CLState:
    inputs = self.task.inputs(batch)
    params = self.model.init(rng, inputs if self.hyper else inputs["x"])["params"]
    return CLState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params),
                   snapshot=params, rng=rng)

  def current_task(self, step) -> jax.Array:
    return jnp.minimum(step // self.steps_per_task, self.num_tasks - 1)

  def loss(self, params, snapshot, batch, current):
    logits = self._apply(params, self.task.inputs(batch))
    mine = (batch[self.task_key] == current).astype(jnp.float32)
    task_loss = jnp.sum(self.task.loss(logits, batch) * mine) / jnp.maximum(jnp.sum(mine), 1.0)
    if not (self.hyper and self.output_regularizer):
      return task_loss, {"loss": task_loss}
    ids = jnp.arange(self.num_tasks)
    weights = self.model.apply({"params": params}, ids, method="weights")
    target = self.model.apply({"params": snapshot}, ids, method="weights")
    reg = output_regularizer(weights, target, ids < current)
    return task_loss + self.beta * reg, {"loss": task_loss, "regularizer": reg}

  def step(self, state: CLState, batch):
    current = self.current_task(state.step)
    boundary = (state.step % self.steps_per_task == 0) & (state.step < self.num_tasks * self.steps_per_task)
    pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(boundary, a, b), new, old)  # noqa: E731
    snapshot = pick(state.params, state.snapshot)
    opt_state = pick(self.optimizer.init(state.params), state.opt_state)
    (_, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, snapshot, batch, current)
    # Only the current task's embedding learns (the earlier ones are frozen, the later ones unseen).
    row = jax.nn.one_hot(current, self.num_tasks)
    grads = jax.tree_util.tree_map_with_path(
        lambda p, g: g * row.reshape((-1,) + (1,) * (g.ndim - 1)) if _is_task_embedding(p) else g, grads)
    updates, opt_state = self.optimizer.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "task": current.astype(jnp.float32)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, snapshot=snapshot), metrics

  def variables(self, state: CLState):
    return {"params": state.params}

  def evaluate(self, state: CLState, batch):
    return self.task.metrics(self._apply(state.params, self.task.inputs(batch)), batch)


def run_tasks(proc: HyperCL, rng, train_batches, test) -> jax.Array:
  """Trains ``proc`` task after task and evaluates every task after each one.

  Args:
    proc: the procedure.
    rng: a PRNG key.
    train_batches: ``{key: [num_tasks, steps_per_task, batch, ...]}``, the batches of task ``i`` in row ``i``.
    test: ``{key: [n, ...]}`` with ``proc.task_key`` task ids.

  Returns:
    ``R [num_tasks, num_tasks]``: ``R[i, j]`` = test accuracy on task ``j`` after training task ``i``.
  """
  state = proc.init(rng, jax.tree.map(lambda x: x[0, 0], train_batches))
  state = nn.unbox(state)
  ids = test[proc.task_key]
  counts = jax.ops.segment_sum(jnp.ones_like(ids, jnp.float32), ids, proc.num_tasks)

  def per_task(s):
    acc = proc.evaluate(s, test)["accuracy"]
    return jax.ops.segment_sum(acc, ids, proc.num_tasks) / jnp.maximum(counts, 1.0)

  def one_task(s, batches):
    s = jax.lax.scan(lambda c, b: (proc.step(c, b)[0], None), s, batches)[0]
    return s, per_task(s)
  return jax.lax.scan(one_task, state, train_batches)[1]


def average_accuracy(R) -> jax.Array:
  """Mean accuracy over every task after the last one, ``mean_j R[-1, j]``."""
  return jnp.mean(R[..., -1, :], axis=-1)


def forgetting(R) -> jax.Array:
  """Per task ``j < T - 1``: best earlier accuracy minus the final one, ``max_{i < T-1} R[i, j] - R[-1, j]``."""
  T = R.shape[-1]
  return jnp.max(R[..., :-1, :-1], axis=-2) - R[..., -1, :-1] if T > 1 else jnp.zeros(R.shape[:-2] + (0,))
