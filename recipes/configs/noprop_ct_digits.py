r"""NoProp-CT classifies scikit-learn's bundled 8x8 digits with one time-conditioned denoising block and a learned
noise schedule.

Paper: Li, Teh & Pascanu, "NoProp: Training Neural Networks without Back-propagation or Forward-propagation" (2025,
arXiv:2503.24322), continuous-time variant. Model ``zoo.noprop.NoPropCTNet``: one block ``u_hat(z_t, x, t)`` (MLP
x-encoder 64 -> 64, z-path, sinusoidal time embedding, 64-32-10 head, ``softmax(logits) W_embed``), a learned
monotone schedule ``SNR(t) = exp(-gamma(t))`` (VDM's network), one-hot embeddings and a classifier on ``z_1``.
Procedure ``zoo.recipes.procedures.noprop.NoPropCT``: ``t ~ U[0, 1]`` per example, denoising loss weighted by ``SNR'(t)`` with
eta = 1 (the paper's CT value as transcribed by github.com/bayesianempirimancer/jax-noprop), plus the classifier
and KL terms; evaluation integrates the probability-flow ODE over 1000 steps (the paper's number of inference
steps). AdamW, learning rate 3e-3, weight decay 1e-3.

Command::

  python -m zoo.recipes.train --config recipes/configs/noprop_ct_digits.py --workdir /tmp/noprop-ct

Expected: test accuracy about 0.92 (seed 0: 0.920, also with 100 ODE steps); ``eval/accuracy_half`` (the nearest
class embedding at t = 0.5) about 0.17.
Time: about 23 s of CPU time (user + sys) on this 2-core CPU, compilation, data preparation and the final
evaluation included.
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with 10 ODE steps at inference instead of 1000 (the test's smoke run)."""
  c = base_config()
  c.model.name = "noprop.NoPropCTNet"
  c.model.num_classes = 10
  c.model.hidden = 64
  c.model.head = 32
  c.model.encoder = "core.MLP"
  c.model.encoder_kwargs = {"features": (64,)}
  c.model.time_features = 64
  c.model.inference_steps = 1000
  c.model.sampler = "ode"
  c.data.name = "digits"
  c.data.batch_size = 128
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.kwargs.weight_decay = 1e-3
  c.procedure.name = "noprop.NoPropCT"
  c.procedure.eta = 1.0
  c.steps = 1000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.seed = 0
  if is_smoke(arg, 'noprop_ct_digits'):
    c.model.inference_steps = 10
  return c
