"""The trainer: fit, config runs, sharding, resume, bad configs."""

import json
import os

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from zoo import core
from zoo.recipes import checkpointing
from zoo.recipes import sharding
from zoo.recipes import tasks
from zoo.recipes import train
from zoo.recipes.configs import base_config


def mlp_config(**overrides) -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "core.MLP", "features": (32, 10)})
  c.data.name = "digits"
  c.data.batch_size = 64
  c.steps = 40
  c.log_every = 10
  c.checkpoint_every = 20
  c.progress_bar = False
  for key, value in overrides.items():
    block = c
    *path, last = key.split(".")
    for p in path:
      block = block[p]
    block[last] = value
  return c


def final_params(workdir):
  """The params of the latest checkpoint in ``workdir`` as numpy, whatever mesh or process count wrote them."""
  directory = os.path.join(workdir, "checkpoints")
  step = max(int(d) for d in os.listdir(directory) if d.isdigit())
  path = os.path.join(directory, str(step), "state")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.StandardCheckpointer() as ckpt:
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          ckpt.metadata(path).item_metadata)
    state = ckpt.restore(path, target)
  return step, jax.tree.map(np.asarray, state["params"])


def test_fit_learns_digits_and_is_deterministic(digits, single_device_mesh):
  train_data, test_data = digits
  model = core.MLP(features=(64, 10))
  runs = [train.fit(model, train_data, steps=150, batch_size=64, eval_data=test_data, mesh=single_device_mesh,
                    optimizer=optax.adam(3e-3), seed=1) for _ in range(2)]
  assert runs[0].metrics["accuracy"] > 0.9
  # Same config + same seed = same numbers.
  jax.tree.map(np.testing.assert_array_equal, runs[0].variables, runs[1].variables)
  assert runs[0].history == [] or runs[0].history[-1]["step"] == 150


def test_sharded_fsdp_run_matches_single_device(digits, single_device_mesh):
  train_data, test_data = digits
  model = core.MLP(features=(64, 10))
  single = train.fit(model, train_data, steps=30, batch_size=64, mesh=single_device_mesh)
  mesh = sharding.make_mesh({"data": 4, "fsdp": 2})
  sharded = train.fit(model, train_data, steps=30, batch_size=64, mesh=mesh, eval_data=test_data)
  kernel = sharded.state.params["dense_0"]["kernel"]
  # FSDP: the first layer's input axis ('embed') is split over the fsdp axis; the optimizer state follows it.
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  assert len(kernel.addressable_shards) == 8 and kernel.addressable_shards[0].data.shape == (32, 64)
  mu = sharded.state.opt_state[0].mu["dense_0"]["kernel"]
  assert mu.sharding.spec == kernel.sharding.spec
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), single.variables,
               sharded.variables)
  assert set(sharded.metrics) == {"accuracy", "loss"}


def test_host_batches_feed_the_step_as_global_arrays_do():
  # One process: the loop hands the jitted step host arrays (the cheap path, issue 13); the step must compute what it
  # computes from global sharded arrays, on the 8-device mesh, with 64-bit host arrays narrowed as put() narrows them.
  rng = np.random.default_rng(0)
  batch = {"x": rng.normal(size=(16, 12)), "label": rng.integers(0, 5, 16)}  # float64, int64
  model = core.MLP(features=(8, 5))
  proc = train.builders.resolve_procedure("backprop")(model=model, task=tasks.Classification(input_key="x"),
                                                         optimizer=optax.adam(1e-2))
  trainer = train.Trainer(proc, sharding.make_mesh(), batch)
  fed = trainer.feed(batch, 16)
  assert {k: v.dtype for k, v in fed.items()} == {"x": np.float32, "label": np.int32}
  state_a, metrics_a = trainer.step(trainer.init(0, trainer.put(batch, 16)), fed)
  state_b, metrics_b = trainer.step(trainer.init(0, trainer.put(batch, 16)), trainer.put(batch, 16))
  assert state_a.params["dense_0"]["kernel"].sharding == state_b.params["dense_0"]["kernel"].sharding
  jax.tree.map(np.testing.assert_array_equal, (state_a.params, metrics_a), (state_b.params, metrics_b))
  with pytest.raises(ValueError, match="'x' has shape \\(15, 12\\); expected \\[16"):
    trainer.feed({"x": batch["x"][:15], "label": batch["label"][:15]}, 16)


