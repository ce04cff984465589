"""Kolmogorov-Arnold Attention (Maity et al., 2025, arXiv 2503.10632): Fourier-KArAt against softmax attention and
against its own operator frozen.

The claim: a ViT whose row softmax is replaced by a learnable Fourier KAN operator (low rank) is comparable to the
softmax ViT (sometimes better), at a memory cost that grows with the basis size G.

(a) load_digits, 2x2 patches (16 tokens + a class token), a 1-layer ViT (width 32, 2 heads), 400 steps, AdamW
    warmup-cosine 2e-3, batch 64, seed ``ZOO_TEST_SEED``; everything equal but the attention:

    * Fourier-KArAt, G = 3, rank 8 (the paper's method);
    * the ablation ``KArAtViT(learn_operator=False)``: the same operator with its Fourier coefficients and
      projection frozen at their random init (gradient stopped), so only the rest of the model learns;
    * the softmax ViT (the paper's baseline).

(b) Compiled memory of KArAt's forward+backward grows linearly in G (the [rows, N, 2G] basis tensor of the XLA
    path), and the low-rank operator needs less memory than the full one at N = 64 (the cost claim, asserted on
    its own).

Measured here (CPU; ``ZOO_TEST_SEED`` = 0 / 1 / 2):

=================================  =============  =============  =============
attention                          0              1              2
=================================  =============  =============  =============
Fourier-KArAt (accuracy / loss)    0.942 / 0.203  0.938 / 0.190  0.931 / 0.228
ablation: operator frozen at init  0.907 / 0.321  0.898 / 0.337  0.922 / 0.286
softmax (accuracy / loss)          0.882 / 0.370  0.876          0.869
=================================  =============  =============  =============

Asserted: the learned operator beats the frozen one (test cross-entropy <= 0.9x the ablation's, measured
0.63 / 0.56 / 0.80; accuracy is ahead on every seed too, +0.035 / +0.040 / +0.009, too close on seed 2 for a margin),
and KArAt >= softmax + 0.03 (measured +0.060 / +0.062 / +0.062: KArAt is ahead at this small scale; the paper sees
small gains on CIFAR-10 and none at ImageNet scale). Mutation check: with Φ's gradient always stopped in
``zoo.karat._karat_params`` the full model is the ablation and the loss assertion fails (0.3209 <= 0.9 x 0.3209, seed 0).
The effect test trains three ViTs: ~40 s CPU (over the ~30 s per-paper budget; shorter runs not calibrated).
Repeated runs of the same seed differ in the third digit of the loss (0.193 and 0.203 for seed 0, CPU
thread-order nondeterminism); the accuracies repeat.

(b) batch 8, 2 heads, N = 64, rank 8: 2.6 / 4.6 / 8.9 / 17.1 MiB for G = 2 / 4 / 8 / 16 (linear); at G = 3
full 4.1 MiB vs low-rank 3.6 MiB.

Not reproduced: "low-rank memory <= 1/4 of full at N = 64". On the XLA path both variants materialise the same
[batch * heads * N, N, 2G] basis tensor, which dominates; the rank only shrinks the coefficients and the operator's
output. The fused kernel (GPU/TPU) never writes that tensor, which is where the low-rank saving would show; that is
unmeasured here (no accelerator).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import karat
from zoo.recipes import train

STEPS = 400
TINY = dict(hidden=32, num_layers=1, num_heads=2, mlp_dim=64, grid_size=3, rank=8, impl="xla")


def _fit(digits, seed, steps, mesh, **model_kwargs):
  train_data, test_data = digits
  model = karat.KArAtViT(**{**TINY, **model_kwargs})
  opt = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 2e-3, 50, steps))
  result = train.fit(model, train_data, task="classification", optimizer=opt, steps=steps, batch_size=64,
                     eval_data=test_data, mesh=mesh, seed=seed)
  return result.metrics["accuracy"], result.metrics["loss"]


def test_learned_karat_operator_beats_its_frozen_ablation_and_softmax(digits, single_device_mesh, seed):
  karat = _fit(digits, seed, STEPS, single_device_mesh, attention="karat")
  frozen = _fit(digits, seed, STEPS, single_device_mesh, attention="karat", learn_operator=False)
  softmax = _fit(digits, seed, STEPS, single_device_mesh, attention="softmax")
  print(f"digits accuracy / loss: Fourier-KArAt {karat[0]:.4f} / {karat[1]:.4f}, frozen operator {frozen[0]:.4f} / "
        f"{frozen[1]:.4f} (loss ratio {karat[1] / frozen[1]:.3f}), softmax {softmax[0]:.4f} / {softmax[1]:.4f}")
  assert karat[1] <= 0.9 * frozen[1], "the learned operator should fit better than the frozen random one"
  assert karat[0] >= frozen[0]
  assert karat[0] >= softmax[0] + 0.03
  assert softmax[0] > 0.8


@pytest.mark.slow
def test_fourier_karat_vs_frozen_and_softmax_three_seeds_longer(digits, single_device_mesh, seed):
  runs = {name: [_fit(digits, seed + j, 1000, single_device_mesh, **kw) for j in range(3)]
          for name, kw in (("karat", {"attention": "karat"}), ("frozen", {"learn_operator": False}),
                           ("softmax", {"attention": "softmax"}))}
  acc = {k: float(np.mean([a for a, _ in v])) for k, v in runs.items()}
  loss = {k: float(np.mean([l for _, l in v])) for k, v in runs.items()}
  print(runs, acc, loss)
  assert acc["karat"] >= acc["softmax"] - 0.03       # the paper's "comparable"
  assert loss["karat"] <= loss["frozen"]


def _memory_mib(n, g, rank, batch=8, heads=2, head_dim=16):
  q = jax.ShapeDtypeStruct((batch, n, heads, head_dim), jnp.float32)
  coef = jax.ShapeDtypeStruct((heads, 2 * g, n, rank or n), jnp.float32)
  proj = jax.ShapeDtypeStruct((heads, rank, n), jnp.float32) if rank else None

  def loss(q, k, v, coef, proj):
    return karat.karat_attention(q, k, v, coef=coef, proj=proj, grid_size=g, impl="xla").sum()

  compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(q, q, q, coef, proj).compile()
  m = compiled.memory_analysis()
  return (m.temp_size_in_bytes + m.output_size_in_bytes) / 2**20


def test_karat_memory_is_linear_in_the_basis_size_and_low_rank_is_smaller():
  gs = np.array([2, 4, 8, 16])
  mem = np.array([_memory_mib(64, int(g), 8) for g in gs])
  slope, intercept = np.polyfit(gs, mem, 1)
  print(f"memory MiB for G={gs.tolist()}: {np.round(mem, 2).tolist()} (slope {slope:.3f} MiB per G)")
  assert slope > 0
  assert np.max(np.abs(mem - (slope * gs + intercept)) / mem) < 0.1   # linear, not quadratic
  assert 3.0 < mem[-1] / mem[0] < 8.0                                    # 8x the basis, ~linear growth
  full, low = _memory_mib(64, 3, None), _memory_mib(64, 3, 8)
  print(f"N=64, G=3: full {full:.2f} MiB, rank 8 {low:.2f} MiB")
  assert low < full
