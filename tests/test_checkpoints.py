"""Shipped checkpoints load with one call and reproduce the metrics recorded beside them."""

import os

import jax
import numpy as np
import pytest

from zoo import checkpoints
from zoo.recipes import data


def test_available():
  assert "hopfield_digits" in checkpoints.available()


def test_unknown_checkpoint_lists_the_available_ones():
  with pytest.raises(ValueError, match="Available: .*hopfield_digits"):
    checkpoints.load("hopfield_mnist")


def test_shipped_checkpoint_is_small():
  root = checkpoints.path("hopfield_digits")
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
  assert size < 1_000_000


def test_hopfield_digits_reproduces_its_recorded_test_accuracy():
  model, variables = checkpoints.load("hopfield_digits")
  meta = checkpoints.load_meta("hopfield_digits")
  sources, _ = data.load(meta["dataset"]["name"], splits=[meta["dataset"]["split"]], **meta["dataset"]["kwargs"])
  test = sources[meta["dataset"]["split"]].arrays
  logits = np.asarray(jax.jit(model.apply)(variables, test["image"]))
  accuracy = float(np.mean(np.argmax(logits, -1) == test["label"]))
  assert accuracy == pytest.approx(meta["metrics"]["accuracy"], abs=1e-9)
  assert accuracy >= 0.95


@pytest.mark.parametrize("name", ["../checkpoints/hopfield_digits", "hopfield_digits/", "/tmp", "..", ".", ""])
def test_names_are_bare_names_never_paths(name):
  with pytest.raises(ValueError, match="bare names, not paths.*Available: .*hopfield_digits"):
    checkpoints.load(name)
