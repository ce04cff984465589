r"""A 2-d autoencoder learns normal sensor readings, the review's fault-detection application (arXiv:1905.13294).

Data: ``sensors`` (recipes/datasets/sensors.py): 8 channels on a curved 2-d surface driven by 2 hidden phases; the
``train`` split is normal operation only, the ``test`` split a series with injected stuck/drift/bias faults.
Model: ``zoo.core.Autoencoder`` 8-64-64-2-64-64-8 with tanh, trained to reconstruct (task ``reconstruction``).

Command::

  python -m zoo.recipes.train --config recipes/configs/autoencoder_sensors.py --workdir /tmp/zoo-ae-sensors

Expected: train reconstruction MSE per value 0.0031 (the reading noise is 0.05^2 = 0.0025); the test split's mean
loss is 0.0094, higher because of the injected faults. Time: 7 s of CPU time (about 10 s on an idle 2-core laptop;
53 s wall measured on the shared 2-core machine at load average ~20).
The anomaly score is ``||x - x_hat||^2`` (``zoo.recipes.procedures.fault_detection``); the same model trained with
``fault_detection.train_ae_detector`` gives a test ROC-AUC of ~0.87 against ~0.72 for a 2-component PCA residual
(tests/papers/test_review_dl.py)::

  from zoo import core; from zoo.recipes import data; from zoo.recipes.procedures import fault_detection
  sources, _ = data.load("sensors"); train, test = sources["train"].arrays, sources["test"].arrays
  detector = fault_detection.train_ae_detector(core.Autoencoder(latent=2, hidden=(64, 64), activation="tanh"),
                                               train["x"], steps=1500, optimizer={"name": "adam",
                                               "learning_rate": 3e-3})
  from sklearn.metrics import roc_auc_score; print(roc_auc_score(test["fault"], detector.scores(test["x"])))
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.Autoencoder"
  c.model.latent = 2
  c.model.hidden = (64, 64)
  c.model.activation = "tanh"
  c.data.name = "sensors"
  c.data.batch_size = 64
  c.task.name = "reconstruction"
  c.task.input_key = "x"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.steps = 1500
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.seed = 0
  return c
