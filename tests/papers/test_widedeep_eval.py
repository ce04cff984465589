"""Effect test of "Wider and Deeper LLM Networks are Fairer LLM Evaluators" (Zhang et al., 2023, arXiv 2308.01862).

Judge: ``llm_eval_net.JudgeLM`` (1-layer causal transformer, width 32, 2 heads, learned positions), fine-tuned
from scratch 200 steps (batch 128, Adam 3e-3, through ``zoo.recipes.train.fit``) on planted judge queries
(``recipes/datasets/docstring_judge.py``: 4 name words, 4 filler words, one name part and one 4-word slice of each
docstring per role, informative slices 60 %, right 80 % of those, so one role view is right with probability
<= 0.68; fine-tuning pairs put the own docstring first 60 % of the time: a planted position bias; half the queries
carry 1-6 verdict hints). Two fine-tuning runs (data and init seeds ``offset`` and ``offset + 100``); the one with
the lower loss on 2000 held-out fine-tuning-style queries is kept (``llm_eval.fine_tune_best_judge``: the judge's
fine-tuning escapes a loss plateau at a random step, and on some seeds one run never learns to read the hints or
its view; the choice never looks at the network metrics). Then frozen and shared by every network; 500 held-out
balanced pairs. Metric: Cohen's kappa (``sklearn.metrics.cohen_kappa_score``) of the verdicts ``p > 0.5`` against
the labels. No network weight is trained.

Networks (``WideDeepEvaluator``, ``aggregate='mean'`` unless ``vote``), named ``<width>x<depth>``:

* the method: ``6x2`` (both answer orders, layer 2 reading layer 1's verdict tokens);
* the baseline: the single neuron ``1x1``;
* width 1 -> 3 -> 6 at depth 1 and at depth 2;
* ablation ``6x2-noswap`` (``swap_orders=False``: each neuron judges one order, the position bias stays);
* ablation ``6x2-noread`` (``read_verdicts=False``: layer 2 judges again without layer 1's verdicts);
* ``6x1-vote`` / ``6x2-vote``: voting instead of averaging.

Measured (ZOO_TEST_SEED 0 / 1 / 2, and 3 / 4 as a check; held-out pairs seed 1000 + offset; "neuron" = the mean
kappa of the six single neurons of layer 1 / layer 2 of ``6x2``; "kept" = the fine-tuning run kept, its held-out
loss against the other's)::

  setting       seed 0  seed 1  seed 2  | seed 3  seed 4
  kept run      1 (.580 vs .612)  1 (.555/.572)  0 (.575/.594) | 1 (.595/.676)  1 (.551/.580)
  1x1            0.256   0.422   0.366  |  0.264   0.332
  3x1            0.403   0.612   0.575  |  0.424   0.556
  6x1            0.540   0.791   0.767  |  0.528   0.744
  1x2            0.256   0.422   0.366  |  0.264   0.332
  3x2            0.372   0.583   0.591  |  0.376   0.508
  6x2 (method)   0.420   0.779   0.643  |  0.460   0.656
  6x2-noswap     0.000   0.357   0.501  |  0.047   0.488   (0: one order always answers A)
  6x2-noread     0.540   0.791   0.767  |  0.528   0.744   (= 6x1: layer 2 repeats layer 1)
  6x1-vote       0.472   0.613   0.617  |  0.422   0.599
  6x2-vote       0.424   0.586   0.558  |  0.460   0.636
  neuron L1/L2   .248/.423  .371/.488  .345/.490  |  .234/.462  .351/.627

User CPU of the whole file: 22 s (``/usr/bin/time``, one process, the 2-core machine shared).

Asserted (margins below the smallest measured gap on offsets 0-4): the single neuron is a noisy judge better than
chance (0.15 <= kappa(1x1) <= 0.5); kappa(6x2) >= kappa(1x1) + 0.1 (PAPERS.md's bar is +0.05; measured +0.16 ..
+0.36); kappa rises with width 1 -> 3 -> 6 at depth 1 (by >= 0.1 and >= 0.08; measured >= 0.147 and >= 0.104)
and at depth 2 (by >= 0.08 and >= 0.02; measured >= 0.112 and >= 0.048), no tolerance needed; the method beats
the ``swap_orders=False`` ablation by >= 0.08 (measured >= 0.142); the discussion round: the mean single-neuron
kappa of layer 2 exceeds layer 1's by >= 0.07 (measured >= 0.117), while with ``read_verdicts=False`` layer 2
equals layer 1 exactly.

**Not reproduced**: the paper's depth gain for the network's output. kappa(6x2) < kappa(6x1) = kappa(6x2-noread)
on every offset (by 0.01-0.12), and voting does not rescue it (6x2-vote - 6x1-vote: -0.05, -0.03, -0.06, +0.04,
+0.04). Each layer-2 neuron agrees far more than a layer-1 neuron, but all of them read the same six *binary*
verdicts, so the second round mostly re-expresses layer 1's vote; the mean of layer 1's probabilities keeps the
judges' confidences, and on these planted, independent views it is already close to the Bayes-optimal combination
(kappa 0.78 for six perfect readers), so a second round has nothing left to add. Nothing here asserts the depth
gain.
"""

