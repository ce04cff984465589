"""Judge fine-tuning and evaluator-network evaluation for WideDeep (``zoo.llm_eval_net``).

"Wider and Deeper LLM Networks are Fairer LLM Evaluators", Zhang et al., 2023 (arXiv 2308.01862): a network of
role-playing neurons over one frozen LLM judge; the paper measures agreement with human verdicts by accuracy and
Cohen's kappa. Scaled down: the judge (``llm_eval_net.JudgeLM``) is fine-tuned here on the answer token of judge
queries (``recipes/datasets/docstring_judge.py``), then frozen; the network stage trains nothing.

Settings name a ``WideDeepEvaluator``: ``(width, depth, swap_orders, read_verdicts, aggregate)``, or as text
``'<width>x<depth>'`` with optional suffixes ``-noswap`` (``swap_orders=False``), ``-noread``
(``read_verdicts=False``) and ``-vote`` (``aggregate='vote'``), e.g. ``'6x2'``, ``'6x2-noread'``.

* :func:`fine_tune_judge` ``(judge, {tokens [n, L], label [n]}) -> judge variables``: next-token cross-entropy
  on the answer token through ``zoo.recipes.train.fit``; :func:`fine_tune_best_judge`: the best of a few runs by
  the loss on held-out judge queries.
* :func:`network_probabilities` ``(judge, judge_variables, pairs, settings) -> {setting: (p [n], layers)}``: every
  setting in one jitted call; ``pairs`` as ``docstring_judge.pair_views`` (``name [n, R, 1]``,
  ``doc_a/doc_b [n, R, 4]``).
* :func:`agreement` ``(p [n], label [n]) -> {accuracy, kappa}``: verdict ``p > 0.5`` against the label,
  ``sklearn.metrics.cohen_kappa_score``.
* :class:`JudgeThenNetworks`: the config procedure (``recipes/configs/widedeep_eval_docstrings.py``): ``Backprop``
  fine-tuning of the judge on ``{tokens, label}`` batches; its ``evaluate`` on held-out pair batches ``{name,
  doc_a, doc_b, label = A/B}`` runs every network of ``settings`` over the (frozen) current judge and returns per-pair
  ``<setting>/correct``, ``<setting>/says_a`` and ``label_a``, whose means over the split give Cohen's kappa
  exactly (:func:`kappas_from_means`: kappa of two binary raters depends only on the agreement rate and the two
  marginals).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import metrics as sk_metrics

from zoo import llm_eval_net as ev
from zoo.recipes import tasks
from zoo.recipes import train as train_lib
from zoo.recipes.procedures import backprop

__all__ = ["DEFAULT_SETTINGS", "JudgeThenNetworks", "Setting", "agreement", "fine_tune_best_judge", "fine_tune_judge",
           "judge_task", "kappas_from_means", "network_probabilities", "parse_setting"]

Setting = tuple  # (width, depth, swap_orders, read_verdicts, aggregate)
DEFAULT_SETTINGS = "1x1,3x1,6x1,1x2,3x2,6x2,6x2-noswap,6x2-noread,6x1-vote,6x2-vote"


def parse_setting(text: str) -> Setting:
  """``'6x2-noread'`` -> ``(6, 2, True, False, 'mean')`` (module docstring)."""
  head, *flags = text.strip().split("-")
  try:
    width, depth = (int(v) for v in head.split("x"))
  except ValueError:
    raise ValueError(f"parse_setting: a setting is '<width>x<depth>[-noswap][-noread][-vote]'; got {text!r}.") from None
  unknown = set(flags) - {"noswap", "noread", "vote"}
  if unknown:
    raise ValueError(f"parse_setting: unknown flags {sorted(unknown)} in {text!r} (noswap, noread, vote).")
  return (width, depth, "noswap" not in flags, "noread" not in flags, "vote" if "vote" in flags else "mean")


def _network(judge, setting: Setting) -> ev.WideDeepEvaluator:
  width, depth, swap, read, agg = setting
  return ev.WideDeepEvaluator(judge, width=width, depth=depth, swap_orders=swap, read_verdicts=read, aggregate=agg)


def judge_task() -> tasks.Classification:
  """The fine-tuning loss: softmax cross-entropy of the judge's next-token logits against the answer token."""
  return tasks.Classification(input_key="tokens", target_key="label")


