"""Fault injection on the trainer (issue 11): bit flips and garbage in checkpoints, a non-finite loss, two runs in
one work directory, bad labels and arguments, a truncated metrics line, resumes that would go wrong."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from tests.recipes.test_train import final_params, mlp_config
from zoo import core
from zoo.recipes import checkpointing
from zoo.recipes import data
from zoo.recipes import tasks
from zoo.recipes import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _state_leaves(workdir, step):
  """Every leaf of the saved state of ``step`` as numpy (read with plain Orbax, no verification)."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.StandardCheckpointer() as ckpt:
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          ckpt.metadata(path).item_metadata)
    state = ckpt.restore(path, target)
  key = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
  return [np.asarray(key(x)) for x in jax.tree.leaves(state)]


def _flip_silently(workdir, step, scratch):
  """Flips 64 bytes of a data file of ``step`` at a spot where plain Orbax still restores, with changed values
  (the issue's silent corruption); returns the file and the leaves before. Everything is read from copies:
  tensorstore caches reads by path, and the run under test must read the damaged files afresh."""
  step_dir = os.path.join(workdir, "checkpoints", str(step))
  original_copy = os.path.join(str(scratch), "original")
  shutil.copytree(step_dir, os.path.join(original_copy, "checkpoints", str(step)))
  before = _state_leaves(original_copy, step)
  files = [os.path.relpath(os.path.join(d, f), step_dir) for d, _, fs in os.walk(os.path.join(step_dir, "state"))
           for f in fs if os.path.basename(d) == "d"]
  probe = 0
  for rel in sorted(files, key=lambda f: -os.path.getsize(os.path.join(step_dir, f)))[:2]:
    original = open(os.path.join(step_dir, rel), "rb").read()
    for frac in (0.75, 0.25, 0.6, 0.4):
      blob = bytearray(original)
      at = int(len(blob) * frac)
      blob[at:at + 64] = bytes(b ^ 0xFF for b in blob[at:at + 64])
      probe += 1
      copy = os.path.join(str(scratch), f"probe{probe}")
      shutil.copytree(step_dir, os.path.join(copy, "checkpoints", str(step)))
      with open(os.path.join(copy, "checkpoints", str(step), rel), "wb") as f:
        f.write(blob)
      try:
        after = _state_leaves(copy, step)
      except Exception:  # pylint: disable=broad-except  # this spot breaks decoding; try another
        continue
      if any(not np.array_equal(a, b) for a, b in zip(before, after)):
        with open(os.path.join(step_dir, rel), "wb") as f:
          f.write(blob)
        return os.path.join(step_dir, rel), before
  raise AssertionError("found no spot whose flip restores silently")


FIRST_RUN = textwrap.dedent("""
    import sys
    from tests.recipes.test_train import mlp_config
    from zoo.recipes import train
    train.train_and_evaluate(mlp_config(steps=20, checkpoint_every=10), sys.argv[1])
    """)


def test_silent_bit_flip_is_detected_and_the_run_resumes_from_the_intact_step(tmp_path, capfd):
  workdir = str(tmp_path / "run")
  # Written by one device (a fresh process, as the probe): there, a flip in a data file restores silently.
  env = {**os.environ, "XLA_FLAGS": " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                                             if "device_count" not in f)}
  subprocess.run([sys.executable, "-c", FIRST_RUN, workdir], check=True, cwd=ROOT, env=env, capture_output=True)
  damaged_file, before = _flip_silently(workdir, 20, tmp_path / "scratch")
  damaged_bytes = open(damaged_file, "rb").read()
  capfd.readouterr()
  train.train_and_evaluate(mlp_config(steps=20, checkpoint_every=10), workdir)
  err = capfd.readouterr().err
  assert "checkpoint step 20 is damaged" in err and "differ from the checksums" in err
  assert "resuming from step 10" in err
  # The damaged checkpoint is kept, byte for byte, beside the work; the redone step 20 equals the original one
  # (up to the summation order of 8 devices instead of 1).
  moved = os.path.join(workdir, "damaged_checkpoints", "20")
  kept = os.path.join(moved, os.path.relpath(damaged_file, os.path.join(workdir, "checkpoints", "20")))
  assert open(kept, "rb").read() == damaged_bytes
  for a, b in zip(_state_leaves(workdir, 20), before):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_no_intact_checkpoint_is_an_error_that_moves_nothing_and_stays_short(tmp_path, capfd):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(mlp_config(steps=10, checkpoint_every=10), workdir)
  manifest = os.path.join(workdir, "checkpoints", "10", "state", "manifest.ocdbt")
  with open(manifest, "wb") as f:
    f.write(b"garbage!")
  capfd.readouterr()
  with pytest.raises(checkpointing.DamagedCheckpointError, match=r"(?s)No checkpoint .* is intact.*step 10.*"
                     r"left untouched"):
    train.train_and_evaluate(mlp_config(steps=20, checkpoint_every=10), workdir)
  time.sleep(0.5)  # tensorstore's late callbacks
  err = capfd.readouterr().err
  assert "Event loop is closed" not in err
  assert open(manifest, "rb").read() == b"garbage!"
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10"]
  assert not os.path.exists(os.path.join(workdir, "damaged_checkpoints"))


def test_fingerprints_see_one_bit_and_ignore_the_mesh():
  x = np.arange(64, dtype=np.float32).reshape(8, 8)
  state = {"a": x, "b": np.int32(3), "k": jax.random.key(0)}
  base = checkpointing.fingerprints(state)
  y = x.copy()
  y.view(np.uint32)[3, 5] ^= 1  # one bit of one value
  assert checkpointing.fingerprints({**state, "a": y})["['a']"] != base["['a']"]
  assert checkpointing.fingerprints({**state, "a": x.T.copy()})["['a']"] != base["['a']"]  # position matters
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "fsdp"))
  sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", "fsdp")))
  assert checkpointing.fingerprints({**state, "a": sharded}) == base


