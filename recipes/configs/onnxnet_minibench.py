"""ONNX-Net on the shipped mini-bench: a small transformer regresses load_digits accuracy from chain_slim text.

Model: ``zoo.archtext.ArchTextSurrogate`` ("ONNX-Net", Qin et al. 2025, arXiv 2510.04938; width 64, 2 layers, 4
heads), over the text that ``zoo.archtext.arch_to_text`` derives from each network's real ONNX graph. Data:
``onnx_minibench`` (``recipes/datasets/arch_bench.py``): 170 training nets (150 space-A MLPs, 20 space-B CNNs),
150 test nets (50 A, 100 B); target = the net's measured test accuracy. Task ``onnxnet.SurrogateRegression``: MSE on
standardised accuracy + ``rax.pairwise_logistic_loss`` (``--config.task.pairwise_weight=0`` turns it off). The
ablated text (op types and wiring only) is ``--config.data.kwargs.attributes=False --config.data.kwargs.shapes=False``.

Command::

  python -m zoo.recipes.train --config recipes/configs/onnxnet_minibench.py --workdir /tmp/zoo-onnxnet

Expected (measured, seed 0): test loss 1.257 and mse 0.819 (standardised accuracy, over the 150 held-out nets in one
padded eval batch of 256) after 300 steps, 72 s of user CPU (6.1 min wall on a heavily loaded 2-core machine). The
trainer reports MSE; the ranking metric is Kendall tau of the predictions, which for this run (the shipped
``zoo.checkpoints.load('onnxnet_minibench')``) is 0.835 on the 50 held-out MLPs and 0.523 on the 100 held-out CNNs
(parameter count: 0.725 / 0.307); tests/papers/test_onnx_net.py measures it over offsets (docs/papers.md, onnx_net).
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with one layer of width 32 (the test's smoke run)."""
  c = base_config()
  c.model.name = "archtext.ArchTextSurrogate"
  c.model.vocab_size = 2071  # zoo.archtext.ArchTokenizer().vocab_size
  c.model.features = 64
  c.model.num_layers = 2
  c.model.num_heads = 4
  c.model.mlp_dim = 128
  c.model.max_length = 128
  c.data.name = "onnx_minibench"
  c.data.kwargs.seed = 0
  c.data.batch_size = 64
  c.task.name = "onnxnet.SurrogateRegression"
  c.task.pairwise_weight = 1.0
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 300
  c.log_every = 50
  c.eval_every = 150
  c.checkpoint_every = 150
  c.seed = 0
  if is_smoke(arg, 'onnxnet_minibench'):
    c.model.features = 32
    c.model.num_layers = 1
    c.model.mlp_dim = 64
  return c
