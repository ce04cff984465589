r"""GBNN (gradient-boosted sequential training, arXiv:1909.12098) on scikit-learn's diabetes regression set.

Model: ``zoo.boosted.BoostedNet(outputs=1)``: one hidden layer of T = 20 logistic units grown one unit per stage
(J = 1) on the 10 standardised features; procedure ``boosting.GradientBoosting`` with the squared loss: F_0 = mean
target, per stage 200 full-batch L-BFGS steps (``optax.lbfgs``, the paper's solver and iteration count) fitting the
residuals ``y - F`` on one Bernoulli(0.5) subsample of the stage, the exact line search, shrinkage 0.1. The target
is standardised (``y_std`` = 79.3 in the dataset's metadata). A batch is the training set (309 examples) cut to a
multiple of 8 (304); steps = 1 + 20 x (200 + 1). ``--config.procedure.solver=optimizer`` fits the stages with the
config's Adam instead.

Command::

  python -m zoo.recipes.train --config recipes/configs/boosting_diabetes.py --workdir /tmp/zoo-gbnn-diabetes

Expected: test MSE ~0.48 of the standardised target (RMSE ~55 in the original units; 0.478 with fit() on all 309
rows, seed 0), against 0.52-1.5 for the same network trained by backprop with Adam
(``boosting_diabetes_backprop.py``, which overfits); ~15 s of CPU time with fit() (compilation included), about a
minute of wall time on a loaded 2-core machine.
"""

from zoo.recipes.configs import base_config

NUM_STAGES, STAGE_STEPS = 20, 200


def get_config():
  c = base_config()
  c.model.name = "boosted.BoostedNet"
  c.model.outputs = 1
  c.model.num_stages = NUM_STAGES
  c.model.stage_units = 1
  c.data.name = "diabetes"
  c.data.batch_size = 304
  c.task.name = "regression"
  c.optimizer.name = "adam"  # unused here (no trunk): the stages are fitted by L-BFGS
  c.optimizer.learning_rate = 1e-2
  c.procedure.name = "boosting.GradientBoosting"
  c.procedure.solver = "lbfgs"
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
