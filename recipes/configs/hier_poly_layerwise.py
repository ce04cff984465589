r"""A three-layer net learns the hierarchical polynomial ``y = p(x)^3`` (d = 12) layer-wise: one GD step on the
middle layer recovers the quadratic feature ``p``, then ridge on the outer layer fits the cube.

Paper: "Learning Hierarchical Polynomials with Three-Layer Neural Networks" (Wang, Nichani, Lee, ICLR 2024, arXiv
2311.13774). Model ``hierarchical_poly.ThreeLayerNet`` (300 He_2 inner random features, width 500), procedure
``hier_poly.LayerwiseTraining`` (one step on one batch = the 20000 training samples: the first half for the GD step,
the second for the ridge fit). ``--config.procedure.feature_learning=False`` is the ablation (stage 1 skipped).

Command::

  python -m zoo.recipes.train --config recipes/configs/hier_poly_layerwise.py --workdir /tmp/zoo-hier-poly

Expected: test ``normalised_mse`` 0.405 (the ablation ``feature_learning=False``: 0.322 -- at d = 12 the fixed
random middle features on the He_2 inner layer fit about as well; see docs/papers.md). Time: ~14 s of CPU (38 s wall
on the loaded shared 2-core machine).
"""

import ml_collections

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with width 50 / 30 on 2000 training and 500 test points (the test's
  smoke run)."""
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "hierarchical_poly.ThreeLayerNet", "width": 500, "inner_width": 300})
  c.data.name = "hierarchical_polynomial"
  c.data.kwargs = ml_collections.ConfigDict({"d": 12, "n_train": 20000, "n_test": 5000})
  c.data.batch_size = 20000
  c.data.eval_batch_size = 5000
  c.task = ml_collections.ConfigDict({"name": "regression", "input_key": "x", "target_key": "y"})
  c.procedure = ml_collections.ConfigDict({"name": "hier_poly.LayerwiseTraining", "l2": 1e-3,
                                           "feature_learning": True})
  c.steps = 1
  c.log_every = 1
  c.checkpoint_every = 1
  if is_smoke(arg, 'hier_poly_layerwise'):
    c.model.width = 50
    c.model.inner_width = 30
    c.data.kwargs.n_train = 2000
    c.data.kwargs.n_test = 500
    c.data.batch_size = 2000
    c.data.eval_batch_size = 500
  return c
