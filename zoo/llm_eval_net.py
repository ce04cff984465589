"""Evaluator networks of a frozen LLM judge: wider and deeper networks of role-playing neurons (WideDeep).

Paper: "Wider and Deeper LLM Networks are Fairer LLM Evaluators", Zhang et al., 2023 (arXiv 2308.01862). Each
*neuron* is one call of a frozen LLM judge with a role prompt (an evaluation perspective); a *layer* of ``width``
neurons judges the pair (A, B); a neuron of the next layer reads every verdict of the previous layer together with
the pair and judges again (one round of discussion); the last layer's judgements are averaged (``'mean'``) or
voted (``'vote'``). Every neuron judges both answer orders, (A, B) and (B, A), and averages them, which removes
the judge's position bias. No weights are trained in the network: it only composes calls of the judge.

Scaled down (zoo): the judge is a small causal transformer (:class:`JudgeLM`, ``zoo.transformer.TransformerLM``)
fine-tuned to answer one token, :data:`A` or :data:`B`, after a query laid out by :func:`judge_tokens`::

  [ROLE_r] name [SEP] first doc [SEP] second doc [HINT] earlier verdicts (A/B, PAD if none) [ASK]

A role is a role token plus an aspect view of the pair (the data side chooses the view: which name parts, which
window of each docstring, see ``zoo.recipes.datasets.docstring_judge``).

Public names (``b`` batch, ``R`` roles, ``n`` name tokens, ``d`` doc tokens):

* :func:`judge_tokens` ``(role [b], name [b, n], first [b, d], second [b, d], hints [b, <=6] | None) -> [b, L]``.
* :class:`JudgeLM` ``(tokens [b, L] int) -> logits [b, vocab]``: the next-token logits at the last position.
* :class:`EvaluatorNeuron` ``(name [b, n], doc_a [b, d], doc_b [b, d], hints [b, k] | None) -> p [b]``: the
  probability that ``doc_a`` is the better answer, from one role, both orders averaged (``swap_orders``).
* :class:`WideDeepEvaluator` ``(name [b, R, n], doc_a [b, R, d], doc_b [b, R, d]) -> p [b]`` (and every layer's
  neuron probabilities ``[depth, b, width]`` with ``return_layers``): ``width`` neurons (roles ``0 .. width-1``) per
  layer, ``depth`` layers, layer ``l > 1`` reading layer ``l - 1``'s verdict tokens, ``aggregate`` ``'mean'`` or
  ``'vote'``. Its only parameters are the judge's (``params/judge``), shared by every neuron.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo import layers
from zoo import transformer

__all__ = ["A", "ASK", "B", "EvaluatorNeuron", "HINT", "JudgeLM", "LENGTH", "MAX_HINTS", "MAX_ROLES", "PAD",
           "ROLE0", "SEP", "WideDeepEvaluator", "judge_tokens"]

Array = jax.Array
PAD, SEP, HINT, ASK, A, B = 0, 1, 2, 3, 4, 5
ROLE0, MAX_ROLES = 6, 6
NAME_LEN, DOC_LEN, MAX_HINTS = 4, 8, 6
LENGTH = 1 + NAME_LEN + 1 + DOC_LEN + 1 + DOC_LEN + 1 + MAX_HINTS + 1


def judge_tokens(role, name, doc_first, doc_second, hints=None):
  """One judge query per row (layout in the module docstring): ``role [b]`` int in ``[0, MAX_ROLES)``,
  ``name [b, 4]``, ``doc_first/doc_second [b, 8]`` token ids, ``hints [b, <= 6]`` (:data:`A`/:data:`B`/:data:`PAD`)
  -> ``tokens [b, LENGTH]`` int32. Works on numpy (the data side) and jax arrays (inside the network)."""
  xp = np if all(isinstance(a, np.ndarray) for a in (role, name, doc_first, doc_second)) else jnp
  b = name.shape[0]
  if hints is None:
    hints = xp.zeros((b, MAX_HINTS), np.int32)
  elif hints.shape[1] > MAX_HINTS:
    raise ValueError(f"judge_tokens: at most {MAX_HINTS} hints; got shape {hints.shape}.")
  elif hints.shape[1] < MAX_HINTS:
    hints = xp.concatenate([hints, xp.zeros((b, MAX_HINTS - hints.shape[1]), hints.dtype)], axis=1)
  col = lambda v: xp.full((b, 1), v, np.int32)
  return xp.concatenate([(xp.asarray(role) + ROLE0).astype(np.int32)[:, None], name.astype(np.int32), col(SEP),
                         doc_first.astype(np.int32), col(SEP), doc_second.astype(np.int32), col(HINT),
                         hints.astype(np.int32), col(ASK)], axis=1)


class JudgeLM(nn.Module):
  """The judge: ``zoo.transformer.TransformerLM`` read at its last position (the answer token's logits).

  Attributes: ``vocab_size`` and the LM's sizes (``embed_dim``, ``num_layers``, ``num_heads``, ``mlp_dim``,
  ``max_length``).
  """
  vocab_size: int
  embed_dim: int = 64
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 128
  max_length: int = 64

  @nn.compact
  def __call__(self, tokens: Array, *, train: bool = False) -> Array:
    """``tokens [batch, length]`` int -> next-token logits at the last position ``[batch, vocab_size]``."""
    lm = transformer.TransformerLM(self.vocab_size, embed_dim=self.embed_dim, num_layers=self.num_layers,
                                   num_heads=self.num_heads, mlp_dim=self.mlp_dim, max_length=self.max_length,
                                   name="lm")
    return lm(tokens, train=train)[:, -1]


def _check_pair(name, doc_a, doc_b, where, spec_name, spec_doc):
  layers.check_shape(name, "name", spec_name, where=where, dtype="integer")
  layers.check_shape(doc_a, "doc_a", spec_doc, where=where, dtype="integer", batch=name.shape[0])
  layers.check_shape(doc_b, "doc_b", spec_doc, where=where, dtype="integer", batch=name.shape[0],
                     doc=doc_a.shape[-1])


class EvaluatorNeuron(nn.Module):
  """One neuron: the frozen judge playing ``role``; ``p(doc_a is better)``.

  With ``swap_orders`` the judge sees ``(doc_a, doc_b)`` and ``(doc_b, doc_a)`` (hints swapped to match) and the
  neuron returns ``(P_A(a, b) + P_B(b, a)) / 2``; without it only ``P_A(a, b)``. ``P_A`` is the softmax over the two
  answer tokens :data:`A` and :data:`B`.

  Attributes:
    judge: the judge module (its parameters live under this neuron's ``judge`` scope; share them by giving every
      neuron the same variables).
    role: the role token index in ``[0, MAX_ROLES)``.
    swap_orders: judge both answer orders.
  """
  judge: nn.Module
  role: int = 0
  swap_orders: bool = True

  @nn.compact
  def __call__(self, name: Array, doc_a: Array, doc_b: Array, hints: Array | None = None) -> Array:
    """``name [b, 4]``, ``doc_a/doc_b [b, 8]`` int, ``hints [b, k]`` (verdict tokens, A = doc_a better) -> ``[b]``."""
    where = type(self).__name__
    _check_pair(name, doc_a, doc_b, where, "batch name", "batch doc")
    if not 0 <= self.role < MAX_ROLES:
      raise ValueError(f"{where}: `role` must be in [0, {MAX_ROLES}); got {self.role}.")
    role = jnp.full((name.shape[0],), self.role, jnp.int32)
    return _judge_pair(self.judge, role, name, doc_a, doc_b, hints, self.swap_orders)


def _judge_pair(judge, role, name, doc_a, doc_b, hints, swap_orders):
  def p_first(first, second, h):
    logits = judge(judge_tokens(role, name, first, second, h))
    return jax.nn.softmax(jnp.stack([logits[:, A], logits[:, B]], -1), -1)[:, 0]
  p = p_first(doc_a, doc_b, hints)
  if swap_orders:
    flipped = None if hints is None else jnp.where(hints == A, B, jnp.where(hints == B, A, hints))
    p = 0.5 * (p + 1.0 - p_first(doc_b, doc_a, flipped))
  return p


class WideDeepEvaluator(nn.Module):
  """A ``width`` x ``depth`` network of evaluator neurons over one frozen judge (module docstring).

  Layer 1: neuron ``i`` (role ``i``) judges its view of the pair. Layer ``l > 1``: neuron ``i`` judges its view
  again, reading the ``width`` verdict tokens of layer ``l - 1`` (``A`` where that neuron's ``p > 0.5``) as hints.
  The output aggregates the last layer: ``'mean'`` of the probabilities or ``'vote'`` (share of ``A`` verdicts).

  Attributes:
    judge: the judge module (one set of parameters under ``judge``, shared by all neurons).
    width: neurons per layer (``<= MAX_ROLES`` and ``<= MAX_HINTS``).
    depth: layers (the paper's best is 2).
    aggregate: ``'mean'`` or ``'vote'``.
    swap_orders: every neuron judges both answer orders.
  """
  judge: nn.Module
  width: int = 6
  depth: int = 2
  aggregate: str = "mean"
  swap_orders: bool = True

  @nn.compact
  def __call__(self, name: Array, doc_a: Array, doc_b: Array, *, return_layers: bool = False):
    """``name [b, R, 4]``, ``doc_a/doc_b [b, R, 8]`` int (one view per role, ``R >= width``) -> ``p [b]``
    (probability that ``doc_a`` is better), and ``[depth, b, width]`` neuron probabilities with ``return_layers``."""
    where = type(self).__name__
    _check_pair(name, doc_a, doc_b, where, "batch roles name", "batch roles doc")
    if not 1 <= self.width <= min(MAX_ROLES, MAX_HINTS) or name.shape[1] < self.width:
      raise ValueError(f"{where}: `width` must be in [1, {min(MAX_ROLES, MAX_HINTS)}] and <= the roles of the input "
                       f"({name.shape[1]}); got {self.width}.")
    if self.depth < 1:
      raise ValueError(f"{where}: `depth` must be >= 1; got {self.depth}.")
    if self.aggregate not in ("mean", "vote"):
      raise ValueError(f"{where}: `aggregate` must be 'mean' or 'vote'; got {self.aggregate!r}.")
    b, w = name.shape[0], self.width
    # all neurons of a layer in one judge call: rows (neuron i, sample j) -> role i, view i of sample j
    role = jnp.repeat(jnp.arange(w, dtype=jnp.int32), b)
    flat = lambda x: jnp.swapaxes(x[:, :w], 0, 1).reshape(w * b, x.shape[-1])
    nm, da, db = flat(name), flat(doc_a), flat(doc_b)
    hints, outs = None, []
    for _ in range(self.depth):
      p = _judge_pair(self.judge, role, nm, da, db, hints, self.swap_orders).reshape(w, b).T  # [b, w]
      outs.append(p)
      verdicts = jnp.where(p > 0.5, A, B).astype(jnp.int32)  # [b, w]: what the next layer reads
      hints = jnp.tile(verdicts, (w, 1))
    last = outs[-1]
    out = jnp.mean(last, 1) if self.aggregate == "mean" else jnp.mean((last > 0.5).astype(jnp.float32), 1)
    return (out, jnp.stack(outs)) if return_layers else out
