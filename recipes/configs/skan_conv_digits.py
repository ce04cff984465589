r"""S-ConvKAN classifies the bundled 8x8 digits: KAN convolutions whose nodes select their activation spaces.

Model: ``zoo.kan.SConvKAN`` ("Activation Space Selectable Kolmogorov-Arnold Networks", Yang et al., 2024, arXiv
2408.08338): two 3x3 selectable KAN convolutions (4 and 8 channels; patches from
``jax.lax.conv_general_dilated_patches``) with 2x2 max-pooling, and a selectable KAN head; spaces B-spline,
Chebyshev(tanh), Fourier, RBF, wavelet at G = 3, order 2. Procedure: ``zoo.recipes.procedures.skan.ThreePhaseSelection``
(all spaces 400 steps, top 2 for 300, argmax to 1000). Data: ``digits``.

Command::

  python -m zoo.recipes.train --config recipes/configs/skan_conv_digits.py --workdir /tmp/zoo-sconvkan

Expected: test accuracy 0.969 (measured, seed 0); 85 s wall (41 s CPU) on the shared 2-core build machine.
"""

from zoo.recipes.configs import base_config, is_smoke


def get_config(arg: str | None = None):
  """The config; ``arg='smoke'``: the same run with one SKAN conv layer of 4 channels (the test's smoke run)."""
  c = base_config()
  c.model.name = "kan.SConvKAN"
  c.model.num_classes = 10
  c.model.channels = (4, 8)
  c.model.grid_size = 3
  c.model.spline_order = 2
  c.data.name = "digits"
  c.data.batch_size = 64
  c.procedure.name = "skan.ThreePhaseSelection"
  c.procedure.full_steps = 400
  c.procedure.selective_steps = 300
  c.procedure.top_k = 2
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.steps = 1000
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  if is_smoke(arg, 'skan_conv_digits'):
    c.model.channels = (4,)
  return c
