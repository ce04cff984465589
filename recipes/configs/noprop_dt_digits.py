r"""NoProp-DT classifies scikit-learn's bundled 8x8 digits with ten denoising blocks trained without back-propagation
between them.

Paper: Li, Teh & Pascanu, "NoProp: Training Neural Networks without Back-propagation or Forward-propagation" (2025,
arXiv:2503.24322). Model ``zoo.noprop.NoPropDTNet``: T = 10 blocks (each an MLP x-encoder 64 -> 64, a z-path and a
64-32-10 head with BatchNorm, ``u_hat = softmax(logits) W_embed``), one-hot class embeddings, the cosine noise
schedule and a linear classifier on ``z_T``. Procedure ``zoo.recipes.procedures.noprop.NoPropDT``: every block is trained on its
own noise level by its own denoising loss (weight ``(T/2) eta (SNR(t) - SNR(t-1))``, eta = 0.1) plus the
classifier and KL terms; evaluation runs the denoising chain from ``z_0 ~ N(0, I)``. AdamW with weight decay 1e-3
at learning rate 3e-3 (1000 steps on 1347 digits; 1e-3 needs about twice the steps for the same accuracy).
The x-encoder is any zoo model named by ``model.encoder`` with ``model.encoder_kwargs``: ``'core.ConvNet'`` with
``{'num_classes': 64, 'hidden': ()}`` gives a LeNet-style one (edit this file, or pass a module from Python).

Command::

  python -m zoo.recipes.train --config recipes/configs/noprop_dt_digits.py --workdir /tmp/noprop-dt

Expected: test accuracy (``eval/accuracy``, the classifier on the chain's end) about 0.97-0.98 (seed 0: 0.971; 500
steps of the same model: 0.976 / 0.973 / 0.969 for seeds 0 / 1 / 2; a back-propagated MLP with as many parameters
as the whole network, 64-408-408-128-10, 247k against NoProp's 246k: 0.982 / 0.982 / 0.980; one of one block's
widths, 64-64-64-32-10, 11k: 0.971 / 0.971 / 0.976), with ``eval/accuracy_half`` (the nearest class embedding to the chain's midpoint) near 0.33.
Time: about 25 s of CPU time (user + sys) on this 2-core CPU, compilation, data preparation and the final
evaluation included.
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with 3 denoising blocks (the test's smoke run)."""
  c = base_config()
  c.model.name = "noprop.NoPropDTNet"
  c.model.num_classes = 10
  c.model.num_blocks = 10
  c.model.hidden = 64
  c.model.head = 32
  c.model.encoder = "core.MLP"
  c.model.encoder_kwargs = {"features": (64,)}
  c.model.embedding = "onehot"
  c.model.norm = "batch"
  c.data.name = "digits"
  c.data.batch_size = 128
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.kwargs.weight_decay = 1e-3
  c.procedure.name = "noprop.NoPropDT"
  c.procedure.eta = 0.1
  c.steps = 1000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.seed = 0
  if is_smoke(arg, 'noprop_dt_digits'):
    c.model.num_blocks = 3
  return c
