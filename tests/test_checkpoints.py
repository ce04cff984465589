"""Shipped checkpoints load with one call and reproduce the metrics recorded beside them."""

import os

import jax
import numpy as np
import pytest

from zoo import checkpoints
from zoo.recipes import builders
from zoo.recipes import data


def test_available():
  assert "hopfield_digits" in checkpoints.available()


def test_unknown_checkpoint_lists_the_available_ones():
  with pytest.raises(ValueError, match="Available: .*hopfield_digits"):
    checkpoints.load("hopfield_mnist")


@pytest.mark.parametrize("name", checkpoints.names())
def test_shipped_checkpoint_is_small(name):
  root = checkpoints.path(name)
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
  assert size < 1_000_000


# What each shipped model must at least reach on its evaluation split (the configs' documented results, rounded down).
FLOORS = {"hopfield_digits": ("accuracy", ">=", 0.95), "vit_digits": ("accuracy", ">=", 0.85),
          "activator_digits": ("accuracy", ">=", 0.9), "kan_function_fitting": ("relative_l2", "<=", 0.02),
          "mgno_darcy": ("relative_l2", "<=", 0.02), "maxim_denoise": ("psnr", ">=", 28.0),
          "prototype_digits": ("accuracy", ">=", 0.97),
          "lsa_digits": ("accuracy", ">=", 0.96), "shallow_digits": ("accuracy", ">=", 0.96),
          "hourglass_denoise": ("mse", "<=", 0.026), "hourglass_superres": ("mse", "<=", 0.02),
          "multimodn_digits": ("accuracy", ">=", 0.63), "hypercl_split_digits": ("accuracy", ">=", 0.97),
          "hypernet_sinusoids": ("mse", "<=", 0.002), "mip_gamma_sinusoid": ("mse", "<=", 0.005),
          "convex_relu_teacher": ("mse", "<=", 0.003), "grad_noise_digits": ("accuracy", ">=", 0.93),
          "curriculum_digits_noisy": ("accuracy", ">=", 0.93), "scaling_mlps_digits_wi64": ("accuracy", ">=", 0.97),
          "din_interests": ("accuracy", ">=", 0.68), "finalmlp_bilinear": ("loss", "<=", 0.56),
          "colbert_proj": ("mrr", ">=", 0.53), "onnxnet_minibench": ("mse", "<=", 0.85),
          "smt_verify_iris": ("accuracy", ">=", 0.95), "monotone_dbm_digits": ("accuracy", ">=", 0.64),
          "convergent_digits": ("accuracy", ">=", 0.96), "convergent_digits_seed1": ("accuracy", ">=", 0.96),
          "feature_vis_digits": ("accuracy", ">=", 0.95), "cola_modular": ("accuracy", ">=", 0.36),
          "archbert_generated_w32": ("reasoning_accuracy", ">=", 0.95),
          "snnk_digits": ("accuracy", ">=", 0.97), "snnk_bundled_digits": ("accuracy", ">=", 0.98),
          "grokking_modular_addition": ("relative_l2", "<=", 0.1), "art_canvas": ("region_loss", "<=", 0.3)}


def test_every_shipped_checkpoint_has_a_floor():
  assert set(checkpoints.names()) == set(FLOORS)


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_checkpoint_reproduces_its_recorded_metrics(name):
  """Load with one call, evaluate as the run did (its task, split and batches), get the numbers recorded beside it."""
  meta = checkpoints.load_meta(name)
  got = checkpoints.evaluate(name)
  for key, recorded in meta["metrics"].items():
    assert got[key] == pytest.approx(recorded, rel=1e-4, abs=1e-6), key
  metric, direction, floor = FLOORS[name]
  assert got[metric] >= floor if direction == ">=" else got[metric] <= floor


def test_evaluate_recomputes_with_plain_apply():
  """checkpoints.evaluate agrees with a hand-written whole-split evaluation (per-example metrics: batches don't matter)."""
  model, variables = checkpoints.load("hopfield_digits")
  meta = checkpoints.load_meta("hopfield_digits")
  task = builders.make_task(meta["task"])
  sources, _ = data.load(meta["dataset"]["name"], splits=[meta["dataset"]["split"]], **meta["dataset"]["kwargs"])
  split = sources[meta["dataset"]["split"]].arrays
  outputs = jax.jit(model.apply)(variables, task.inputs(split))
  whole = {k: float(np.mean(v)) for k, v in jax.device_get(task.metrics(outputs, split)).items()}
  batched = checkpoints.evaluate("hopfield_digits", batch_size=64)
  assert batched == pytest.approx(whole, rel=1e-5)


@pytest.mark.parametrize("name", ["../checkpoints/hopfield_digits", "hopfield_digits/", "/tmp", "..", ".", ""])
def test_names_are_bare_names_never_paths(name):
  with pytest.raises(ValueError, match="bare names, not paths.*Available: .*hopfield_digits"):
    checkpoints.load(name)
