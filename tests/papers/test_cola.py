"""Skip a Layer or Loop it? Test-Time Depth Adaptation of Pretrained LLMs (CoLa; Li, Li and Zhou, 2025, arXiv
2507.07996).

The paper's findings, at toy scale: a 6-layer causal transformer (``zoo.depth_adapt.ChainTransformer``, width 32) is
pretrained for 200 Adam steps (``zoo.recipes.train.fit``, batch 128) on modular sums mod 7 with 2-5 operands
(``recipes/datasets/modular_sums.py``), so that it is right on short sums and wrong on long ones (accuracy
0.38-0.45). On 200 held-out sums, per sample, a UCT search (``zoo.recipes.procedures.cola.search_cola``, 16
simulations = 16 chain evaluations besides the pretrained chain) over chains-of-layers (skip / once / repeat a block
of 1 or 2 layers) maximises ``1[correct under the oracle label] - 0.1 |chain| / 6``. Rates: ``shorter`` = share of
originally-correct samples for which the search found a correct chain of fewer than 6 layers; ``fixed`` = share of
originally-wrong samples for which it found a correct chain.

* full method: ``search_cola`` (length penalty 0.1, skip + repeat actions);
* ablation: the same search with ``length_penalty=0`` (the mechanism that makes a chain *shorter*: without it the
  search keeps the first correct chain, the pretrained one);
* baseline: random chain search at an equal budget (``random_chain_search``: the pretrained chain + 16 chains of
  uniformly random actions, same reward).

Measured (``ZOO_TEST_SEED`` = 0 / 1 / 2; pretrained accuracy 0.285 / 0.490 / 0.665):

=========================  ==================  ==================  ==================
run                        shorter             fixed               mean chain length
=========================  ==================  ==================  ==================
UCT, penalty 0.1 (full)    0.895 0.878 0.805   0.853 0.784 0.701   3.61 3.34 3.66
UCT, no penalty (abl.)     0.000 0.000 0.000   0.804 0.775 0.687   5.66 5.74 6.06
random, equal budget       0.895 0.827 0.842   0.832 0.784 0.731   3.57 3.66 3.85
=========================  ==================  ==================  ==================

What reproduces: both of the paper's findings (a shorter correct chain for most correct samples, paper > 75%; a
fix for most wrong ones, paper > 60%; here with oracle labels over 7 classes, where a random chain is right by
chance fairly often), and the length penalty is what produces the shorter chains. What does NOT reproduce: "better
than random search at an equal budget". UCT and random chain search are level within noise: over the three offsets
above and three more with a different pretraining loop (a plain ``lax.scan`` of Adam steps, same data) the
difference UCT - random ranged over -0.04 .. +0.13 on ``shorter`` and -0.03 .. +0.02 on ``fixed`` (at 32
simulations random search was up to 0.04 ahead on ``fixed``). So against the baseline the test asserts parity only
(UCT >= random - 0.08 on each rate), not the superiority PAPERS.md asks for.

Asserted: full ``shorter >= 0.5`` and ``fixed >= 0.3`` (PAPERS.md: 0.3 and 0.1); ablation ``shorter <= 0.05`` and
full - ablation ``shorter >= 0.5``, full mean length <= ablation mean length - 1; full >= random - 0.08 on both
rates (tests/test_depth_adapt.py re-runs returned chains outside the search to confirm their correctness).
Mutation check: dropping the length term of the reward in ``cola._evaluate`` (``reward = correct``) makes the
full search equal to the ablation (shorter 0.0) and the test fails (``f['shorter'] >= 0.5``).
Cost: ~22 s of CPU time (pretraining and its compile are most of it).
"""

import jax
import numpy as np
import optax
import pytest

from tests.conftest import seed_offset
from zoo import depth_adapt
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes import train as train_lib
from zoo.recipes.datasets import modular_sums
from zoo.recipes.procedures import cola

M, STEPS, BATCH, SIMS, PENALTY, N = 7, 200, 128, 16, 0.1, 6


@pytest.fixture(scope="module")
def pretrained():
  seed = seed_offset() + 0
  rng = np.random.default_rng(seed)
  train = modular_sums.modular_sum_arrays(STEPS * BATCH, M, 2, 5, rng)
  test = modular_sums.modular_sum_arrays(200, M, 2, 5, rng)
  model = depth_adapt.ChainTransformer(vocab_size=modular_sums.vocab_size(M), num_classes=M, embed_dim=32,
                                       num_layers=N, num_heads=4, mlp_dim=64)
  result = train_lib.fit(model, {"tokens": train["tokens"], "label": train["label"]},
                         task=tasks.Classification(input_key="tokens"), optimizer=optax.adam(1e-3), steps=STEPS,
                         batch_size=BATCH, seed=seed, mesh=sharding.make_mesh(devices=jax.devices()[:1]))
  variables = result.variables
  return model, jax.device_get(variables), test, seed


def test_cola_finds_shorter_and_fixing_chains(pretrained):
  model, variables, test, seed = pretrained
  tokens, labels = test["tokens"], test["label"]
  full = cola.search_cola(model, variables, tokens, labels, num_simulations=SIMS, length_penalty=PENALTY, seed=seed)
  ablation = cola.search_cola(model, variables, tokens, labels, num_simulations=SIMS, length_penalty=0.0, seed=seed)
  random = cola.random_chain_search(model, variables, tokens, labels, num_simulations=SIMS, length_penalty=PENALTY,
                                    seed=seed)
  rates = {name: cola.cola_rates(r, N) for name, r in (("full", full), ("ablation", ablation), ("random", random))}
  print(rates)
  assert (full["evaluations"] == SIMS).all() and (random["evaluations"] == SIMS).all()  # equal budget
  # the pretrained model must leave both kinds of samples
  assert 0.2 <= rates["full"]["accuracy"] <= 0.8
  f, a, r = rates["full"], rates["ablation"], rates["random"]
  assert f["shorter"] >= 0.5 and f["fixed"] >= 0.3, f
  assert a["shorter"] <= 0.05 and f["shorter"] - a["shorter"] >= 0.5, (f, a)
  assert f["mean_length"] <= a["mean_length"] - 1.0, (f, a)
  assert f["shorter"] >= r["shorter"] - 0.08 and f["fixed"] >= r["fixed"] - 0.08, (f, r)  # parity only