def test_host_fingerprints_equal_the_per_shard_ones_multi_process_runs_compute():
  # One process checksums on the host; a multi-process run checksums each shard where it is. A checkpoint written
  # by one must verify in the other, so both must give the same numbers for every dtype a state holds.
  rng = np.random.default_rng(0)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "fsdp"))
  state = {"f32": rng.normal(size=(8, 6)).astype(np.float32), "bf16": jnp.asarray(rng.normal(size=(5, 3)), jnp.bfloat16),
           "i8": rng.integers(-128, 127, size=(7,)).astype(np.int8), "u32": np.uint32([0, 1, 2**32 - 1]),
           "bool": np.array([True, False, True]), "key": jax.random.key(3), "scalar": np.int32(-5),
           "sharded": jax.device_put(rng.normal(size=(8, 4)).astype(np.float32),
                                     jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", "fsdp")))}
  assert checkpointing.fingerprints(state) == checkpointing._device_fingerprints(state)  # pylint: disable=protected-access


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_checkpoints_below_one_is_rejected_by_its_name(tmp_path, keep):
  with pytest.raises(ValueError, match=r"config\.keep_checkpoints must be an integer >= 1"):
    train.train_and_evaluate(mlp_config(keep_checkpoints=keep), str(tmp_path / "run"))


# ------------------------------------------------------------------------------------------------ non-finite


if "test_nan_digits" not in data._REGISTRY:  # pylint: disable=protected-access
  @data.register("test_nan_digits")
  def _nan_digits() -> data.Generated:
    """digits with one training image all NaN."""
    from zoo.recipes.datasets import sklearn_sets  # pylint: disable=g-import-not-at-top
    generated = sklearn_sets.digits()
    generated.splits["train"]["image"][0] = np.nan
    return generated


def _seed_and_nan_step():
  """A shuffling seed whose batches first hold the NaN image at a step in [3, 8], and that step (1-based)."""
  sources, _ = data.load("test_nan_digits")
  row = int(np.flatnonzero(np.isnan(sources["train"].arrays["image"]).any(axis=(1, 2, 3)))[0])
  for seed in range(50):
    batches = data.Batches(sources["train"], 64, seed=seed)
    step = next(s for s in range(batches.per_epoch) if row in batches.indices(s)) + 1
    if 3 <= step <= 8:
      return seed, step
  raise AssertionError("no seed puts the NaN image in steps 3..8")


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / "run")
  seed, bad_step = _seed_and_nan_step()
  config = mlp_config(**{"steps": 10, "checkpoint_every": 1, "log_every": 5, "seed": seed,
                         "data.name": "test_nan_digits"})
  with pytest.raises(train.NonFiniteLossError, match=rf"(?s)non-finite .*loss=nan at step {bad_step}\b.*"
                     rf"step {bad_step - 1} .* is kept.*stop_on_nonfinite=False"):
    train.train_and_evaluate(config, workdir)
  steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
  assert steps[-1] == bad_step - 1
  assert all(np.all(np.isfinite(leaf)) for leaf in _state_leaves(workdir, steps[-1]) if leaf.dtype.kind == "f")
  assert not os.path.exists(os.path.join(workdir, "run.lock"))  # released on the error too
  # Opting out trains on, as before.
  config.stop_on_nonfinite = False
  config.checkpoint_every = 5
  train.train_and_evaluate(config, workdir)
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert np.isnan([r["train/loss"] for r in records if r["step"] == 10 and "train/loss" in r][0])


def test_fit_stops_on_a_nan_loss(digits, single_device_mesh):
  train_data, _ = digits
  bad = {k: v.copy() for k, v in train_data.items()}
  bad["image"][:] = np.nan
  with pytest.raises(train.NonFiniteLossError, match="at step 1"):
    train.fit(core.MLP(features=(16, 10)), bad, steps=3, batch_size=32, mesh=single_device_mesh)


# ------------------------------------------------------------------------------------------------------ lock


HOLDER = textwrap.dedent("""
    import sys, time
    from zoo.recipes import checkpointing
    checkpointing.WorkdirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
    """)


def test_a_second_run_in_a_locked_workdir_fails_at_once_naming_the_holder(tmp_path):
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, workdir], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(checkpointing.WorkdirLockedError, match=rf"in use by another run: pid {holder.pid} on host"):
      train.train_and_evaluate(mlp_config(steps=10), workdir)
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))  # it failed before touching anything
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # kill -9 leaves the file naming a dead pid: the next run takes it over, and removes it when done.
  assert json.load(open(os.path.join(workdir, "run.lock")))["pid"] == holder.pid
  with checkpointing.WorkdirLock(workdir):
    assert json.load(open(os.path.join(workdir, "run.lock")))["pid"] == os.getpid()
  assert not os.path.exists(os.path.join(workdir, "run.lock"))


