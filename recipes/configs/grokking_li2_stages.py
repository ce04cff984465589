"""The three Li_2 stages of grokking, logged from the CLI: modular addition mod 23, 400 of 529 pairs, the
square-activation ``grokking.GroupArithmeticNet`` (K = 256), MSE, full batch, adamw 1e-3 with decoupled decay 1.0
(as ``grokking_modular_addition``), 3000 steps, procedure ``grokking.Li2Backprop``.

Paper: "Provable Scaling Laws of Feature Emergence from Learning Dynamics of Grokking" (Tian, 2025, arXiv
2509.21519). ``metrics.jsonl`` holds every 50 steps ``train/loss``, ``train/accuracy`` and the stage metrics of
``zoo.grokking.stage_metrics`` (``train/energy``, ``train/fourier_share``, ``train/fourier_nodes``,
``train/gf_label_alignment``, ``train/grad_energy_cosine``, ``train/gf_norm``, ``train/active_nodes``), and every
250 steps ``eval/loss``, ``eval/mse``, ``eval/accuracy`` on the 129 unseen pairs.

Command::

  python -m zoo.recipes.train --config recipes/configs/grokking_li2_stages.py --workdir /tmp/grok_stages

Measured (this command, seed 0; 13 s user CPU, 49 s wall on a loaded 2-core machine): test accuracy 1.0, test
MSE 0.0003 after 3000 steps (the same trajectory as ``grokking_modular_addition``). The stages in
``metrics.jsonl`` (step: value):

* I, lazy / memorisation: ``train/accuracy`` 0.33 (50), 0.94 (100), 1.0 from 200; ``eval/accuracy`` 0.40 (250),
  0.88 (500), 1.0 from 750; ``train/fourier_nodes`` 0.0 (50), 0.14 (200).
* II, independent: ``train/grad_energy_cosine`` 0.19 (50) -> 0.78 (150) -> 0.59 (250) -> 0.87 (750-1500) -> 0.80
  (3000); ``train/energy`` 0.45 (50) -> 1.10 (200) -> 1.76 (1000) -> 2.18 (3000); ``train/fourier_nodes`` 0.52
  (1000), 0.73 (3000).
* ``train/gf_label_alignment`` (G_F against Y~ Y~^T F~) 0.30 (50) -> 0.71 (100-150) -> 0.35 (300) -> 0.54 (750)
  -> 0.35 (3000): high once V has fitted lazily, falling again (III) as features form and G_F turns to the rest.

With decoupled decay 1.0 the phases are compressed (grokked by step 750) compared with
``zoo.grokking.train_group_net``'s L2 1e-4 (tests/papers/test_grokking_li2.py: grokked at step ~1300-1500).
"""

import ml_collections

from zoo.recipes.configs import grokking_modular_addition


def get_config() -> ml_collections.ConfigDict:
  """``grokking_modular_addition``'s run (model, data, adamw, 3000 steps), logged by the stage-metrics procedure."""
  c = grokking_modular_addition.get_config()
  c.procedure = ml_collections.ConfigDict({"name": "grokking.Li2Backprop"})
  c.data.eval_batch_size = 129  # the 129 unseen pairs in one batch
  c.log_every = 50
  c.eval_every = 250
  return c
