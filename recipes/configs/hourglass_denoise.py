"""Hourglass MLP denoising 8x8 digits (sigma 0.3): a frozen random lift to d_z = 256, two hourglass blocks with
d_h = 16, a linear readout.

Paper: "Rethinking the shape convention of an MLP" (Chen, Lee, Liao and Shiu, 2025, arXiv 2510.01796). The
conventional baseline of a similar trainable size is ``--config.model.name=mlp.ConventionalResMLP
--config.model.width=64 --config.model.hidden=192 --config.model.depth=1``. ``get_sweep()`` is the small
architecture search (hourglass and conventional at three budgets) for ``zoo.recipes.sweep``.

Command::

  python -m zoo.recipes.train --config recipes/configs/hourglass_denoise.py --workdir /tmp/hourglass_denoise
  python -m zoo.recipes.sweep --config recipes/configs/hourglass_denoise.py --workdir /tmp/hourglass_search

Expected result: test MSE 0.0244 (PSNR 16.13 dB); the conventional baseline above 0.0252 (15.99 dB). About 10 s of
CPU.

The search (``get_sweep``: ``SEARCH``, 6 configs per family at ~13k / ~33k / ~80k trainable parameters, depths
1-8, 1000 steps, seeds 0 / 1 / 2 vmapped; 275 s user CPU, 25 min wall on 2 loaded cores), test PSNR in dB, best by
the 3-seed mean (per seed):

* ~13k: hourglass (128, 16, 1) 16.04 / 15.94 / 15.97, conventional (32, 128, 1) 15.23 / 15.41 / 15.39 (+0.81 /
  +0.53 / +0.58).
* ~33k: hourglass (256, 32, 1) 16.18 / 16.19 / 16.20, conventional (56, 224, 1) 15.93 / 15.88 / 15.93 (+0.25 /
  +0.31 / +0.27).
* ~80k: hourglass (448, 56, 1) 16.19 / 15.96 / 16.19 (seed 1's best is (288, 34, 3) at 15.98), conventional
  (68, 268, 2) 15.92 / 15.94 / 15.95 (+0.26 / +0.05 / +0.24 per seed's best).
* The best hourglass has depth 1 at every budget (3-seed mean): the paper's "the optimal hourglass gets deeper with
  budget" does not reproduce here. What does move with budget is the cost of depth: depth 2 is 0.44 / 0.16 / 0.10 dB
  behind depth 1 and depth 4 1.44 / 0.33 / 0.13 dB behind at ~13k / ~33k / ~80k. In both families PSNR saturates
  near 16.2 dB (1,347 training images).

Shipped checkpoint: this command's run (seed 0, 1000 steps) is ``zoo.checkpoints.load('hourglass_denoise')``; test
MSE 0.0244.
"""

import ml_collections

from zoo.recipes.configs import base_config

# The search: ~6 configs per family at each of three trainable-parameter budgets (the frozen lift is not counted),
# ``(width, hidden, depth)``, depths 1-8, every count within 4% of the budget's nominal size on 64 input pixels (so
# within ~8% of each other; tests/papers/test_hourglass_mlp.py checks them with ``zoo.mlp.param_count``). Hourglass:
# d_z / d_h near 8; conventional: hidden near 4 x width. The same table in both configs: on super-resolution's 16
# input pixels the conventional's trained input projection is 48 x width smaller (counts 5-12% below the budget).
SEARCH = {
    "13k": {"hourglass": [(128, 16, 1), (96, 16, 2), (96, 10, 3), (64, 16, 4), (64, 10, 6), (64, 7, 8)],
            "conventional": [(32, 128, 1), (24, 96, 2), (20, 80, 3), (20, 64, 4), (16, 56, 6), (12, 56, 8)]},
    "33k": {"hourglass": [(256, 32, 1), (192, 24, 2), (160, 22, 3), (160, 16, 4), (128, 14, 6), (96, 16, 8)],
            "conventional": [(56, 224, 1), (40, 164, 2), (36, 132, 3), (28, 124, 4), (24, 96, 6), (20, 88, 8)]},
    "80k": {"hourglass": [(448, 56, 1), (320, 44, 2), (288, 34, 3), (256, 30, 4), (192, 28, 6), (192, 20, 8)],
            "conventional": [(92, 368, 1), (68, 268, 2), (56, 220, 3), (48, 192, 4), (40, 156, 6), (36, 132, 8)]},
}
FAMILIES = {"hourglass": "mlp.HourglassMLP", "conventional": "mlp.ConventionalResMLP"}
SEEDS = (0, 1, 2)


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "mlp.HourglassMLP", "out_features": 64, "width": 256, "hidden": 16,
                                       "depth": 2})
  c.data.name = "digits_denoise"
  c.data.kwargs = ml_collections.ConfigDict({"sigma": 0.3})
  c.data.batch_size = 64
  c.task = ml_collections.ConfigDict({"name": "regression", "input_key": "x", "target_key": "y"})
  c.optimizer.learning_rate = 2e-3
  c.optimizer.schedule = "cosine"
  c.steps = 1000
  c.log_every = 100
  c.checkpoint_every = 500
  return c


def search_overrides(**extra) -> list[dict]:
  """The search as sweep overrides: 36 configs (3 budgets x 2 families x 6) x ``SEEDS``, each with ``extra``."""
  over = []
  for budget in SEARCH.values():
    for family, space in budget.items():
      for w, h, d in space:
        for seed in SEEDS:
          over.append({"model.name": FAMILIES[family], "model.width": w, "model.hidden": h, "model.depth": d,
                       "seed": seed, **extra})
  return over


def get_sweep() -> dict:
  """36 configs (3 budgets x 2 families x 6) x 3 seeds; the seeds of a config are one vmapped group."""
  return {"overrides": search_overrides()}
