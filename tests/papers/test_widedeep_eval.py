"""Effect test of "Wider and Deeper LLM Networks are Fairer LLM Evaluators" (Zhang et al., 2023, arXiv 2308.01862).

Judge: ``llm_eval_net.JudgeLM`` (1-layer causal transformer, width 32, 2 heads, learned positions), fine-tuned
from scratch 200 steps (batch 128, Adam 3e-3, ``procedures.llm_eval.fine_tune_judge`` through
``zoo.recipes.train.fit``) on planted judge queries (``recipes/datasets/docstring_judge.py``: 4 name words, 4
filler words, one name part and one 4-word slice of each docstring per role, informative slices 60 %, right 80 % of
those, so one role view is right with probability <= 0.68; fine-tuning pairs put the own docstring first 60 % of the
time: a planted position bias; half the queries carry 1-6 verdict hints). Then frozen and shared by every network;
500 held-out balanced pairs. Metric: Cohen's kappa (``sklearn.metrics.cohen_kappa_score``) of the verdicts
``p > 0.5`` against the labels. No network weight is trained.

Networks (``WideDeepEvaluator``, ``aggregate='mean'`` unless ``vote``), named ``<width>x<depth>``:

* the method: ``6x2`` (both answer orders, layer 2 reading layer 1's verdict tokens);
* the baseline: the single neuron ``1x1``;
* width 1 -> 3 -> 6 at depth 1 and at depth 2;
* ablation ``6x2-noswap`` (``swap_orders=False``: each neuron judges one order, the position bias stays);
* ablation ``6x2-noread`` (``read_verdicts=False``: layer 2 judges again without layer 1's verdicts);
* ``6x1-vote`` / ``6x2-vote``: voting instead of averaging.

Measured (ZOO_TEST_SEED 0 / 1 / 2; fine-tuning data and training seed = offset, test pairs seed 1000 + offset;
"neuron" = the mean kappa of the six single neurons of layer 1 / layer 2 of ``6x2``)::

  setting       seed 0  seed 1  seed 2
  1x1            0.304   0.372   0.366
  3x1            0.512   0.596   0.575
  6x1            0.632   0.815   0.767
  1x2            0.304   0.372   0.366
  3x2            0.460   0.535   0.591
  6x2 (method)   0.556   0.643   0.643
  6x2-noswap     0.000   0.000   0.501   (0: one order always answers A)
  6x2-noread     0.632   0.815   0.767   (= 6x1: layer 2 repeats layer 1)
  6x1-vote       0.541   0.632   0.617
  6x2-vote       0.552   0.632   0.558
  neuron L1/L2   0.311/0.542  0.367/0.631  0.345/0.490

User CPU of the whole file: 16-17 s (``/usr/bin/time``, one process, the 2-core machine shared).

Asserted (margins below the smallest measured gap): the single neuron is a noisy judge better than chance
(0.15 <= kappa(1x1) <= 0.5); kappa(6x2) >= kappa(1x1) + 0.1 (PAPERS.md's bar is +0.05; measured +0.25 .. +0.28);
kappa rises with width 1 -> 3 -> 6 at depth 1 (by >= 0.1 and >= 0.08) and at depth 2 (by >= 0.08 and >= 0.02, no
tolerance needed); the method beats the ``swap_orders=False`` ablation by >= 0.08; the discussion round: the mean
single-neuron kappa of layer 2 exceeds layer 1's by >= 0.1, while with ``read_verdicts=False`` layer 2 equals
layer 1 exactly.

**Not reproduced**: the paper's depth gain for the network's output. kappa(6x2) < kappa(6x1) = kappa(6x2-noread)
on all three offsets (by 0.08-0.17), and voting does not change that (6x2-vote vs 6x1-vote: +0.01, 0.00, -0.06).
Each layer-2 neuron agrees far more than a layer-1 neuron, but all of them read the same six *binary* verdicts, so
they end up near layer 1's vote (6x2 - 6x1-vote: +0.015, +0.011, +0.026); the mean of layer 1's probabilities
keeps the judges' confidences, and on these planted, independent views it is already close to the Bayes-optimal
combination (kappa 0.78 for six perfect readers), so a second round has nothing left to add. Nothing here asserts
the depth gain.
"""

import numpy as np
import pytest

from zoo import llm_eval_net as ev
from zoo.recipes.datasets import docstring_judge as dj
from zoo.recipes.procedures import llm_eval
from tests.conftest import seed_offset

VIEWS = dict(num_words=4, num_fillers=4, reliability=0.8, ambiguity=0.4)
SETTINGS = ["1x1", "3x1", "6x1", "1x2", "3x2", "6x2", "6x2-noswap", "6x2-noread", "6x1-vote", "6x2-vote"]


def _neuron_kappa(layer, label):
  """Mean kappa of the single neurons of one layer (``layer [n, width]``)."""
  return float(np.mean([llm_eval.agreement(layer[:, i], label)["kappa"] for i in range(layer.shape[1])]))


@pytest.fixture(scope="module")
def networks(single_device_mesh):
  """One judge fine-tuned once, frozen, shared by every network: ``({setting: (p, layers)}, label)``."""
  seed = seed_offset() + 0
  queries = dj.training_queries(200 * 128, np.random.default_rng(seed), first_bias=0.6, **VIEWS)
  judge = ev.JudgeLM(dj.vocab_size(VIEWS["num_words"], VIEWS["num_fillers"]), embed_dim=32, num_layers=1,
                     num_heads=2, mlp_dim=64, max_length=ev.LENGTH)
  variables = llm_eval.fine_tune_judge(judge, queries, steps=200, batch_size=128, learning_rate=3e-3, seed=seed,
                                       mesh=single_device_mesh)
  pairs = dj.pair_views(500, np.random.default_rng(1000 + seed), **VIEWS)
  out = llm_eval.network_probabilities(judge, variables, pairs, SETTINGS)
  return {s: out[llm_eval.parse_setting(s)] for s in SETTINGS}, pairs["label"]


def test_wider_networks_and_both_orders_agree_more_with_the_labels(networks):
  out, label = networks
  k = {s: llm_eval.agreement(p, label)["kappa"] for s, (p, _) in out.items()}
  layers = out["6x2"][1]
  neuron = (_neuron_kappa(layers[0], label), _neuron_kappa(layers[1], label))
  print({s: round(v, 3) for s, v in k.items()}, "neuron kappa layer 1 / 2:", np.round(neuron, 3))
  assert 0.15 <= k["1x1"] <= 0.5, k  # a noisy judge, better than chance: room for the network
  assert k["6x2"] >= k["1x1"] + 0.1, k  # the paper's claim (PAPERS.md: +0.05)
  assert k["3x1"] >= k["1x1"] + 0.1 and k["6x1"] >= k["3x1"] + 0.08, k  # wider, depth 1
  assert k["3x2"] >= k["1x2"] + 0.08 and k["6x2"] >= k["3x2"] + 0.02, k  # wider, depth 2
  assert k["6x2"] >= k["6x2-noswap"] + 0.08, k  # ablation: one answer order keeps the position bias
  # the discussion round (ablation read_verdicts=False): a layer-2 neuron, reading every layer-1 verdict, agrees
  # much more than a layer-1 neuron; without the verdicts layer 2 repeats layer 1
  assert neuron[1] >= neuron[0] + 0.1, neuron
  no_read = out["6x2-noread"][1]
  np.testing.assert_allclose(no_read[1], no_read[0], atol=1e-6)
  assert _neuron_kappa(no_read[1], label) <= neuron[1] - 0.1
