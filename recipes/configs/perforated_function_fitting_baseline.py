r"""Baseline of ``perforated_function_fitting.py``: the same 4-neuron MLP trained 6000 steps without dendrites.

The model is the same ``zoo.dendrites.Perforated`` network (so the initialisation and batches match the perforated
run exactly), trained with plain backprop: its dendrites are never switched in (``perforation/active`` stays 0), so
it is ``zoo.core.MLP`` 2-4-1 trained longer.

Command::

  python -m zoo.recipes.train --config recipes/configs/perforated_function_fitting_baseline.py \
      --workdir /tmp/zoo-perforated-baseline

Expected: test MSE 0.168 (seed 0; 0.192 with seed 1), flat since step ~3000 (0.171 at step 3000). Time: ~5 s of
CPU time (about 8 s on an idle 2-core laptop, start-up and compilation included).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "dendrites.Perforated"
  c.model.base = {"name": "core.MLP", "features": (4, 1)}
  c.model.num_dendrites = 1
  c.data.name = "function_fitting"
  c.data.kwargs.formula = "exp_sin"
  c.data.batch_size = 128
  c.task.name = "regression"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.steps = 6000
  c.log_every = 100
  c.eval_every = 1000
  c.checkpoint_every = 1000
  c.seed = 0
  return c
