"""The zoo ViT on sklearn digits, patch 2 (16 tokens + class token): the baseline of the Activator comparison.

5 blocks of width 64 (MLP 128, 4 heads): 170k parameters, within 1% of ``activator_digits.py``.

Command::

  python -m zoo.recipes.train --config recipes/configs/vit_digits.py --workdir /tmp/vit_digits

Expected result: test accuracy ~0.92 after 840 steps (40 epochs). About 1.5 minutes on a laptop CPU.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "transformer.ViT", "num_classes": 10, "patch_size": 2, "hidden": 64,
                                       "num_layers": 5, "num_heads": 4, "mlp_dim": 128, "pool": "cls"})
  c.data.name = "digits"
  c.data.batch_size = 64
  c.optimizer.learning_rate = 1e-3
  c.steps = 840
  c.log_every = 42
  c.checkpoint_every = 420
  return c
