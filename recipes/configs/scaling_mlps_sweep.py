"""Scaling MLPs' compute-scaling sweep on sklearn digits: B-4/Wi-w MLPs for w in {16, 32, 64, 128}, trained with
the paper's augmentation, and the power-law fit of test error against training compute.

Paper: "Scaling MLPs: A Tale of Inductive Bias" (Bachmann et al., 2023, arXiv 2306.13575): test error follows a
power law in compute. ``get_config()`` is the base run (trainable alone with ``zoo.recipes.train``); ``get_sweep()``
lists the widths and seeds for ``zoo.recipes.sweep`` (seeds of one width are trained as one vmapped group).

Command::

  python -m zoo.recipes.sweep --config recipes/configs/scaling_mlps_sweep.py --workdir /tmp/scaling_mlps_sweep

writes ``sweep.json`` with every run and the fit ``error ~ a * compute^slope``. Expected result: mean test error 0.123 / 0.071 / 0.043 / 0.036 at widths 16 / 32 / 64 / 128, power law
``error ~ 96.5 * compute^-0.313`` (r2 0.955). About 65 s of CPU (3.5 minutes wall, loaded).
"""

import ml_collections

from zoo.recipes.configs import base_config

WIDTHS = (16, 32, 64, 128)
SEEDS = (0, 1)


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "mlp.BottleneckMLP", "num_classes": 10, "width": 32, "depth": 4})
  c.data.name = "digits"
  c.data.kwargs = ml_collections.ConfigDict({"test_fraction": 1197 / 1797})  # a 600-image training subset
  c.data.batch_size = 64
  c.procedure = ml_collections.ConfigDict({"name": "augmented.Augmented"})
  c.optimizer.learning_rate = 1e-3
  c.steps = 600
  c.log_every = 100
  c.checkpoint_every = 600
  return c


def get_sweep() -> dict:
  return {"overrides": [{"model.width": w, "seed": s} for w in WIDTHS for s in SEEDS],
          "power_law": ("compute", "error")}
