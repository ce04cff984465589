"""zoo.recipes.curriculum: the cyclical schedule, the scores, the sampler, and its hook into the data layer/trainer."""

import jax
import ml_collections
import numpy as np
import optax
import pytest

from zoo import core
from zoo.recipes import curriculum
from zoo.recipes import data
from zoo.recipes import tasks
from zoo.recipes import train


def test_sizes_follow_the_official_rule():
  assert curriculum.cyclical_sizes(0.25, 1.0, 0.5, total=4) == [0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 1.0]
  assert curriculum.cyclical_sizes(0.5, 0.5, 0.5, total=2) == [0.5] * 4  # sp == ep: constant
  assert curriculum.cyclical_sizes(0.3, 0.9, 0.5, total=3) == [0.3, 0.6, 0.9, 0.45, 0.3, 0.6]
  for bad in ({"sp": 0.0}, {"sp": 0.8, "ep": 0.5}, {"ep": 1.5}, {"alpha": 1.0}, {"alpha": 0.0},
              {"direction": "up"}, {"total": 0}):
    with pytest.raises(ValueError):
      curriculum.cyclical_sizes(**{"sp": 0.25, "ep": 1.0, "alpha": 0.5, "total": 3, **bad})


def test_scores():
  losses = np.array([0.0, 1.0, 2.0])
  np.testing.assert_allclose(curriculum.score_samples(losses), np.exp(-losses))
  np.testing.assert_allclose(curriculum.score_samples(losses, lamda=2.0), 2 * np.exp(-2 * losses))
  np.testing.assert_allclose(curriculum.score_samples(losses, kind="hard"), [1.0, 1.0, 2.0])  # 0 -> smallest > 0
  np.testing.assert_allclose(curriculum.score_samples(losses, kind="random"), [1, 1, 1])
  assert curriculum.score_samples(losses, lamda=None)[0] > 1e10  # 1 / loss
  for bad in (np.array([]), np.array([[1.0]]), np.array([np.nan]), np.array([-1.0])):
    with pytest.raises(ValueError):
      curriculum.score_samples(bad)
  with pytest.raises(ValueError, match="kind"):
    curriculum.score_samples(losses, kind="medium")
  with pytest.raises(ValueError, match="lamda"):
    curriculum.score_samples(losses, lamda=-1.0)


def test_reference_losses_find_the_flipped_labels():
  sources, _ = data.load("digits_noisy_labels", noise=0.3, seed=0)
  tr = sources["train"].arrays
  losses = curriculum.reference_losses(tr["image"], tr["label"])
  assert losses.shape == tr["label"].shape and np.all(losses >= 0)
  assert np.median(losses[tr["noisy"] == 1]) > 3 * np.median(losses[tr["noisy"] == 0])
  assert 0.25 < tr["noisy"].mean() < 0.31 and np.all(sources["test"].arrays["noisy"] == 0)
  with pytest.raises(ValueError, match="labels"):
    curriculum.reference_losses(tr["image"], tr["label"].astype(np.float32))


def test_sampler_epochs_draw_without_replacement_by_score():
  n, bs = 200, 10
  scores = np.ones(n)
  scores[:20] = 50.0  # 20 "easy" examples
  s = curriculum.CyclicalCurriculum(scores, bs, seed=3, sp=0.25, ep=1.0, alpha=0.5)
  assert [s.fraction(e) for e in range(5)] == [0.25, 0.5, 1.0, 0.5, 0.25]
  assert [s.steps_in(e) for e in range(5)] == [5, 10, 20, 10, 5]
  first = np.concatenate([s(t) for t in range(5)])  # epoch 0: 50 distinct examples
  assert len(set(first.tolist())) == 50
  assert np.mean(first < 20) > 0.3  # easy ones over-represented (they are 10% of the set)
  full = np.concatenate([s(t) for t in range(15, 35)])  # epoch 2: the whole set
  assert sorted(full.tolist()) == list(range(n))
  assert s.epoch_of(4) == 0 and s.epoch_of(5) == 1 and s.epoch_of(35) == 3
  flat = curriculum.CyclicalCurriculum(scores, bs, seed=3, cyclical=False)
  assert all(flat.fraction(e) == 1.0 for e in range(4))


