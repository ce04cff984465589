r"""Adversarially robust convex training of a two-layer ReLU net on noisy two moons, by ADMM (Bai et al., Sec. 5).

Paper: "Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time Algorithms and Adversarial
Training" (Bai, Gautam, Sojoudi, 2022, arXiv 2201.01965). Procedure ``convex_relu.RobustConvexReLU``: the robust
convex program (hinge loss, worst case over the ``l_inf`` ball of radius ``eps = 0.15`` on the two coordinates
through the dual norm ``||.||_1``, the activation patterns held over every ball), 64 sampled patterns, the fixed
system Cholesky-factorised once, 50 ADMM iterations per loop step on the whole training set (``moons_bias``: 60
``make_moons`` points, noise 0.3, a constant bias feature; ``batch_size = 60``, sequential sampler). The model
``convex_nn.TwoLayerReLU`` (width 128) holds the recovered network; ``evaluate`` reports ``accuracy`` and
``pgd_accuracy`` (``zoo.attacks.pgd_linf`` at ``attack_eps = 0.15``, 20 steps) on 400 test points.
Ablation: ``--config.procedure.eps=0.0`` (the same procedure, the standard convex hinge program).

Command::

  python -m zoo.recipes.train --config recipes/configs/convex_relu_robust_moons.py --workdir /tmp/zoo-convex-robust

Measured (seed 0, 20 steps = 1000 ADMM iterations): test ``pgd_accuracy`` 0.780 (clean ``accuracy`` 0.845), final
robust objective 31.43, robust-constraint violation 0.023; ablation ``--config.procedure.eps=0.0``: ``pgd_accuracy``
0.605 (clean 0.8325). Time: ~8 s of CPU time (14 s wall on a loaded 2-core machine) each. (``mse``/``relative_l2``
are the task's squared error on the +-1 labels, not the training loss: the program is trained with the hinge.)
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "convex_nn.TwoLayerReLU"
  c.model.width = 128
  c.data.name = "moons_bias"
  c.data.kwargs.n_train = 60
  c.data.kwargs.n_test = 400
  c.data.kwargs.noise = 0.3
  c.data.batch_size = 60
  c.data.eval_batch_size = 400
  c.data.sampler = {"name": "sequential"}
  # The ADMM solves on the whole 60-point set at once: the batch is replicated (60 does not divide over 8 data
  # shards), the devices go to the tensor axis (the solver's arrays are replicated anyway).
  c.mesh.data = 1
  c.mesh.tensor = -1
  c.task.name = "regression"
  c.procedure.name = "convex_relu.RobustConvexReLU"
  c.procedure.num_patterns = 64
  c.procedure.beta = 1e-2
  c.procedure.rho = 0.1
  c.procedure.iters_per_step = 50
  c.procedure.eps = 0.15
  c.procedure.perturbed = 2
  c.procedure.attack_eps = 0.15
  c.procedure.attack_steps = 20
  c.steps = 20
  c.log_every = 5
  c.eval_every = 10
  c.checkpoint_every = 20
  c.seed = 0
  return c
