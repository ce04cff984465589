"""The 4-8-3 ReLU MLP on iris that ``zoo.analysis.verify`` checks exactly with z3 ("Safety Verification of Deep
Neural Networks", Huang, Kwiatkowska, Wang, Wu, CAV 2017, arXiv 1610.06940).

Model ``core.MLP(features=(8, 3))`` (ReLU hidden layer, linear logits) on ``iris`` (standardised features, 105 train
/ 45 test, stratified by seed), Adam 1e-2, batch 32, 300 steps. Verification is an analysis of the trained
variables, not a training procedure: after the run, load the checkpoint's parameters and call
``zoo.analysis.verify.verify_region(variables, x, tau=0.05, p=3)`` on any test point (SAFE, or UNSAFE with a grid
point whose class differs), as tests/papers/test_smt_verify.py does.

Command::

  python -m zoo.recipes.train --config recipes/configs/smt_verify_iris.py --workdir /tmp/zoo-smt-verify

Expected (measured, seed 0): test accuracy 1.000 (seeds 1-4 of the effect test: 0.956-1.000) after 300 steps,
about 5 s of CPU time. With tau = 0.05, p = 3 about 5 of the 45 test points have UNSAFE regions (brute force over
all 2401 grid points agrees with every z3 verdict); for this run (the shipped
``zoo.checkpoints.load("smt_verify_iris")``) 6 of the 45, 0.9 s of CPU for all 45 z3 checks.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.MLP"
  c.model.features = (8, 3)
  c.data.name = "iris"
  c.data.batch_size = 32
  c.data.eval_batch_size = 45
  c.task.input_key = "x"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.steps = 300
  c.log_every = 100
  c.eval_every = 0
  c.checkpoint_every = 300
  c.seed = 0
  return c
