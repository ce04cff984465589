"""Effect test for "Counter-Current Learning: A Biologically Plausible Dual Network Approach for Deep Learning"
(Kao & Hariharan, NeurIPS 2024, arXiv:2409.19841): the forward network, trained only by the anti-parallel pair losses
with a separate feedback network (no back-propagation across layers, no weight transport), learns hidden features,
reaching the test accuracy of back-propagation and of feedback alignment on the bundled digits. All training goes
through ``zoo.recipes.train.fit``.

Setting: ``zoo.local_learning.CounterCurrentMLP``, the reference's MLP recipe (ELU, no biases, PyTorch's default
initialisation, SGD learning rate 1.0 with gradient clipping 1 applied to each network separately, pair-loss scale
0.5), batch 128, 1000 steps. Baselines: the *same* model and optimizer with the pair losses switched off
(``loss_scale=0``: only the top layer learns, from the cross-entropy; the hidden layers stay random), and
``zoo.core.MLP`` of the same widths (ReLU, Adam 1e-3) trained by back-propagation and by feedback alignment
(``zoo.recipes.procedures.feedback_alignment``).

Measured on this machine (test accuracy, 450 test digits):

* 64-32-32-10, 1000 steps, seeds 0 / 1: CCL 0.973 / 0.969; same model, readout only 0.844 / 0.840; backprop
  0.976 / 0.964; feedback alignment 0.958 / 0.958; backprop readout only (Adam, ReLU) 0.742 / 0.658.
* 64-256-256-10 (PAPERS.md's setting), 2000 steps, seeds 0 / 1 / 2: CCL 0.971 / 0.973 / 0.969; readout only of the
  same model 0.960 / 0.964 / 0.964; backprop 0.982 / 0.982 / 0.980; feedback alignment 0.976 / 0.982 / 0.978. After
  1000 steps: CCL 0.960 / 0.962 / 0.967, readout only 0.962 / 0.956 (seeds 0 / 1), backprop readout only (Adam,
  ReLU) 0.940 / 0.942 / 0.944.
* Convolutional variant (slow test), 8-16 channels, 1000 steps, seeds 0 / 1: CCL 0.929 / 0.933, readout only 0.902 /
  0.891.

What reproduces: CCL is close to backprop (within 0.01 at both widths) and to feedback alignment, and clearly learns
its hidden layers at width 32 (+0.13 over the readout of its own random features). What does not at small scale:
at width 256 the random ELU features of digits are already so good that a linear readout reaches 0.96, so CCL's
gain over readout-only is only +0.004 to +0.011 there, not the +0.03 PAPERS.md expected (the slow test asserts the
margins that hold). The default test uses width 32, where the hidden layers must learn.
"""

import optax
import pytest

from zoo import core
from zoo import local_learning
from zoo.recipes import train


def _ccl_accuracy(digits, mesh, features, *, seed, steps, loss_scale=0.5):
  train_data, test_data = digits
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
  result = train.fit(local_learning.CounterCurrentMLP(features), train_data, optimizer=opt, steps=steps,
                     batch_size=128, eval_data=test_data, procedure="counter_current.CounterCurrent",
                     procedure_kwargs={"loss_scale": loss_scale}, mesh=mesh, seed=seed)
  return result.metrics["accuracy"]


def _mlp_accuracy(digits, mesh, features, *, seed, steps, procedure="backprop"):
  train_data, test_data = digits
  result = train.fit(core.MLP(features), train_data, optimizer=optax.adam(1e-3), steps=steps, batch_size=128,
                     eval_data=test_data, procedure=procedure, mesh=mesh, seed=seed)
  return result.metrics["accuracy"]


def _compare(digits, mesh, features, seed, steps):
  acc = {"ccl": _ccl_accuracy(digits, mesh, features, seed=seed, steps=steps),
         "ccl_readout_only": _ccl_accuracy(digits, mesh, features, seed=seed, steps=steps, loss_scale=0.0),
         "backprop": _mlp_accuracy(digits, mesh, features, seed=seed, steps=steps),
         "feedback_alignment": _mlp_accuracy(digits, mesh, features, seed=seed, steps=steps,
                                             procedure="feedback_alignment.FeedbackAlignment")}
  print(f"counter-current learning, widths {features}, seed {seed}, {steps} steps: {acc}")
  return acc


def test_ccl_learns_hidden_features_and_matches_backprop_and_feedback_alignment(digits, single_device_mesh):
  acc = _compare(digits, single_device_mesh, (32, 32, 10), seed=0, steps=1000)
  assert acc["ccl"] >= acc["ccl_readout_only"] + 0.08, acc  # measured +0.13
  assert acc["ccl"] >= acc["backprop"] - 0.03, acc           # measured -0.003 / +0.005
  assert acc["ccl"] >= acc["feedback_alignment"] - 0.02, acc  # measured +0.015 / +0.011
  assert acc["ccl"] >= 0.94, acc


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ccl_paper_widths(digits, single_device_mesh, seed):
  """PAPERS.md's 64-256-256-10 over three seeds, 2000 steps: CCL within 0.05 of backprop and of feedback alignment
  (measured -0.011 / -0.009 / -0.011 and -0.005 / -0.009 / -0.009), and above the readout of its own random features
  (measured +0.011 / +0.009 / +0.004; the +0.03 margin of PAPERS.md does not hold at this width)."""
  acc = _compare(digits, single_device_mesh, (256, 256, 10), seed=seed, steps=2000)
  assert acc["ccl"] >= acc["backprop"] - 0.05, acc
  assert acc["ccl"] >= acc["feedback_alignment"] - 0.05, acc
  assert acc["ccl"] > acc["ccl_readout_only"], acc


@pytest.mark.slow
def test_ccl_convnet_learns_hidden_features(digits, single_device_mesh):
  """The convolutional variant (stride-2 convolutions 8-16 channels, the cosine pair loss with the reference CNN
  loss's decorrelation terms, scale 1 / 0.5, SGD 1.0, clip 1) beats the readout of its own random features.
  Measured seeds 0 / 1: CCL 0.929 / 0.933, readout only 0.902 / 0.891 (with 16-32 channels, seed 1, the random
  features are already as good: CCL 0.927, readout 0.938)."""
  train_data, test_data = digits
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
  runs = {}
  for scale in (1.0, 0.0):
    result = train.fit(local_learning.CounterCurrentConvNet(10, features=(8, 16)), train_data, optimizer=opt,
                       steps=1000, batch_size=128, eval_data=test_data, procedure="counter_current.CounterCurrent",
                       procedure_kwargs={"loss": "cosine", "loss_scale": scale, "ssl_scale": 0.5 * scale},
                       mesh=single_device_mesh, seed=0)
    runs[scale] = result.metrics["accuracy"]
  print(f"counter-current ConvNet: CCL {runs[1.0]:.4f}, readout only {runs[0.0]:.4f}")
  assert runs[1.0] >= 0.9 and runs[1.0] >= runs[0.0] + 0.01, runs
