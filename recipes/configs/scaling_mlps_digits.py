"""Scaling MLPs' recipe on sklearn digits: a B-MLP (B-4/Wi-128) with LAMB, label smoothing 0.3, +-1-pixel shifts and
MixUp (alpha 0.8).

Paper: "Scaling MLPs: A Tale of Inductive Bias" (Bachmann, Anagnostidis and Hofmann, 2023, arXiv 2306.13575). The
augmentation is the ``augmented.Augmented`` procedure (``--config.procedure.augment=False`` is the ablation); the
optimizer is ``optax.lamb`` and the smoothing is the classification task's ``optax.smooth_labels``.

Command::

  python -m zoo.recipes.train --config recipes/configs/scaling_mlps_digits.py --workdir /tmp/scaling_mlps_digits

Expected result: test accuracy 0.991 (without augmentation, ``--config.procedure.augment=False``: 0.989). About 25 s
of CPU (1 minute wall on a loaded 2-core machine).

Shipped checkpoint ``scaling_mlps_digits_wi64`` (``zoo.checkpoints.load``): this recipe at width 64
(``--config.model.width=64``, B-4/Wi-64, 1000 steps, 15.7 s CPU), test accuracy 0.991 as at width 128, 558 KB; the
width-128 model's export is 2.0 MB, over the 1 MB a shipped checkpoint may take.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "mlp.BottleneckMLP", "num_classes": 10, "width": 128, "depth": 4,
                                       "expansion": 4})
  c.data.name = "digits"
  c.data.batch_size = 64
  c.task = ml_collections.ConfigDict({"name": "classification", "label_smoothing": 0.3})
  c.optimizer.name = "lamb"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 50
  c.optimizer.kwargs = ml_collections.ConfigDict({"weight_decay": 1e-4})
  c.procedure = ml_collections.ConfigDict({"name": "augmented.Augmented", "shift": 1, "mixup_alpha": 0.8,
                                           "flip": False, "augment": True})
  c.steps = 1000
  c.log_every = 100
  c.checkpoint_every = 500
  return c
