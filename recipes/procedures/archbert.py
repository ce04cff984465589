"""ArchBERT training: cosine matching + masked architecture modelling (+ the reasoning head), as one loss.

Paper: "ArchBERT: Bi-Modal Understanding of Neural Architectures and Natural Languages", Akbari et al., 2023
(arXiv 2301.00040). Pre-training is the cosine-similarity matching loss on paired (match 1) and unpaired (match 0)
(architecture, caption) examples plus MAM; architectural reasoning is a fine-tuned head on the (architecture,
statement) embeddings. Here the three losses are trained jointly in one run (a shortcut at this scale, stated in
docs/papers.md): ``loss = alignment_weight * alignment + mam_weight * mam + reasoning``. The negative caption of
example ``i`` is the caption of example ``i+1`` in the batch (configs are distinct, so it never matches). MAM masks
``mask_rate`` of the real nodes (every slot of a masked node cleared, slot 0 set to the [MASK] id 2) and predicts
their op type.

Batch keys: ``nodes [b, n, 7]`` int, ``adjacency [b, n, n]`` (0/1), ``caption [b, l]``, ``statement [b, l]`` int,
``label [b]`` (statement true/false).

* :func:`attention_adjacency` ``(adjacency, nodes, mode)``: what the graph encoder may attend: ``'graph'`` (the
  paper: edges + self loops), ``'full'`` (the ablation: every real node) or ``'self'`` (the bag-of-nodes baseline:
  no message passing).
* :func:`joint_loss`: the loss and metrics of one batch.
* :class:`ArchBERTPretrain`: the procedure for the trainer (``procedure.name = 'archbert.ArchBERTPretrain'``).
* :class:`ArchCorpusTask`: the matching task object for configs (``task.name = 'archbert.ArchCorpusTask'``).
* :func:`evaluate_batch` ``(model, variables, batch, mode)``: the procedure's eval metrics of one batch;
  ``evaluate_graph`` / ``evaluate_full`` / ``evaluate_self`` are it per attention mode as ``fn(model, task,
  variables, batch)``, the procedure's ``evaluate_variables`` (``zoo.checkpoints.evaluate`` of a shipped model).
* :func:`train_variants`: ``V`` models (attention mode, MAM weight, alignment weight) trained in one jitted,
  vmapped scan (the
  effect test); :func:`evaluate_variants`: R@5 of text -> architecture retrieval and reasoning accuracy.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo import archbert
from zoo.recipes.procedures import backprop

__all__ = ["ArchBERTPretrain", "ArchCorpusTask", "attention_adjacency", "evaluate_batch", "evaluate_full",
           "evaluate_graph", "evaluate_self", "evaluate_variants", "joint_loss", "train_variants"]

MASK_ID = 2
MODES = ("graph", "full", "self")


def attention_adjacency(adjacency, nodes, mode: str = "graph"):
  """The bool attention pattern ``[b, n, n]`` of ``mode`` (module docstring)."""
  real = nodes[..., 0] != 0
  if mode == "graph":
    return adjacency.astype(bool) & real[:, :, None] & real[:, None, :]
  if mode == "full":
    return real[:, :, None] & real[:, None, :]
  if mode == "self":
    return jnp.eye(nodes.shape[1], dtype=bool)[None] & real[:, :, None]
  raise ValueError(f"attention_adjacency: `mode` must be one of {MODES}; got {mode!r}.")


def joint_loss(model, params, batch, rng, *, attend, mam_weight, alignment_weight=1.0, mask_rate: float = 0.15):
  """``alignment_weight * alignment + mam_weight * mam + reasoning`` of one batch, and the three terms; ``attend``
  the attention pattern ``[b, n, n]``."""
  nodes, caption = batch["nodes"], batch["caption"]
  v = {"params": params}
  a, t = model.apply(v, nodes, attend, caption)
  neg = jnp.roll(t, 1, axis=0)
  b = a.shape[0]
  match = jnp.concatenate([jnp.ones(b), jnp.zeros(b)])
  align = archbert.alignment_loss(jnp.concatenate([a, a]), jnp.concatenate([t, neg]), match)
  real = nodes[..., 0] != 0
  masked = real & (jax.random.uniform(rng, real.shape) < mask_rate)
  masked_nodes = jnp.where(masked[..., None], 0, nodes).at[..., 0].set(jnp.where(masked, MASK_ID, nodes[..., 0]))
  logits = model.apply(v, masked_nodes, attend, caption, method=archbert.ArchBERT.mam_logits)
  mam = archbert.mam_loss(logits, nodes[..., 0], masked)
  _, s = model.apply(v, batch["statement"], method=archbert.ArchBERT.encode_text)
  logit = model.apply(v, a, s, method=archbert.ArchBERT.reason_logit)
  reason = optax.sigmoid_binary_cross_entropy(logit, batch["label"].astype(jnp.float32)).mean()
  return alignment_weight * align + mam_weight * mam + reason, {"alignment": align, "mam": mam, "reasoning": reason}


@dataclasses.dataclass(frozen=True)
class ArchCorpusTask:
  """The corpus's batch layout (the procedure computes the losses); ``inputs`` is the architecture side."""

  def inputs(self, batch):
    return batch["nodes"]


