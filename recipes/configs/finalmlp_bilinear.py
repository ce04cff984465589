r"""FinalMLP on planted bilinear user x item clicks with four pure-noise fields.

Model: ``zoo.ctr.FinalMLP`` ("FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction", Mao et al., AAAI 2023,
arXiv 2304.00902) with FuxiCTR's defaults: embeddings of width 10, two ReLU streams [64, 64, 64], global gates
(hidden [64]), one bilinear fusion head. Data: ``ctr_bilinear`` (``recipes/datasets/ctr.py``) with ``scale=3`` and
``num_train=100000`` (600 steps of 256 see each row about 1.5 times; with 16000 rows every model overfits the
noise fields): 100000 training / 4000 test rows, 8 fields of 50 ids, a planted ``3 u_user^T v_item`` logit
(Bayes AUC 0.93). Task ``ctr.Click``.

Command::

  python -m zoo.recipes.train --config recipes/configs/finalmlp_bilinear.py --workdir /tmp/zoo-finalmlp

Expected (measured, seed 0): test logloss 0.555, accuracy 0.70 after 600 steps, ~30 s of CPU time on a 2-core
machine (2.3 min wall on a loaded one, including the first-time data preparation); the same settings give test AUC
0.78-0.86 in tests/papers/test_finalmlp.py. DualMLP: ``--config.model.name=ctr.DualMLP``; the single-MLP
baseline: ``--config.model.name=ctr.FieldMLP --config.model.hidden='(128,128,128)'`` (equal parameter count; AUC
0.71-0.82 in the effect test, not run from the CLI). This run is shipped: ``zoo.checkpoints.load('finalmlp_bilinear')``
(measured again: logloss 0.555, accuracy 0.7015, 23 s of user CPU).
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with 4096 training and 1024 test clicks (the test's smoke run)."""
  c = base_config()
  c.model.name = "ctr.FinalMLP"
  c.model.vocab_sizes = (50,) * 8
  c.model.embed_dim = 10
  c.data.name = "ctr_bilinear"
  c.data.kwargs.scale = 3.0
  c.data.kwargs.num_train = 100_000
  c.data.batch_size = 256
  c.task.name = "ctr.Click"
  c.task.input_key = "ids"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 600
  c.log_every = 100
  c.eval_every = 300
  c.checkpoint_every = 300
  c.seed = 0
  if is_smoke(arg, 'finalmlp_bilinear'):
    c.data.kwargs.num_train = 4096
    c.data.kwargs.num_test = 1024
  return c
