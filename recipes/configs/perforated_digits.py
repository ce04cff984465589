r"""Perforated Backpropagation on sklearn digits with a 4-neuron-wide MLP (64-4-10): dendrites on every neuron.

Paper: "Perforated Backpropagation" (Brenner & Itti, 2025, arXiv 2501.18018). Model ``zoo.dendrites.Perforated``
around ``zoo.core.MLP`` 64-4-10; procedure ``perforated.PerforatedBackprop``: 3000 neuron steps, 1000 dendrite
steps, 2000 neuron steps. Any zoo model with Dense/Conv layers works the same way (``model.base`` names it;
``tests/recipes/procedures/test_perforated.py`` trains a perforated ``core.ConvNet`` through the trainer).
Baseline: the same network trained 6000 steps with ``--config.procedure.name=backprop`` (its dendrites stay off).

Command::

  python -m zoo.recipes.train --config recipes/configs/perforated_digits.py --workdir /tmp/zoo-perforated-digits

Expected: test accuracy 0.858 (seed 0; 0.867 with seed 1) against 0.849 (0.860) trained longer without dendrites:
a small gain, because 4 hidden units stay the bottleneck. With 8 hidden units (PAPERS.md's 64-8-10) the network
fits its training set and dendrites change nothing (see tests/papers/test_perforated_bp.py). Time: ~12 s of CPU
time (about 15 s on an idle 2-core laptop, start-up and compilation included).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "dendrites.Perforated"
  c.model.base = {"name": "core.MLP", "features": (4, 10)}
  c.model.num_dendrites = 1
  c.data.name = "digits"
  c.data.batch_size = 128
  c.task.name = "classification"
  c.procedure.name = "perforated.PerforatedBackprop"
  c.procedure.neuron_steps = 3000
  c.procedure.dendrite_steps = 1000
  c.procedure.cycle_neuron_steps = 2000
  c.procedure.num_cycles = 1
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.steps = 6000
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.seed = 0
  return c
