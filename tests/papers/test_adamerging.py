"""AdaMerging: Adaptive Model Merging for Multi-Task Learning (Yang et al., ICLR 2024, arXiv 2310.02575).

``zoo.recipes.procedures.merging``. Setting (PAPERS.md): sklearn digits; a backbone MLP 64-64 (ReLU features) is
weakly pretrained on all ten classes (50 Adam steps of 64, lr 1e-3, a 10-way head), then three copies are
fine-tuned (200 steps each) on the tasks {0-3}, {4-6}, {7-9} (``split_digits``, 3 tasks) with separate heads.
The backbones are merged from their task vectors; each task is evaluated through its own frozen head on the merged
backbone. AdaMerging: coefficients init 0.3, Adam 1e-3, 500 steps, batch 16 unlabelled test inputs per task,
entropy loss, clipped to [0, 1]. 3 seeds vmapped.

* Baseline: task arithmetic, lambda = 0.3 (the init of AdaMerging's coefficients: 0 AdaMerging steps).
* Ablation: ``granularity='task'`` (one coefficient per task instead of one per task and tensor).
* Reported: TIES-Merging (density 0.2, scale 1), each fine-tuned model on its own task.

Measured (mean test accuracy over the 3 tasks, per seed; ``ZOO_TEST_SEED`` = 0 / 1 / 2):

===============================  =====================  =====================  =====================
run                              offset 0               offset 1               offset 2
===============================  =====================  =====================  =====================
AdaMerging layer-wise            0.757 / 0.957 / 0.956  0.917 / 0.914 / 0.946  0.950 / 0.927 / 0.955
AdaMerging task-wise (ablation)  0.762 / 0.945 / 0.956  0.913 / 0.910 / 0.946  0.944 / 0.927 / 0.953
task arithmetic (baseline)       0.757 / 0.940 / 0.805  0.882 / 0.914 / 0.870  0.847 / 0.941 / 0.939
TIES-Merging                     0.836 / 0.961 / 0.926  0.927 / 0.950 / 0.874  0.840 / 0.864 / 0.939
fine-tuned, own task             0.996 / 0.996 / 0.996  0.996 / 0.989 / 0.989  0.991 / 0.996 / 0.993
Spearman(entropy, CE)            0.735 / 0.994 / 0.996  0.988 / 0.980 / 0.989  0.984 / 0.993 / 0.998
===============================  =====================  =====================  =====================

Layer-wise AdaMerging minus task arithmetic, mean over the 3 seeds: +0.056 / +0.037 / +0.035 (offsets 0 / 1 / 2).
The mean entropy falls from 0.53-0.76 (first 50 steps) to 0.21-0.28 nats (last 50). Asserted: layer-wise
AdaMerging's accuracy averaged over the 3 seeds >= task arithmetic's + 0.02, and on every seed >= task arithmetic's
- 0.03 (worst measured -0.014); the entropy of the last 50 steps < 0.6x that of the first 50; per-sample
Spearman(entropy, CE) > 0.5 on every seed. **Not reproduced**: "layer-wise beats task-wise": here they are within
~0.01 (not asserted); PAPERS.md's +3 points over task arithmetic holds on the mean of every offset (+3.5 to +5.6)
but not on every seed (one seed ties, one loses 1.4), so the asserted bar is +2 on the mean. Mutation check:
``lam = jnp.clip(optax.apply_updates(lam, 0.0 * updates), 0.0, 1.0)`` in ``merging.adamerging`` (coefficients
stay at 0.3 = task arithmetic) fails the +0.02 assertion. Cost: ~45-60 s (3 seeds vmapped, one compile).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats

from zoo import core
from zoo.recipes.datasets import split_digits as sd
from zoo.recipes.procedures import merging

PRE, FT, LR, ADA_STEPS, BATCH = 50, 200, 1e-3, 500, 64
GEN = sd.split_digits(num_tasks=3)
TRAIN, TEST = GEN.splits["train"], GEN.splits["test"]
BACKBONE = core.MLP((64, 64))
HEADS = [nn.Dense(len(g)) for g in GEN.metadata["groups"]]
HEAD10 = nn.Dense(10)


def _features(params, x):
  return jax.nn.relu(BACKBONE.apply({"params": params}, x))


def _ce(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def _train(params, loss, data, steps, key):
  """Adam on random batches of ``data`` (in memory), as a scan."""
  tx, n = optax.adam(LR), data["image"].shape[0]

  def body(carry, k):
    p, opt_state = carry
    idx = jax.random.randint(k, (BATCH,), 0, n)
    grads = jax.grad(loss)(p, {name: v[idx] for name, v in data.items()})
    updates, opt_state = tx.update(grads, opt_state, p)
    return (optax.apply_updates(p, updates), opt_state), None
  return jax.lax.scan(body, (params, tx.init(params)), jax.random.split(key, steps))[0][0]


def run(seed):
  """Pretrain, fine-tune 3 copies, merge; per-task accuracies, AdaMerging's entropy curves, per-sample entropy/CE."""
  ks = jax.random.split(jax.random.key(seed, impl="rbg"), 10)  # rbg: a fraction of threefry's compile time on CPU
  p0 = {"b": BACKBONE.init(ks[0], jnp.ones((1, 8, 8, 1)))["params"],
        "h": HEAD10.init(ks[1], jnp.ones((1, 64)))["params"]}
  every = {"image": jnp.asarray(TRAIN["image"]), "label": jnp.asarray(TRAIN["digit"])}
  p0 = _train(p0, lambda p, b: _ce(HEAD10.apply({"params": p["h"]}, _features(p["b"], b["image"])), b["label"]).mean(),
              every, PRE, ks[2])
  theta0, finetuned, head_params = p0["b"], [], []
  for t in range(3):
    rows = np.flatnonzero(TRAIN["task"] == t)
    data = {"image": jnp.asarray(TRAIN["image"][rows]), "label": jnp.asarray(TRAIN["label"][rows])}
    p = {"b": theta0, "h": HEADS[t].init(ks[3 + t], jnp.ones((1, 64)))["params"]}
    p = _train(p, lambda p, b, t=t: _ce(HEADS[t].apply({"params": p["h"]}, _features(p["b"], b["image"])),
                                        b["label"]).mean(), data, FT, ks[6 + t])
    finetuned.append(p["b"])
    head_params.append(p["h"])
  taus = merging.task_vectors(theta0, finetuned)

  def apply_fn(params, k, x):
    return HEADS[k].apply({"params": head_params[k]}, _features(params, x))
  tests = [(jnp.asarray(TEST["image"][TEST["task"] == t]), jnp.asarray(TEST["label"][TEST["task"] == t]))
           for t in range(3)]

  def accuracy(params):
    return jnp.stack([jnp.mean(jnp.argmax(apply_fn(params, k, x), -1) == y) for k, (x, y) in enumerate(tests)])
  out = {"ft_own": jnp.stack([accuracy(f)[k] for k, f in enumerate(finetuned)]),
         "ta": accuracy(merging.task_arithmetic(theta0, taus, 0.3)),
         "ties": accuracy(merging.ties_merge(theta0, taus, 0.2, 1.0))}
  history = {}
  for name, granularity in (("ada_task", "task"), ("ada_layer", "layer")):
    lambdas, history[name] = merging.adamerging(apply_fn, theta0, taus, [x for x, _ in tests],
                                                granularity=granularity, steps=ADA_STEPS, rng=ks[9])
    merged = merging.merge(theta0, taus, lambdas)
    out[name] = accuracy(merged)
  ent = jnp.concatenate([merging.entropy(apply_fn(merged, k, x)) for k, (x, _) in enumerate(tests)])
  ce = jnp.concatenate([_ce(apply_fn(merged, k, x), y) for k, (x, y) in enumerate(tests)])
  return out, history, ent, ce


def test_adamerging_beats_task_arithmetic_by_minimising_entropy(seed):
  out, hist, ent, cel = jax.jit(jax.vmap(run))(jnp.arange(3) + seed)
  acc = {k: np.asarray(v).mean(-1) for k, v in out.items()}
  first = {k: np.asarray(h[:, :50].mean(-1)) for k, h in hist.items()}
  last = {k: np.asarray(h[:, -50:].mean(-1)) for k, h in hist.items()}
  rho = np.array([scipy.stats.spearmanr(np.asarray(e), np.asarray(c))[0] for e, c in zip(ent, cel)])
  print({k: np.round(v, 3).tolist() for k, v in acc.items()}, "entropy", {k: (np.round(first[k], 3).tolist(),
        np.round(last[k], 3).tolist()) for k in hist}, "spearman", np.round(rho, 3).tolist())
  assert acc["ada_layer"].mean() >= acc["ta"].mean() + 0.02, acc
  assert np.all(acc["ada_layer"] >= acc["ta"] - 0.03), acc
  assert np.all(last["ada_layer"] < 0.6 * first["ada_layer"]), (first, last)
  assert np.all(rho > 0.5), rho
