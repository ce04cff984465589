"""An offline text corpus: the Python standard library's own docstrings (``inspect.getdoc``), byte-tokenised.

Each example is one documented public function, class or method of a fixed list of standard-library modules whose
docstring has at least two sentences: ``query`` is its first sentence and ``doc`` the rest (the contrastive pairs of
"Pooling And Attention: What Are Effective Designs For LLM-Based Embedding Models?", Tang and Yang, 2024, arXiv
2409.02727, scaled down). Duplicated texts (aliases such as ``typing.Text.replace`` / ``str.replace``) are kept once.

Two tokenisers, both deterministic and offline: ``'bytes'`` (default): the UTF-8 bytes shifted by :data:`OFFSET`
(vocabulary 259; :func:`encode` / :func:`decode`); ``'words'``: lower-cased words and punctuation
(:func:`words`), the ``vocab_size - 4`` most frequent of the *training* split (ties broken alphabetically) and
``UNK = 3`` for the rest (:func:`word_vocabulary`, :func:`encode_words`). In both ``PAD = 0``, ``BOS = 1`` (unused
by the pairs) and ``EOS = 2`` is appended after the (truncated) text, so the last real token of every sequence is
EOS and the padding is on the right.

Determinism: the module list, the attribute order and the split are fixed (seeded); the texts depend on the Python
version (docstrings change between releases), recorded in the metadata. Nothing is downloaded.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import warnings

import numpy as np

from zoo.recipes import data

__all__ = ["BOS", "EOS", "MODULES", "OFFSET", "PAD", "UNK", "VOCAB_SIZE", "decode", "docstring_pairs", "encode",
           "encode_words", "word_vocabulary", "words"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
OFFSET = 3
VOCAB_SIZE = 256 + OFFSET

# Imported only for their docstrings; chosen to have no side effects on import (no GUI, no network, no `this`).
MODULES = tuple("""
abc argparse ast asyncio base64 bisect calendar cmath codecs collections colorsys concurrent.futures configparser
contextlib copy csv dataclasses datetime decimal difflib dis email.message email.utils enum filecmp fnmatch fractions
ftplib functools getopt gettext glob graphlib gzip hashlib heapq hmac html html.parser http.client http.cookiejar
http.cookies http.server imaplib inspect io ipaddress itertools json json.decoder json.encoder linecache locale
logging logging.handlers lzma mailbox math mimetypes numbers operator optparse os os.path pathlib pickle pkgutil
platform plistlib poplib pprint queue quopri random re reprlib sched secrets selectors shelve shlex shutil smtplib
socket socketserver sqlite3 ssl statistics string struct subprocess tarfile tempfile textwrap threading timeit
tokenize tomllib trace traceback types typing unittest unittest.mock urllib.parse urllib.request urllib.robotparser
uuid warnings wave weakref xml.dom.minidom xml.etree.ElementTree xml.sax zipfile zoneinfo
""".split())

_SENTENCE = re.compile(r"(.+?[.!?])\s+(.*)", re.S)


def encode(text: str, length: int) -> np.ndarray:
  """``text`` -> int32 ``[length]``: UTF-8 bytes + OFFSET, truncated to ``length - 1``, then EOS, then PAD."""
  ids = np.frombuffer(text.encode("utf-8"), np.uint8)[:length - 1].astype(np.int32) + OFFSET
  out = np.zeros(length, np.int32)
  out[:len(ids)] = ids
  out[len(ids)] = EOS
  return out


_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
  """Lower-cased words and single punctuation marks of ``text``."""
  return _WORD.findall(text.lower())


def word_vocabulary(texts, size: int) -> dict[str, int]:
  """The ``size - 4`` most frequent words of ``texts`` (ties alphabetical) -> ids ``4 ..``; 0-3 are PAD/BOS/EOS/UNK."""
  counts: dict[str, int] = {}
  for t in texts:
    for w in words(t):
      counts[w] = counts.get(w, 0) + 1
  ranked = sorted(counts, key=lambda w: (-counts[w], w))[:size - 4]
  return {w: i + 4 for i, w in enumerate(ranked)}


def encode_words(text: str, vocab: dict[str, int], length: int) -> np.ndarray:
  """``text`` -> int32 ``[length]`` word ids (UNK for unknown words), truncated to ``length - 1``, EOS, PAD."""
  ids = [vocab.get(w, UNK) for w in words(text)][:length - 1] + [EOS]
  out = np.zeros(length, np.int32)
  out[:len(ids)] = ids
  return out


def decode(tokens) -> str:
  """Inverse of :func:`encode` (stops at EOS, drops PAD)."""
  ids = []
  for t in np.asarray(tokens).tolist():
    if t == EOS:
      break
    if t >= OFFSET:
      ids.append(t - OFFSET)
  return bytes(ids).decode("utf-8", errors="replace")


def docstring_pairs(min_query: int = 15, min_doc: int = 30) -> list[tuple[str, str, str]]:
  """``[(qualified name, first sentence, rest)]`` over :data:`MODULES`, whitespace-normalised, deduplicated."""
  pairs, seen_objects, seen_texts = [], {}, set()

  def add(name, obj):
    try:
      doc = inspect.getdoc(obj)
    except Exception:  # pylint: disable=broad-except
      return
    # Bound methods (classmethods) are new objects on every getattr: dedupe by the function, and keep every seen
    # object alive, or a freed object's id is reused and an unrelated later object is wrongly skipped.
    obj = getattr(obj, "__func__", obj)
    if not doc or id(obj) in seen_objects:
      return
    seen_objects[id(obj)] = obj
    match = _SENTENCE.match(" ".join(doc.split()))
    if not match:
      return
    query, rest = match.group(1), match.group(2)
    if len(query) < min_query or len(rest) < min_doc or (query, rest) in seen_texts:
      return
    seen_texts.add((query, rest))
    pairs.append((name, query, rest))

  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for module_name in MODULES:
      try:
        module = importlib.import_module(module_name)
      except ImportError:
        continue
      for attr in sorted(dir(module)):
        if attr.startswith("_"):
          continue
        obj = getattr(module, attr, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
          continue
        add(f"{module_name}.{attr}", obj)
        if inspect.isclass(obj):
          for method in sorted(vars(obj)):
            member = getattr(obj, method, None)
            if not method.startswith("_") and callable(member):
              add(f"{module_name}.{attr}.{method}", member)
  return pairs


@data.register("stdlib_docstrings", version="1.1.0")
def stdlib_docstrings(query_length: int = 64, doc_length: int = 128, test_size: int = 300, seed: int = 0,
                      tokenizer: str = "bytes", vocab_size: int = 2048) -> data.Generated:
  """Docstring retrieval pairs: ``query`` [query_length] first sentence, ``doc`` [doc_length] the rest (int32
  tokens, EOS-terminated, right-padded), ``index`` the pair's position in :func:`docstring_pairs`. ``tokenizer``:
  ``'bytes'`` (vocabulary 259) or ``'words'`` (``vocab_size`` ids, built on the training split)."""
  if tokenizer not in ("bytes", "words"):
    raise ValueError(f"stdlib_docstrings: `tokenizer` must be 'bytes' or 'words'; got {tokenizer!r}.")
  pairs = docstring_pairs()
  order = np.random.default_rng(seed).permutation(len(pairs))
  if not 0 < test_size < len(pairs):
    raise ValueError(f"stdlib_docstrings: `test_size` must be in (0, {len(pairs)}); got {test_size}.")
  train_idx, test_idx = order[test_size:], order[:test_size]
  if tokenizer == "bytes":
    enc, vocab = encode, VOCAB_SIZE
  else:
    table = word_vocabulary([t for i in train_idx for t in pairs[i][1:]], vocab_size)
    enc, vocab = (lambda t, n: encode_words(t, table, n)), vocab_size
  splits = {}
  for split, idx in (("train", train_idx), ("test", test_idx)):
    splits[split] = {
        "query": np.stack([enc(pairs[i][1], query_length) for i in idx]),
        "doc": np.stack([enc(pairs[i][2], doc_length) for i in idx]),
        "index": idx.astype(np.int32),
    }
  return data.Generated(splits, metadata={"vocab_size": vocab, "pad": PAD, "eos": EOS, "num_pairs": len(pairs),
                                          "tokenizer": tokenizer, "python": sys.version.split()[0]})
