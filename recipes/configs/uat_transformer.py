"""Single-layer transformer (one multi-head self-attention + one ReLU FFN, both residual) on a fixed continuous
sequence-to-sequence target that is not permutation-equivariant.

Paper: "Universal Approximation Theorem for a Single-Layer Transformer" (Gumaan, 2025, arXiv 2507.10581). Data:
``uat_seq2seq`` (``recipes/datasets/uat_target.py``), X uniform on [-1, 1]^{4 x 2}.

Command::

  python -m zoo.recipes.train --config recipes/configs/uat_transformer.py --workdir /tmp/uat_transformer

Expected result: test ``loss`` (MSE) ~1e-4 (RMSE ~0.01; sup error over the 4096 test points ~0.1, see
tests/papers/test_uat_transformer.py). Narrower FFNs (``--config.model.ffn_width=8``) end near MSE 4e-3, and
``--config.model.pos_enc=none`` stays near MSE 0.08: without positions the layer cannot tell the rows apart.
About 1 minute on a laptop CPU (6000 steps).
"""

import ml_collections
from ml_collections import config_dict

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "transformer.SingleLayerTransformer", "heads": 4, "ffn_width": 512,
                                       "attn_scale": config_dict.placeholder(float), "pos_enc": "learned", "embed_dim": 32})
  c.data.name = "uat_seq2seq"
  c.data.batch_size = 256
  c.data.eval_batch_size = 1024
  c.task = ml_collections.ConfigDict({"name": "regression", "input_key": "x", "target_key": "y"})
  c.optimizer.learning_rate = 3e-3
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 100
  c.steps = 6000
  c.log_every = 200
  c.checkpoint_every = 2000
  return c
