"""Effect test: "Perforated Backpropagation: A Neuroscience Inspired Extension to Artificial Neural Networks"
(Brenner & Itti, 2025, arXiv 2501.18018).

Claim: after a network is trained to a plateau, adding Dendrite Nodes trained to correlate with the neurons'
remaining error (then frozen, with the neurons trained again) improves the network at the same neuron count, beyond
what more training of the original network gives.

Protocol (paired, so the only difference is the dendrites): ``zoo.dendrites.Perforated(core.MLP(...))`` trained
(a) with backprop for all steps (the baseline: its dendrites are never switched in, the original network trained
longer), (b) with ``zoo.recipes.procedures.perforated.PerforatedBackprop``: the same first neuron phase (same
initialisation and batches), one dendrite phase, one neuron phase, and (c) the ablation: the same procedure with
``train_dendrites=False`` (the dendrites are switched in and their ``c_k`` learned, but they keep their random
initial weights: no correlation training). Adam, batch 128.

Measured (this machine; seeds are ``ZOO_TEST_SEED`` offsets):

* ``function_fitting`` ``exp_sin`` (``exp(sin(pi x) + y^2)`` on [-1, 1]^2, 1000 training points, the default test):
  MLP 2-4-1, lr 1e-2, 3000 + 1000 + 2000 steps. Test MSE, seeds 0 / 1 / 2: trained longer 0.168 / 0.192 / 0.668 (a
  plateau), untrained dendrites 0.171 / 0.193 / 0.668 (no gain at all), perforated 0.069 / 0.080 / 0.334, i.e.
  0.41x / 0.42x / 0.50x the baseline and 0.40x / 0.41x / 0.50x the ablation (asserted: < 0.7x both). Random
  dendrites at ``init_scale=1`` instead of 0.01 (seed 0, a side measurement): 0.138. The correlation S of the
  trained dendrites rises from 0.10 to 1.01 (seed 0) during the dendrite phase; the ablation's stays flat.
  Mutation check, a limit of this test: correlating the candidate with itself instead of the neuron's error in
  ``PerforatedBackprop.dendrite_objective`` (the dendrites maximise their own variance) does NOT fail it (seed 0:
  0.090, 0.53x the baseline; S 0.15 -> 0.94): the test sees "trained dendrites beat untrained ones and longer
  training", not the correlation objective specifically. CPU time ~25-45 s (loaded machine).
* sklearn digits, MLP 64-4-10 (underfitting), lr 3e-3, 3000 + 1000 + 2000 steps: test accuracy 0.849 / 0.860 trained
  longer, 0.858 / 0.867 perforated (+0.009 / +0.007).
* sklearn digits, MLP 64-8-10 (PAPERS.md's setting), lr 3e-3, 3000 + 500 + 2000 (x2 cycles): 0.956 / 0.953 / 0.947
  trained longer and exactly the same perforated (seeds 0-2).

What holds: with the neurons at a plateau and training error left, dendrites cut the error a lot (regression) or a
little (digits, 4 hidden units); the neurons never receive dendrite-phase gradients and the correlation rises (unit
tests in ``tests/recipes/procedures/test_perforated.py``). What did not reproduce: PAPERS.md's ">= 2 points on digits with
64-8-10": that network reaches 100% training accuracy, so there is no remaining error for dendrites to correlate
with; perforated and longer training end at the same test accuracy.
"""

import functools

import numpy as np
import optax
import pytest

from zoo import core, dendrites
from zoo.recipes import data
from zoo.recipes.procedures import perforated as pf
from zoo.recipes import tasks, train


@functools.cache
def _data(name, **kwargs):
  sources, _ = data.load(name, **kwargs)
  return sources["train"].arrays, sources["test"].arrays


def _paired(model, train_set, test_set, task, mesh, *, lr, neuron_steps, dendrite_steps, cycle_neuron_steps,
            num_cycles, seed, ablation=False):
  """``(trained longer, perforated[, ablation])``: the baseline, the method and (``ablation``) the same procedure
  with ``train_dendrites=False`` (dendrites switched in at their random initialisation, never trained)."""
  total = neuron_steps + num_cycles * (dendrite_steps + cycle_neuron_steps)
  common = dict(task=task, batch_size=128, eval_data=test_set, mesh=mesh, seed=seed, optimizer=optax.adam(lr),
                steps=total)
  schedule = dict(neuron_steps=neuron_steps, dendrite_steps=dendrite_steps, cycle_neuron_steps=cycle_neuron_steps,
                  num_cycles=num_cycles)
  longer = train.fit(model, train_set, log_every=500, **common)
  perforated = train.fit(model, train_set, log_every=100, procedure=pf.PerforatedBackprop,
                         procedure_kwargs=schedule, **common)
  if not ablation:
    return longer, perforated
  untrained = train.fit(model, train_set, log_every=100, procedure=pf.PerforatedBackprop,
                        procedure_kwargs=dict(schedule, train_dendrites=False), **common)
  return longer, perforated, untrained


