"""The command line (zoo.recipes.cli), TensorBoard events, the plot module, and what the loop's metrics count."""

import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from zoo import core
from zoo.recipes import cli
from zoo.recipes import data
from zoo.recipes import plot
from zoo.recipes import train
from zoo.recipes.configs import base_config

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "configs")


def test_help_exits_0_and_lists_every_config(capsys):
  with pytest.raises(SystemExit) as e:
    cli.prepare_argv(["zoo.recipes.train", "--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  shipped = sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and not f.startswith("_"))
  assert len(shipped) > 40
  for name in shipped:
    assert f"  {name} " in out, name
  # Each config's line is the first line of its docstring.
  assert "Train a modern Hopfield" in out or cli.config_summaries()["hopfield_digits"][:30] in out
  assert "--workdir" in out and "steps" in out and "zoo.list_models()" in out


def test_config_by_name_from_any_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  path = cli.resolve_config("vit_digits")
  assert os.path.isabs(path) and path.endswith(os.path.join("configs", "vit_digits.py")) and os.path.exists(path)
  assert cli.resolve_config("recipes/configs/vit_digits.py") == path  # the README's path form, elsewhere too
  own = tmp_path / "mine.py"
  own.write_text("def get_config(arg):\n  return arg\n")
  assert cli.resolve_config("mine.py:small") == str(own) + ":small"
  with pytest.raises(ValueError, match="takes no argument"):
    cli.resolve_config("vit_digits:small")
  with pytest.raises(ValueError, match="neither a file nor a shipped config.*hopfield_digits"):
    cli.resolve_config("no_such_config")
  with pytest.raises(ValueError, match="neither a file"):
    cli.resolve_config(str(tmp_path / "missing" / "vit_digits.py"))  # a wrong path is not replaced by a name
  argv = cli.prepare_argv(["train", "--config", "vit_digits", "--workdir=/tmp/x"])
  assert argv[2] == path
  assert cli.prepare_argv(["train", "--config=vit_digits"])[1] == f"--config={path}"


def test_print_config_lists_unset_fields_and_rejects_unknown_ones(capsys):
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "core.MLP", "features": (8, 2)})
  c.data.name = "digits"
  cli.print_config(c)
  out = capsys.readouterr().out
  assert "dropout_rate = 0.0" in out and "flatten = True" in out  # core.MLP's fields the config does not set
  assert "label_smoothing = 0.0" in out  # the classification task's
  c.model.dropuot_rate = 0.1
  with pytest.raises(ValueError, match="no field.*dropuot_rate.*Valid fields: features, activation, dropout_rate"):
    cli.print_config(c)


def _env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                              if not f.startswith("--xla_force_host_platform_device_count"))
  return env