import jax
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
  runs = (seed, seed + 100)  # two fine-tuning runs (data and init), the better one on held-out queries is kept
  query_sets = [dj.training_queries(200 * 128, np.random.default_rng(s), first_bias=0.6, **VIEWS) for s in runs]
  held_out = dj.training_queries(2000, np.random.default_rng(5000 + seed), first_bias=0.6, **VIEWS)
  judge = ev.JudgeLM(dj.vocab_size(VIEWS["num_words"], VIEWS["num_fillers"]), embed_dim=32, num_layers=1,
                     num_heads=2, mlp_dim=64, max_length=ev.LENGTH)
  variables, chosen = llm_eval.fine_tune_best_judge(judge, query_sets, runs, held_out, steps=200, batch_size=128,
                                                    learning_rate=3e-3, mesh=single_device_mesh)
  print("judge runs: held-out loss", np.round(chosen["eval_loss"], 3), "kept", chosen["chosen"])
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
  assert neuron[1] >= neuron[0] + 0.07, neuron
  no_read = out["6x2-noread"][1]
  np.testing.assert_allclose(no_read[1], no_read[0], atol=1e-6)
  assert _neuron_kappa(no_read[1], label) <= neuron[1] - 0.07


@pytest.mark.slow  # a second judge (fine-tuned on abstaining hints): ~20 s more
def test_abstaining_verdicts_close_the_depth_gap(single_device_mesh):
  """Why depth does not help above: layer 1's binary verdicts drop the judges' confidences. With a judge fine-tuned
  on hints where ambiguous roles abstain (``training_queries(abstain=True)``) and layer-1 neurons within 0.1 of
  0.5 passing no verdict (``abstain_margin=0.1``), the 6x2 network is level with 6x1 instead of well below it; the
  same judge with binary verdicts (``abstain_margin=0``) is the ablation.

  Measured (ZOO_TEST_SEED 0 / 1 / 2; best of two fine-tuning runs as above, held-out loss .546 vs .676 kept run 1;
  .484 / .538 run 0; .475 / .544 run 0): kappa 6x1 0.680 / 0.823 / 0.771; 6x2 abstaining 0.668 / 0.791 / 0.779;
  6x2 binary 0.520 / 0.707 / 0.662. Asserted: abstaining >= binary + 0.04 (measured +0.148 / +0.084 / +0.117) and
  >= 6x1 - 0.06 (measured -0.012 / -0.032 / +0.008); still no depth *gain* (on these independent views the mean of
  layer 1 is close to the Bayes-optimal combination).
  """
  seed = seed_offset() + 0
  runs = (seed, seed + 100)
  query_sets = [dj.training_queries(200 * 128, np.random.default_rng(s), first_bias=0.6, abstain=True, **VIEWS)
                for s in runs]
  held_out = dj.training_queries(2000, np.random.default_rng(5000 + seed), first_bias=0.6, abstain=True, **VIEWS)
  judge = ev.JudgeLM(dj.vocab_size(VIEWS["num_words"], VIEWS["num_fillers"]), embed_dim=32, num_layers=1,
                     num_heads=2, mlp_dim=64, max_length=ev.LENGTH)
  variables, chosen = llm_eval.fine_tune_best_judge(judge, query_sets, runs, held_out, steps=200, batch_size=128,
                                                    learning_rate=3e-3, mesh=single_device_mesh)
  pairs = dj.pair_views(500, np.random.default_rng(1000 + seed), **VIEWS)
  nets = {"6x1": ev.WideDeepEvaluator(judge, width=6, depth=1),
          "6x2 abstaining": ev.WideDeepEvaluator(judge, width=6, depth=2, abstain_margin=0.1),
          "6x2 binary": ev.WideDeepEvaluator(judge, width=6, depth=2)}
  params = {"params": {"judge": variables["params"]}}
  out = jax.jit(lambda *a: {k: net.apply(params, *a) for k, net in nets.items()})(
      pairs["name"], pairs["doc_a"], pairs["doc_b"])
  k = {name: llm_eval.agreement(np.asarray(p), pairs["label"])["kappa"] for name, p in out.items()}
  print("judge runs: held-out loss", np.round(chosen["eval_loss"], 3), "kept", chosen["chosen"],
        {name: round(v, 3) for name, v in k.items()})
  assert k["6x2 abstaining"] >= k["6x2 binary"] + 0.04, k
  assert k["6x2 abstaining"] >= k["6x1"] - 0.06, k
