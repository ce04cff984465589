"""Deep Learning for Case-Based Reasoning through Prototypes (Li, Liu, Chen, Rudin, AAAI 2018, arXiv 1710.04806):
``zoo.prototype.ProtoAE``.

Setting: sklearn digits (1347 train / 450 test), 2 stride-2 convs (32, 10 maps: a 40-d code), m = 15 prototypes,
the paper's weights (20, 1, 1, 1), Adam 2e-3, batch 250, STEPS steps, seed = ``ZOO_TEST_SEED``.

* Full method: ``ProtoAE`` (lambda_1 = 1).
* Ablation: ``lambda_1 = 0`` (no prototype-to-data term R1).
* Baseline: a plain CNN (``zoo.core.ConvNet``, LeNet-style), trained separately; it also judges the decoded
  prototypes: for each prototype, does the CNN assign ``g(p_j)`` to the class whose head weight is most negative for
  ``p_j`` (the class the prototype supports)?

Metrics: test accuracy; ``R1`` on the test set (mean over prototypes of the squared distance to the nearest encoded
test digit: small means the prototypes sit on the data manifold and decode to digit-like images); the CNN agreement.

Measured, slow test (800 steps; CNN 600 steps; seed = offset):

======  ========  ===========  ============  ==========  ===============  ==================  =======
offset  full acc  ablation acc  full R1       abl. R1     full agreement   ablation agreement  CNN acc
======  ========  ===========  ============  ==========  ===============  ==================  =======
0       0.976     0.980        1.15          3.99        0.467 (7/15)     0.333 (5/15)        0.987
1       0.960     0.976        1.24          5.06        0.467 (7/15)     0.333 (5/15)        0.982
2       0.982     0.980        0.99          3.48        0.733 (11/15)    0.533 (8/15)        0.971
======  ========  ===========  ============  ==========  ===============  ==================  =======

Default fast test (300 steps, no CNN), offsets 0 / 1 / 2: full accuracy 0.953 / 0.938 / 0.969, ablation 0.960 /
0.949 / 0.962; R1 full 2.20 / 2.40 / 1.92 vs ablation 3.78 / 4.29 / 3.48 (ratio 0.58 / 0.56 / 0.55).

Asserted (slow): full accuracy >= 0.9 and >= CNN - 0.05; full R1 <= 0.5 x ablation R1; agreement >= 0.4.
(fast): full accuracy >= 0.85; full R1 <= 0.7 x ablation R1.
Not reproduced: PAPERS.md's >= 80% CNN agreement (measured 47-73%, 7-11 of 15 prototypes); the ablation does lower
it (by 2-3 prototypes on every offset), but with 15 prototypes that is within noise, so only the R1 gap (3.5-4x,
the quantity lambda_1 acts on) is asserted as the mechanism. Accuracy is not lowered by the ablation (the paper
does not claim it is). Elastic-deformation augmentation is not used.
Mutation check: ``("R1", 0.0 * self.lambda_1)`` in ``ProtoAE.__call__`` (the R1 term no longer sown) makes the full
run identical to the ablation (R1 3.78 = 3.78 on offset 0) and the fast test FAILS on the R1 ratio.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import core
from zoo import prototype as PT
from zoo.recipes import tasks
from zoo.recipes import train

STEPS, FAST_STEPS = 800, 300


def _fit_proto(train_data, test, lambda_1, seed, mesh, steps=STEPS):
  model = PT.ProtoAE(features=(32, 10), image_shape=(8, 8, 1), lambda_1=lambda_1)
  result = train.fit(model, train_data, task=tasks.Classification(), optimizer=optax.adam(2e-3), steps=steps,
                     batch_size=250, eval_data=test, seed=seed, mesh=mesh)
  return model, result


def test_r1_pulls_prototypes_onto_the_data(digits, seed, single_device_mesh):
  """Default (fast) test: FAST_STEPS steps, full vs lambda_1 = 0: accuracy and R1 on the test set."""
  train_data, test = digits
  out = {}
  for name, lam in (("full", 1.0), ("ablation", 0.0)):
    model, result = _fit_proto(train_data, test, lam, seed, single_device_mesh, steps=FAST_STEPS)
    r1 = float(PT.proto_losses(model, result.variables, jnp.asarray(test["image"]))["R1"])
    out[name] = {"acc": result.metrics["accuracy"], "R1": r1}
  print(out)
  assert out["full"]["acc"] >= 0.85, out
  assert out["full"]["R1"] <= 0.7 * out["ablation"]["R1"], out


@pytest.mark.slow  # ~100-140 s on the loaded 2-core machine: over the default budget
def test_prototypes_classify_and_decode_to_their_class(digits, seed, single_device_mesh):
  train_data, test = digits
  cnn_model = core.ConvNet(num_classes=10, features=(6, 16), hidden=(120, 84))
  cnn = train.fit(cnn_model, train_data, task=tasks.Classification(), optimizer=optax.adam(2e-3), steps=600,
                  batch_size=64, eval_data=test, seed=seed, mesh=single_device_mesh)
  out = {"cnn_acc": cnn.metrics["accuracy"]}
  for name, lam in (("full", 1.0), ("ablation", 0.0)):
    model, result = _fit_proto(train_data, test, lam, seed, single_device_mesh)
    images = PT.decode_prototypes(model, result.variables)
    agree = np.mean(np.asarray(PT.prototype_classes(result.variables))
                    == np.asarray(jnp.argmax(cnn_model.apply(cnn.variables, images), -1)))
    r1 = float(PT.proto_losses(model, result.variables, jnp.asarray(test["image"]))["R1"])
    out[name] = {"acc": result.metrics["accuracy"], "R1": r1, "agree": float(agree)}
  print(out)
  assert out["full"]["acc"] >= 0.9, out
  assert out["full"]["acc"] >= out["cnn_acc"] - 0.05, out
  assert out["full"]["R1"] <= 0.5 * out["ablation"]["R1"], out
  assert out["full"]["agree"] >= 0.4, out
