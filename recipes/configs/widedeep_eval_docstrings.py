"""WideDeep evaluator networks over a small fine-tuned judge, on planted "which docstring is this function's?" pairs.

Paper: "Wider and Deeper LLM Networks are Fairer LLM Evaluators" (Zhang et al., 2023, arXiv 2308.01862). The judge
(``llm_eval_net.JudgeLM``: a 1-layer zoo causal transformer) is fine-tuned from scratch on the answer token (A/B)
of judge queries ``[ROLE_r] name part [SEP] slice [SEP] slice [HINT] verdicts [ASK]`` (``docstring_judge``:
planted role views, each informative 60 % of the time and then right 80 %; own docstring first in 60 % of the
fine-tuning pairs; half the queries carry verdict hints). The evaluation freezes the judge and runs the evaluator
networks ``procedure.settings`` (``<width>x<depth>``, ``-noswap``, ``-noread``, ``-vote``; see
``zoo.recipes.procedures.llm_eval``) on 500 held-out balanced pairs. No network weight is trained.

Command::

  python -m zoo.recipes.train --config recipes/configs/widedeep_eval_docstrings.py --workdir /tmp/wde

The eval metrics are per setting ``<s>/correct`` (accuracy), ``<s>/says_a`` and ``label_a``; Cohen's kappa follows
exactly from them::

  python -c "import json; from zoo.recipes.procedures import llm_eval; \\
    print(llm_eval.kappas_from_means(json.load(open('/tmp/wde/results.json'))['metrics']))"

Expected result (measured, seed 0, 400 steps): the judge answers 0.648 of the hint-free held-out queries right
(``accuracy``; one role view is right with probability <= 0.68). Cohen's kappa against the labels::

  1x1 0.361   3x1 0.584   6x1 0.778         6x1-vote 0.654
  1x2 0.373   3x2 0.596   6x2 0.765 (acc 0.884, method)   6x2-vote 0.674
  6x2-noswap 0.578   6x2-noread 0.778 (= 6x1)

so wider is better (1 -> 3 -> 6) and the 6x2 network beats the single neuron by +0.40 and the one-order ablation by
+0.19; depth changes little: +0.01 at width 1 and 3 and +0.02 under voting (within the ~0.03 noise of 500
pairs), -0.013 for the averaged width-6 network against 6x1 / 6x2-noread (the paper's depth gain does not
reproduce; ``tests/papers/test_widedeep_eval.py``, 200 steps on offsets 0-2, has the seed spread).

Run time: 29-43 s wall, 18-22 s user CPU (``/usr/bin/time``, two runs, same numbers) on one CPU device of a
2-core machine shared with other jobs; the two-step smoke run 17 s user CPU.
"""

import ml_collections

from zoo.recipes.configs import base_config


def get_config() -> ml_collections.ConfigDict:
  c = base_config()
  # vocab = 12 special/role tokens + 4 name words + 4 filler words (docstring_judge.vocab_size(4, 4))
  c.model = ml_collections.ConfigDict({
      "name": "llm_eval_net.JudgeLM", "vocab_size": 20, "embed_dim": 32, "num_layers": 1, "num_heads": 2,
      "mlp_dim": 64, "max_length": 20})
  c.data.name = "docstring_judge"
  c.data.kwargs = ml_collections.ConfigDict({"num_words": 4, "num_fillers": 4, "reliability": 0.8, "ambiguity": 0.4,
                                           "first_bias": 0.6, "train_size": 25600, "test_size": 500})
  c.data.batch_size = 128
  c.data.eval_batch_size = 512
  c.task = ml_collections.ConfigDict({"name": "classification", "input_key": "tokens", "target_key": "label"})
  c.procedure = ml_collections.ConfigDict({
      "name": "llm_eval.JudgeThenNetworks",
      "settings": "1x1,3x1,6x1,1x2,3x2,6x2,6x2-noswap,6x2-noread,6x1-vote,6x2-vote"})
  c.optimizer.learning_rate = 3e-3
  c.steps = 400
  c.log_every = 50
  c.checkpoint_every = 200
  return c
