"""Effect test for "Counter-Current Learning: A Biologically Plausible Dual Network Approach for Deep Learning"
(Kao & Hariharan, NeurIPS 2024, arXiv:2409.19841): the forward network, trained only by the anti-parallel pair losses
with a separate feedback network that learns too (no back-propagation across layers, no weight transport), reaches
the test accuracy of back-propagation on the bundled digits, and the feedback network's learning is what makes it
work: the same model and procedure with the feedback network frozen at its random initialisation
(``CounterCurrent(learn_feedback=False)``, the ablation) falls far behind. All training goes through
``zoo.recipes.train.fit``; seeds are ``ZOO_TEST_SEED + k``.

Setting: ``zoo.local_learning.CounterCurrentMLP``, the reference's MLP recipe (ELU, no biases, PyTorch's default
initialisation, SGD learning rate 1.0 with gradient clipping 1 applied to each network separately, pair-loss scale
0.5), batch 128. The default test uses a narrow, deep net, 64-16-16-16-16-10, 500 steps: there a frozen random
feedback network's signals shrink layer by layer (at init their norms are 1.0 at the top, then 0.65 / 0.33 / 0.18 /
0.11 / 0.13 down to the input), so the lower pair losses ask for large forward activities the forward network cannot
fit; learned feedback rescales and shapes its targets. Baselines: ``zoo.core.MLP`` of the same widths (ReLU, Adam
3e-3, the better of 1e-3 / 3e-3 for it at 500 steps) trained by back-propagation and by feedback alignment
(``zoo.recipes.procedures.feedback_alignment``). The slow tests add the readout of the model's own random features
(``loss_scale=0``: only the top layer learns).

Measured on this machine (test accuracy, 450 test digits):

* Default, 64-16-16-16-16-10, 500 steps, seeds 0 / 1 / 2: CCL 0.944 / 0.960 / 0.969; frozen feedback 0.500 / 0.587
  / 0.856 (seeds 3 / 4: CCL 0.951 / 0.960, frozen 0.571 / 0.747); backprop 0.949 / 0.953 / 0.960 (Adam 1e-3: 0.931
  / 0.922 / 0.947); feedback alignment 0.856 / 0.776 / 0.858 (FA is poor in this narrow, deep net). About 18 s of
  CPU time (user) for the four runs.
* 64-32-32-32-32-10, 500 / 1000 steps: CCL 0.956 / 0.956 / 0.962 (seeds 0-2, 500 steps) and 0.976 / 0.971 / 0.973
  (1000 steps); frozen feedback 0.838 / 0.762 / 0.938 and 0.918 / 0.760 / 0.938.
* 64-32-32-10, 1000 steps (the config), seeds 0 / 1: CCL 0.973 / 0.969; frozen feedback 0.967 (seed 0): in a
  shallow net fixed random targets are nearly as good; readout only 0.844 / 0.840; backprop (Adam 1e-3) 0.976 /
  0.964; feedback alignment 0.958 / 0.958.
* 64-256-256-10 (PAPERS.md's setting, slow test), 2000 steps, seeds 0 / 1 / 2: CCL 0.971 / 0.973 / 0.969; frozen
  feedback 0.898 / 0.851 / 0.931; readout only 0.960 / 0.964 / 0.964; backprop (Adam 1e-3) 0.982 / 0.982 / 0.980;
  feedback alignment 0.976 / 0.982 / 0.978.
* Convolutional variant (slow test), 8-16 channels, cosine pair loss, 1000 steps, seed 0: CCL 0.929, frozen feedback
  0.907, readout only 0.902 (seed 1: CCL 0.933, readout only 0.891).

What reproduces: CCL is close to backprop (within 0.01 in the default setting, within 0.013 at width 256) and at or
above feedback alignment, and its learned feedback matters: +0.11 to +0.44 over the frozen-feedback ablation in the
default setting, +0.04 to +0.12 at width 256. What does not at small scale: in a shallow width-32 net the frozen
feedback network is nearly as good (+0.007); at width 256 the random ELU features of digits are so good that a
linear readout reaches 0.96, so CCL's gain over readout-only is only +0.004 to +0.011 there, not the +0.03
PAPERS.md expected (the slow test asserts the margins that hold); the ConvNet's gain over frozen feedback (+0.02, one
seed) is reported, not asserted.

Mutation check: with ``jax.lax.stop_gradient(c)`` in the dot pair loss (``pair_loss``), the default test fails on
the frozen-feedback margin (CCL 0.500 = frozen 0.500, seed 0).
"""

import optax
import pytest

from zoo import core
from zoo import local_learning
from zoo.recipes import train

# The default effect test's setting: narrow and deep, where what the feedback network learns matters.
DEEP = (16, 16, 16, 16, 10)


