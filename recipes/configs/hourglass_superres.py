"""Hourglass MLP super-resolving 4x4 -> 8x8 digits: a frozen random lift to d_z = 256, two hourglass blocks with
d_h = 16, a linear readout.

Paper: "Rethinking the shape convention of an MLP" (Chen, Lee, Liao and Shiu, 2025, arXiv 2510.01796). The
conventional baseline of a similar trainable size is ``--config.model.name=mlp.ConventionalResMLP
--config.model.width=64 --config.model.hidden=192 --config.model.depth=1``. ``get_sweep()`` is the small
architecture search (hourglass and conventional at three budgets) for ``zoo.recipes.sweep``.

Command::

  python -m zoo.recipes.train --config recipes/configs/hourglass_superres.py --workdir /tmp/hourglass_superres
  python -m zoo.recipes.sweep --config recipes/configs/hourglass_superres.py --workdir /tmp/hourglass_search

Expected result: test MSE 0.0184 (PSNR 17.35 dB); the conventional baseline above 0.0177 (17.52 dB), i.e. ahead on
this task in this single run. About 10 s of CPU. The search (``get_sweep``) has not been run to completion here.

Shipped checkpoint: this command's run (seed 0, 1000 steps) is ``zoo.checkpoints.load('hourglass_superres')``; test
MSE 0.0184.
"""

import ml_collections

from zoo.recipes.configs import base_config

HOURGLASS = [(128, 16, 1), (128, 8, 2), (96, 8, 3), (256, 16, 2), (256, 32, 1), (192, 16, 3), (384, 32, 2),
             (256, 32, 4), (512, 16, 3)]
CONVENTIONAL = [(32, 128, 1), (40, 80, 1), (24, 64, 2), (64, 192, 1), (48, 128, 2), (32, 96, 4), (96, 256, 1),
                (64, 256, 2), (64, 128, 4)]


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "mlp.HourglassMLP", "out_features": 64, "width": 256, "hidden": 16,
                                       "depth": 2})
  c.data.name = "digits_superres"
  c.data.batch_size = 64
  c.task = ml_collections.ConfigDict({"name": "regression", "input_key": "x", "target_key": "y"})
  c.optimizer.learning_rate = 2e-3
  c.optimizer.schedule = "cosine"
  c.steps = 1000
  c.log_every = 100
  c.checkpoint_every = 500
  return c


def get_sweep() -> dict:
  over = []
  for name, space in (("mlp.HourglassMLP", HOURGLASS), ("mlp.ConventionalResMLP", CONVENTIONAL)):
    for w, h, d in space:
      over.append({"model.name": name, "model.width": w, "model.hidden": h, "model.depth": d})
  return {"overrides": over}
