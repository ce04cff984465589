"""Activator (GLU core, no softmax attention) on sklearn digits, patch 2 (16 tokens).

Paper: "Activator: GLU Activations as The Core Functions of a Vision Transformer" (Abdullah and Aydin, 2024, arXiv
2405.15953). The ViT baseline of equal size is ``recipes/configs/vit_digits.py``.

Command::

  python -m zoo.recipes.train --config recipes/configs/activator_digits.py --workdir /tmp/activator_digits

Expected result: test accuracy ~0.97 with the position embedding (this config), ~0.76 with
``--config.model.position_embedding=False`` (the reference code's model: a bag of patches); the ViT config reaches
~0.92 in the same 840 steps (40 epochs). About 1 minute on a laptop CPU.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "activator.ActivatorClassifier", "num_classes": 10, "patch_size": 2,
                                       "hidden": 64, "mlp_dim": 128, "num_layers": 4, "dropout_rate": 0.0,
                                       "position_embedding": True})
  c.data.name = "digits"
  c.data.batch_size = 64
  c.optimizer.learning_rate = 1e-3
  c.steps = 840
  c.log_every = 42
  c.checkpoint_every = 420
  return c
