"""Effect test: "Rethinking the shape convention of an MLP" (Chen, Lee, Liao and Shiu, 2025, arXiv 2510.01796).

Digits denoising (``digits_denoise``: sigma = 0.3 Gaussian noise on 8x8 digits in [0, 1], 1347 train / 450 test),
MSE, batch 64, Adam 2e-3 with a cosine decay, 400 steps, trained by ``zoo.recipes.sweep``; PSNR = 10 log10(1/MSE) on
the test split (the noisy input itself is at 10.5 dB).

A small architecture search at two trainable-parameter budgets (the frozen lift is not trainable and not counted,
as in the paper), two configs per family and budget (``(width, hidden, depth)``):

* ~13k: hourglass (128, 16, 1) 12,752 and (128, 8, 2) 13,136; conventional (32, 128, 1) 12,608 and (40, 80, 1)
  11,824.
* ~33k: hourglass (256, 16, 2) 34,400 and (256, 32, 1) 33,632; conventional (64, 192, 1) 33,280 and (48, 128, 2)
  31,376.

The mechanism is the wide residual stream: its ablation flag is ``HourglassMLP(residual=False)`` (the same widths
without the skips), trained at the ~33k budget (256, 16, 2). The lift comparison is ``trainable_lift=True`` at
(256, 32, 1).

Asserted: the best hourglass beats the best conventional net on both budgets; the hourglass beats its no-skip
ablation; the frozen lift is within 0.3 dB of (or better than) a trainable lift.

Measured test PSNR in dB (ZOO_TEST_SEED 0 / 1 / 2):

* ~13k: best hourglass 15.03 / 14.64 / 15.00, best conventional 14.15 / 14.29 / 14.17 (+0.89 / +0.36 / +0.83).
* ~33k: best hourglass 16.01 / 16.01 / 15.98, best conventional 15.41 / 15.34 / 15.30 (+0.61 / +0.67 / +0.68).
* no-skip ablation (256, 16, 2) 14.14 / 14.10 / 14.23 against the hourglass 15.94 / 15.72 / 15.90.
* trainable lift (256, 32, 1) 16.13 / 16.14 / 16.12 against the frozen lift 16.01 / 16.01 / 15.98 (-0.12 / -0.13 /
  -0.14 dB; the trainable lift adds 16,384 parameters).

Asserted: best hourglass >= best conventional + 0.1 dB on both budgets, hourglass >= no-skip ablation + 0.8 dB,
frozen lift >= trainable lift - 0.3 dB. About 50 s of CPU (10 models, 400 steps each).

Super-resolution (``digits_superres``, 4x4 -> 8x8), ``test_superres_hourglass_beats_conventional_and_no_skip``: at
~12.7k trainable parameters, 400 steps, the search's best hourglass (128, 16, 1) against the conventional (36, 132, 1)
(the search's best shape, depth 1, resized to the same count) and the hourglass without its wide skip. Measured (seeds
0 / 1 / 2): hourglass 16.06 / 15.88 / 15.87, conventional 15.47 / 15.26 / 15.62 (+0.58 / +0.61 / +0.25), no skip
15.37 / 15.14 / 14.96 (+0.69 / +0.74 / +0.91). Asserted: +0.1 dB and +0.4 dB. About 12 s of CPU (3 models).
Breaking the wide skip (``residual=False`` forced in ``HourglassMLP``'s block loop) fails it (hourglass 15.37 =
no skip, below the conventional 15.47).

The full search (PAPERS.md's ~6 configs per family at 3 budgets) is the configs' ``get_sweep()`` (``SEARCH`` in
``recipes/configs/hourglass_{denoise,superres}.py``, 36 configs x 3 seeds); its results are in their docstrings.
``test_search_budgets_match_in_trainable_parameters`` checks its counts. Not asserted, because it did not hold: on
super-resolution the hourglass's lead is gone at ~33k (a tie) and reversed at ~80k (conventional +0.22 dB mean), and
the best hourglass depth is 1 at every budget on denoising and 1 / 1 / 2 on super-resolution (not on all seeds), so
"the optimal hourglass gets deeper with budget" has no slow test.
"""

import importlib.util
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from zoo import mlp
from zoo import registry
from zoo.recipes import sweep
from zoo.recipes.configs import base_config

_CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "configs")
HG_VS_CV_SUPERRES = 0.1  # dB; measured +0.58 / +0.61 / +0.25 on ZOO_TEST_SEED 0 / 1 / 2
HG_VS_NO_SKIP_SUPERRES = 0.4  # dB; measured +0.69 / +0.74 / +0.91


