"""CoLa: per-sample Monte Carlo tree search over chains of pretrained layers (skip or loop them), no finetuning.

Paper: "Skip a Layer or Loop it? Test-Time Depth Adaptation of Pretrained LLMs", Li, Li and Zhou, 2025 (arXiv
2507.07996). For each test sample, MCTS searches the chain-of-layers (``zoo.depth_adapt``) that answers it
correctly with as few layers as possible; the reward is correctness under the oracle label with a length penalty,
and the search has a fixed simulation budget. The paper's two findings are measured by :func:`cola_rates`: the
share of originally-correct samples for which a *shorter* correct chain exists, and the share of originally-wrong
samples that some chain *fixes*.

The search (:func:`search_cola`):

* State: ``pos`` (the next pretrained layer to decide on) and the chain built so far. An action takes the block of
  the next ``s`` layers (``s`` in ``block_sizes``, clipped at the top) and either *skips* it, runs it *once*, or
  *repeats* it (the block twice in a row: a loop). The chain is complete when ``pos = N``. Actions that lead to the
  same state are merged, so every child is a distinct chain prefix.
* Reward of a complete chain ``c``: ``R(c) = 1[argmax f_c(x) = y] - length_penalty * |c| / N`` (correctness under
  the oracle label, penalised by the layers run).
* UCT (Kocsis and Szepesvari, 2006), the MCTS of the paper: selection by ``Q + c sqrt(ln N_parent / N_child)``
  among children that are not exhausted, expansion of one untried action, a uniformly random rollout to a complete
  chain, one evaluation of that chain, and the reward backed up as a running mean. A complete chain already in the
  tree is never evaluated twice (its subtree is exhausted), so the budget ``num_simulations`` is exactly the number
  of chains evaluated (plus the pretrained chain at the root). The answer is the best-reward chain evaluated.
* All samples' trees advance in lockstep and the chains of one simulation are evaluated in one batched, jitted
  call: one compiled :func:`evaluate_chains` (``zoo.depth_adapt.run_chain`` under ``vmap``) serves every chain,
  every simulation, the ablations and the baseline.
* Baseline :func:`random_chain_search`: the pretrained chain plus ``num_simulations`` chains from uniformly random
  action sequences in the same action space: the same number of chain evaluations.

Why not ``mctx``: its search has no terminal states (every simulation expands a new node below the leaf it
reaches), so in this space of finite chains many simulations would re-enter finished chains and re-evaluate them,
and its budget would not be "chains evaluated"; it also compiles the whole search per setting (tens of seconds on a
CPU). The tree here is a few hundred Python nodes per sample; the model calls, which are the cost, are batched.

Ablation flags: ``length_penalty=0`` (the search keeps the first correct chain it meets, the pretrained one when
it is right: no shorter chains), ``actions='skip'`` (skip-only: no loops).

Public names: :func:`search_cola`, :func:`random_chain_search`, :func:`evaluate_chains`, :func:`cola_rates`,
:data:`OPS`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from zoo import depth_adapt
from zoo import layers

__all__ = ["OPS", "cola_rates", "evaluate_chains", "random_chain_search", "search_cola"]

OPS = ("skip", "once", "repeat")
"""What an action does with its block: leave it out, run it once, run it twice (a loop)."""


def _actions(block_sizes, actions: str) -> list[tuple[int, int]]:
  if actions not in ("skip_repeat", "skip"):
    raise ValueError(f"cola: `actions` must be 'skip_repeat' or 'skip'; got {actions!r}.")
  if not block_sizes or any(int(s) < 1 for s in block_sizes):
    raise ValueError(f"cola: `block_sizes` must be positive block lengths; got {block_sizes!r}.")
  copies = (0, 1, 2) if actions == "skip_repeat" else (0, 1)
  return [(int(s), c) for s in block_sizes for c in copies]


def _step(state: tuple[int, tuple[int, ...]], action: tuple[int, int], num_layers: int):
  """``(pos, chain)`` after one action ``(block size, copies)``."""
  pos, chain = state
  s = min(action[0], num_layers - pos)
  return pos + s, chain + tuple(range(pos, pos + s)) * action[1]


def _rollout(state, acts, num_layers: int, rng: np.random.Generator) -> tuple[int, ...]:
  while state[0] < num_layers:
    state = _step(state, acts[rng.integers(len(acts))], num_layers)
  return state[1]


def _pad(chains: list[tuple[int, ...]], max_steps: int) -> np.ndarray:
  out = np.full((len(chains), max_steps), depth_adapt.PAD, np.int32)
  for i, c in enumerate(chains):
    out[i, :len(c)] = c
  return out


@functools.partial(jax.jit, static_argnames=("model",))
def _evaluate(model, variables, tokens, labels, chains, length_penalty):
  logits = jax.vmap(lambda tok, c: model.apply(variables, tok[None], chain=c)[0])(tokens, chains)
  correct = jnp.argmax(logits, -1) == labels
  reward = correct.astype(jnp.float32) - length_penalty * depth_adapt.chain_length(chains) / model.num_layers
  return reward, correct


def evaluate_chains(model, variables, tokens, labels, chains, length_penalty: float = 0.1):
  """One chain per sample: ``chains [b, 2N]`` -> ``(reward [b], correct [b])`` with
  ``reward = 1[correct] - length_penalty * |chain| / N`` (one jit for every chain of a given batch shape)."""
  return jax.device_get(_evaluate(model, variables, tokens, labels, jnp.asarray(chains, jnp.int32),
                                  jnp.float32(length_penalty)))


class _Node:
  __slots__ = ("state", "children", "untried", "visits", "total", "exhausted")

  def __init__(self, state, untried):
    self.state, self.children, self.untried = state, [], untried
    self.visits, self.total, self.exhausted = 0, 0.0, False


def _check(model, variables, tokens, labels, num_simulations, length_penalty):
  where = "search_cola"
  layers.check_shape(tokens, "tokens", "batch length", where=where, dtype="integer")
  layers.check_shape(labels, "labels", "batch", where=where, dtype="integer", batch=tokens.shape[0])
  if isinstance(num_simulations, bool) or not isinstance(num_simulations, (int, np.integer)) or num_simulations < 1:
    raise ValueError(f"{where}: `num_simulations` must be an integer >= 1; got {num_simulations!r}.")
  if not length_penalty >= 0:
    raise ValueError(f"{where}: `length_penalty` must be >= 0; got {length_penalty!r}.")
  if not hasattr(model, "num_layers"):
    raise TypeError(f"{where}: `model` must expose `num_layers` and accept `chain=` (zoo.depth_adapt."
                    f"ChainTransformer); got {type(model).__name__}.")
  layers.check_indices(labels, "labels", int(getattr(model, "num_classes", np.iinfo(np.int32).max)), where=where)


def _result(best_chain, best_reward, best_correct, original_correct, evaluations, max_steps):
  chains = _pad(best_chain, max_steps)
  return {"chain": chains, "length": (chains >= 0).sum(1).astype(np.int32), "reward": np.asarray(best_reward),
          "correct": np.asarray(best_correct, bool), "original_correct": np.asarray(original_correct, bool),
          "evaluations": np.asarray(evaluations, np.int32)}


def search_cola(model, variables, tokens, labels, *, num_simulations: int = 16, length_penalty: float = 0.1,
                block_sizes: tuple[int, ...] = (1, 2), actions: str = "skip_repeat", exploration: float = 0.5,
                seed: int = 0) -> dict[str, np.ndarray]:
  """Per-sample UCT search over chains-of-layers of a pretrained ``model`` (module docstring).

  Args:
    model: a :class:`zoo.depth_adapt.ChainTransformer` (anything with ``num_layers`` whose ``apply`` takes
      ``chain=``); variables: its pretrained variables (never changed).
    tokens: ``[batch, length]`` int; labels: ``[batch]`` int, the oracle labels the reward reads.
    num_simulations: the fixed budget: chains evaluated per sample besides the pretrained one.
    length_penalty: ``lambda`` of the reward ``1[correct] - lambda |c| / N``; 0 is the no-penalty ablation.
    block_sizes: lengths of the blocks an action skips / runs / repeats.
    actions: ``'skip_repeat'`` (the paper) or ``'skip'`` (skip-only ablation: no loops).
    exploration: the UCT constant ``c``.
    seed: the rollouts' and expansion order's random seed.

  Returns:
    numpy ``{'chain' [b, 2N], 'length' [b], 'correct' [b] bool, 'reward' [b], 'original_correct' [b] bool,
    'evaluations' [b]}``: the best chain found per sample, and whether the pretrained chain was right.
  """
  _check(model, variables, tokens, labels, num_simulations, length_penalty)
  acts = _actions(block_sizes, actions)
  n_layers, max_steps, b = model.num_layers, 2 * model.num_layers, tokens.shape[0]
  rng = np.random.default_rng(seed)
  tokens, labels = jnp.asarray(tokens), jnp.asarray(labels)

  def untried(state):
    if state[0] >= n_layers:
      return []
    children = {}
    for a in acts:  # actions with the same outcome (a clipped block at the top) are one child
      children.setdefault(_step(state, a, n_layers), a)
    out = list(children)
    rng.shuffle(out)
    return out

  default = tuple(range(n_layers))
  r0, c0 = evaluate_chains(model, variables, tokens, labels, _pad([default] * b, max_steps), length_penalty)
  best = [[float(r0[i]), bool(c0[i]), default] for i in range(b)]
  roots = [_Node((0, ()), untried((0, ()))) for _ in range(b)]
  evaluations = np.zeros(b, np.int32)
  for _ in range(num_simulations):
    paths, chains = [], []
    for i in range(b):
      node, path = roots[i], [roots[i]]
      while not node.untried and not node.exhausted and node.children:
        live = [ch for ch in node.children if not ch.exhausted]
        log_n = math.log(max(node.visits, 1))
        node = max(live, key=lambda ch: ch.total / ch.visits + exploration * math.sqrt(log_n / ch.visits))
        path.append(node)
      if node.exhausted:  # the whole tree is explored: nothing left to evaluate
        paths.append(None)
        chains.append(default)
        continue
      child = _Node(node.untried.pop(), [])
      child.untried = untried(child.state)
      node.children.append(child)
      path.append(child)
      paths.append(path)
      chains.append(_rollout(child.state, acts, n_layers, rng))
    reward, correct = evaluate_chains(model, variables, tokens, labels, _pad(chains, max_steps), length_penalty)
    for i, path in enumerate(paths):
      if path is None:
        continue
      evaluations[i] += 1
      if reward[i] > best[i][0]:
        best[i] = [float(reward[i]), bool(correct[i]), chains[i]]
      for node in path:
        node.visits += 1
        node.total += float(reward[i])
      for node in reversed(path):  # a complete chain, or a node whose subtrees are all complete, is exhausted
        if node.state[0] >= n_layers or (not node.untried and all(ch.exhausted for ch in node.children)):
          node.exhausted = True
        else:
          break
  return _result([x[2] for x in best], [x[0] for x in best], [x[1] for x in best], c0, evaluations, max_steps)


def random_chain_search(model, variables, tokens, labels, *, num_simulations: int = 16, length_penalty: float = 0.1,
                        block_sizes: tuple[int, ...] = (1, 2), actions: str = "skip_repeat",
                        seed: int = 0) -> dict[str, np.ndarray]:
  """The baseline: the pretrained chain + ``num_simulations`` chains of uniformly random actions (same action space,
  same reward, same number of evaluations); the best per sample, with the keys of :func:`search_cola`."""
  _check(model, variables, tokens, labels, num_simulations, length_penalty)
  acts = _actions(block_sizes, actions)
  n_layers, max_steps, b = model.num_layers, 2 * model.num_layers, tokens.shape[0]
  rng = np.random.default_rng(seed)
  tokens, labels = jnp.asarray(tokens), jnp.asarray(labels)
  default = tuple(range(n_layers))
  r0, c0 = evaluate_chains(model, variables, tokens, labels, _pad([default] * b, max_steps), length_penalty)
  best = [[float(r0[i]), bool(c0[i]), default] for i in range(b)]
  for _ in range(num_simulations):
    chains = [_rollout((0, ()), acts, n_layers, rng) for _ in range(b)]
    reward, correct = evaluate_chains(model, variables, tokens, labels, _pad(chains, max_steps), length_penalty)
    for i in range(b):
      if reward[i] > best[i][0]:
        best[i] = [float(reward[i]), bool(correct[i]), chains[i]]
  return _result([x[2] for x in best], [x[0] for x in best], [x[1] for x in best], c0,
                 np.full(b, num_simulations, np.int32), max_steps)


def cola_rates(result: dict[str, Any], num_layers: int) -> dict[str, float]:
  """The paper's two rates from a search result: ``shorter`` = share of originally-correct samples with a correct
  chain of fewer than ``num_layers`` layers; ``fixed`` = share of originally-wrong samples with a correct chain;
  also ``accuracy`` (pretrained), ``oracle_accuracy`` (best chain) and ``mean_length``."""
  orig = np.asarray(result["original_correct"]).astype(bool)
  ok = np.asarray(result["correct"]).astype(bool)
  length = np.asarray(result["length"])
  shorter = ok & (length < num_layers)
  return {"shorter": float(shorter[orig].mean()) if orig.any() else float("nan"),
          "fixed": float(ok[~orig].mean()) if (~orig).any() else float("nan"),
          "accuracy": float(orig.mean()), "oracle_accuracy": float(ok.mean()), "mean_length": float(length.mean())}
