"""Upstream bugs zoo has met, pinned so that a jax/XLA upgrade that fixes (or changes) them is noticed.

Each test asserts the CORRECT result and is ``xfail(strict=True)``: while the bug is there it fails as expected;
when an upgrade fixes it, the test passes, strict xfail reports that, and the workaround named in the reason can go.
"""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from zoo.recipes import sharding


@pytest.mark.xfail(strict=True, reason=(
    "jax 0.10.2 / XLA on 8 simulated CPU devices (GSPMD and Shardy alike): with the batch over ('data', 'fsdp') and "
    "weights over both 'tensor' and 'fsdp', (x @ v.T @ w.T) @ a returns its rows 4-7 and 8-11 swapped. Met by "
    "zoo.hierarchical_poly with V ('mlp', 'embed') and W ('embed', 'mlp'); it uses ('mlp', None) for both instead."))
def test_two_contractions_over_fsdp_with_batch_over_data_and_fsdp():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  k = jax.random.split(jax.random.key(0), 4)
  x, v, w, a = (jax.random.normal(k[0], (16, 4)), jax.random.normal(k[1], (8, 4)), jax.random.normal(k[2], (16, 8)),
                jax.random.normal(k[3], (16,)))
  f = lambda x, v, w, a: (x @ v.T @ w.T) @ a
  specs = (P(("data", "fsdp")), P("tensor", "fsdp"), P("fsdp", "tensor"), P("tensor"))
  with jax.set_mesh(mesh):
    out = jax.jit(f)(*[jax.device_put(t, NamedSharding(mesh, s)) for t, s in zip((x, v, w, a), specs)])
  np.testing.assert_allclose(np.asarray(out), np.asarray(f(x, v, w, a)), rtol=1e-4, atol=1e-4)
