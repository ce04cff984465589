"""The infinite-depth NNGP classifier with the paper's constructed activation on two Dirichlet classes on S^1.

Paper: "Wide and Deep Neural Networks Achieve Consistency for Classification" (Radhakrishnan, Belkin, Uhler, PNAS
2023, arXiv 2204.14126). Data: Dirichlet (1, 2) vs (2, 1), prior 0.4, projected to the circle; 512 training and
1000 test points. Model: the infinite-width limit of ``ntk.NTKMLP`` with ``xi(rho) = rho^7/2 + rho/2``
(``'2d_opt'``) and 100 hidden layers (the official code's depth), solved in closed form (ridgeless, log-space NNGP)
by ``deep_kernel.InfiniteWidthKernel``.

Command::

  python -m zoo.recipes.train --config recipes/configs/ntk_dirichlet.py --workdir /tmp/ntk_dirichlet

Expected result: test accuracy 0.733 (float32; on float64 data of this size the Bayes classifier scores ~0.76,
1-NN ~0.68, the majority vote ~0.60, see tests/papers/test_wide_deep_optimal.py); the ablation
``--config.model.activation=relu --config.procedure.log_space=False`` (ReLU's kernel flattens with depth, and its
nearly constant Gram matrix is ill-conditioned in float32) gives 0.484. About 10 s of CPU (4 steps of 128 points).
"""

import ml_collections

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config; ``arg='smoke'``: the same run with depth 10, 256 training and 200 test points (the test's smoke
  run)."""
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "ntk.NTKMLP", "depth": 100, "activation": "2d_opt", "outputs": 2,
                                       "width": 16})
  c.data.name = "dirichlet_sphere"
  c.data.kwargs = ml_collections.ConfigDict({"train_size": 512, "test_size": 1000})
  c.data.batch_size = 128
  c.data.eval_batch_size = 1000
  c.task = ml_collections.ConfigDict({"name": "classification", "input_key": "x", "target_key": "label"})
  c.procedure = ml_collections.ConfigDict({"name": "deep_kernel.InfiniteWidthKernel", "kernel": "nngp",
                                           "capacity": 512, "ridge": 0.0, "log_space": True})
  c.steps = 4  # one pass over the 512 training points: the exact ridgeless solution
  c.log_every = 1
  c.checkpoint_every = 4
  if is_smoke(arg, 'ntk_dirichlet'):
    c.model.depth = 10
    c.data.kwargs.train_size = 256
    c.data.kwargs.test_size = 200
    c.data.eval_batch_size = 200
    c.procedure.capacity = 256
  return c
