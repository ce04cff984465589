r"""SwinCheX on planted shapes: a tiny Swin backbone and 5 per-label MLP heads find which shapes an image holds.

Model: ``zoo.swinchex.SwinCheX`` ("SwinCheX: Multi-label classification on chest X-ray images with transformers",
Taslimi et al., 2022, arXiv 2206.04246) with the tiny backbone of the effect test (patch 2, window 4, embed 32,
depths (2, 2), heads (2, 4): at 16x16 an 8x8 map of 2x2 windows, then one 4x4 window), 5 heads 384-48-48-1 (the
paper's best, 3 hidden layers). Data: ``planted_shapes`` (``recipes/datasets/chexray.py``) at 16x16 (the effect
test's size; ``--config.data.kwargs.image_size=32`` for the PAPERS.md size, 4x the compute): noise images with a
random subset of {blob, ring, bar, cross, speckle}, multi-hot labels. Task ``chexray.SummedMultilabel`` (summed
per-label BCE, ``recipes/procedures/chexray.py``); AdamW with warmup + cosine decay as the paper. Mean AUROC is a
whole-split ranking metric: compute it from the logits with ``zoo.recipes.procedures.chexray.mean_auroc`` (the effect
test tests/papers/test_swinchex.py does).

Command::

  python -m zoo.recipes.train --config recipes/configs/swinchex_shapes.py --workdir /tmp/zoo-swinchex

Expected (measured, seed 0): test per-label accuracy 0.702, summed BCE 2.561 (chance 3.47) after 150 steps; 97 s
wall (34 s of CPU) on the shared 2-core machine (rerun: the same 0.702 / 2.561, 41 s of CPU, 143 s wall at a higher
load). Not shipped as a checkpoint: its 363,969 float32 parameters (the 384-48-48 heads hold 226k) are 1.46 MB, over
the 1 MB limit of ``zoo.checkpoints``. The same settings give a mean AUROC of 0.768 in the effect test
(tests/papers/test_swinchex.py). The baseline single linear head is
``--config.model.linear_head=True``; the W-MSA-only ablation ``--config.model.shift=False``. ChestX-ray14 (a local
copy): ``--config.data.name=chestxray14 --config.model.num_labels=14`` and the Swin-L fields of
``zoo.swin.PRESETS['large']`` (the paper: 224^2, window 7, ImageNet-22k weights, which the zoo does not ship).
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with embed 16, heads (1, 2), one hidden layer of 16 in each head (the
  test's smoke run)."""
  c = base_config()
  c.model.name = "swinchex.SwinCheX"
  c.model.num_labels = 5
  c.model.head_hidden = (384, 48, 48)
  c.model.patch_size = 2
  c.model.window_size = 4
  c.model.embed_dim = 32
  c.model.depths = (2, 2)
  c.model.num_heads = (2, 4)
  c.model.drop_path_rate = 0.0
  c.data.name = "planted_shapes"
  c.data.kwargs.num_train = 2048
  c.data.kwargs.num_test = 512
  c.data.kwargs.image_size = 16
  c.data.batch_size = 64
  c.task.name = "chexray.SummedMultilabel"
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 15
  c.optimizer.kwargs = {"weight_decay": 0.05}
  c.steps = 150
  c.log_every = 50
  c.eval_every = 150
  c.checkpoint_every = 150
  c.seed = 0
  if is_smoke(arg, 'swinchex_shapes'):
    c.model.embed_dim = 16
    c.model.num_heads = (1, 2)
    c.model.head_hidden = (16,)
  return c
