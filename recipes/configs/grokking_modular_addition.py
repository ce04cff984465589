"""Modular addition mod 23 with a square-activation group-arithmetic net: Fourier features emerge and the net
generalises from 400 of the 529 pairs (above c M log M ~ 198).

Paper: "Provable Scaling Laws of Feature Emergence from Learning Dynamics of Grokking" (Tian, 2025, arXiv
2509.21519). ``grokking.GroupArithmeticNet`` (K = 256), MSE to the one-hot sum, full batch (400 pairs), Adam 1e-3
with weight decay through ``optax.adamw`` (decoupled, so its coefficient is not the reference's L2-in-Adam 1e-4,
which ``zoo.grokking.train_group_net`` uses: decoupled 1e-4 shrinks by only lr * 1e-4 per step; 1.0 is used here),
3000 steps.

Command::

  python -m zoo.recipes.train --config recipes/configs/grokking_modular_addition.py --workdir /tmp/grok

Expected result: test MSE per entry 0.0003 (relative L2 0.074) on the 129 unseen pairs, against 0.043 for
predicting all zeros; with ``--config.optimizer.kwargs.weight_decay=1e-4`` (almost no decay) the net memorises:
test MSE 0.063 (relative L2 1.19). About 12 s of CPU. Shipped as the checkpoint ``grokking_modular_addition`` (the
grokked net; measured again: test MSE 0.00026, relative L2 0.074; 9 s of CPU).
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "grokking.GroupArithmeticNet", "modulus": 23, "hidden": 256})
  c.data.name = "modular_addition"
  c.data.kwargs = ml_collections.ConfigDict({"modulus": 23, "train_fraction": 400 / 529})
  c.data.batch_size = 400
  c.data.eval_batch_size = 128
  c.task = ml_collections.ConfigDict({"name": "regression", "input_key": "x", "target_key": "y"})
  c.optimizer = ml_collections.ConfigDict({"name": "adamw", "learning_rate": 1e-3,
                                           "kwargs": ml_collections.ConfigDict({"weight_decay": 1.0})})
  c.steps = 3000
  c.log_every = 500
  c.checkpoint_every = 3000
  return c
