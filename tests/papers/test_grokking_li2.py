"""Effect test for "Provable Scaling Laws of Feature Emergence from Learning Dynamics of Grokking" (Tian, 2025,
arXiv 2509.21519): modular addition M = 23 (529 pairs; n* = c M log M ~ 198, a train fraction of 0.375), K = 256
square-activation nodes, full-batch Adam 1e-3 with L2 weight decay 1e-4, 3000 steps. Above the critical size (train
fraction 0.75) the net generalises and its active nodes are Fourier features; below it (0.15) it memorises. The
ablation is the same run without weight decay (the mechanism the paper's stage I relies on).

Measured (ZOO_TEST_SEED 0 / 1 / 2): (test accuracy, share of active nodes with > 60% of their a-part power on one
DFT frequency, active nodes of 256)
  train fraction 0.75:             (1.0, 0.833, 144) / (1.0, 0.851, 154) / (1.0, 0.766, 167)
  train fraction 0.15:             (0.0, 0.0, 245)   / (0.0, 0.0, 255)   / (0.0, 0.0, 253)
  0.75 without weight decay:       (0.121, 0.148, 256) / (0.136, 0.156, 256) / (0.227, 0.152, 256)
Over all 256 nodes (active or not) the share at 0.75 is ~0.52-0.55: weight decay shrinks the nodes that lose, so the
paper's ">= 70% of hidden nodes" holds for the nodes that survive, not for all of them at 3000 steps.
"""

import numpy as np

from zoo import grokking


def _run(seed, fraction, weight_decay=1e-4):
  data = grokking.modular_addition_data(23, fraction, seed=seed)
  params, metrics = grokking.train_group_net(data, hidden=256, steps=3000, weight_decay=weight_decay, seed=seed)
  share, active = grokking.fourier_concentration(np.asarray(params["W"])[:, :23])
  return metrics["test_accuracy"], float(np.mean(share[active] > 0.6)), int(active.sum())


def test_features_emerge_above_c_m_log_m(seed):
  assert 0.15 < grokking.critical_train_fraction(23) < 0.75
  full = _run(seed, 0.75)
  small = _run(seed, 0.15)
  ablation = _run(seed, 0.75, weight_decay=0.0)
  print("full", full, "small", small, "no-wd", ablation)
  assert full[0] > 0.9 and small[0] < 0.3
  assert full[1] >= 0.7
  # without weight decay the same run memorises: no generalisation, no Fourier features
  assert ablation[0] < 0.5 and ablation[1] < 0.4
  assert full[0] >= ablation[0] + 0.5 and full[1] >= ablation[1] + 0.3
