"""MultiModN on sklearn digits split into four quadrant modalities, tasks digit and parity, trained under MNAR
missingness (quadrant 3 missing for 80% of even and 10% of odd digits), evaluated under MCAR missingness (45%).

Paper: "MultiModN - Multimodal, Multi-Task, Interpretable Modular Networks" (Swamy et al., 2023, arXiv 2309.14118).
The P-Fusion baseline is ``--config.model.name=multimodn.PFusion``; the no-skip ablation
``--config.model.skip_missing=False``; ``--config.data.eval_split=test_mnar`` evaluates under the training
missingness. The ``step<i>_accuracy`` metrics are the per-step prediction trajectory.

Command::

  python -m zoo.recipes.train --config recipes/configs/multimodn_digits.py --workdir /tmp/multimodn_digits

Expected result: digit accuracy ~0.67 under MCAR missingness (~0.95 under the training missingness), parity ~0.81;
P-Fusion ~0.52 (seeds 0/1 of the effect test, trained with the same batches and init by zoo.recipes.sweep). About
10 s of CPU.

Shipped checkpoint: this command's run (seed 0, 600 steps) is ``zoo.checkpoints.load('multimodn_digits')``; digit
accuracy 0.667 and parity 0.804 under MCAR missingness (``step0..4_accuracy`` 0.100 / 0.333 / 0.522 / 0.638 /
0.667).
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "multimodn.MultiModN", "task_classes": (10, 2), "state_dim": 32,
                                       "hidden": 64})
  c.data.name = "multimodn_digits"
  c.data.batch_size = 64
  c.data.eval_split = "test_mcar"
  c.task = ml_collections.ConfigDict({"name": "multimodn.MultiModNTask", "target_keys": ("label", "parity"),
                                      "err_penalty": 1.0, "state_change_penalty": 1.0})
  c.optimizer.learning_rate = 1e-3
  c.steps = 600
  c.log_every = 100
  c.checkpoint_every = 300
  return c
