"""The deep linear unconstrained-features model (free features H and W_3 W_2 W_1, bias-free) trained to neural
collapse on imbalanced classes with cross-entropy and weight decay.

Paper: "Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data" (Dang, Tran, Osher, Tran-The, Ho,
Nguyen, ICML 2023, arXiv 2301.00437). ``analysis.neural_collapse.DeepLinearUFM`` sows the paper's weight-decay terms
(lambda = 1e-3) into ``'losses'``; the backprop procedure adds them to the task's mean cross-entropy. Full batch
(N = 80, class sizes 40/20/10/10), Adam 1e-2 with cosine decay, 3000 steps.

Command::

  python -m zoo.recipes.train --config recipes/configs/neural_collapse_ufm.py --workdir /tmp/nc_ufm

Expected result: training (= test, the same samples) accuracy 1.000 and cross-entropy 0.0023; the collapse itself
is measured with ``nc_metrics(ufm_features(params), labels, ufm_classifier(params))`` on the checkpoint (float64
runs with ``train_ufm``: tests/papers/test_neural_collapse.py). About 10 s of CPU.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "analysis.neural_collapse.DeepLinearUFM", "num_classes": 4,
                                       "num_samples": 80, "feature_dim": 16, "depth": 3, "bias": False,
                                       "lambda_W": 1e-3, "lambda_H": 1e-3, "init_scale": 0.5})
  c.data.name = "ufm_labels"
  c.data.kwargs = ml_collections.ConfigDict({"class_sizes": (40, 20, 10, 10)})
  c.data.batch_size = 80
  c.data.eval_batch_size = 80
  c.task = ml_collections.ConfigDict({"name": "classification", "input_key": "idx", "target_key": "label"})
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  c.optimizer.schedule = "cosine"
  c.steps = 3000
  c.log_every = 500
  c.checkpoint_every = 3000
  return c
