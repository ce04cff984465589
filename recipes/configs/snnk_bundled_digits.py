r"""The fully bundled SNNK network (m = 1024 ReLU random features) fitted to scikit-learn's digits in closed form.

Paper: "Scalable Neural Network Kernels" (Sehanobish et al., ICLR 2024, arXiv 2310.13225). Model
``snnk.SNNKClassifier``, procedure ``snnk.BundledRidge``: the MSE-optimal ``Psi`` for one-hot targets by ridge
regression (l2 = 1e-4), accumulated over one pass of the training set; no backprop, the optimizer is unused.
``--config.model.kind=linear`` is the ablation without random features.

Command::

  python -m zoo.recipes.train --config recipes/configs/snnk_bundled_digits.py --workdir /tmp/zoo-snnk-bundled

Expected: test accuracy 0.989 on the 450 held-out digits (``kind=linear``: 0.940). Time: ~10 s of CPU (18-28 s
wall on the loaded shared 2-core machine). Shipped as the checkpoint ``snnk_bundled_digits`` (measured again:
accuracy 0.989; 7 s of CPU).
"""

import ml_collections

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with 128 random features (the test's smoke run)."""
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "snnk.SNNKClassifier", "num_classes": 10, "num_random_features": 1024,
                                       "kind": "relu"})
  c.data.name = "digits"
  c.data.batch_size = 448   # 3 batches = 1344 of the 1347 training digits (divisible by 8 devices)
  c.procedure = ml_collections.ConfigDict({"name": "snnk.BundledRidge", "l2": 1e-4})
  c.steps = 3
  c.log_every = 1
  c.checkpoint_every = 3
  if is_smoke(arg, 'snnk_bundled_digits'):
    c.model.num_random_features = 128
  return c
