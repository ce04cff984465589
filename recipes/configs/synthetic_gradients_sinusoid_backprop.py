r"""Baseline for ``synthetic_gradients_sinusoid.py``: the same neural memory network trained by plain backprop.

Model: ``zoo.memory.NeuralMemoryNetwork`` (LSTM controller of 32 units, 16 slots of 16); the 10-shot sinusoid
episodes; task ``synthetic_gradients.EpisodeRegression`` (squared error on the query steps); Adam 1e-3, batch 32,
2000 steps, no synthetic gradients and no fast updates.

Command::

  python -m zoo.recipes.train --config recipes/configs/synthetic_gradients_sinusoid_backprop.py \
      --workdir /tmp/zoo-sg-sin-bp

Expected: query MSE ~1 on the test episodes (1.11 / 0.78 for seeds 0 / 1 on the 200 test episodes of
``tests/papers/test_synthetic_grad_nmn.py``); about 1 minute on a laptop CPU (measured ~100 s on a 2-core machine
shared with ~10 other processes).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "memory.NeuralMemoryNetwork"
  c.model.outputs = 1
  c.model.features = 32
  c.model.num_slots = 16
  c.model.slot_size = 16
  c.data.name = "sinusoid_episodes"
  c.data.kwargs.n_test = 500
  c.data.batch_size = 32
  c.data.eval_batch_size = 128
  c.task.name = "synthetic_gradients.EpisodeRegression"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 2000
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 500
  c.seed = 0
  return c