def _config(model, *, data, steps, seed):
  c = base_config()
  c.model = ml_collections.ConfigDict({"out_features": 64, **model})
  c.data.name = data
  c.data.batch_size = 64
  c.task = ml_collections.ConfigDict({"name": "regression", "input_key": "x", "target_key": "y"})
  c.optimizer.learning_rate = 2e-3
  c.optimizer.schedule = "cosine"
  c.steps, c.seed = steps, seed
  return c


def _hg(w, h, d, **kw):
  return {"name": "mlp.HourglassMLP", "width": w, "hidden": h, "depth": d, **kw}


def _cv(w, h, d):
  return {"name": "mlp.ConventionalResMLP", "width": w, "hidden": h, "depth": d}


def _search(space, *, data, steps, seeds):
  configs, names = [], []
  for name, model in space.items():
    for s in seeds:
      configs.append(_config(model, data=data, steps=steps, seed=s))
      names.append(name)
  records = sweep.run_sweep(configs, names=names)
  psnr, params = {}, {}
  for name in space:
    mse = [r["metrics"]["loss"] for r in records if r["name"] == name]
    psnr[name] = sum(10 * math.log10(1 / m) for m in mse) / len(mse)
    params[name] = next(r["params"] for r in records if r["name"] == name)
  return psnr, params


def _best(psnr, prefix):
  return max(v for k, v in psnr.items() if k.startswith(prefix))


def test_hourglass_beats_conventional_and_ablations(seed):
  space = {
      "13k hg a": _hg(128, 16, 1), "13k hg b": _hg(128, 8, 2), "13k cv a": _cv(32, 128, 1),
      "13k cv b": _cv(40, 80, 1), "33k hg a": _hg(256, 16, 2), "33k hg b": _hg(256, 32, 1), "33k cv a": _cv(64, 192, 1),
      "33k cv b": _cv(48, 128, 2),
      "no skip": _hg(256, 16, 2, residual=False), "trainable lift": _hg(256, 32, 1, trainable_lift=True),
  }
  psnr, params = _search(space, data="digits_denoise", steps=400, seeds=[seed])
  print({k: round(v, 3) for k, v in psnr.items()}, params)
  for budget in ("13k", "33k"):
    assert _best(psnr, f"{budget} hg") >= _best(psnr, f"{budget} cv") + 0.1, (budget, psnr)
  assert psnr["33k hg a"] >= psnr["no skip"] + 0.8, psnr
  assert psnr["33k hg b"] >= psnr["trainable lift"] - 0.3, psnr


def _config_module(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(_CONFIGS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_search_budgets_match_in_trainable_parameters():
  """The configs' search: 6 configs per family at each budget, trainable counts within 10% per budget."""
  denoise, superres = _config_module("hourglass_denoise"), _config_module("hourglass_superres")
  assert denoise.SEARCH == superres.SEARCH
  x = jnp.zeros((1, 64))
  counts = {}
  for budget, families in denoise.SEARCH.items():
    for family, space in families.items():
      assert len(space) == 6, (budget, family)
      for w, h, d in space:
        model = registry.build_model(denoise.FAMILIES[family], out_features=64, width=w, hidden=h, depth=d)
        counts[(budget, family, (w, h, d))] = mlp.param_count(jax.eval_shape(model.init, jax.random.key(0), x))
  for budget in denoise.SEARCH:
    values = [v for k, v in counts.items() if k[0] == budget]
    assert max(values) <= 1.1 * min(values), (budget, values)
  assert counts[("13k", "hourglass", (128, 16, 1))] == 12752  # 2 * 128 * 16 + 3 * 128 + 16 + 128 * 64 + 64
  assert len(denoise.get_sweep()["overrides"]) == len(superres.get_sweep()["overrides"]) == 36 * 3


def test_superres_hourglass_beats_conventional_and_no_skip(seed):
  """Super-resolution (4x4 -> 8x8 digits) at ~12.7k trainable parameters, 400 steps, one seed.

  The hourglass is the search's best at 13k (depth 1 won on every seed); the conventional net is the search's best
  shape (depth 1, hidden ~4 x width) resized to the same count: on 16 input pixels its trained input projection is
  48 x width smaller than on denoising's 64, so the search's (32, 128, 1) has 11,072 here, and (36, 132, 1) 12,724
  against the hourglass's 12,752.
  """
  space = {"hg": _hg(128, 16, 1), "cv": _cv(36, 132, 1), "no skip": _hg(128, 16, 1, residual=False)}
  psnr, params = _search(space, data="digits_superres", steps=400, seeds=[seed])
  print({k: round(v, 3) for k, v in psnr.items()}, params)
  assert psnr["hg"] >= psnr["cv"] + HG_VS_CV_SUPERRES, psnr
  assert psnr["hg"] >= psnr["no skip"] + HG_VS_NO_SKIP_SUPERRES, psnr
