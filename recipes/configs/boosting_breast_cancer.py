r"""GBNN (gradient-boosted sequential training, arXiv:1909.12098) on scikit-learn's breast-cancer set.

Model: ``zoo.boosted.BoostedNet``: one hidden layer of T = 20 logistic units grown one unit per stage (J = 1, the
paper's default) on the 30 standardised features; procedure ``boosting.GradientBoosting``: F_0 = log class
frequencies, then per stage 50 full-batch Adam steps fitting the softmax pseudo-residuals on a Bernoulli(0.5)
subsample, the reference's Newton step, shrinkage 0.1. A batch is the training set (398 examples) cut to a multiple
of 8 (392), so the statistics are over (almost) all of it; steps = 1 + 20 x (50 + 1).

Command::

  python -m zoo.recipes.train --config recipes/configs/boosting_breast_cancer.py --workdir /tmp/zoo-gbnn-bc

Expected: test accuracy ~0.96 (0.965 with fit() on all 398 rows, seeds 0 and 1; the same network trained by
backprop with Adam: 0.953-0.959); about 20 s on a laptop CPU (measured 45 s on a 2-core machine shared with ~20
other processes). The paper's solver: ``--config.optimizer.name=lbfgs --config.optimizer.learning_rate=1.0
--config.procedure.subsample=1.0`` (much slower per step on CPU: its line search is a while loop).
"""

from zoo.recipes.configs import base_config

NUM_STAGES, STAGE_STEPS = 20, 50


def get_config():
  c = base_config()
  c.model.name = "boosted.BoostedNet"
  c.model.outputs = 2
  c.model.num_stages = NUM_STAGES
  c.model.stage_units = 1
  c.data.name = "breast_cancer"
  c.data.batch_size = 392
  c.task.name = "classification"
  c.task.input_key = "x"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.procedure.name = "boosting.GradientBoosting"
  c.procedure.shrinkage = 0.1
  c.procedure.stage_steps = STAGE_STEPS
  c.procedure.estimate_steps = 1
  c.procedure.subsample = 0.5
  c.steps = 1 + NUM_STAGES * (STAGE_STEPS + 1)
  c.log_every = STAGE_STEPS + 1
  c.eval_every = 5 * (STAGE_STEPS + 1)
  c.checkpoint_every = 5 * (STAGE_STEPS + 1)
  c.seed = 0
  return c
