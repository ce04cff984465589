"""CoLa's pretrained model: the 6-layer tiny causal transformer on modular sums with 2-5 operands (mod 7).

Paper: "Skip a Layer or Loop it? Test-Time Depth Adaptation of Pretrained LLMs" (Li, Li and Zhou, 2025, arXiv
2507.07996). This config pretrains the model whose layers the per-sample search later skips and loops
(``zoo.depth_adapt.ChainTransformer``: 6 pre-norm ``zoo.transformer.EncoderBlock`` layers, width 32, 4 heads, MLP
64, read at the ``=`` token; data ``modular_sums``, ``recipes/datasets/modular_sums.py``); the test-time search is
``zoo.recipes.procedures.cola.search_cola`` on the trained variables (no finetuning), see tests/papers/test_cola.py.

Command::

  python -m zoo.recipes.train --config recipes/configs/cola_modular.py --workdir /tmp/zoo-cola

Expected (measured, seed 0): test accuracy 0.372 (loss 1.48) after 200 steps (Adam 1e-3, batch 128), 28 s of CPU
time (84 s wall on a heavily loaded 2-core machine). The model is deliberately undertrained: sums of 2-3 operands
are mostly right, 4-5 mostly wrong, so the search has both samples to shorten and samples to fix.
``--config.steps=2000`` trains it further. This run is shipped: ``zoo.checkpoints.load('cola_modular')`` (measured
again: accuracy 0.372, loss 1.480, 26 s of user CPU); notebooks/architectures_as_data.ipynb searches its chains.
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with 2 layers of width 16, 1024 training and 200 test sums (the test's
  smoke run)."""
  c = base_config()
  c.model.name = "depth_adapt.ChainTransformer"
  c.model.vocab_size = 10  # modulus + 3 (padding, '+', '=')
  c.model.num_classes = 7
  c.model.embed_dim = 32
  c.model.num_layers = 6
  c.model.num_heads = 4
  c.model.mlp_dim = 64
  c.model.max_length = 16
  c.data.name = "modular_sums"
  c.data.kwargs.modulus = 7
  c.data.kwargs.min_operands = 2
  c.data.kwargs.max_operands = 5
  c.data.kwargs.train_size = 25600
  c.data.kwargs.test_size = 1000
  c.data.batch_size = 128
  c.task.input_key = "tokens"
  c.task.target_key = "label"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 200
  c.log_every = 50
  c.checkpoint_every = 200
  c.seed = 0
  if is_smoke(arg, 'cola_modular'):
    c.model.embed_dim = 16
    c.model.num_layers = 2
    c.model.mlp_dim = 32
    c.data.kwargs.train_size = 1024
    c.data.kwargs.test_size = 200
  return c
