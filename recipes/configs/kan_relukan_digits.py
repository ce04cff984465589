r"""ReLU-KAN classifies the bundled 8x8 digits (the AF-KAN paper's baseline).

Model: ``zoo.kan.ReLUKAN`` ("ReLU-KAN", Qiu et al., 2024, arXiv 2406.02075), widths [64, 32, 10], G = 5, k = 3,
phases on [0, 1] (the digits' pixel range). Data: ``digits`` (1347 train / 450 test).

Command::

  python -m zoo.recipes.train --config recipes/configs/kan_relukan_digits.py --workdir /tmp/zoo-relukan

Expected: test accuracy 0.973 (measured, seed 0); 32 s wall (10 s CPU) on the shared 2-core build machine.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "kan.ReLUKAN"
  c.model.features = (32, 10)
  c.data.name = "digits"
  c.data.batch_size = 64
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 1500
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  return c
