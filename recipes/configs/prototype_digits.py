r"""The prototype network (autoencoder + 15 prototypes + linear head on prototype distances) classifies sklearn's
8x8 digits and explains each prediction by its nearest prototypes.

Paper: "Deep Learning for Case-Based Reasoning through Prototypes: A Neural Network that Explains Its Predictions"
(Li, Liu, Chen, Rudin, AAAI 2018, arXiv 1710.04806). Model ``prototype.ProtoAE`` with 2 stride-2 convs (32, 10 maps,
a 40-d code on 8x8 digits), m = 15, loss weights 20 / 1 / 1 / 1 (CE, R, R1, R2: the model sows R, R1, R2 divided
by 20), Adam 2e-3, batch 256 (the paper: 250), and the paper's elastic-deformation augmentation (Simard et al. 2003;
its code: sigma 4, alpha 20 on 28x28 MNIST) scaled to 8x8 digits: sigma 8/7 pixels, alpha 1.63, the same mean
displacement relative to the image (2.7% of its side; ``augmented.Augmented`` with ``elastic_alpha``;
``--config.procedure.elastic_alpha=0`` trains on clean digits). ``--config.model.lambda_1=0`` is the ablation without
the prototype-to-data term.

Command::

  python -m zoo.recipes.train --config recipes/configs/prototype_digits.py --workdir /tmp/zoo-prototype

Expected: test accuracy 0.971 / 0.982 / 0.993 on seeds 0 / 1 / 2 (clean digits, ``elastic_alpha=0``: 0.976 / 0.967 /
0.978). Time: ~26 s of CPU (89 s wall on a loaded 2-core machine). The seed-0 run is the shipped checkpoint
``prototype_digits``.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "prototype.ProtoAE", "num_classes": 10, "num_prototypes": 15,
                                       "features": (32, 10), "image_shape": (8, 8, 1), "lambda_1": 1.0})
  c.data.name = "digits"
  c.data.batch_size = 256   # the paper: 250; 256 divides any 8-device data-parallel mesh
  # The paper's augmentation only: no shifts, no MixUp (Augmented's other parts, the Scaling-MLPs recipe's).
  c.procedure = ml_collections.ConfigDict({"name": "augmented.Augmented", "elastic_alpha": 1.63,
                                           "elastic_sigma": 8 / 7, "shift": 0, "mixup_alpha": 0.0})
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.steps = 1500
  c.log_every = 100
  c.checkpoint_every = 1500
  return c