def fine_tune_judge(judge: ev.JudgeLM, queries: Mapping[str, np.ndarray], *, steps: int = 300, batch_size: int = 128,
                    learning_rate: float = 3e-3, seed: int = 0, mesh=None,
                    eval_queries: Mapping[str, np.ndarray] | None = None, return_metrics: bool = False):
  """Fine-tunes ``judge`` on ``queries`` ``{tokens [n, LENGTH] int, label [n] answer token}`` with Adam; returns
  its variables (``{'params': ...}``, to be frozen), and with ``return_metrics`` also the judge's ``{loss,
  accuracy}`` on ``eval_queries``."""
  for arg, q in (("queries", queries), ("eval_queries", eval_queries)):
    if q is None:
      continue
    if "tokens" not in q or "label" not in q:
      raise KeyError(f"fine_tune_judge: `{arg}` needs keys 'tokens' and 'label'; got {sorted(q)}.")
    if q["tokens"].ndim != 2 or q["tokens"].shape[1] != ev.LENGTH:
      raise ValueError(f"fine_tune_judge: `{arg}['tokens']` must be [n, {ev.LENGTH}]; got {q['tokens'].shape}.")
  result = train_lib.fit(judge, dict(queries), task=judge_task(), steps=steps, batch_size=batch_size, seed=seed,
                         mesh=mesh, optimizer={"name": "adam", "learning_rate": learning_rate},
                         eval_data=None if eval_queries is None else dict(eval_queries))
  return (result.variables, result.metrics) if return_metrics else result.variables


def fine_tune_best_judge(judge: ev.JudgeLM, query_sets: Sequence[Mapping[str, np.ndarray]], seeds: Sequence[int],
                         eval_queries: Mapping[str, np.ndarray], **kwargs):
  """One fine-tuning run per ``(query_sets[k], seeds[k])``; returns the variables of the run with the lowest loss
  on the held-out judge queries ``eval_queries`` and ``{'chosen': k, 'eval_loss': [per run]}``.

  Why: the small judge's fine-tuning escapes a loss plateau at a random step (learning to read its view and to read
  the verdict hints are two separate escapes); model selection on held-out queries of the fine-tuning distribution
  (never on the network's metrics) keeps a judge that learned both. ``kwargs``: :func:`fine_tune_judge`'s."""
  if len(query_sets) != len(seeds) or not seeds:
    raise ValueError(f"fine_tune_best_judge: one seed per query set, at least one; got {len(query_sets)} sets and "
                     f"{len(seeds)} seeds.")
  runs = [fine_tune_judge(judge, q, seed=s, eval_queries=eval_queries, return_metrics=True, **kwargs)
          for q, s in zip(query_sets, seeds)]
  losses = [float(m["loss"]) for _, m in runs]
  k = int(np.argmin(losses))
  return runs[k][0], {"chosen": k, "eval_loss": losses}


def network_probabilities(judge: ev.JudgeLM, judge_variables, pairs: Mapping[str, np.ndarray],
                          settings: Sequence[Setting | str]) -> dict[Setting, tuple[np.ndarray, np.ndarray]]:
  """``(p [n], layers [depth, n, width])`` of the ``WideDeepEvaluator`` of each setting (tuple or text), one jit:
  ``p`` = p(doc_a is better), ``layers`` = every neuron's probability. Keys: the settings as tuples."""
  settings = [parse_setting(s) if isinstance(s, str) else tuple(s) for s in settings]
  nets = [_network(judge, s) for s in settings]
  variables = {"params": {"judge": judge_variables["params"]}}

  @jax.jit
  def run(name, doc_a, doc_b):
    return [net.apply(variables, name, doc_a, doc_b, return_layers=True) for net in nets]

  out = run(pairs["name"], pairs["doc_a"], pairs["doc_b"])
  return {s: (np.asarray(p), np.asarray(layers)) for s, (p, layers) in zip(settings, out)}


