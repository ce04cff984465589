r"""A LeNet-style ConvNet classifies scikit-learn's 8x8 digits (the review's CNN, arXiv:1905.13294).

Model: ``zoo.core.ConvNet``: two 5x5 convolutions (6 and 16 maps, 'SAME' padding) each followed by ReLU and 2x2
max pooling, then dense 120-84-10.

Command::

  python -m zoo.recipes.train --config recipes/configs/convnet_digits.py --workdir /tmp/zoo-convnet

Expected: test accuracy 0.991 with seed 0 (0.973-0.991 over seeds 0-2) on the 450 held-out digits. Time: 14 s of
CPU time (about 15-20 s on an idle 2-core laptop, start-up and compilation included; 68 s wall measured on the
shared 2-core machine at load average ~20).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.ConvNet"
  c.model.num_classes = 10
  c.model.features = (6, 16)
  c.model.hidden = (120, 84)
  c.data.name = "digits"
  c.data.batch_size = 64
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.steps = 1500
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.seed = 0
  return c
