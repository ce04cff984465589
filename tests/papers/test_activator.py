"""Effect test: "Activator: GLU Activations as The Core Functions of a Vision Transformer" (Abdullah and Aydin,
2024, arXiv 2405.15953).

sklearn digits (8x8), patch 2 (16 tokens), Adam 1e-3, batch 64, no dropout. The Activator (4 blocks, d, d_ffn = 2d)
against the zoo ViT with 5 blocks of the same width (parameter counts within 1%: 43.2k vs 43.9k at d = 32, 168k vs
170k at d = 64), the same steps.

Measured test accuracy (seed 0 / 1):

* d = 32, 400 steps (the default test): Activator as in the reference code 0.767 / 0.749, Activator with a learned
  position embedding 0.938 / 0.949, ViT 0.896 / 0.913. XLA FLOPs per 64-image forward: Activator 0.96e8, ViT 1.10e8.
* d = 64, 840 steps (40 epochs, PAPERS.md's setting): Activator 0.760, with position embedding 0.973, ViT 0.918
  (seed 0); FLOPs 3.60e8 vs 3.97e8.

What holds: with a position embedding the Activator matches or beats the ViT of equal size at lower FLOPs (the
paper's claim: acc >= ViT - 0.03). What did not: the reference code's Activator has no position embedding and no
token mixing before the final mean, so it classifies a *bag* of 2x2 patches; on digits it is ~0.15 below the ViT.
Both facts are asserted.
"""

import flax.linen as nn
import jax
import numpy as np
import pytest

from zoo import activator
from zoo import transformer
from zoo.recipes import train


def _models(hidden):
  return {
      "activator": activator.ActivatorClassifier(hidden=hidden, mlp_dim=2 * hidden, num_layers=4),
      "activator_pe": activator.ActivatorClassifier(hidden=hidden, mlp_dim=2 * hidden, num_layers=4,
                                                    position_embedding=True),
      "vit": transformer.ViT(hidden=hidden, mlp_dim=2 * hidden, num_layers=5, num_heads=4),
  }


def _size_and_flops(model, images):
  variables = model.init(jax.random.key(0), images)
  params = sum(x.size for x in jax.tree.leaves(nn.unbox(variables["params"])))
  cost = jax.jit(model.apply).lower(variables, images).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return params, float(cost["flops"])


def _compare(digits, mesh, hidden, steps, seeds):
  (train_set, test_set) = digits
  accuracy = {}
  for name, model in _models(hidden).items():
    accuracy[name] = float(np.mean([train.fit(model, train_set, steps=steps, batch_size=64, eval_data=test_set,
                                              mesh=mesh, seed=s).metrics["accuracy"] for s in seeds]))
  sizes = {name: _size_and_flops(model, train_set["image"][:64]) for name, model in _models(hidden).items()}
  print(accuracy, sizes)
  assert abs(sizes["activator"][0] / sizes["vit"][0] - 1) < 0.1  # equal parameter counts (+-10%)
  assert sizes["activator"][1] < sizes["vit"][1]  # fewer FLOPs
  assert accuracy["activator_pe"] >= accuracy["vit"] - 0.03  # the paper's claim, with a position embedding
  assert accuracy["activator"] < accuracy["vit"] - 0.05  # the reference model: a bag of patches
  assert accuracy["activator_pe"] > accuracy["activator"] + 0.1


@pytest.mark.slow  # over the default suite's time budget on 2 CPU cores
def test_activator_vs_vit_on_digits(digits, single_device_mesh):
  _compare(digits, single_device_mesh, hidden=32, steps=400, seeds=(0,))


@pytest.mark.slow
def test_activator_vs_vit_on_digits_paper_setting(digits, single_device_mesh):
  _compare(digits, single_device_mesh, hidden=64, steps=840, seeds=(0, 1, 2))
