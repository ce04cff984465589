r"""A ReLU-SNNK layer (m = 256 random features, 2560 trainable parameters) classifies scikit-learn's 8x8 digits.

Paper: "Scalable Neural Network Kernels" (Sehanobish et al., ICLR 2024, arXiv 2310.13225). Model
``snnk.SNNKClassifier``: logits ``ReLU(G [x, 1]) Psi / sqrt(m)``, ``G`` frozen Gaussian, ``Psi`` trained by Adam on
cross-entropy. ``--config.model.kind=linear`` is the ablation without random features (a linear classifier).

Command::

  python -m zoo.recipes.train --config recipes/configs/snnk_digits.py --workdir /tmp/zoo-snnk

Expected: test accuracy 0.980 on the 450 held-out digits (a 256-unit MLP, 19210 parameters, gets ~0.98). Time:
~9 s of CPU (18 s wall on the loaded shared 2-core machine). Shipped as the checkpoint ``snnk_digits`` (measured
again: accuracy 0.980, loss 0.102; 8 s of CPU).
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "snnk.SNNKClassifier", "num_classes": 10, "num_random_features": 256,
                                       "kind": "relu"})
  c.data.name = "digits"
  c.data.batch_size = 64
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.steps = 1000
  c.log_every = 100
  c.checkpoint_every = 1000
  return c
