"""zoo.recipes.procedures.lsa: layer probes, relative errors, MVL, the AT-LR loss, the procedure through fit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo import attacks
from zoo import core
from zoo.recipes import tasks
from zoo.recipes import train
from zoo.recipes.procedures import lsa


def _setup():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(8, 6)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 3, size=8))
  model = core.MLP(features=(5, 4, 3))
  return model, model.init(jax.random.key(0), x), x, y


def test_layer_outputs_and_relative_errors():
  model, variables, x, y = _setup()
  logits, outs = lsa.layer_outputs(model, variables, x)
  assert list(outs) == ["dense_0", "dense_1"] and outs["dense_1"].shape == (8, 4) and logits.shape == (8, 3)
  re = lsa.layer_relative_errors(model, variables, x, x)
  assert all(float(jnp.max(v)) == 0.0 for v in re.values())
  re = lsa.layer_relative_errors(model, variables, x, x + 0.1)
  manual = jnp.linalg.norm(outs["dense_0"] - lsa.layer_outputs(model, variables, x + 0.1)[1]["dense_0"], axis=1)
  np.testing.assert_allclose(re["dense_0"], manual / jnp.linalg.norm(outs["dense_0"], axis=1), rtol=1e-5)


def test_mvl_rules():
  errors = {"a": jnp.array([0.1]), "b": jnp.array([0.1]), "c": jnp.array([0.9])}
  assert lsa.most_vulnerable_layers(errors) == ["c"]
  assert lsa.most_vulnerable_layers(errors, rule="topk", k=2)[-1] == "c"
  with pytest.raises(ValueError, match="rule"):
    lsa.most_vulnerable_layers(errors, rule="max")
  with pytest.raises(ValueError, match="k must"):
    lsa.most_vulnerable_layers(errors, rule="topk", k=4)


def test_at_lr_loss_adds_the_masked_layer_term():
  model, variables, x, y = _setup()
  params = variables["params"]
  x_adv = x + 0.05
  plain, (res, ce) = lsa.at_lr_loss(model, params, x, x_adv, y, gamma=0.0)
  np.testing.assert_allclose(plain, ce)
  _, outs = lsa.layer_outputs(model, variables, x)
  _, adv = lsa.layer_outputs(model, variables, x_adv)
  sq1 = jnp.mean(jnp.sum((adv["dense_1"] - outs["dense_1"]) ** 2, axis=1))
  reg, _ = lsa.at_lr_loss(model, params, x, x_adv, y, gamma=2.0, mask=jnp.array([0.0, 1.0]))
  np.testing.assert_allclose(reg, plain + 2.0 * sq1, rtol=1e-5)
  assert res.shape == (2,)


def test_rg_score_and_robust_accuracy():
  assert lsa.rg_score([0.0, 1.0], [1.0, 0.0]) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="increasing"):
    lsa.rg_score([0.0, 0.0], [1.0, 1.0])
  model, variables, x, y = _setup()
  acc = lsa.robust_accuracy(lambda xx: model.apply(variables, xx), x, y, [0.0, 0.2], clip=None)
  assert acc.shape == (2,) and float(acc[1]) <= float(acc[0])


def test_procedure_trains_through_fit(single_device_mesh):
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(64, 6)).astype(np.float32)
  y = (x[:, 0] > 0.5).astype(np.int64)
  result = train.fit(core.MLP(features=(16, 16, 2)), {"x": x, "label": y}, task=tasks.Classification(input_key="x"),
                     optimizer=optax.adam(1e-2), steps=30, batch_size=16, procedure="lsa.ATLR",
                     procedure_kwargs=dict(eps=0.05, step_size=0.02, pgd_steps=3, gamma=0.1), log_every=10,
                     mesh=single_device_mesh, eval_data={"x": x, "label": y})
  assert result.metrics["accuracy"] > 0.8
  assert {"adv_loss", "mvl_size", "mvl_relative_error"} <= {k.split("/")[1] for k in result.history[-1] if "/" in k}
  f = lambda xx: core.MLP(features=(16, 16, 2)).apply(result.variables, xx)  # noqa: E731
  assert attacks.fgsm(f, jnp.asarray(x), jnp.asarray(y), 0.05).shape == x.shape