def _ccl_accuracy(digits, mesh, features, *, seed, steps, **procedure_kwargs):
  train_data, test_data = digits
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
  result = train.fit(local_learning.CounterCurrentMLP(features), train_data, optimizer=opt, steps=steps,
                     batch_size=128, eval_data=test_data, procedure="counter_current.CounterCurrent",
                     procedure_kwargs={"loss_scale": 0.5, **procedure_kwargs}, mesh=mesh, seed=seed)
  return result.metrics["accuracy"]


def _mlp_accuracy(digits, mesh, features, *, seed, steps, procedure="backprop", lr=1e-3):
  train_data, test_data = digits
  result = train.fit(core.MLP(features), train_data, optimizer=optax.adam(lr), steps=steps, batch_size=128,
                     eval_data=test_data, procedure=procedure, mesh=mesh, seed=seed)
  return result.metrics["accuracy"]


def _compare(digits, mesh, features, seed, steps, *, lr=1e-3, readout_only=True):
  acc = {"ccl": _ccl_accuracy(digits, mesh, features, seed=seed, steps=steps),
         "ccl_frozen_feedback": _ccl_accuracy(digits, mesh, features, seed=seed, steps=steps, learn_feedback=False),
         "backprop": _mlp_accuracy(digits, mesh, features, seed=seed, steps=steps, lr=lr),
         "feedback_alignment": _mlp_accuracy(digits, mesh, features, seed=seed, steps=steps, lr=lr,
                                             procedure="feedback_alignment.FeedbackAlignment")}
  if readout_only:
    acc["ccl_readout_only"] = _ccl_accuracy(digits, mesh, features, seed=seed, steps=steps, loss_scale=0.0)
  print(f"counter-current learning, widths {features}, seed {seed}, {steps} steps: {acc}")
  return acc


def test_ccl_learned_feedback_beats_frozen_feedback_and_matches_backprop(digits, single_device_mesh, seed):
  acc = _compare(digits, single_device_mesh, DEEP, seed, steps=500, lr=3e-3, readout_only=False)
  assert acc["ccl"] >= acc["ccl_frozen_feedback"] + 0.05, acc  # measured +0.44 / +0.37 / +0.11
  assert acc["ccl"] >= acc["backprop"] - 0.03, acc              # measured -0.005 / +0.007 / +0.009
  assert acc["ccl"] >= acc["feedback_alignment"] - 0.02, acc    # measured +0.09 / +0.18 / +0.11
  assert acc["ccl"] >= 0.92, acc                                # measured 0.944 / 0.960 / 0.969


@pytest.mark.slow
@pytest.mark.parametrize("k", [0, 1, 2])
def test_ccl_paper_widths(digits, single_device_mesh, seed, k):
  """PAPERS.md's 64-256-256-10 over three seeds, 2000 steps: CCL within 0.05 of backprop and of feedback alignment
  (measured -0.011 / -0.009 / -0.011 and -0.005 / -0.009 / -0.009), and above the readout of its own random features
  (measured +0.011 / +0.009 / +0.004; the +0.03 margin of PAPERS.md does not hold at this width). The frozen feedback
  ablation falls behind (measured +0.073 / +0.122 / +0.038)."""
  acc = _compare(digits, single_device_mesh, (256, 256, 10), seed=seed + k, steps=2000)
  assert acc["ccl"] >= acc["backprop"] - 0.05, acc
  assert acc["ccl"] >= acc["feedback_alignment"] - 0.05, acc
  assert acc["ccl"] > acc["ccl_readout_only"], acc
  assert acc["ccl"] >= acc["ccl_frozen_feedback"] + 0.02, acc


@pytest.mark.slow
def test_ccl_convnet_learns_hidden_features(digits, single_device_mesh, seed):
  """The convolutional variant (stride-2 convolutions 8-16 channels, the cosine pair loss with the reference CNN
  loss's decorrelation terms, scale 1 / 0.5, SGD 1.0, clip 1) beats the readout of its own random features.
  Measured seeds 0 / 1: CCL 0.929 / 0.933, readout only 0.902 / 0.891 (with 16-32 channels, seed 1, the random
  features are already as good: CCL 0.927, readout 0.938). The frozen feedback ablation is reported, not asserted."""
  train_data, test_data = digits
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
  runs = {}
  for name, scale, learn_feedback in (("ccl", 1.0, True), ("readout_only", 0.0, True),
                                      ("frozen_feedback", 1.0, False)):
    result = train.fit(local_learning.CounterCurrentConvNet(10, features=(8, 16)), train_data, optimizer=opt,
                       steps=1000, batch_size=128, eval_data=test_data, procedure="counter_current.CounterCurrent",
                       procedure_kwargs={"loss": "cosine", "loss_scale": scale, "ssl_scale": 0.5 * scale,
                                         "learn_feedback": learn_feedback},
                       mesh=single_device_mesh, seed=seed)
    runs[name] = result.metrics["accuracy"]
  print(f"counter-current ConvNet: {runs}")
  assert runs["ccl"] >= 0.9 and runs["ccl"] >= runs["readout_only"] + 0.01, runs
