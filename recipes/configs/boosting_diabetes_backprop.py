r"""Baseline for ``boosting_diabetes.py``: the same 20-unit logistic network trained end to end by backprop (Adam).

Model: ``zoo.boosted.BoostedNet(outputs=1, num_stages=20)`` with every unit on (a plain one-hidden-layer network),
procedure ``backprop``, full-batch Adam (lr 1e-2) for 300 steps: the best of the small grid in
``tests/papers/test_gbnn.py`` (longer runs overfit).

Command::

  python -m zoo.recipes.train --config recipes/configs/boosting_diabetes_backprop.py --workdir /tmp/zoo-bp-diabetes

Expected: test MSE ~0.52 (seed 0; 0.66 for seed 1) of the standardised target, against ~0.48 for GBNN (L-BFGS stages); a few
seconds on a laptop CPU.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "boosted.BoostedNet"
  c.model.outputs = 1
  c.model.num_stages = 20
  c.model.stage_units = 1
  c.data.name = "diabetes"
  c.data.batch_size = 304
  c.task.name = "regression"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.steps = 300
  c.log_every = 50
  c.eval_every = 100
  c.checkpoint_every = 100
  c.seed = 0
  return c