def test_sampler_is_a_pure_function_of_seed_and_step():
  scores = np.linspace(0.1, 1.0, 100)
  a = curriculum.CyclicalCurriculum(scores, 8, seed=1)
  b = curriculum.CyclicalCurriculum(scores, 8, seed=1)
  later = [b(t) for t in (57, 3, 200, 57)]  # any order: a resumed run sees the same batches
  np.testing.assert_array_equal(later[0], a(57))
  np.testing.assert_array_equal(later[1], a(3))
  np.testing.assert_array_equal(later[2], a(200))
  np.testing.assert_array_equal(later[3], later[0])
  assert not np.array_equal(curriculum.CyclicalCurriculum(scores, 8, seed=2)(3), a(3))


def test_sampler_errors():
  with pytest.raises(ValueError, match="scores"):
    curriculum.CyclicalCurriculum(np.array([1.0, 0.0, 1.0]), 1)
  with pytest.raises(ValueError, match="batch_size"):
    curriculum.CyclicalCurriculum(np.ones(10), 0)
  with pytest.raises(ValueError, match="smallest epoch"):
    curriculum.CyclicalCurriculum(np.ones(10), 4, sp=0.25)
  with pytest.raises(ValueError, match="step"):
    curriculum.CyclicalCurriculum(np.ones(10), 2)(-1)
  source = data.ArraySource({"x": np.zeros((10, 2))})
  with pytest.raises(ValueError, match="sampler returned"):
    data.Batches(source, 4, seed=0, sampler=lambda step: np.arange(3)).indices(0)
  with pytest.raises(ValueError, match="sampler returned"):
    data.Batches(source, 2, seed=0, sampler=lambda step: np.array([0, 10])).indices(0)
  with pytest.raises(ValueError, match="no field"):
    curriculum.make_sampler({"name": "cyclical", "speed": 2}, source=source, batch_size=2, seed=0)
  with pytest.raises(ValueError, match="sampler.name"):
    curriculum.make_sampler({"name": "spl"}, source=source, batch_size=2, seed=0)
  assert curriculum.make_sampler({"name": "", "sp": 0.5}, source=source, batch_size=2, seed=0) is None


def test_fit_trains_on_the_samplers_batches(single_device_mesh):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 4)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int64)
  sampler = curriculum.CyclicalCurriculum(np.ones(64), 8, seed=0)
  seen = []

  def recording(step):
    seen.append(step)
    return sampler(step)

  kw = dict(task=tasks.Classification(input_key="x"), optimizer=optax.sgd(0.1), steps=12, batch_size=8,
            mesh=single_device_mesh)
  a = train.fit(core.MLP(features=(8, 2)), {"x": x, "label": y}, sampler=recording, **kw)
  assert seen == [0] + list(range(12))  # step 0 once more for the shapes of init
  b = train.fit(core.MLP(features=(8, 2)), {"x": x, "label": y}, sampler=sampler, **kw)
  c = train.fit(core.MLP(features=(8, 2)), {"x": x, "label": y}, **kw)
  leaves = lambda r: jax.tree.leaves(r.variables)  # noqa: E731
  assert all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))
  assert not all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(c)))


def _config():
  c = ml_collections.ConfigDict()
  c.model = {"name": "core.MLP", "features": (16, 10)}
  c.data = {"name": "digits_noisy_labels", "batch_size": 32, "kwargs": {"noise": 0.3, "seed": 0},
            "sampler": {"name": "cyclical", "sp": 0.25, "alpha": 0.5}}
  c.steps, c.log_every, c.checkpoint_every, c.progress_bar = 16, 4, 8, False
  return c


def test_config_run_resumes_to_the_same_numbers(tmp_path):
  full = train.train_and_evaluate(_config(), str(tmp_path / "full"))
  half = _config()
  half.steps = 8
  train.train_and_evaluate(half, str(tmp_path / "resumed"))
  resumed = train.train_and_evaluate(_config(), str(tmp_path / "resumed"))
  assert resumed == full
