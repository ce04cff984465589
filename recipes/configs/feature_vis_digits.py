"""The CNN whose merged classes ``zoo.analysis.feature_vis`` visualises facet by facet ("Multifaceted Feature
Visualization", Nguyen, Yosinski, Clune, 2016, arXiv 1602.03616).

Model ``core.ConvNet(num_classes=8, features=(8, 16), hidden=(64, 32))`` on ``merged_digits`` (sklearn digits with
A = {0, 6} -> class 0 and B = {1, 7} -> class 1, the other digits their own classes), Adam 2e-3, batch 64.
Multifaceted visualisation is an analysis of the trained variables: after the run, load the checkpoint's
parameters and call, on the training split,
``feature_vis.multifaceted_visualization(model, variables, images, labels, 0, k=2, steps=50, learning_rate=0.003,
l2=0.1, blur_every=0, noise=0.01)`` for the two facets of class A (tests/papers/test_multifaceted_viz.py does this
for five seeds; ``mean_image_init=False`` is the random-init AM baseline).

Command::

  python -m zoo.recipes.train --config recipes/configs/feature_vis_digits.py --workdir /tmp/zoo-feature-vis

Expected (measured, seed 0): test accuracy 0.964 after 500 steps (the effect test's 200-step nets: 0.90-0.96 over
seeds 0-6). The two facets of class A are the 0s and the 6s (nearest training images of the visualisations: one 0,
one 6, in every seed measured), ~5-10x further apart than two random-init AM images, both with p(A) > 0.99. Time:
12 s of CPU time (46 s wall on the shared, heavily loaded 2-core machine; the conv net's compile dominates). This run
is shipped: ``zoo.checkpoints.load('feature_vis_digits')`` (measured again: accuracy 0.964, 13 s of user CPU).
"""

from zoo.recipes.configs import base_config


def get_config():
  c = base_config()
  c.model.name = "core.ConvNet"
  c.model.num_classes = 8
  c.model.features = (8, 16)
  c.model.hidden = (64, 32)
  c.data.name = "merged_digits"
  c.data.batch_size = 64
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.steps = 500
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.seed = 0
  return c