def agreement(p: np.ndarray, label: np.ndarray) -> dict[str, float]:
  """Accuracy and Cohen's kappa of the verdicts ``p > 0.5`` (``p [n]``) against ``label [n]`` (1: ``doc_a``)."""
  p, label = np.asarray(p), np.asarray(label)
  if p.ndim != 1 or p.shape != label.shape or not p.size:
    raise ValueError(f"agreement: `p` and `label` must both be [n], n > 0; got {p.shape} and {label.shape}.")
  if np.isnan(p).any():
    raise ValueError("agreement: `p` holds NaN (an out-of-range token id inside jit?).")
  verdict = (p > 0.5).astype(np.int32)
  return {"accuracy": float((verdict == label).mean()),
          "kappa": float(sk_metrics.cohen_kappa_score(label.astype(np.int32), verdict))}


def kappas_from_means(metrics: Mapping[str, float]) -> dict[str, float]:
  """Cohen's kappa per setting from :class:`JudgeThenNetworks`' mean metrics (``results.json``'s ``metrics``):
  ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` = mean ``<s>/correct``, ``p_e = a y + (1 - a)(1 - y)`` (``a`` = mean
  ``<s>/says_a``, ``y`` = mean ``label_a``); 0 where ``p_e = 1`` (as sklearn)."""
  if "label_a" not in metrics:
    raise KeyError(f"kappas_from_means: no 'label_a' among {sorted(metrics)[:6]}...; pass the metrics of a "
                   "JudgeThenNetworks evaluation.")
  y, out = float(metrics["label_a"]), {}
  for key in metrics:
    if key.endswith("/correct"):
      s = key[:-len("/correct")]
      a, p_o = float(metrics[f"{s}/says_a"]), float(metrics[key])
      p_e = a * y + (1 - a) * (1 - y)
      out[s] = 0.0 if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)
  return out


@dataclasses.dataclass(frozen=True)
class JudgeThenNetworks(backprop.Backprop):
  """Fine-tunes the judge by backprop (``model`` = ``llm_eval_net.JudgeLM``, ``task`` = classification of the
  answer token, ``input_key='tokens'``); evaluates the evaluator networks of ``settings`` on pair batches.

  Attributes (besides ``Backprop``'s):
    settings: comma-separated settings (module docstring), e.g. ``'1x1,6x2,6x2-noread'``.
  """
  settings: str = DEFAULT_SETTINGS

  def __post_init__(self):
    for s in self.settings.split(","):
      parse_setting(s)

  def evaluate(self, state, batch):
    """The judge's task metrics on ``{tokens [b, L], label [b]}`` (``loss``, ``accuracy`` of the answer token) and,
    when the batch holds the pairs' views ``name [b, R, 1]``, ``doc_a/doc_b [b, R, 4]`` (``label`` = :data:`A`
    where ``doc_a`` is the own docstring), per pair ``<setting>/correct``, ``<setting>/says_a``, ``label_a``
    (float 0/1) and ``<setting>/p`` (the network's probability)."""
    out = super().evaluate(state, batch) if "tokens" in batch else {}
    if "name" not in batch:
      return out
    variables = {"params": {"judge": self.variables(state)["params"]}}
    label = (batch["label"] == ev.A).astype(jnp.int32)
    out["label_a"] = label.astype(jnp.float32)
    for text in self.settings.split(","):
      p = _network(self.model, parse_setting(text)).apply(variables, batch["name"], batch["doc_a"], batch["doc_b"])
      says_a = p > 0.5
      out.update({f"{text.strip()}/correct": (says_a == (label == 1)).astype(jnp.float32),
                  f"{text.strip()}/says_a": says_a.astype(jnp.float32), f"{text.strip()}/p": p})
    return out
