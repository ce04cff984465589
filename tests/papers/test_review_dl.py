"""Effect tests for "A Review of Deep Learning with Special Emphasis on Architectures, Applications and Recent
Trends" (Sengupta et al., 2019, arXiv:1905.13294): the claims the review makes about the classic blocks, on small
real (sklearn digits) or planted data, each against a baseline. All training goes through ``zoo.recipes.train.fit``.

Measured on this machine (2 CPU cores; see the issue note for the seeds tried):

(a) Copy-first-token after T distractors (8 symbols, chance 0.125), Adam 1e-2, batch 64. The mechanism the review
    credits is the LSTM's gated memory cell, c_t = f * c_{t-1} + i * g. Its ablation (``LSTM(memory_cell=False)``:
    c_t = i * g, the self-connection cut, gates kept) and the review's baseline (the Elman RNN) are trained in the
    same test. Default test: T=20, width 64, 800 steps, training seeds ZOO_TEST_SEED + 0 (+1 for the LSTM only if the
    first seed stays below 0.95): offsets 0/1/2 give LSTM 1.0/1.0/1.0 (first seed each time), GRU 1.0/1.0/1.0,
    LSTM(memory_cell=False) 0.125/0.125/0.116, Elman 0.116/0.111/0.113. Learning curves (a hand loop, other batch
    orders): at width 64, T=20 every one of 6 seeds reached 1.0 by step 300-500. The earlier setting (width 32, T=25,
    1000 steps) sat on the edge of that escape: 3 of 6 seeds were below 0.9 at step 1000 (one stalled at 0.75), which
    is why another CPU measured 0.876 where this one had 0.999-1.0; width 32 at T=20 still left 2 of 8 seeds at
    0.79-0.87 after 1000 steps. The gates alone are not what carries the token: the LSTM with every gate fixed open
    (``gated=False``: c_t = c_{t-1} + tanh(...), an additive cell without control) reached 1.0 within 100 steps on 6
    of 6 seeds (T=25, width 32) and 1.0 at T=20, width 64 (seed 0); what the task needs is the additive cell path
    that the ablation cuts. The slow test runs the PAPERS.md length T=40 (width 64, 3000 steps, seeds 0-2): GRU
    learns it with every seed (within ~300 steps), Elman never, but the LSTM with the prescribed forget-gate bias of
    1 is seed-dependent there: its loss sits at ln 8 for 1000+ steps, then drops to 0 or stalls at ln 4. On the
    test's 10k training sequences seeds 0-2 give 1.0, 1.0, 0.374 (GRU 1.0 x3, Elman 0.11-0.15); on 20k sequences it
    learned with 1/3 seeds, and 1/3 with gradient clipping at 1, 2/3 with batch 128, 1/3 with Adam 3e-3 for 4000
    steps, 2/3 with forget bias 2 (failed runs end at 0.10-0.37). PAPERS.md's "LSTM >= 90% within 2k steps at T=40"
    holds only for some seeds here; the slow test asserts GRU with every seed, LSTM with at least one, Elman with
    none (seeds ZOO_TEST_SEED + 0..2; measured at offset 0).
(b) Autoencoder anomaly detection, trained on normal data only:
    (i) digits: trained on classes 0-4, held-out classes 5-9 of the test split are the anomalies. ROC-AUC of
        ||x - x_hat||^2: AE (64-8-64) 0.971-0.984 over 4 seeds; PCA with 8 components 0.928; distance to the
        mean normal image 0.536. The same AE with linear hidden units (the ablation of the nonlinearity) is
        nearly as good here, 0.967 / 0.966 (seeds 0 / 1, against 0.971 / 0.978), still above PCA thanks to its
        sigmoid output, so on digits the hidden nonlinearity is not what beats PCA; it is not asserted here.
    (ii) sensors (recipes/datasets/sensors.py, 8 channels on a curved 2-d surface, faults at test time): 2-d AE
        0.865-0.880 over 4 seeds, 2-component PCA residual 0.717; on bias faults the AE reaches 0.98-0.99. PAPERS.md
        expected >= 0.95 overall: that does not hold here, because early samples of a drift or of a stuck channel
        differ from normal readings by less than the noise (per-type AUC: stuck ~0.77, drift ~0.89); what holds is
        the large margin over the linear baseline and >= 0.95 on bias faults. The ablation, the same AE with linear
        hidden units, scores 0.706 / 0.715 / 0.715 (offsets 0 / 1 / 2; AE 0.875 / 0.879 / 0.880): it is PCA
        (0.717), so the nonlinearity is what the AE adds; asserted AE >= linear AE + 0.1 and >= PCA + 0.1.
(c) ConvNet (LeNet-style) on digits after 1000 steps: 0.976-0.991 test accuracy (seeds 0-2; 0.973-0.991 after 1500).
Also the two autoencoder variants the review describes: the sparse AE's KL penalty drives the mean code activation
to the target rho (0.052 vs 0.51 without it; seeds 0-1), and a denoising AE reconstructs 25%-masked digits with
22-25% lower error than a plain AE of the same size (seeds 0-1, 400 steps).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from zoo import core
from zoo.recipes.procedures import fault_detection
from zoo.recipes import tasks
from zoo.recipes import train
from zoo.recipes.datasets import sensors as sensors_lib
from zoo.recipes.datasets import sequences

NUM_SYMBOLS = 8


def _copy_first_accuracy(model_cls, *, length, width, steps, mesh, seed=0, **model_kw):
  gen = sequences.copy_first(length=length, num_symbols=NUM_SYMBOLS, num_distractors=8, n_train=10000,
                             n_test=1000, seed=0)
  model = model_cls(features=width, num_classes=NUM_SYMBOLS, vocab_size=gen.metadata["vocab_size"], **model_kw)
  result = train.fit(model, gen.splits["train"], task=tasks.Classification(input_key="tokens"), steps=steps,
                     batch_size=64, optimizer=optax.adam(1e-2), eval_data=gen.splits["test"], mesh=mesh, seed=seed)
  return result.metrics["accuracy"]


COPY = dict(length=20, width=64, steps=800)


def test_gated_rnns_remember_the_first_token_where_elman_forgets(single_device_mesh, seed):
  # The mechanism is the LSTM's gated memory cell, c_t = f * c_{t-1} + i * g; its ablation is the same LSTM with
  # the cell's self-connection cut (memory_cell=False, c_t = i * g, gates kept), the review's baseline the Elman
  # RNN. The LSTM leaves the ln(8) plateau at a seed-dependent step (300-500 at this width, up to 1100 at width 32),
  # so it gets the best of two seeds; the ablation and the baseline never leave it in 800 steps.
  run = lambda cls, s=seed, **kw: _copy_first_accuracy(cls, mesh=single_device_mesh, seed=s, **COPY, **kw)
  acc = {"LSTM": run(core.LSTM)}
  if acc["LSTM"] < 0.95:
    acc["LSTM"] = max(acc["LSTM"], run(core.LSTM, seed + 1))
  acc |= {"GRU": run(core.GRU), "ElmanRNN": run(core.ElmanRNN),
          "LSTM(memory_cell=False)": run(core.LSTM, memory_cell=False)}
  print(f"copy-first T={COPY['length']}: test accuracy {acc} (chance {1 / NUM_SYMBOLS:.3f})")
  assert acc["LSTM"] >= 0.95, acc
  assert acc["GRU"] >= 0.95, acc
  assert acc["LSTM(memory_cell=False)"] <= 0.3, acc
  assert acc["ElmanRNN"] <= 0.4, acc


@pytest.mark.slow
def test_gated_rnns_remember_the_first_token_over_40_distractors(single_device_mesh, seed):
  # At T=40 the LSTM with forget-gate bias 1 escapes the ln(8) plateau only with some seeds within 3000 steps
  # (see the module docstring), so the claim checked is: GRU always, LSTM with at least one of three seeds,
  # Elman never.
  kw = dict(length=40, width=64, steps=3000, mesh=single_device_mesh)
  acc = {cls.__name__: [_copy_first_accuracy(cls, seed=seed + k, **kw) for k in range(3)]
         for cls in (core.LSTM, core.GRU, core.ElmanRNN)}
  print(f"copy-first T=40, seeds {seed}-{seed + 2}: test accuracy {acc} (chance {1 / NUM_SYMBOLS:.3f})")
  assert min(acc["GRU"]) >= 0.9, acc
  assert max(acc["LSTM"]) >= 0.9, acc
  assert max(acc["ElmanRNN"]) <= 0.4, acc


def _pca_residual(train_x, test_x, components):
  flat = lambda x: x.reshape(len(x), -1)
  pca = PCA(components).fit(flat(train_x))
  return ((flat(test_x) - pca.inverse_transform(pca.transform(flat(test_x)))) ** 2).sum(1)


def test_autoencoder_separates_held_out_digit_classes(digits, single_device_mesh, seed):
  # Baselines: PCA with as many components as the code, and the distance to the mean normal image. (The linear-AE
  # ablation is asserted on the sensors below; on digits it is nearly as good, see the module docstring.)
  train_split, test_split = digits
  normal_classes = [0, 1, 2, 3, 4]
  normal = train_split["image"][np.isin(train_split["label"], normal_classes)]
  anomalous = (~np.isin(test_split["label"], normal_classes)).astype(int)
  detector = fault_detection.train_ae_detector(
      core.Autoencoder(latent=8, hidden=(64,), output_activation=nn.sigmoid), normal, input_key="image", steps=1000,
      batch_size=64, optimizer=optax.adam(3e-3), seed=seed, mesh=single_device_mesh)
  auc = roc_auc_score(anomalous, detector.scores(test_split["image"]))
  auc_pca = roc_auc_score(anomalous, _pca_residual(normal, test_split["image"], 8))
  mean_image = normal.reshape(len(normal), -1).mean(0)
  auc_mean = roc_auc_score(anomalous, ((test_split["image"].reshape(len(anomalous), -1) - mean_image) ** 2).sum(1))
  print(f"digits 0-4 normal, 5-9 anomalous: ROC-AUC AE {auc:.3f}, PCA(8) {auc_pca:.3f}, mean image {auc_mean:.3f}")
  assert auc >= 0.94
  assert auc >= auc_pca + 0.015
  assert auc >= auc_mean + 0.3


def _identity(x):
  return x


def test_autoencoder_detects_injected_sensor_faults_better_than_pca(single_device_mesh, seed):
  # Baseline: the 2-component PCA residual; ablation: the same autoencoder with linear hidden activations.
  gen = sensors_lib.sensors(seed=0)
  train_split, test_split = gen.splits["train"], gen.splits["test"]
  fit = lambda activation: fault_detection.train_ae_detector(
      core.Autoencoder(latent=2, hidden=(64, 64), activation=activation), train_split["x"], steps=1500,
      batch_size=64, optimizer=optax.adam(3e-3), seed=seed, mesh=single_device_mesh)
  detector = fit(nn.tanh)
  scores = detector.scores(test_split["x"])
  fault, kind = test_split["fault"], test_split["fault_type"]
  auc = roc_auc_score(fault, scores)
  auc_linear = roc_auc_score(fault, fit(_identity).scores(test_split["x"]))
  pca_scores = _pca_residual(train_split["x"], test_split["x"], 2)
  auc_pca = roc_auc_score(fault, pca_scores)
  per_type = {}
  for k, name in enumerate(sensors_lib.FAULT_TYPES[1:], start=1):
    keep = (kind == 0) | (kind == k)
    per_type[name] = (roc_auc_score(fault[keep], scores[keep]), roc_auc_score(fault[keep], pca_scores[keep]))
  false_alarms = float(np.mean(scores[fault == 0] > detector.threshold))
  recall = float(np.mean(scores[fault == 1] > detector.threshold))
  print(f"sensor faults: ROC-AUC AE {auc:.3f}, linear AE {auc_linear:.3f}, PCA(2) residual {auc_pca:.3f}; per type "
        "(AE, PCA) "
        + ", ".join(f"{n} ({a:.3f}, {p:.3f})" for n, (a, p) in per_type.items())
        + f"; at the 99% threshold: false alarms {false_alarms:.3f}, detected {recall:.3f}")
  assert auc >= 0.83
  assert auc >= auc_pca + 0.1
  assert auc >= auc_linear + 0.1
  assert per_type["bias"][0] >= 0.95
  assert all(a > p for a, p in per_type.values())
  assert false_alarms <= 0.03  # the threshold fitted on normal training data transfers to normal test data


def test_convnet_reaches_high_accuracy_on_digits(digits, single_device_mesh, seed):
  train_split, test_split = digits
  result = train.fit(core.ConvNet(num_classes=10), train_split, steps=1000, batch_size=64,
                     optimizer=optax.adam(2e-3), eval_data=test_split, mesh=single_device_mesh, seed=seed)
  print(f"ConvNet digits test accuracy {result.metrics['accuracy']:.4f}")
  assert result.metrics["accuracy"] >= 0.965


def test_sparse_autoencoder_drives_mean_activation_to_target(digits, single_device_mesh):
  train_split, test_split = digits
  mean_activation = {}
  for weight in (0.0, 0.1):
    model = core.SparseAutoencoder(latent=100, sparsity_target=0.05, sparsity_weight=weight,
                                   output_activation=nn.sigmoid)
    result = train.fit(model, {"image": train_split["image"]}, task=tasks.Reconstruction(input_key="image"),
                       steps=600, batch_size=64, optimizer=optax.adam(3e-3), mesh=single_device_mesh)
    codes = model.apply(result.variables, test_split["image"], method="encode")
    mean_activation[weight] = float(jnp.mean(codes))
  print(f"sparse AE mean code activation (target 0.05): {mean_activation}")
  assert 0.03 <= mean_activation[0.1] <= 0.08
  assert mean_activation[0.0] >= 0.3


def test_denoising_autoencoder_repairs_corruption_better_than_plain(digits, single_device_mesh):
  train_split, test_split = digits
  clean = test_split["image"]
  corrupted = core.DenoisingAutoencoder(latent=16, noise_level=0.25).corrupt(jnp.asarray(clean), jax.random.key(7))
  error = {}
  for name, cls in (("plain", core.Autoencoder), ("denoising", core.DenoisingAutoencoder)):
    model = cls(latent=16, hidden=(64,), output_activation=nn.sigmoid)
    result = train.fit(model, {"image": train_split["image"]}, task=tasks.Reconstruction(input_key="image"),
                       steps=400, batch_size=64, optimizer=optax.adam(3e-3), mesh=single_device_mesh)
    error[name] = float(jnp.mean((model.apply(result.variables, corrupted) - clean) ** 2))
  print(f"MSE to the clean digit from 25%-masked input: {error}")
  assert error["denoising"] <= 0.85 * error["plain"]
