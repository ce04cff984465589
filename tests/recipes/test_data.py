"""The data layer: generated sets through TFDS array_record, the real-TFDS path, deterministic batches."""

import os
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits
from tensorflow_datasets.core.data_sources import base as tfds_sources

from zoo.recipes import data


def test_digits_round_trips_through_tfds():
  sources, info = data.load("digits")
  assert info.num_examples == {"train": 1347, "test": 450}
  assert info.num_classes == 10
  assert info.element_spec["image"] == ((8, 8, 1), "float32")
  x, y = load_digits(return_X_y=True)
  expected = {(img.astype(np.float32) / 16).tobytes(): label for img, label in zip(x, y)}
  for split in ("train", "test"):
    arrays = sources[split].arrays
    assert arrays["image"].min() >= 0 and arrays["image"].max() <= 1
    for img, label in zip(arrays["image"], arrays["label"]):
      assert expected[img.reshape(64).tobytes()] == label
  # Stratified: every class in both splits.
  assert set(sources["test"].arrays["label"]) == set(range(10))


def test_generated_kwargs_are_part_of_the_cache_key(tmp_path):
  a, _ = data.load("wine", data_dir=str(tmp_path))
  b, _ = data.load("wine", data_dir=str(tmp_path), seed=1)
  assert not np.array_equal(a["train"].arrays["x"], b["train"].arrays["x"])
  assert sorted(os.listdir(tmp_path / "wine")) == sorted(["default", data._config_name({"seed": 1})])
  again, _ = data.load("wine", data_dir=str(tmp_path))
  np.testing.assert_array_equal(again["train"].arrays["x"], a["train"].arrays["x"])


def test_batches_are_a_pure_function_of_step():
  source = data.ArraySource({"x": np.arange(100), "y": np.arange(100) * 2})
  batches = data.Batches(source, 32, seed=3)
  assert batches.per_epoch == 3
  epoch0 = np.concatenate([batches(s)["x"] for s in range(3)])
  assert len(set(epoch0)) == 96  # no repeats within an epoch
  later = data.Batches(source, 32, seed=3)
  np.testing.assert_array_equal(later(7)["x"], batches(7)["x"])  # a fresh iterator (a resumed run) agrees
  np.testing.assert_array_equal(batches(4)["y"], batches(4)["x"] * 2)
  assert not np.array_equal(data.Batches(source, 32, seed=4)(0)["x"], batches(0)["x"])
  half = data.Batches(source, 32, seed=3, rows=slice(16, 32))
  np.testing.assert_array_equal(half(5)["x"], batches(5)["x"][16:])


def test_eval_batches_cover_the_split_once_with_padding():
  source = data.ArraySource({"x": np.arange(10)})
  seen, weights = [], []
  for batch, weight in data.eval_batches(source, 4):
    assert batch["x"].shape == (4,)
    seen += list(batch["x"][weight > 0])
    weights += list(weight)
  assert seen == list(range(10)) and sum(weights) == 10 and len(weights) == 12


def test_array_source_rejects_ragged_splits():
  with pytest.raises(ValueError, match="same number of examples"):
    data.ArraySource({"x": np.zeros(3), "y": np.zeros(4)})


def test_unprepared_tfds_dataset_fails_fast_with_instructions(tmp_path):
  start = time.time()
  with pytest.raises(ValueError, match="(?s)not prepared .*tfds build mnist --file_format=array_record"):
    data.load("mnist", data_dir=str(tmp_path))
  assert time.time() - start < 30  # never the minutes-long download retry loop


def test_real_tfds_path_with_mocked_mnist():
  # tfds.testing.mock_data fakes the prepared files; the zoo path (builder, data_source, preprocessing,
  # batching) is the real one. Two gaps of the mock are patched: it does not mark the set prepared, and its
  # batched `__getitems__` is broken, so reads go one record at a time.
  with tfds.testing.mock_data(num_examples=24), \
      mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True), \
      mock.patch.object(tfds_sources.BaseDataSource, "__getitems__", lambda self, keys: [self[k] for k in keys]):
    sources, info = data.load("mnist", splits=["train", "test"])
  assert info.num_classes == 10 and info.num_examples == {"train": 24, "test": 24}
  batch = data.Batches(sources["train"], 8, seed=0)(0)
  assert batch["image"].shape == (8, 28, 28, 1) and batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0  # uint8 scaled