def test_lock_files_that_flock_cannot_see(tmp_path):
  workdir = str(tmp_path)
  lock_file = os.path.join(workdir, "run.lock")
  # A live process on this host with the recorded start time (a file system without flock): refused.
  parent = os.getppid()
  with open(lock_file, "w") as f:
    json.dump({"pid": parent, "host": os.uname().nodename, "start_time": checkpointing._start_time(parent)}, f)
  with mock.patch("socket.gethostname", return_value=os.uname().nodename):
    with pytest.raises(checkpointing.WorkdirLockedError, match=f"locked by pid {parent}"):
      checkpointing.WorkdirLock(workdir).acquire()
  # Another host: cannot be checked, refused with the way out.
  with open(lock_file, "w") as f:
    json.dump({"pid": 1, "host": "elsewhere"}, f)
  with pytest.raises(checkpointing.WorkdirLockedError, match="host 'elsewhere'.*delete the lock file"):
    checkpointing.WorkdirLock(workdir).acquire()


# ---------------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("change, match", [
    (lambda y: y[:, None], r"'label' must have shape \(32,\).*got \(32, 1\).*labels\[\.\.\., 0\]"),
    (lambda y: y.astype(np.float32), "'label'.* must hold integer class indices; got dtype float32"),
    (lambda y: np.where(y == 0, 7, y % 3), "'label' .*holds label 7, but the model scores 3 classes"),
    (lambda y: np.where(y == 0, -1, y % 3), "'label' .*holds negative labels"),
])
def test_bad_labels_fail_before_training(digits, single_device_mesh, change, match):
  train_data, _ = digits
  bad = {"image": train_data["image"][:256], "label": change(train_data["label"][:256])}
  with pytest.raises(tasks.LabelError, match=match):
    train.fit(core.MLP(features=(16, 3)), bad, steps=2, batch_size=32, mesh=single_device_mesh)


def test_labels_beyond_the_model_in_a_config_run_name_the_split(tmp_path):
  with pytest.raises(tasks.LabelError, match=r"'label' \(split 'train' of digits\) holds label 9, but the model "
                     "scores 5 classes"):
    train.train_and_evaluate(mlp_config(**{"model.features": (16, 5)}), str(tmp_path / "run"))


# ------------------------------------------------------------------------------------------------- arguments


def test_bad_batch_sizes_and_data_containers(tmp_path, digits, single_device_mesh):
  train_data, _ = digits
  for key in ("data.batch_size", "data.eval_batch_size"):
    with pytest.raises(ValueError, match=rf"config\.{key} must be an integer >= 1; got 0"):
      train.train_and_evaluate(mlp_config(**{key: 0}), str(tmp_path / "run"))
  model = core.MLP(features=(16, 10))
  with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
    train.fit(model, train_data, batch_size=0, steps=1, mesh=single_device_mesh)
  with pytest.raises(TypeError, match=r"train_data must be a mapping \{key: array"):
    train.fit(model, (train_data["image"], train_data["label"]), steps=1, mesh=single_device_mesh)
  with pytest.raises(ValueError, match=r"train_data\['image'\] is not a rectangular array"):
    train.fit(model, {"image": [[1.0, 2.0], [3.0]], "label": [0, 1]}, steps=1, mesh=single_device_mesh)
  # Lists of numbers are fine: they are converted like arrays.
  lists = {"image": train_data["image"][:64].tolist(), "label": train_data["label"][:64].tolist()}
  result = train.fit(model, lists, steps=1, batch_size=32, mesh=single_device_mesh, eval_data=lists)
  assert set(result.metrics) == {"accuracy", "loss"}


