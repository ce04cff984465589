"""The CLI in real processes: a run killed with SIGKILL resumes to the same numbers, and two jax.distributed
processes train to the same result as one process over the same number of devices."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from tests.recipes.test_train import final_params, mlp_config
from zoo.recipes import train

CONFIG = textwrap.dedent("""
    import ml_collections
    from zoo.recipes.configs import base_config

    def get_config():
      c = base_config()
      c.model = ml_collections.ConfigDict({"name": "core.MLP", "features": (256, 256, 10)})
      c.data.name = "digits"
      c.data.batch_size = 64
      c.steps = 1200
      c.log_every = 100
      c.checkpoint_every = 100
      c.progress_bar = False
      return c
    """)


def _cli(config_path, workdir, *extra):
  return [sys.executable, "-m", "zoo.recipes.train", f"--config={config_path}", f"--workdir={workdir}", *extra]


def _env(devices: int | None = None):
  """The test environment with ``devices`` simulated CPU devices per process (default: jax's one)."""
  env = dict(os.environ)
  flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
  if devices:
    flags.append(f"--xla_force_host_platform_device_count={devices}")
  env["XLA_FLAGS"] = " ".join(flags)
  env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _checkpoints(workdir):
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
  config_path = tmp_path / "config.py"
  config_path.write_text(CONFIG)
  killed, straight = str(tmp_path / "killed"), str(tmp_path / "straight")

  # One device per process: this test is about killing and resuming; sharding has its own tests.
  proc = subprocess.Popen(_cli(config_path, killed), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())
  deadline = time.time() + 900
  while not _checkpoints(killed) or _checkpoints(killed)[-1] < 300:
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  interrupted_at = _checkpoints(killed)[-1]
  assert interrupted_at < 1200, "the run finished before it could be killed; make it longer"

  resumed = subprocess.run(_cli(config_path, killed), capture_output=True, text=True, timeout=900, env=_env())
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from {os.path.join(killed, 'checkpoints')}/" in resumed.stdout
  done = subprocess.run(_cli(config_path, straight), capture_output=True, text=True, timeout=900, env=_env())
  assert done.returncode == 0, done.stderr[-3000:]
  assert "test after 1200 steps: accuracy=" in done.stdout

  step_a, params_a = final_params(killed)
  step_b, params_b = final_params(straight)
  assert step_a == step_b == 1200
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)


def test_cli_override_and_unknown_key(tmp_path):
  config_path = tmp_path / "config.py"
  config_path.write_text(CONFIG)
  ok = subprocess.run(_cli(config_path, tmp_path / "a", "--config.steps=5", "--config.checkpoint_every=5"),
                      capture_output=True, text=True, timeout=300, env=_env())
  assert ok.returncode == 0, ok.stderr[-3000:]
  assert _checkpoints(str(tmp_path / "a")) == [5]
  bad = subprocess.run(_cli(config_path, tmp_path / "b", "--config.stepz=5"), capture_output=True, text=True,
                       timeout=300, env=_env())
  assert bad.returncode != 0 and "stepz" in bad.stderr


WORKER = textwrap.dedent("""
    import sys
    import jax
    jax.config.update("jax_num_cpu_devices", 4)
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    from tests.recipes.test_train import mlp_config
    from zoo.recipes import train
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    config = mlp_config(**{"steps": 30, "checkpoint_every": 30, "mesh.data": 4, "mesh.fsdp": 2})
    print("RESULT", train.train_and_evaluate(config, sys.argv[3]), flush=True)
    """)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
  assert jax.device_count() == 8
  config = mlp_config(**{"steps": 30, "checkpoint_every": 30, "mesh.data": 4, "mesh.fsdp": 2})
  single = train.train_and_evaluate(config, str(tmp_path / "single"))

  env = _env()
  address = f"127.0.0.1:{_free_port()}"
  workdir = str(tmp_path / "multi")
  procs = [subprocess.Popen([sys.executable, "-c", WORKER, address, str(i), workdir], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  results = [eval(line.split("RESULT", 1)[1]) for out, _ in outs for line in out.splitlines() if "RESULT" in line]
  assert len(results) == 2 and results[0] == results[1]
  assert results[0]["accuracy"] == pytest.approx(single["accuracy"], abs=1e-6)
  _, multi_params = final_params(workdir)
  _, single_params = final_params(str(tmp_path / "single"))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), multi_params, single_params)
