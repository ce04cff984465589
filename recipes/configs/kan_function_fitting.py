r"""A [2, 5, 1] B-spline KAN fits exp(sin(pi x) + y^2) (the KAN paper's first example), then could refine its grid.

Model: ``zoo.kan.KAN`` (efficient-kan form of "KAN: Kolmogorov-Arnold Networks", Liu et al., 2024, arXiv
2404.19756): G = 5 intervals, cubic splines, silu base branch. Data: ``function_fitting`` (formula ``exp_sin``, 1000
train / 1000 test points uniform on [-1, 1]^2). Grid refinement (5 -> 20) is ``zoo.kan.update_grid`` on the trained
variables; ``tests/papers/test_afkan.py`` shows it lowers the error.

Command::

  python -m zoo.recipes.train --config recipes/configs/kan_function_fitting.py --workdir /tmp/zoo-kan

Expected: test relative L2 error 0.0026 (MSE < 1e-4; measured, seed 0); 50 s wall (15 s CPU) on the shared
2-core build machine.
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "kan.KAN"
  c.model.features = (5, 1)
  c.model.grid_size = 5
  c.model.spline_order = 3
  c.data.name = "function_fitting"
  c.data.kwargs.formula = "exp_sin"
  c.data.batch_size = 128
  c.task.name = "regression"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.steps = 2000
  c.log_every = 200
  c.eval_every = 1000
  c.checkpoint_every = 1000
  return c