# ------------------------------------------------------------------------------------------------------- data


def test_damaged_cached_array_record_names_the_file_and_the_fix(tmp_path):
  data.load("iris", data_dir=str(tmp_path))
  version_dir = os.path.join(str(tmp_path), "iris", "default")
  version_dir = os.path.join(version_dir, os.listdir(version_dir)[0])
  record = [f for f in os.listdir(version_dir) if f.startswith("iris-train.array_record")][0]
  with open(os.path.join(version_dir, record), "r+b") as f:
    f.truncate(40)
  with pytest.raises(ValueError, match=rf"(?s)split 'train'.*damaged or truncated.*{record}.*Delete {version_dir}"):
    data.load("iris", data_dir=str(tmp_path))


def test_a_read_only_cache_with_a_prepared_set_is_read_without_a_lock(tmp_path):
  data.load("iris", data_dir=str(tmp_path))
  for f in os.listdir(tmp_path):
    if f.endswith(".lock"):
      os.remove(os.path.join(tmp_path, f))

  def read_only(path):
    raise OSError(30, "Read-only file system", path)

  with mock.patch.object(data, "_file_lock", read_only):
    sources, _ = data.load("iris", data_dir=str(tmp_path))
    assert len(sources["train"]) > 0
    with pytest.raises(ValueError, match="cannot be prepared there .*Read-only.*writable directory"):
      data.load("iris", data_dir=str(tmp_path), seed=5)
  assert not [f for f in os.listdir(tmp_path) if f.endswith(".lock")]


# ----------------------------------------------------------------------------------------------------- resume


def test_resume_around_metrics_and_steps(tmp_path, capfd):
  workdir = str(tmp_path / "run")
  metrics = os.path.join(workdir, "metrics.jsonl")
  cosine = {"optimizer.schedule": "cosine", "checkpoint_every": 10}
  train.train_and_evaluate(mlp_config(steps=20, **cosine), workdir)
  final_lines = lambda step: [r for r in map(json.loads, open(metrics)) if r["step"] == step and "eval/loss" in r]
  # A rerun of the finished run writes no second final line.
  train.train_and_evaluate(mlp_config(steps=20, **cosine), workdir)
  assert len(final_lines(20)) == 1
  # steps below the checkpoint's step: refused.
  with pytest.raises(ValueError, match=r"config\.steps=10 is below the step of the checkpoint .*step 20"):
    train.train_and_evaluate(mlp_config(steps=10, **cosine), workdir)
  # A longer cosine run would change the schedule of the resumed steps: refused unless allowed.
  with pytest.raises(ValueError, match=r"changed from 20 .* to 30.*'cosine'.*allow_schedule_change=True"):
    train.train_and_evaluate(mlp_config(steps=30, **cosine), workdir)
  # A kill mid-write leaves a truncated last line: dropped (and said so); the resumed run appends clean lines.
  with open(metrics, "a") as f:
    f.write('{"step": 21, "train/lo')
  capfd.readouterr()
  train.train_and_evaluate(mlp_config(steps=30, allow_schedule_change=True, **cosine), workdir)
  assert "dropped its truncated last line" in capfd.readouterr().out
  records = [json.loads(line) for line in open(metrics)]
  assert [r["step"] for r in records if "train/loss" in r] == [10, 20, 30]
  assert len(final_lines(30)) == 1
  # Any other broken line is an error naming the file and line, and the file is left as it is.
  with open(metrics, "a") as f:
    f.write("not json\n" + json.dumps({"step": 30}) + "\n")
  before = open(metrics).read()
  with pytest.raises(ValueError, match=r"metrics\.jsonl, line 6, is not a JSON record"):
    train.train_and_evaluate(mlp_config(steps=30, allow_schedule_change=True, **cosine), workdir)
  assert open(metrics).read() == before


def test_the_new_trainer_keys_are_base_config_keys():
  """``--config.stop_on_nonfinite`` / ``--config.allow_schedule_change`` are ordinary overridable config keys."""
  from zoo.recipes.configs import base_config  # pylint: disable=g-import-not-at-top
  config = base_config()
  assert config.stop_on_nonfinite is True and config.allow_schedule_change is False