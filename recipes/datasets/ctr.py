"""Synthetic click logs with planted structure, for the CTR models of ``zoo.ctr``.

* ``ctr_interests`` (DIN, Zhou et al. 2018, arXiv 1706.06978): every user has ``interests`` categories out of
  ``num_cates``; their behaviour history (``hist_item``, ``hist_cate``, ragged via ``hist_mask``) holds items of
  those categories only. A candidate ad is from a history category half the time; the user clicks with
  probability ``p_in`` when the candidate's category is in the (unmasked) history and ``p_out`` otherwise. Only a
  model that compares the candidate with the single behaviours can tell the cases apart cleanly; a sum of 30
  behaviour embeddings blurs them.
* ``ctr_bilinear`` (FinalMLP, Mao et al. 2023, arXiv 2304.00902): ``fields`` categorical fields of ``vocab`` ids;
  fields 0-1 are user fields, 2-3 item fields, the rest pure noise. The click logit is a planted bilinear
  cross-group term ``scale * u^T v`` with ``u = U0[x0] + U1[x1]``, ``v = V2[x2] + V3[x3]`` (rank ``rank``), plus
  Gaussian noise.

Both are deterministic by ``seed`` and return integer arrays and ``click`` in {0, 1}.
"""

from __future__ import annotations

import numpy as np

from zoo.recipes import data


def _interest_rows(rng, users, n_per_user, *, interests, item_cate, cate_items, history, min_history, p_in, p_out):
  num_cates = len(cate_items)
  rows = {k: [] for k in ("user", "item", "cate", "hist_item", "hist_cate", "hist_mask", "click")}
  for u, cats in enumerate(users):
    for _ in range(n_per_user):
      length = int(rng.integers(min_history, history + 1))
      hist_cats = rng.choice(cats, size=history)
      hist_items = np.array([rng.choice(cate_items[c]) for c in hist_cats])
      mask = np.arange(history) < length
      present = np.unique(hist_cats[mask])
      if rng.random() < 0.5:
        cate = int(rng.choice(present))
      else:
        cate = int(rng.choice(np.setdiff1d(np.arange(num_cates), present)))
      item = int(rng.choice(cate_items[cate]))
      p = p_in if cate in present else p_out
      rows["user"].append(u)
      rows["item"].append(item)
      rows["cate"].append(cate)
      rows["hist_item"].append(np.where(mask, hist_items, 0))
      rows["hist_cate"].append(np.where(mask, hist_cats, 0))
      rows["hist_mask"].append(mask.astype(np.int32))
      rows["click"].append(int(rng.random() < p))
  out = {k: np.asarray(v, np.int32) for k, v in rows.items()}
  assert (item_cate[out["item"]] == out["cate"]).all()
  return out


@data.register("ctr_interests", version="1.0.0")
def ctr_interests(num_users: int = 500, num_cates: int = 20, items_per_cate: int = 50, interests: int = 5,
                  history: int = 30, min_history: int = 10, train_per_user: int = 20, test_per_user: int = 10,
                  p_in: float = 0.8, p_out: float = 0.1, seed: int = 0) -> data.Generated:
  """User-interest click logs (module docstring); ``user`` [], ``item`` [], ``cate`` [], ``hist_*`` [history]."""
  if not 1 <= interests < num_cates or not 1 <= min_history <= history or num_users < 1 or items_per_cate < 1:
    raise ValueError(f"ctr_interests: need 1 <= interests < num_cates and 1 <= min_history <= history; got "
                     f"interests={interests}, num_cates={num_cates}, min_history={min_history}, history={history}.")
  rng = np.random.default_rng(seed)
  num_items = num_cates * items_per_cate
  item_cate = rng.permutation(np.repeat(np.arange(num_cates), items_per_cate))
  cate_items = [np.flatnonzero(item_cate == c) for c in range(num_cates)]
  users = [rng.choice(num_cates, size=interests, replace=False) for _ in range(num_users)]
  kw = dict(interests=interests, item_cate=item_cate, cate_items=cate_items, history=history,
            min_history=min_history, p_in=p_in, p_out=p_out)
  return data.Generated(
      {"train": _interest_rows(rng, users, train_per_user, **kw), "test": _interest_rows(rng, users, test_per_user,
                                                                                         **kw)},
      metadata={"num_users": num_users, "num_items": num_items, "num_cates": num_cates, "history": history})


@data.register("ctr_bilinear", version="1.0.0")
def ctr_bilinear(num_train: int = 16000, num_test: int = 4000, fields: int = 8, vocab: int = 50, rank: int = 4,
                 scale: float = 1.5, noise: float = 0.5, seed: int = 0) -> data.Generated:
  """Planted bilinear user x item clicks (module docstring): ``ids`` [fields] int32, ``click`` int32,
  ``logit`` float32 (the true logit, for the Bayes AUC)."""
  if fields < 5 or vocab < 2 or rank < 1:
    raise ValueError(f"ctr_bilinear: need fields >= 5 (4 informative + noise), vocab >= 2, rank >= 1; got "
                     f"fields={fields}, vocab={vocab}, rank={rank}.")
  rng = np.random.default_rng(seed)
  tables = rng.normal(size=(4, vocab, rank)) / np.sqrt(2 * rank) ** 0.5

  def split(n):
    ids = rng.integers(0, vocab, size=(n, fields)).astype(np.int32)
    u = tables[0][ids[:, 0]] + tables[1][ids[:, 1]]
    v = tables[2][ids[:, 2]] + tables[3][ids[:, 3]]
    logit = scale * np.sum(u * v, -1) + noise * rng.normal(size=n)
    click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    return {"ids": ids, "click": click, "logit": logit.astype(np.float32)}

  return data.Generated({"train": split(num_train), "test": split(num_test)},
                        metadata={"fields": fields, "vocab": vocab, "informative_fields": [0, 1, 2, 3]})
