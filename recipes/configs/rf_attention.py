"""Random-feature attention (frozen random query-key matrices, trainable values), fitted by exact ridge regression.

Paper: "What can a Single Attention Layer Learn? A Study Through the Random Features Lens" (Fu, Guo, Bai, Mei, 2023,
arXiv 2307.11353). Target: one attention head, ``f(x) = (1/N) sum_i exp(2 <x_0, x_i>) <beta, x_i>``, with d = 8,
N = 8 keys, 2000 training and 2000 test samples; 256 heads (2048 features).

Command::

  python -m zoo.recipes.train --config recipes/configs/rf_attention.py --workdir /tmp/rf_attention

Expected result: test ``loss`` (MSE) ~0.0025, i.e. normalised MSE ~0.05 (the target's variance is 0.047); the
2048-feature ReLU random-feature network on the flattened input (``--config.model="{'name':
'random_features.RandomFeatureMLP', 'num_features': 2048}" --config.procedure.l2=0.1``) reaches ~0.013 (nMSE
~0.28). ``relative_l2`` is per example and meaningless for this scalar target. About 10 s of CPU (10 ridge steps
over the 2000 examples).
"""

import ml_collections

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config; ``arg='smoke'``: the same run with 32 heads (256 features: a 256x256 instead of a 2048x2048 solve
  per step) (the test's smoke run)."""
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "random_features.RandomFeatureAttention", "num_heads": 256,
                                       "attn": "exp", "mean_scale": 0.0})
  c.data.name = "rf_attention_targets"
  c.data.kwargs = ml_collections.ConfigDict({"target": "attention_head", "d": 8, "num_keys": 8})
  c.data.batch_size = 200
  c.data.eval_batch_size = 400
  c.task = ml_collections.ConfigDict({"name": "regression", "input_key": "x", "target_key": "y"})
  c.procedure = ml_collections.ConfigDict({"name": "ridge.RidgeRegression", "l2": 3e-4})
  c.steps = 10  # one pass over the 2000 training examples: the exact ridge solution
  c.log_every = 1
  c.checkpoint_every = 10
  if is_smoke(arg, 'rf_attention'):
    c.model.num_heads = 32
  return c
