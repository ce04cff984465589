"""An ensemble of 64 wide two-layer NTK-parameterised ReLU nets learns a permutation of length 8 from the 8 basis
vectors and reproduces it exactly on almost all of the 255 nonzero binary inputs.

Paper: "Exact Learning of Permutations for Nonzero Binary Inputs with Logarithmic Training Size and Quadratic
Ensemble Complexity" (Giapitzakis, Back de Luca, Fountoulakis, 2025, arXiv 2502.16763). Procedure
``perm_ensemble.PermutationEnsemble``: 64 nets of width 1024, full-batch GD (``optax.sgd``, lr 2), 200 steps, the
ensemble mean rounded at the midpoint of the infinite ensemble's two output levels.

Command::

  python -m zoo.recipes.train --config recipes/configs/perm_ntk_ensemble.py --workdir /tmp/perm_ntk

Expected result: test ``exact_match`` 0.984 (251 of 255 inputs exact) for the 64-net ensemble against
``single_exact_match`` 0.118 for one net (the ablation), ensemble-mean ``mse`` 0.096; about 10 s of CPU.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "ntk_ensembles.TwoLayerNTKNet", "width": 1024, "outputs": 8})
  c.data.name = "permutations"
  c.data.kwargs = ml_collections.ConfigDict({"k": 8})
  c.data.batch_size = 8   # the whole training set: full-batch GD
  c.data.eval_batch_size = 256
  c.task = ml_collections.ConfigDict({"name": "regression", "input_key": "x", "target_key": "y"})
  c.optimizer = ml_collections.ConfigDict({"name": "sgd", "learning_rate": 2.0})
  c.procedure = ml_collections.ConfigDict({"name": "perm_ensemble.PermutationEnsemble", "num_models": 64,
                                           "rule": "midpoint"})
  c.steps = 200
  c.log_every = 50
  c.checkpoint_every = 200
  return c