@dataclasses.dataclass(frozen=True)
class ArchBERTPretrain(backprop.Backprop):
  """Joint alignment + MAM + reasoning training of :class:`zoo.archbert.ArchBERT` (module docstring)."""
  mode: str = "graph"
  mam_weight: float = 1.0
  alignment_weight: float = 1.0
  mask_rate: float = 0.15

  def init(self, rng, batch):
    params_rng, state_rng = jax.random.split(rng)
    attend = attention_adjacency(batch["adjacency"], batch["nodes"], self.mode)
    params = self.model.init(params_rng, batch["nodes"], attend, batch["caption"],
                             method=archbert.ArchBERT.initialize)["params"]
    return backprop.TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params),
                               model_state={}, rng=state_rng)

  def loss(self, params, model_state, batch, rng):
    attend = attention_adjacency(batch["adjacency"], batch["nodes"], self.mode)
    total, parts = joint_loss(self.model, params, batch, rng, attend=attend, mam_weight=self.mam_weight,
                              alignment_weight=self.alignment_weight, mask_rate=self.mask_rate)
    return total, (model_state, {"loss": total, **parts})

  def evaluate(self, state, batch):
    return evaluate_batch(self.model, {"params": state.params}, batch, self.mode)

  @property
  def evaluate_variables(self):
    """``fn(model, task, variables, batch)``: :meth:`evaluate` from a shipped model's variables in this procedure's
    attention mode (a module-level function, so ``zoo.recipes.export`` can name it in ``meta["evaluate"]``)."""
    return _EVALUATE[self.mode]


def evaluate_batch(model, variables, batch, mode: str = "graph"):
  """Per-example eval metrics of one batch: ``loss = 1 - pair_cosine`` (cosine of each architecture with its own
  caption) and ``reasoning_accuracy`` (the statement head at 0)."""
  attend = attention_adjacency(batch["adjacency"], batch["nodes"], mode)
  a, t = model.apply(variables, batch["nodes"], attend, batch["caption"])
  _, s = model.apply(variables, batch["statement"], method=archbert.ArchBERT.encode_text)
  logit = model.apply(variables, a, s, method=archbert.ArchBERT.reason_logit)
  cos = (a * t).sum(-1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(t, axis=-1) + 1e-6)
  return {"loss": 1.0 - cos, "pair_cosine": cos,
          "reasoning_accuracy": ((logit > 0) == (batch["label"] > 0)).astype(jnp.float32)}


def _evaluate_in(mode: str):
  def fn(model, task, variables, batch):
    del task
    return evaluate_batch(model, variables, batch, mode)
  fn.__name__ = fn.__qualname__ = f"evaluate_{mode}"
  fn.__doc__ = f"``evaluate_batch`` in attention mode {mode!r}, as ``fn(model, task, variables, batch)``."
  return fn


evaluate_graph, evaluate_full, evaluate_self = (_evaluate_in(m) for m in MODES)
_EVALUATE = dict(zip(MODES, (evaluate_graph, evaluate_full, evaluate_self)))


def train_variants(model, arrays, variants: Sequence[tuple[str, float, float]], *, steps: int = 400,
                   batch_size: int = 64,
                   learning_rate: float = 1e-3, seed: int = 0):
  """Trains one model per ``(mode, mam_weight, alignment_weight)`` variant in one vmapped scan; same init and batches
  for all."""
  for mode, *_ in variants:
    if mode not in MODES:
      raise ValueError(f"train_variants: mode must be one of {MODES}; got {mode!r}.")
  arrays = {k: jnp.asarray(v) for k, v in arrays.items()}
  attend = jnp.stack([attention_adjacency(arrays["adjacency"], arrays["nodes"], v[0]) for v in variants])
  weights = jnp.asarray([v[1:] for v in variants], jnp.float32)
  order = jnp.asarray(np.random.default_rng(seed).integers(0, len(arrays["label"]), (steps, batch_size)))
  return _fit(model, arrays, attend, weights, order, learning_rate, seed)


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _fit(model, arrays, attend, weights, order, learning_rate, seed):
  opt = optax.adam(learning_rate)
  key = jax.random.PRNGKey(seed)
  params = model.init(key, arrays["nodes"][:2], attend[0, :2], arrays["caption"][:2],
                      method=archbert.ArchBERT.initialize)["params"]

  def one(att, w):
    def step(carry, inp):
      p, s = carry
      t, idx = inp
      batch = {k: v[idx] for k, v in arrays.items()}
      g = jax.grad(lambda q: joint_loss(model, q, batch, jax.random.fold_in(key, t), attend=att[idx],
                                        mam_weight=w[0], alignment_weight=w[1])[0])(p)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), (jnp.arange(order.shape[0]), order))
    return p

  return jax.vmap(one)(attend, weights)


@functools.partial(jax.jit, static_argnums=0)
def _embed(model, params, nodes, attend, caption, statement):
  def one(p, att):
    v = {"params": p}
    a, t = model.apply(v, nodes, att, caption)
    _, s = model.apply(v, statement, method=archbert.ArchBERT.encode_text)
    return a, t, model.apply(v, a, s, method=archbert.ArchBERT.reason_logit)
  return jax.vmap(one)(params, attend)


def evaluate_variants(model, params, arrays, variants, k: int = 5) -> list[dict[str, float]]:
  """Per variant: ``recall@k`` of caption -> architecture retrieval among all of ``arrays``, ``reasoning``
  accuracy."""
  nodes = jnp.asarray(arrays["nodes"])
  attend = jnp.stack([attention_adjacency(jnp.asarray(arrays["adjacency"]), nodes, v[0]) for v in variants])
  a, t, logit = _embed(model, params, nodes, attend, jnp.asarray(arrays["caption"]), jnp.asarray(arrays["statement"]))
  label = np.asarray(arrays["label"]) > 0
  return [{"recall": archbert.recall_at_k(np.asarray(t[v]), np.asarray(a[v]), k),
           "reasoning": float(((np.asarray(logit[v]) > 0) == label).mean())} for v in range(len(variants))]
