"""Parallel Learning by Multitasking Neural Networks (Agliari, Alessandrelli, Barra, Ricci-Tersenghi, 2023, arXiv
2308.04106).

``zoo.hebbian``: ``K = 3`` diluted patterns (blank w.p. ``d``), ``M = 60`` noisy examples each (quality
``r = 0.8``), Hebbian couplings from the examples without (unsupervised) or with (supervised) a teacher, zero-
temperature asynchronous dynamics from a state near pattern 1 (its signs, random signs on its blanks), 10 sweeps,
``N = 4000`` (the issue's setting). The paper's claims tested here: a diluted network learning from examples
retrieves several patterns at once; at ``d = 0.3`` in the hierarchical state ``|m_k| = (1 - d) d^{k-1}``
(pattern ranks sorted; which of patterns 2 and 3 comes second depends on the random start, and ``-xi`` is as good
as ``xi``); at strong dilution ``d = 0.8 > 0.618`` the signals become comparable (parallel regime); supervised and
unsupervised couplings give the same state. The ablation ``diluted_patterns(dilute=False)`` keeps the same signs and
fills the blanks (a classical dense Hopfield network learning from the same kind of examples, also the paper's
baseline): it retrieves pattern 1 alone.

Measured (sorted |m|, unsupervised; supervised equal to 0.002 on every run; ``ZOO_TEST_SEED`` = 0 / 1 / 2):

===========================  ===================  ===================  ===================
run                          offset 0             offset 1             offset 2
===========================  ===================  ===================  ===================
d = 0.3  (theory .70 .21 .063)  .702 .225 .066       .708 .213 .062       .698 .225 .062
d = 0.8  (hier. .20 .16 .128)   .196 .169 .131       .183 .179 .127       .193 .175 .121
dense ablation (d = 0.3 signs)  1.000 .020 .011      1.000 .018 .004      1.000 .029 .001
===========================  ===================  ===================  ===================

Not reproduced: the issue's "d = 0.8: max - min of m < 0.05". At N = 4000, K = 3, zero temperature the spread is
0.06-0.07: only the 0.8% of neurons where all three patterns are non-blank feel the instability of the hierarchy,
so the d = 0.8 state stays near the ordered values (0.2, 0.16, 0.128), which are already comparable. Glauber
dynamics at beta = 20 narrows the spread to 0.03-0.04 but then m_3 at d = 0.3 falls to 0.02-0.04 (thermal noise on
its weak field). Asserted instead: d = 0.3 within 0.03 of the theory; at d = 0.8 min/max >= 0.5 (measured
0.63-0.69) while at d = 0.3 it is <= 0.15 (0.09); supervised == unsupervised within 0.02; the dense ablation has
m_1 >= 0.98 and the others < 0.06 (measured <= 0.03). Mutation check: the blanking line of ``diluted_patterns``
(in ``_patterns``) with the blank probability ``0.0 * dilution`` makes every pattern dense and the d = 0.3 theory
check fails (|m| = 1.0, 0.02, 0.01).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo import hebbian

N, K, M, R, SWEEPS = 4000, 3, 60, 0.8, 10


@functools.partial(jax.jit, static_argnames="dilute")
def _run(key, d, *, dilute=True):
  kp, ke, ks, kd = jax.random.split(key, 4)
  xi = hebbian.diluted_patterns(kp, K, N, d, dilute=dilute)
  eta = hebbian.noisy_examples(ke, xi, M, R)
  sigma0 = hebbian.near_pattern_state(ks, xi[0])
  return jnp.stack([hebbian.mattis(xi, hebbian.zero_t_dynamics(hebbian.hebbian_couplings(eta, mode), sigma0, kd,
                                                                 sweeps=SWEEPS)) for mode in hebbian.MODES])


@pytest.fixture(scope="module")
def runs():
  from tests.conftest import seed_offset  # pylint: disable=g-import-not-at-top
  key = jax.random.key(seed_offset())
  return {"d0.3": np.asarray(_run(key, 0.3)), "d0.8": np.asarray(_run(key, 0.8)),
          "dense": np.asarray(_run(key, 0.3, dilute=False))}


def _sorted(m):
  return np.sort(np.abs(m))[::-1]


def test_hierarchical_and_parallel_regimes(runs):
  print({k: np.round(_sorted(v[0]), 3).tolist() for k, v in runs.items()})
  for mode in range(2):
    low, high = _sorted(runs["d0.3"][mode]), _sorted(runs["d0.8"][mode])
    np.testing.assert_allclose(low, hebbian.hierarchical_magnetisations(0.3, K), atol=0.03)
    assert low[-1] / low[0] <= 0.15, low
    assert high[-1] / high[0] >= 0.5 and high[-1] >= 0.1, high


def test_supervised_equals_unsupervised(runs):
  for name, (unsup, sup) in runs.items():
    np.testing.assert_allclose(sup, unsup, atol=0.02, err_msg=name)


def test_dense_ablation_retrieves_one_pattern(runs):
  for mode in range(2):
    dense = _sorted(runs["dense"][mode])
    assert dense[0] >= 0.98 and dense[1] < 0.06, dense
