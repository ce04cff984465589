r"""Layer-wise regularised adversarial training (AT-LR, LSA framework) of an MLP on sklearn digits.

Paper: "Layer-wise Regularized Adversarial Training using Layers Sustainability Analysis (LSA) framework" (Khalooei,
Homayounpour, Amirmazlaghani, 2022, arXiv 2202.02626). Model ``core.MLP`` 64-64-64-64-10; procedure ``lsa.ATLR``:
PGD-Linf training attacks (eps 0.1, 7 steps of 0.025, random start), the most vulnerable layers picked each step by
mean + std of their relative errors, gamma 0.1. Baseline and ablation: ``--config.procedure.layer_reg=False``
(PGD-AT). The reported test accuracy is on clean inputs; the effect test measures PGD accuracy over eps.

Command::

  python -m zoo.recipes.train --config recipes/configs/lsa_digits.py --workdir /tmp/zoo-lsa

Expected: clean test accuracy 0.976 (0.978 with ``layer_reg=False``), seed 0; PGD-0.2 accuracy about 0.29 against
0.23 (tests/papers/test_lsa_atlr.py). Time: ~10 s of CPU time.

Shipped checkpoint: this command's run (seed 0, 600 steps) is ``zoo.checkpoints.load('lsa_digits')``; clean test
accuracy 0.9756; its PGD-10 accuracy (step eps/4, the effect test's attack) 0.929 / 0.809 / 0.558 / 0.296 at eps
0.05 / 0.1 / 0.15 / 0.2 (measured 2026-12-04).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.MLP"
  c.model.features = (64, 64, 64, 10)
  c.data.name = "digits"
  c.data.batch_size = 64
  c.task.name = "classification"
  c.procedure.name = "lsa.ATLR"
  c.procedure.eps = 0.1
  c.procedure.step_size = 0.025
  c.procedure.pgd_steps = 7
  c.procedure.gamma = 0.1
  c.procedure.layer_reg = True
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 600
  c.log_every = 50
  c.eval_every = 200
  c.checkpoint_every = 300
  c.seed = 0
  return c
