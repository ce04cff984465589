"""ArchBERT on the generated architecture/caption corpus: cosine matching + MAM + reasoning, trained jointly.

Model: ``zoo.archbert.ArchBERT`` ("ArchBERT", Akbari et al. 2023, arXiv 2301.00040): an adjacency-masked graph
transformer over ONNX node tokens and a text transformer (width 64, 2 layers, 4 heads each). Data:
``arch_captions`` (``recipes/datasets/arch_bench.py``): 1000 training / 200 test distinct MLP/CNN configs with
template captions and true/false reasoning statements. Procedure ``archbert.ArchBERTPretrain``
(``recipes/procedures/archbert.py``): ``alignment + mam_weight * mam + reasoning``; ablations
``--config.procedure.mode=full`` (no adjacency mask) and ``--config.procedure.mam_weight=0`` (no MAM).

Command::

  python -m zoo.recipes.train --config recipes/configs/archbert_generated.py --workdir /tmp/zoo-archbert

Expected (measured, seed 0): test reasoning_accuracy 0.995, pair_cosine 0.866 (loss 0.134) after 600 steps, 104 s of
user CPU (5.5 min wall on a heavily loaded 2-core machine); retrieval over the whole test split of 200 (recall@k of
``zoo.archbert.recall_at_k``, chance 0.025 at k = 5): caption -> architecture R@1 / R@5 / R@10 0.225 / 0.735 /
0.98, architecture -> caption 0.30 / 0.855 / 1.0 (tests/papers/test_archbert.py measures R@5 over offsets). This
model is 1.8 MB of float32, over the 1 MB of a shipped checkpoint; the shipped
``zoo.checkpoints.load('archbert_generated_w32')`` is this config at ``--config.model.features=32
--config.model.mlp_dim=64`` (600 steps, 77 s of user CPU): reasoning_accuracy 0.975, pair_cosine 0.840, caption ->
architecture R@1 / R@5 / R@10 0.165 / 0.59 / 0.855, architecture -> caption 0.255 / 0.725 / 0.94
(notebooks/architectures_as_data.ipynb loads it).
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with one layer of width 32, 128 training and 64 test captions (the
  test's smoke run)."""
  c = base_config()
  c.model.name = "archbert.ArchBERT"
  c.model.arch_vocab_size = 2071  # zoo.archtext.ArchTokenizer().vocab_size
  c.model.text_vocab_size = 175  # zoo.archbert.CaptionTokenizer().vocab_size
  c.model.features = 64
  c.model.num_layers = 2
  c.model.num_heads = 4
  c.model.mlp_dim = 128
  c.model.max_nodes = 16
  c.model.max_length = 32
  c.data.name = "arch_captions"
  c.data.kwargs.num_train = 1000
  c.data.kwargs.num_test = 200
  c.data.batch_size = 64
  c.task.name = "archbert.ArchCorpusTask"
  c.procedure.name = "archbert.ArchBERTPretrain"
  c.procedure.mode = "graph"
  c.procedure.mam_weight = 1.0
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.steps = 600
  c.log_every = 100
  c.eval_every = 300
  c.checkpoint_every = 300
  c.seed = 0
  if is_smoke(arg, 'archbert_generated'):
    c.model.features = 32
    c.model.num_layers = 1
    c.model.mlp_dim = 64
    c.data.kwargs.num_train = 128
    c.data.kwargs.num_test = 64
  return c