def _regression(mesh, seed):
  train_set, test_set = _data("function_fitting", formula="exp_sin")
  model = dendrites.Perforated(core.MLP(features=(4, 1)), num_dendrites=1)
  return _paired(model, train_set, test_set, tasks.Regression(), mesh, lr=1e-2, neuron_steps=3000,
                 dendrite_steps=1000, cycle_neuron_steps=2000, num_cycles=1, seed=seed, ablation=True)


def _correlations(result):
  return [h["train/correlation"] for h in result.history if h["train/phase"] == 1.0]


def test_dendrites_beat_training_longer_and_untrained_dendrites(single_device_mesh, seed):
  longer, perforated, untrained = _regression(single_device_mesh, seed=seed)
  losses = {h["step"]: h["train/loss"] for h in longer.history}
  print(f"exp_sin seed {seed}: test MSE longer {longer.metrics['loss']:.4f}, perforated "
        f"{perforated.metrics['loss']:.4f}, untrained dendrites {untrained.metrics['loss']:.4f}; correlation "
        f"perforated {_correlations(perforated)[0]:.3f} -> {_correlations(perforated)[-1]:.3f}, untrained "
        f"{_correlations(untrained)[0]:.3f} -> {_correlations(untrained)[-1]:.3f}")
  # The original network is at a plateau: its last 3000 steps barely move the training loss (measured -2%).
  assert losses[6000] > 0.9 * losses[3000]
  # Same neurons: the perforated network is the same MLP plus dendrites (one per neuron, 4 + 1 of them).
  assert longer.variables["params"]["base"].keys() == perforated.variables["params"]["base"].keys()
  assert int(perforated.variables["perforation"]["active"]) == 1
  # The dendrites' correlation with the remaining error rises during their phase (measured 0.10 -> 1.01), and
  # only when they are trained (the ablation's stays near where it started).
  correlation, flat = _correlations(perforated), _correlations(untrained)
  assert correlation[-1] > 3 * correlation[0] > 0
  assert max(flat) < 0.3 * correlation[-1]
  # The claim: the trained dendrites cut the error, beyond training longer (the baseline) and beyond the same
  # dendrites switched in untrained (the ablation). Measured MSE ratios in the module docstring.
  assert perforated.metrics["loss"] < 0.7 * longer.metrics["loss"]
  assert perforated.metrics["loss"] < 0.7 * untrained.metrics["loss"]


@pytest.mark.slow
def test_regression_over_seeds(single_device_mesh, seed):
  ratios = []
  for k in range(3):
    longer, perforated, untrained = _regression(single_device_mesh, seed + k)
    ratios.append((perforated.metrics["loss"] / longer.metrics["loss"],
                   perforated.metrics["loss"] / untrained.metrics["loss"]))
  print("exp_sin MSE ratios perforated / longer, perforated / untrained:", np.round(ratios, 3).tolist())
  assert max(max(r) for r in ratios) < 0.8


@pytest.mark.slow
@pytest.mark.parametrize("hidden", [4, 8])
def test_digits_what_holds(hidden, single_device_mesh, seed):
  train_set, test_set = _data("digits")
  model = dendrites.Perforated(core.MLP(features=(hidden, 10)), num_dendrites=1)
  gains, train_accuracy = [], []
  for k in range(2):
    longer, perforated = _paired(model, train_set, test_set, tasks.Classification(), single_device_mesh, lr=3e-3,
                                 neuron_steps=3000, dendrite_steps=1000, cycle_neuron_steps=2000, num_cycles=1,
                                 seed=seed + k)
    gains.append(perforated.metrics["accuracy"] - longer.metrics["accuracy"])
    train_accuracy.append(longer.evaluate(train_set)["accuracy"])
  print(f"digits 64-{hidden}-10: gains {np.round(gains, 4)}, train accuracy trained longer {np.round(train_accuracy, 4)}")
  if hidden == 4:  # underfitting: a small, consistent gain (measured +0.009, +0.007)
    assert min(gains) > 0
  else:  # the network fits its training set: no remaining error, no gain (PAPERS.md's +2 points does not hold)
    assert min(train_accuracy) > 0.99
    assert max(abs(g) for g in gains) < 0.02