def test_undivisible_dimensions_are_replicated():
  mesh = sharding.make_mesh({"data": 1, "fsdp": 8})
  model = core.MLP(features=(16, 10))
  wide = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((2, 64), "float32"))
  narrow = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((2, 12), "float32"))
  spec = lambda abstract: sharding.state_shardings(abstract, mesh)["params"]["dense_0"]["kernel"].spec
  assert spec(wide) == jax.sharding.PartitionSpec("fsdp", "tensor")
  assert spec(narrow) == jax.sharding.PartitionSpec(None, "tensor")  # 12 input features do not split 8 ways


def test_make_mesh_errors():
  with pytest.raises(ValueError, match="needs 6 devices"):
    sharding.make_mesh({"data": 3, "fsdp": 2})
  with pytest.raises(ValueError, match="unknown axis"):
    sharding.make_mesh({"model": 2})


def test_train_and_evaluate_writes_metrics_and_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  first = train.train_and_evaluate(mlp_config(steps=20), workdir)
  assert 0.0 <= first["accuracy"] <= 1.0
  # A longer rerun in the same workdir continues from step 20 (only run-length keys may change).
  results = train.train_and_evaluate(mlp_config(steps=40), workdir)
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train_steps = [r["step"] for r in records if "train/loss" in r]
  assert train_steps == [10, 20, 30, 40]
  assert any("eval/accuracy" in r for r in records)
  assert sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()) == [20, 40]
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["metrics"]["accuracy"] == pytest.approx(results["accuracy"])
  # Resumed == uninterrupted.
  straight = str(tmp_path / "straight")
  train.train_and_evaluate(mlp_config(steps=40), straight)
  jax.tree.map(np.testing.assert_array_equal, final_params(workdir)[1], final_params(straight)[1])


def test_resume_with_a_different_model_is_an_error(tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(mlp_config(steps=10, checkpoint_every=10), workdir)
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  with pytest.raises(checkpointing.IncompatibleCheckpointError, match=r"model\.features"):
    train.train_and_evaluate(mlp_config(**{"steps": 20, "model.features": (16, 10)}), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_corrupt_checkpoint_is_reported_not_overwritten(tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(mlp_config(steps=10, checkpoint_every=10), workdir)
  state_dir = os.path.join(workdir, "checkpoints", "10", "state")
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  with pytest.raises(checkpointing.IncompatibleCheckpointError, match="left untouched"):
    train.train_and_evaluate(mlp_config(steps=20), workdir)
  assert os.path.isdir(state_dir) and not os.path.exists(os.path.join(workdir, "checkpoints", "20"))


@pytest.mark.parametrize("overrides, match", [
    ({"learning_rat": 1.0}, "Unknown config key 'learning_rat'"),
    ({"data.batchsize": 8}, "Unknown config key 'data.batchsize'. Valid keys of data: batch_size"),
    ({"model.name": "core.MLPP"}, "Unknown model 'core.MLPP'. Valid models: .*core.MLP"),
    ({"model.width": 3}, "model 'core.MLP' has no field.* width. Valid fields: features"),
    ({"data.name": "mnist2"}, "Unknown dataset 'mnist2'. Valid datasets: .*digits"),
    ({"task.name": "classify"}, "Unknown task 'classify'. Valid tasks: classification"),
    ({"procedure.name": "noprop2"}, "Unknown procedure 'noprop2'. Valid procedures: .*backprop, .*noprop.NoPropDT"),
    ({"procedure.name": "noprop.NoPropXX"}, "Unknown procedure 'noprop.NoPropXX'. Valid procedures: .*boosting"),
    ({"optimizer.name": "adamm"}, "not an optax optimizer"),
    ({"data.eval_split": "validation"}, r"has no split\(s\) \['validation'\]"),
    ({"data.batch_size": 60}, "divisible by the data-parallel size"),
])
def test_bad_configs_fail_clearly(tmp_path, overrides, match):
  config = mlp_config(**overrides)
  with pytest.raises(ValueError, match=match):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_sown_losses_are_added(digits, single_device_mesh):
  train_data, _ = digits
  model = core.SparseAutoencoder(latent=8)
  result = train.fit(model, {"image": train_data["image"]}, task=tasks.Reconstruction(), steps=3, batch_size=32,
                     mesh=single_device_mesh)
  record = result.history[-1]
  assert record["train/aux_loss"] > 0
  assert record["train/total_loss"] == pytest.approx(record["train/loss"] + record["train/aux_loss"], rel=1e-5)
