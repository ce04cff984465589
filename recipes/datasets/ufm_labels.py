"""Sample ids and labels for the unconstrained-features model of "Neural Collapse in Deep Linear Networks: From
Balanced to Imbalanced Data" (Dang et al., ICML 2023, arXiv 2301.00437): ``idx`` (int32, the column of the free
feature matrix ``H``) and ``label`` (int32), ``class_sizes[k]`` samples of class ``k``. The UFM is fitted to its
training set, so the ``test`` split is the same samples (neural collapse is a property of the training features).
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data

__all__ = ["ufm_labels"]


@data.register("ufm_labels", version="1.0.0")
def ufm_labels(class_sizes=(40, 20, 10, 10)) -> data.Generated:
  """``{'idx' [N], 'label' [N]}`` for both splits; metadata ``num_classes``."""
  sizes = [int(n) for n in class_sizes]
  if len(sizes) < 2 or min(sizes) < 1:
    raise ValueError(f"ufm_labels: need >= 2 class sizes >= 1; got {sizes}.")
  labels = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
  split = {"idx": np.arange(labels.size, dtype=np.int32), "label": labels}
  return data.Generated({"train": split, "test": dict(split)}, metadata={"num_classes": len(sizes),
                                                                         "class_sizes": sizes})
