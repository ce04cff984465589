r"""Adding gradient noise: a 10 x 50 ReLU MLP on sklearn digits from an all-zero initialisation, Adam + noise.

Paper: "Adding Gradient Noise Improves Learning for Very Deep Networks" (Neelakantan et al., 2015, arXiv
1511.06807). Model ``zoo.core.MLP`` (10 hidden layers of 50 ReLU units + a linear head); procedure
``grad_noise.BadInitBackprop`` with ``init_scheme='zeros'`` (every weight and bias 0: the extreme poor
initialisation); optimizer Adam 1e-2 with ``grad_noise = 0.01`` (``optax.add_noise``: variance
``0.01 / (1 + t)^0.55``). The ablation and the paper's baseline: ``--config.optimizer.grad_noise=0`` (plain Adam
stays exactly at the saddle: chance accuracy).

Command::

  python -m zoo.recipes.train --config recipes/configs/grad_noise_digits.py --workdir /tmp/zoo-grad-noise

Expected: test accuracy 0.960 with noise (seed 0; 0.904 at step 500), 0.100 with ``--config.optimizer.grad_noise=0``
(2000 steps reach 0.889: Adam 1e-2 with noise wanders late). Time: ~9 s of CPU time (2000 steps: 17 s).

Shipped checkpoint: this command's run (seed 0, 1000 steps) is ``zoo.checkpoints.load('grad_noise_digits')``; test
accuracy 0.960.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.MLP"
  c.model.features = (50,) * 10 + (10,)
  c.data.name = "digits"
  c.data.batch_size = 64
  c.task.name = "classification"
  c.procedure.name = "grad_noise.BadInitBackprop"
  c.procedure.init_scheme = "zeros"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.optimizer.grad_noise = 0.01
  # optimizer.noise_seed stays None: the noise follows config.seed.
  c.steps = 1000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.seed = 0
  return c
