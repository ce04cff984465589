"""Effect test: "Universal Approximation Theorem for a Single-Layer Transformer" (Gumaan, 2025, arXiv 2507.10581).

The theorem: one multi-head self-attention layer and one ReLU FFN (both residual) approximate any continuous
sequence-to-sequence map on a compact set uniformly, given enough width; the heads route (softmax at large scale beta
approaches hardmax) and the FFN is the universal MLP. Without positional encodings the layer is permutation-
equivariant and cannot approximate a target that is not.

Target (``recipes/datasets/uat_target.py``): X uniform on [-1, 1]^{4 x 2},
f(X)_i = sin(3 A x_i) + tanh(B sum_j x_j) * x_{i,0} + i/4. Every model: ``SingleLayerTransformer(heads=4,
embed_dim=32)``, Adam with warmup-cosine, the same steps and data for every width; the error is measured on 4096
held-out points (sup = the largest absolute error over every point, token and output).

Measured (fit on 65536 points, batch 256, lr 3e-3), sup / RMSE:

* 1500 steps (the default test; the baseline is the narrow FFN, the ablation the same layer with
  ``pos_enc='none'``), ZOO_TEST_SEED 0 / 1 / 2 (data and initialisation seeds):
  width 8: 1.17 / 0.196, 1.02 / 0.152, 0.526 / 0.082; width 128: 0.318 / 0.037, 0.302 / 0.048, 0.267 / 0.044;
  width 128 without PE: 0.558 / 0.280, 0.506 / 0.280, 0.534 / 0.280. Width 8 is erratic (offset 2 found a much
  better fit), so the asserted width effect is wide <= 0.7 x narrow in both sup and RMSE (measured ratios at most
  0.51 and 0.54, at offset 2), and the PE ablation: sup > 0.3 and RMSE > 4 x the wide model's.
* 6000 steps, seed 0: width 8: 1.13 / 0.066, 32: 0.18 / 0.035, 128: 0.097 / 0.012, 512: 0.105 / 0.009; without PE
  (width 512) 0.46 / 0.280.
* 16000 steps (batch 512, lr 2e-3): width 128: 0.075 / 0.0075, 512: 0.080 / 0.0045.

What holds: the RMSE falls monotonically with width at every budget; the sup error falls by an order of magnitude
from width 8 to 128; without positional encoding the sup error stays near the equivariance floor (~0.375: the
best equivariant map must split the i/4 offsets of rows it cannot tell apart). What did not reproduce at this budget:
PAPERS.md's sup < 0.05 at width 512 (best 0.080 after 16000 steps), and a strictly monotone *sup* from 128 to 512
(the sup over 4096 points is set by a few worst points, and training, not width, limits it there).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import transformer
from zoo.recipes import tasks
from zoo.recipes import train
from zoo.recipes.datasets import uat_target


def _errors(width, pos_enc, steps, mesh, seed=0, batch_size=256, lr=3e-3):
  gen = uat_target.uat_seq2seq(train_size=65536, test_size=4096, seed=seed)
  train_set, test_set = gen.splits["train"], gen.splits["test"]
  model = transformer.SingleLayerTransformer(heads=4, ffn_width=width, pos_enc=pos_enc, embed_dim=32)
  optimizer = optax.adam(optax.warmup_cosine_decay_schedule(0.0, lr, 100, steps))
  result = train.fit(model, train_set, task=tasks.Regression(), optimizer=optimizer, steps=steps,
                     batch_size=batch_size, mesh=mesh, seed=seed)
  err = np.abs(np.asarray(model.apply(result.variables, test_set["x"])) - test_set["y"])
  return float(err.max()), float(np.sqrt(np.mean(err ** 2)))


def test_error_falls_with_width_and_needs_positions(single_device_mesh, seed):
  narrow = _errors(8, "learned", 1500, single_device_mesh, seed)  # the baseline: a narrow FFN
  wide = _errors(128, "learned", 1500, single_device_mesh, seed)
  no_pe = _errors(128, "none", 1500, single_device_mesh, seed)  # the ablation: the same layer without PE
  print(f"sup/rmse  width 8: {narrow}  width 128: {wide}  width 128 no PE: {no_pe}")
  assert wide[0] < 0.7 * narrow[0] and wide[1] < 0.7 * narrow[1]
  assert no_pe[0] > 0.3  # permutation-equivariant: stuck near the ~0.375 floor
  assert no_pe[1] > 4 * wide[1]


@pytest.mark.slow
def test_error_falls_with_width_longer_training(single_device_mesh, seed):
  results = {w: _errors(w, "learned", 6000, single_device_mesh, seed) for w in (8, 32, 128, 512)}
  no_pe = _errors(512, "none", 6000, single_device_mesh, seed)
  print(results, no_pe)
  rmse = [results[w][1] for w in (8, 32, 128, 512)]
  assert all(b < 0.9 * a for a, b in zip(rmse, rmse[1:]))
  assert results[128][0] < 0.25 * results[8][0] and results[512][0] < 0.15
  assert no_pe[0] > 0.3


def test_large_beta_attention_is_hardmax():
  """At beta = 100 the layer's softmax weights are within 1e-3 (L1) of one-hot wherever the logits' top margin is at
  least 0.1 (PAPERS.md's check), and the layer's output equals hard routing there; at beta = 1 they are soft."""
  x = jax.random.uniform(jax.random.key(0), (64, 4, 2), minval=-1.0, maxval=1.0)

  def run(beta):
    model = transformer.SingleLayerTransformer(heads=4, ffn_width=16, attn_scale=beta, embed_dim=32)
    variables = model.init(jax.random.key(1), x)  # the same parameters for every beta
    out, state = model.apply(variables, x, sow_weights=True, mutable=["intermediates"])
    return out, state["intermediates"]["attention"]["attention_weights"][0], nn.unbox(variables["params"])

  out, weights, p = run(100.0)
  # The layer's logits q.k (unscaled), from its own parameters, to find the rows with a clear winner.
  z = x @ p["embed"]["kernel"] + p["embed"]["bias"] + p["position_embedding"][:4]
  att = p["attention"]
  q, k, v = (jnp.einsum("bne,ehd->bnhd", z, att[n]["kernel"]) + att[n]["bias"] for n in ("query", "key", "value"))
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
  top2 = jnp.sort(logits, axis=-1)[..., -2:]
  clear = (top2[..., 1] - top2[..., 0]) >= 0.1  # [b, h, q]
  assert int(clear.sum()) > 500  # of 1024 rows: enough to make the check meaningful
  onehot = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1])
  l1 = jnp.abs(weights - onehot).sum(-1)
  assert float(jnp.max(jnp.where(clear, l1, 0.0))) < 1e-3
  # Hard routing through the rest of the same layer equals the layer's output on tokens whose heads all route clearly.
  y = z + jnp.einsum("bhqk,bkhd,hde->bqe", onehot, v, att["out"]["kernel"]) + att["out"]["bias"]
  y = y + transformer.MLPBlock(16, activation="relu").apply({"params": p["ffn"]}, y)
  hard_out = y @ p["readout"]["kernel"] + p["readout"]["bias"]
  tokens = np.asarray(jnp.all(clear, axis=1))  # [b, q]
  assert tokens.sum() > 50
  np.testing.assert_allclose(np.asarray(out)[tokens], np.asarray(hard_out)[tokens], atol=1e-3)
  # beta = 1: the same rows are far from one-hot.
  _, weights_soft, _ = run(1.0)
  soft_l1 = jnp.abs(weights_soft - onehot).sum(-1)
  assert float(jnp.mean(jnp.where(clear, soft_l1, 0.0)) / jnp.mean(clear)) > 0.05
