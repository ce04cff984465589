r"""GBNN (gradient-boosted sequential training, arXiv:1909.12098) on scikit-learn's breast-cancer set.

Model: ``zoo.boosted.BoostedNet``: one hidden layer of T = 20 logistic units grown one unit per stage (J = 1, the
paper's default) on the 30 standardised features; procedure ``boosting.GradientBoosting``: F_0 = log class
frequencies, then per stage 200 full-batch L-BFGS steps (``optax.lbfgs``, the paper's solver and iteration count)
fitting the softmax pseudo-residuals on one Bernoulli(0.5) subsample of the stage, the reference's Newton step,
shrinkage 0.1. A batch is the training set (398 examples) cut to a multiple of 8 (392), so the statistics are over
(almost) all of it; steps = 1 + 20 x (200 + 1). ``--config.procedure.solver=optimizer`` fits the stages with the
config's Adam instead (``--config.procedure.stage_steps=50``: the previous default, ~10x cheaper per step on CPU).

Command::

  python -m zoo.recipes.train --config recipes/configs/boosting_breast_cancer.py --workdir /tmp/zoo-gbnn-bc

Expected: test accuracy ~0.95 (0.947 with fit() on all 398 rows, seed 0; 50 Adam steps per stage gave 0.965; the
same network trained by backprop with Adam: 0.953-0.959); ~19 s of CPU time with fit() (compilation included; the
L-BFGS step costs ~10 ms of CPU on this 2-core machine), about a minute of wall time on a loaded machine.
"""

from zoo.recipes.configs import base_config

NUM_STAGES, STAGE_STEPS = 20, 200


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
