"""Model merging on Flax pytrees: task vectors, task arithmetic, TIES, AdaMerging (task- and layer-wise), AdaMerging++.

* Task arithmetic (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023): task vectors
  ``tau_k = theta_k - theta_0`` of models fine-tuned from one pretrained ``theta_0``; ``theta = theta_0 + lambda *
  sum_k tau_k``.
* TIES-Merging (Yadav et al., NeurIPS 2023): trim each ``tau_k`` to its top-``density`` entries by magnitude, elect
  the sign of every entry as the sign of ``sum_k trimmed tau_k``, and average only the entries that agree with it
  (disjoint mean).
* AdaMerging (Yang, Wang, Shen, Liu, Guo, Wang, Tao, ICLR 2024, arXiv 2310.02575): learn the merging coefficients
  by minimising the Shannon entropy of the merged model's predictions on *unlabelled* test inputs of every task,
  each through its own frozen head: task-wise ``theta = theta_0 + sum_k lambda_k tau_k`` or layer-wise ``theta^l =
  theta_0^l + sum_k lambda_k^l tau_k^l`` (one coefficient per parameter tensor). Coefficients start at 0.3, are
  trained with Adam (lr 1e-3) and clipped to [0, 1] after every step; only they are trained. AdaMerging++ does the
  same on the TIES-processed task vectors (trimmed and sign-elected).

Every function works on any pytree of parameters (a zoo model's ``variables['params']``).

Public names (``K`` task vectors, ``L`` parameter tensors):

* ``task_vectors(pretrained, finetuned) -> [tau_k]``; ``task_arithmetic(pretrained, vectors, scale=0.3)``.
* ``ties_vectors(vectors, density=0.2) -> [tau_k']`` (trimmed, entries disagreeing with the elected sign zeroed);
  ``ties_merge(pretrained, vectors, density=0.2, scale=1.0)`` = ``theta_0 + scale * disjoint mean``.
* ``merge(pretrained, vectors, lambdas)``: ``lambdas [K]`` (task-wise) or ``[K, L]`` (layer-wise, tensors in
  ``jax.tree.leaves`` order).
* ``entropy(logits) -> [batch]``: Shannon entropy of the softmax (nats).
* ``adamerging(apply_fn, pretrained, vectors, inputs, *, granularity='layer', ...) -> (lambdas, history)``:
  ``apply_fn(params, k, x) -> logits`` (task ``k``'s frozen head on the merged ``params``); ``inputs``: one
  unlabelled array per task ``[n_k, ...]``; ``history [steps]``: the mean entropy loss per step. jit-able.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["adamerging", "entropy", "merge", "task_arithmetic", "task_vectors", "ties_merge", "ties_vectors"]


def _check_vectors(vectors, where: str):
  if not isinstance(vectors, Sequence) or not vectors:
    raise ValueError(f"{where}: `vectors` must be a non-empty list of task vectors (pytrees); got {type(vectors)}.")
  structure = jax.tree.structure(vectors[0])
  for k, v in enumerate(vectors):
    if jax.tree.structure(v) != structure:
      raise ValueError(f"{where}: task vector {k} has a different pytree structure from task vector 0.")


def task_vectors(pretrained, finetuned: Sequence) -> list:
  """``[theta_k - theta_0]`` for each fine-tuned pytree (same structure and shapes as ``pretrained``)."""
  _check_vectors(list(finetuned), "task_vectors")
  out = []
  for k, theta in enumerate(finetuned):
    if jax.tree.structure(theta) != jax.tree.structure(pretrained):
      raise ValueError(f"task_vectors: fine-tuned model {k} has a different pytree structure from `pretrained`.")
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(pretrained)):
      if jnp.shape(a) != jnp.shape(b):
        raise ValueError(f"task_vectors: fine-tuned model {k} has a tensor of shape {jnp.shape(a)} where "
                         f"`pretrained` has {jnp.shape(b)}.")
    out.append(jax.tree.map(lambda a, b: a - b, theta, pretrained))
  return out


def merge(pretrained, vectors: Sequence, lambdas):
  """``theta_0 + sum_k lambda_k tau_k`` (``lambdas [K]``) or per tensor ``l`` with ``lambdas [K, L]``."""
  _check_vectors(vectors, "merge")
  leaves0, treedef = jax.tree.flatten(pretrained)
  lambdas = jnp.asarray(lambdas)
  K, L = len(vectors), len(leaves0)
  if lambdas.shape not in ((K,), (K, L)):
    raise ValueError(f"merge: `lambdas` must have shape [{K}] (task-wise) or [{K}, {L}] (layer-wise); got "
                     f"{tuple(lambdas.shape)}.")
  if lambdas.ndim == 1:
    lambdas = jnp.broadcast_to(lambdas[:, None], (K, L))
  per_task = [jax.tree.leaves(v) for v in vectors]
  merged = [base + sum(lambdas[k, l] * per_task[k][l] for k in range(K)) for l, base in enumerate(leaves0)]
  return jax.tree.unflatten(treedef, merged)


def task_arithmetic(pretrained, vectors: Sequence, scale: float = 0.3):
  """Task arithmetic: ``theta_0 + scale * sum_k tau_k``."""
  return merge(pretrained, vectors, jnp.full((len(vectors),), scale))


def ties_vectors(vectors: Sequence, density: float = 0.2) -> list:
  """TIES' trim + elect sign: each ``tau_k`` keeps its top-``density`` entries by magnitude (over the whole
  vector) that agree with the elected sign ``sign(sum_k trimmed tau_k)``; every other entry is 0."""
  _check_vectors(vectors, "ties_vectors")
  if not 0.0 < density <= 1.0:
    raise ValueError(f"ties_vectors: `density` must be in (0, 1]; got {density}.")
  flat = jnp.stack([jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(v)]) for v in vectors])  # [K, P]
  keep = max(1, int(round(density * flat.shape[1])))
  threshold = jax.lax.top_k(jnp.abs(flat), keep)[0][:, -1:]  # the keep-th largest magnitude of each vector
  trimmed = jnp.where(jnp.abs(flat) >= threshold, flat, 0.0)
  sign = jnp.sign(jnp.sum(trimmed, axis=0))
  agreed = jnp.where(jnp.sign(trimmed) == sign[None], trimmed, 0.0)
  leaves, treedef = jax.tree.flatten(vectors[0])
  splits = np.cumsum([int(np.size(x)) for x in leaves])[:-1]
  out = []
  for row in agreed:
    parts = jnp.split(row, splits)
    out.append(jax.tree.unflatten(treedef, [p.reshape(jnp.shape(x)) for p, x in zip(parts, leaves)]))
  return out


def ties_merge(pretrained, vectors: Sequence, density: float = 0.2, scale: float = 1.0):
  """TIES-Merging: ``theta_0 + scale * disjoint mean`` of the trimmed, sign-elected task vectors."""
  agreed = ties_vectors(vectors, density)
  total = jax.tree.map(lambda *xs: sum(xs), *agreed)
  count = jax.tree.map(lambda *xs: sum((x != 0).astype(jnp.float32) for x in xs), *agreed)
  mean = jax.tree.map(lambda t, c: t / jnp.maximum(c, 1.0), total, count)
  return jax.tree.map(lambda p, m: p + scale * m, pretrained, mean)


def entropy(logits) -> jax.Array:
  """Shannon entropy (nats) of ``softmax(logits)`` over the last axis: ``[..., classes] -> [...]``."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def adamerging(apply_fn: Callable, pretrained, vectors: Sequence, inputs: Sequence, *, granularity: str = "layer",
               init: float = 0.3, steps: int = 500, batch_size: int = 16, learning_rate: float = 1e-3,
               rng=None, ties: bool = False, density: float = 0.2):
  """AdaMerging (``ties=True``: AdaMerging++): entropy-minimising merging coefficients, clipped to [0, 1].

  Args:
    apply_fn: ``(params, k, x) -> logits``; ``k`` is a Python int (task ``k``'s frozen head).
    pretrained: ``theta_0``.
    vectors: the task vectors ``[tau_k]``.
    inputs: unlabelled inputs of each task, ``[n_k, ...]`` arrays (the test inputs, as the paper).
    granularity: ``'task'`` (``lambdas [K]``) or ``'layer'`` (``[K, L]``).
    init, steps, batch_size, learning_rate: the paper's 0.3, ~500, 16, 1e-3 (Adam).
    rng: key for the batches (default ``jax.random.key(0)``).
    ties, density: AdaMerging++ (TIES-processed vectors).

  Returns:
    ``(lambdas, history)``: the learned coefficients and the mean entropy per step ``[steps]``.
  """
  _check_vectors(vectors, "adamerging")
  if granularity not in ("task", "layer"):
    raise ValueError(f"adamerging: `granularity` must be 'task' or 'layer'; got {granularity!r}.")
  if len(inputs) != len(vectors):
    raise ValueError(f"adamerging: need one unlabelled input array per task vector; got {len(inputs)} arrays for "
                     f"{len(vectors)} vectors.")
  for k, x in enumerate(inputs):
    if not hasattr(x, "shape") or x.ndim < 1 or x.shape[0] == 0:
      raise ValueError(f"adamerging: inputs[{k}] must be a non-empty array [n, ...]; got "
                       f"{getattr(x, 'shape', type(x).__name__)}.")
  if steps < 1 or batch_size < 1:
    raise ValueError(f"adamerging: need steps >= 1 and batch_size >= 1; got {steps}, {batch_size}.")
  if ties:
    vectors = ties_vectors(vectors, density)
  K, L = len(vectors), len(jax.tree.leaves(pretrained))
  lambdas = jnp.full((K,) if granularity == "task" else (K, L), init, jnp.float32)
  tx = optax.adam(learning_rate)
  rng = jax.random.key(0) if rng is None else rng

  def loss(lam, key):
    params = merge(pretrained, vectors, lam)
    keys = jax.random.split(key, K)
    terms = []
    for k, x in enumerate(inputs):
      idx = jax.random.randint(keys[k], (batch_size,), 0, x.shape[0])
      terms.append(jnp.mean(entropy(apply_fn(params, k, x[idx]))))
    return sum(terms) / K

  def body(carry, key):
    lam, opt_state = carry
    value, grad = jax.value_and_grad(loss)(lam, key)
    updates, opt_state = tx.update(grad, opt_state, lam)
    lam = jnp.clip(optax.apply_updates(lam, updates), 0.0, 1.0)
    return (lam, opt_state), value

  (lambdas, _), history = jax.lax.scan(body, (lambdas, tx.init(lambdas)), jax.random.split(rng, steps))
  return lambdas, history
