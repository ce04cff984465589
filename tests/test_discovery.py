"""What README's "Finding things" promises: models, datasets and checkpoints listed from Python, lazily imported."""

import subprocess
import sys


def test_listings():
  import zoo  # pylint: disable=g-import-not-at-top
  models = zoo.list_models()
  assert models == sorted(set(models))
  assert {"hopfield.HopfieldClassifier", "kan.KAN", "transformer.ViT", "mgno.MgNO",
          "analysis.neural_collapse.DeepLinearUFM"} <= set(models)
  assert all(1 <= name.count(".") <= 2 for name in models)
  assert {"digits", "darcy", "karate_club"} <= set(zoo.recipes.data.names())
  assert zoo.checkpoints.names() == zoo.checkpoints.available()
  assert "hopfield_digits" in zoo.checkpoints.names()


def test_import_zoo_stays_cheap():
  # `import zoo` must not import jax (the families load on first attribute access).
  code = "import sys, zoo; import zoo.recipes; print('jax' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False", out.stderr