def test_cli_sets_fields_the_config_does_not(tmp_path):
  """``--config.model.FIELD`` for a field the file leaves unset (issue 12), by name from another directory."""
  run = subprocess.run(
      [sys.executable, "-m", "zoo.recipes.train", "--config", "hopfield_digits", "--print_config",
       "--config.model.dropout_rate=0.25", "--config.model.dtype=bfloat16", "--config.task.label_smoothing=0.1"],
      capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "dropout_rate: 0.25" in run.stdout and "dtype: bfloat16" in run.stdout
  assert "label_smoothing: 0.1" in run.stdout
  # (A misspelled field is an error listing the valid ones: test_print_config_... and, for a run, builders.)


def _mlp_config(**kw):
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": "core.MLP", "features": (16, 10)})
  c.data.name = "digits"
  c.data.batch_size = 64
  c.steps, c.log_every, c.eval_every, c.checkpoint_every, c.progress_bar = 20, 10, 10, 20, False
  for k, v in kw.items():
    c[k] = v
  return c


def _read_events(directory):
  """``{tag: [(step, value)]}`` from TensorBoard event files (TFRecord framing: length, crc, Event proto, crc)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  scalars = {}
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), "rb") as f:
      raw = f.read()
    at = 0
    while at < len(raw):
      length = int.from_bytes(raw[at:at + 8], "little")
      event = event_pb2.Event.FromString(raw[at + 12:at + 12 + length])
      at += 12 + length + 4
      for v in event.summary.value:
        scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
  return scalars


def test_eval_lines_tensorboard_events_and_plot(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  results = train.train_and_evaluate(_mlp_config(), workdir)
  out = capsys.readouterr().out
  assert "eval at step 10: accuracy=" in out  # intermediate evaluations reach the terminal
  assert "test after 20 steps: accuracy=" in out
  events = os.listdir(os.path.join(workdir, "tensorboard"))
  assert any(e.startswith("events.out.tfevents") for e in events)
  scalars = _read_events(os.path.join(workdir, "tensorboard"))
  assert {"train/loss", "eval/accuracy", "train/steps_per_sec"} <= set(scalars)
  assert [step for step, _ in scalars["eval/accuracy"]] == [10, 20]
  assert scalars["eval/accuracy"][-1][1] == pytest.approx(results["accuracy"], abs=1e-6)

  other = str(tmp_path / "other")  # a second run's log, overlaid
  os.makedirs(other)
  with open(os.path.join(other, "metrics.jsonl"), "w") as f:
    f.write('{"step": 10, "train/loss": 2.0}\n{"step": 20, "train/loss": 1.5, "eval/accuracy": 0.4}\n{"step": 3')
  png = str(tmp_path / "curves.png")
  fig = plot.plot_runs([workdir, other], png)
  assert os.path.getsize(png) > 10_000
  titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
  assert {"train/loss", "eval/accuracy", "eval/loss"} <= set(titles)
  loss_axis = fig.axes[titles.index("train/loss")]
  assert [line.get_label() for line in loss_axis.get_lines()] == ["run", "other"]  # the runs overlaid
  np.testing.assert_allclose(loss_axis.get_lines()[0].get_xdata(), [10, 20])
  with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
    plot.plot_runs([str(tmp_path)], None)


def test_train_and_eval_loss_are_the_same_quantity():
  """A task that changes ``loss`` reports it as ``loss`` in evaluation too (mgno_darcy's relative L2)."""
  from zoo.recipes.datasets import pde  # pylint: disable=g-import-not-at-top
  task = pde.RelativeL2()
  rng = np.random.default_rng(0)
  batch = {"x": rng.normal(size=(4, 3)), "y": rng.normal(size=(4, 3))}
  pred = batch["y"] + 0.1 * rng.normal(size=(4, 3))
  metrics = task.metrics(pred, batch)
  np.testing.assert_allclose(metrics["loss"], task.loss(pred, batch))
  expected = np.linalg.norm(pred - batch["y"], axis=1) / np.linalg.norm(batch["y"], axis=1)
  np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["mse"], np.mean((pred - batch["y"]) ** 2, axis=1), rtol=1e-5)


def test_throughput_excludes_evaluation_and_checkpoints(monkeypatch):
  """``train/steps_per_sec`` counts training only: an evaluation that takes 1000 s of clock does not lower it."""
  clock = {"now": 0.0}

  def tick():
    clock["now"] += 0.001  # every clock read: 1 ms
    return clock["now"]

  monkeypatch.setattr(train, "_clock", tick)

  def slow_evaluate(_):
    clock["now"] += 1000.0
    return {"accuracy": 0.5}

  rng = np.random.default_rng(0)
  arrays = {"image": rng.normal(size=(128, 8, 8)).astype(np.float32), "label": rng.integers(0, 10, 128)}
  model = core.MLP(features=(8, 10))
  result = train.fit(model, arrays, steps=2, batch_size=64, procedure="backprop")  # a trainer to reuse
  history = []
  train.run_loop(result.trainer, result.state, batches=data.Batches(data.ArraySource(arrays), 64, seed=0),
                 batch_size=64, start=0, steps=20, log_every=10, eval_every=5, evaluate=slow_evaluate,
                 history=history)
  rates = [r["train/steps_per_sec"] for r in history if "train/steps_per_sec" in r]
  assert len(rates) == 2
  # 10 steps between logs with only ~ms of clock each; had the 1000 s evaluations counted it would be < 0.01.
  assert min(rates) > 50, rates
