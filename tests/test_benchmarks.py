"""The device benchmark script runs end to end (dry run: tiny sizes, kernels in the Pallas interpreter).

Slow (about 2 minutes on 2 cores): ``pytest -m slow tests/test_benchmarks.py``. On a lent GPU/TPU the same script
runs without ``--dry-run`` (see benchmarks/device.sh); this test keeps it from rotting where none is lent.
"""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_script_dry_run(tmp_path):
  env = dict(os.environ, OUT=str(tmp_path))
  proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "device.sh"), "--dry-run"], env=env, capture_output=True,
                        text=True, timeout=900, check=False)
  results = (tmp_path / "device_results.md").read_text()
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "all kernels match their references" in results
  for step in ("kernel correctness", "attention", "kan", "multigrid", "maxsim", "segment attention"):
    assert f"({step}: exit 0," in results, step
