"""Effect test of "ArchBERT: Bi-Modal Understanding of Neural Architectures and Natural Languages" (Akbari et al.,
2023, arXiv 2301.00040), scaled down as PAPERS.md block 36 says.

Data: ``arch_bench.archbert_arrays`` (seed = ZOO_TEST_SEED): 1200 distinct configs of both spaces (MLPs: depth,
width, activation, normalisation; CNNs: channels, kernels, pooling, activation) as ONNX node tokens + adjacency, each
with a template caption and one true/false reasoning statement; 1000 train, 200 held out.

Three ArchBERTs (width 64, 2+2 layers, 4 heads), same init and batches, 300 joint steps (alignment + MAM +
reasoning, Adam 1e-3, batch 64), trained in one vmapped call (``procedures.archbert.train_variants``), differing
only in what the graph encoder may attend and in the loss weights:

* ArchBERT: adjacency-masked attention + MAM + cosine matching (the paper's method);
* the ablation ``alignment_weight=0``: no cosine matching loss (the bi-modal alignment switched off; retrieval
  must fall to chance, 5/200 = 0.025);
* the baseline ``mode='full'``: plain full attention over the nodes (reported, not asserted: see below).

The slow test (``-m slow``) trains a fourth variant in the same call, ``mam_weight=0`` (MAM off, reported only).

Asserted on the 200 held-out architectures: caption -> architecture R@5 >= 0.5 and reasoning accuracy >= 0.8 (the
PAPERS.md bars), and R@5 >= the no-alignment ablation's + 0.3.

Measured (R@5 / reasoning accuracy on 200 held-out; offset = ZOO_TEST_SEED). The first three rows are the default
test's three variants (pytest runs of this test; a calibration-script run of the same setup gave 0.620 /
0.995 and 0.695 / 0.980 for ArchBERT at offsets 0 and 2, CPU rounding); the MAM-off row is from the first
calibration's four-variant run (the slow test's setup):

=====================  ===============  ===============  ===============
variant                offset 0         offset 1         offset 2
=====================  ===============  ===============  ===============
ArchBERT (graph+MAM)   0.615 / 0.995    0.600 / 0.975    0.690 / 0.985
full attention + MAM   0.565 / 0.975    0.700 / 0.980    0.750 / 0.965
no alignment loss      0.015 / 0.970    0.040 / 0.930    0.060 / 0.965
graph, no MAM (slow)   0.755 / 0.940    0.880 / 0.975    0.755 / 0.960
=====================  ===============  ===============  ===============

With 200 steps instead of 300 the method misses the R@5 bar (offset 0: 0.385), so the step count stays at 300.

**Not reproduced**: neither the adjacency mask nor MAM improves retrieval here. Full attention (with node-index
positions) matches or beats the masked encoder, and MAM *lowers* R@5 (0.62 vs 0.76-0.88 without it; it does raise
reasoning accuracy at offset 0, 0.995 vs 0.940). On chain-shaped graphs of <= 13 nodes with positions, the mask only
removes information; PAPERS.md's "MAM on >= off" does not hold at this scale. The no-alignment ablation's R@5 is at
chance by construction of the loss. Run time of the default test: ~100 s user CPU (three seeds run side by side on
the 2-core machine with other sessions, ~205 s wall each); the four-variant version took ~180 s wall under a load
average of ~4.
"""

import pytest

from zoo import archbert, archtext
from zoo.recipes.datasets import arch_bench
from zoo.recipes.procedures import archbert as proc

# (mode, mam_weight, alignment_weight): ArchBERT, full-attention baseline, no-alignment ablation.
VARIANTS = [("graph", 1.0, 1.0), ("full", 1.0, 1.0), ("graph", 1.0, 0.0)]
# The slow test adds the MAM-off variant (reported only).
SLOW_VARIANTS = VARIANTS + [("graph", 0.0, 1.0)]


def _train_and_evaluate(seed, variants):
  arrays = arch_bench.archbert_arrays(1200, seed=seed)
  tr = {k: v[:1000] for k, v in arrays.items()}
  te = {k: v[1000:] for k, v in arrays.items()}
  model = archbert.ArchBERT(archtext.ArchTokenizer().vocab_size, archbert.CaptionTokenizer().vocab_size,
                            features=64, num_layers=2, num_heads=4, mlp_dim=128, max_nodes=16, max_length=32)
  params = proc.train_variants(model, tr, variants, steps=300, batch_size=64, seed=seed)
  return proc.evaluate_variants(model, params, te, variants, k=5)


def _check(full, no_align):
  assert full["recall"] >= 0.5, full
  assert full["reasoning"] >= 0.8, full
  assert full["recall"] >= no_align["recall"] + 0.3, (full, no_align)


def test_archbert_retrieval_and_reasoning_and_alignment_ablation(seed):
  full, full_attention, no_align = _train_and_evaluate(seed, VARIANTS)
  print({"archbert": full, "full_attention": full_attention, "no_alignment": no_align})
  _check(full, no_align)


@pytest.mark.slow
def test_archbert_with_mam_off_variant(seed):
  full, full_attention, no_align, no_mam = _train_and_evaluate(seed, SLOW_VARIANTS)
  print({"archbert": full, "full_attention": full_attention, "no_alignment": no_align, "no_mam": no_mam})
  _check(full, no_align)
