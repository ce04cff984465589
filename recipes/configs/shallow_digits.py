"""The shallow parallel replacement of a 6-block residual conv stack on sklearn digits ("Make Deep Networks Shallow
Again", Bermeitinger et al., 2023, arXiv 2309.08414).

``ParallelShallow``: a stem conv to 16 channels, ``y = x + sum_i relu(conv_i(x))`` over 6 branches stacked into one
3x3 convolution with 96 output channels, a flatten + dense head. The deep counterpart with the same parameter count
is ``--config.model.name=parallel_resnet.ResidualStack``.

Command::

  python -m zoo.recipes.train --config recipes/configs/shallow_digits.py --workdir /tmp/shallow_digits

Expected result: test accuracy ~0.978 (seeds 0/1/2: 0.978 / 0.978 / 0.980); the deep ResidualStack 0.973 / 0.978 /
0.973 (measured with zoo.recipes.sweep, which uses the same batches and initialisation as this command). About 13 s
of CPU per run (41 s wall on a loaded 2-core machine, 2026-12-04).

Shipped checkpoint: this command's run (seed 0, 630 steps) is ``zoo.checkpoints.load('shallow_digits')``; test
accuracy 0.9778.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "parallel_resnet.ParallelShallow", "features": 16, "num_blocks": 6,
                                       "kernel_size": 3, "num_classes": 10})
  c.data.name = "digits"
  c.data.batch_size = 64
  c.optimizer.learning_rate = 1e-3
  c.steps = 630  # 30 epochs of the 1347 training images
  c.log_every = 63
  c.checkpoint_every = 315
  return c
