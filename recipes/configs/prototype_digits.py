r"""The prototype network (autoencoder + 15 prototypes + linear head on prototype distances) classifies sklearn's
8x8 digits and explains each prediction by its nearest prototypes.

Paper: "Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network that Explains Its Predictions"
(Li, Liu, Chen, Rudin, AAAI 2018, arXiv 1710.04806). Model ``prototype.ProtoAE`` with 2 stride-2 convs (32, 10 maps,
a 40-d code on 8x8 digits), m = 15, loss weights 20 / 1 / 1 / 1 (CE, R, R1, R2: the model sows R, R1, R2 divided
by 20), Adam 2e-3, batch 256 (the paper: 250). Elastic-deformation augmentation is not applied (see docs/papers.md).
``--config.model.lambda_1=0`` is the ablation without the prototype-to-data term.

Command::

  python -m zoo.recipes.train --config recipes/configs/prototype_digits.py --workdir /tmp/zoo-prototype

Expected: test accuracy 0.976 (0.980 with the paper's batch 250). Time: ~25 s of CPU (25-34 s wall).
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "prototype.ProtoAE", "num_classes": 10, "num_prototypes": 15,
                                       "features": (32, 10), "image_shape": (8, 8, 1), "lambda_1": 1.0})
  c.data.name = "digits"
  c.data.batch_size = 256   # the paper: 250; 256 divides any 8-device data-parallel mesh
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.steps = 1500
  c.log_every = 100
  c.checkpoint_every = 1500
  return c
