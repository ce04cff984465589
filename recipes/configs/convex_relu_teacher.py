r"""Convex (globally optimal) training of a two-layer ReLU net on a planted 2-d ReLU teacher, by ADMM.

Paper: "Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time Algorithms and Adversarial
Training" (Bai, Gautam, Sojoudi, 2022, arXiv 2201.01965). Procedure ``convex_relu.ConvexReLU``: 64 sampled
activation patterns, one Cholesky factorisation, 50 ADMM iterations per loop step on the whole training set (80
points: ``batch_size = 80``, ``data.sampler.name = 'sequential'``); the model ``convex_nn.TwoLayerReLU`` (width 128 =
2 x patterns) holds the recovered network. Ablation: ``--config.procedure.constrained=False`` (no cone constraints).

Command::

  python -m zoo.recipes.train --config recipes/configs/convex_relu_teacher.py --workdir /tmp/zoo-convex-relu

Expected: test MSE 0.0014 (the noiseless teacher, 400 points; final convex objective 0.5462, cone violation 1e-4);
1.04 with ``constrained=False``. Time: ~7 s of CPU time. (The task's ``relative_l2`` is meaningless here: many
targets are exactly 0.)

Shipped checkpoint: this command's run (seed 0, 80 steps) is ``zoo.checkpoints.load('convex_relu_teacher')``; the
recovered two-layer net, test MSE 0.0014.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "convex_nn.TwoLayerReLU"
  c.model.width = 128
  c.data.name = "relu_teacher_2d"
  c.data.batch_size = 80
  c.data.eval_batch_size = 400
  c.data.sampler = {"name": "sequential"}
  c.task.name = "regression"
  c.procedure.name = "convex_relu.ConvexReLU"
  c.procedure.num_patterns = 64
  c.procedure.beta = 1e-2
  c.procedure.rho = 0.3
  c.procedure.iters_per_step = 50
  c.procedure.constrained = True
  c.steps = 80
  c.log_every = 10
  c.eval_every = 20
  c.checkpoint_every = 40
  c.seed = 0
  return c
