"""Test setup: 8 simulated CPU devices (set before jax is imported), and a shared cache for generated datasets."""

import os
import tempfile

# The CPU collectives of 8 simulated devices wait for all 8 device threads; on a loaded 2-core machine some arrive
# late, and XLA's default 40 s rendezvous timeout would abort the process. Generous timeouts keep tests
# deterministic under load (subprocesses inherit them).
os.environ["XLA_FLAGS"] = " ".join([
    os.environ.get("XLA_FLAGS", ""),
    "--xla_force_host_platform_device_count=8",
    "--xla_cpu_collective_timeout_seconds=1800",
    "--xla_cpu_collective_call_terminate_timeout_seconds=1800",
]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("ZOO_DATA_DIR", os.path.join(tempfile.gettempdir(), "zoo-test-datasets"))

import jax  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="session")
def single_device_mesh():
  """A one-device mesh, for tests that train small models where 8-way data parallelism only adds overhead."""
  from zoo.recipes import sharding  # pylint: disable=g-import-not-at-top
  return sharding.make_mesh(devices=jax.devices()[:1])


@pytest.fixture(scope="session")
def digits():
  """sklearn digits through the data layer: ``({'image': [n, 8, 8, 1], 'label': [n]}`` train, test)."""
  from zoo.recipes import data  # pylint: disable=g-import-not-at-top
  sources, _ = data.load("digits")
  return sources["train"].arrays, sources["test"].arrays


def seed_offset() -> int:
  """The effect tests' seed offset: ``ZOO_TEST_SEED`` (default 0), so anyone can rerun them on other seeds.

  Effect tests draw every seed as ``seed_offset() + k``; thresholds are calibrated to hold on offsets 0, 1 and 2.
  """
  value = os.environ.get("ZOO_TEST_SEED", "0")
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"ZOO_TEST_SEED must be an integer seed offset; got {value!r}.") from None


@pytest.fixture
def seed():
  """The seed offset from ``ZOO_TEST_SEED`` (default 0): ``seed + k`` is an effect test's k-th seed."""
  return seed_offset()
