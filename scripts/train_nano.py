#!/usr/bin/env python
"""Train mixtui's bundled nano Mixtral on Jane Austen's novels, on the CPU, with MLX.

    python scripts/train_nano.py                 # full run, writes mixtui/models/nano/
    python scripts/train_nano.py --steps 3 --max-train-chars 200000 --out /tmp/nano

What it does, in order:

1. Corpus. ``apt-get download r-cran-janeaustenr`` (Debian's packaging of the R package
   janeaustenr, MIT licence; the six novels themselves are public domain) into a cache
   directory, then, in pure Python: the .deb is an ``ar`` archive holding ``data.tar.xz``;
   the novels are character vectors in the R lazy-load database ``data/Rdata.rdb`` with its
   index ``data/Rdata.rdx``, read by the small R-serialization reader below. Front matter
   and chapter headings are dropped, lines are joined into paragraphs, and the last ~5 % of
   every novel is held out for validation. ``--corpus-file`` takes a plain text file instead.
2. Tokenizer. A byte-level BPE (Hugging Face ``tokenizers``) trained on the training text,
   saved as ``tokenizer.json`` + ``tokenizer_config.json`` for ``transformers.AutoTokenizer``.
3. Model. Exactly ``mlx_lm.models.mixtral.Model`` at the geometry of the ``nano`` entry of
   mixtui's ``models.toml`` (8 experts, 2 per token), float32.
4. Training. AdamW with linear warmup and cosine decay; cross-entropy plus a
   Switch-Transformer load-balancing loss per MoE layer. Each layer's router logits are
   captured by mixtui's own routing hooks (``mixtui.families``: the Mixtral family's
   adapter, attached with a ``RouterLogitsLog`` sink that keeps them in the graph).
5. Evaluation on the held-out text (through ``mlx_lm.load`` of the saved directory):
   validation loss against a unigram baseline, samples and how many of their words are
   real, and per-layer routing statistics. Everything goes to ``train_report.json``.

Speed: MLX's Linux CPU wheel links the reference (netlib) BLAS, many times slower than an
optimised one. When the system has BLIS or OpenBLAS (Debian/Ubuntu: ``apt-get install
libblis4-pthread`` or ``libopenblas0-pthread``) the script re-executes itself with that
library in ``LD_PRELOAD``, which replaces MLX's ``cblas_sgemm``; BLIS is preferred, as it is
the faster of the two for the one-row products of MLX's CPU ``gather_mm`` (the experts).
``--bundled-blas`` keeps the bundled BLAS.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import lzma
import math
import os
import platform
import re
import struct
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.models.mixtral import Model, ModelArgs

from mixtui.engine import blas
from mixtui.families import adapters, family_for
from mixtui.registry.loader import load_registry

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "mixtui" / "models" / "nano"
DEFAULT_CACHE = Path("~/.cache/mixtui/corpus").expanduser()

DEB_PACKAGE = "r-cran-janeaustenr"
RDATA_DIR = "usr/lib/R/site-library/janeaustenr/data/"
NOVELS = (
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

# The nano geometry is [models.nano.geometry] in models.toml, written as config.json fields
# by its family (so the registry and the model it describes cannot drift apart).
NANO = load_registry(include_user=False)["nano"].geometry
_FAMILY = family_for(NANO.model_type)
assert _FAMILY is not None and _FAMILY.name == "mixtral", NANO.model_type
GEOMETRY: dict[str, Any] = _FAMILY.hf_config(NANO)
_ADAPTER = _FAMILY.hooks()  # where a Mixtral block computes its routing
assert _ADAPTER is not None
ROPE_THETA = 10000.0
RMS_NORM_EPS = 1e-5

PROMPTS = (
    "It is a truth universally acknowledged",
    "Emma Woodhouse, handsome, clever, and rich,",
    "She could not help",
    "Mr. Darcy",
    "The weather",
)

def log(message: str) -> None:
    """Print a progress line immediately."""
    print(message, flush=True)


# --------------------------------------------------------------------------------------
# A minimal reader for R's serialization format (XDR, versions 2 and 3)
# --------------------------------------------------------------------------------------

NILSXP, SYMSXP, LISTSXP, LANGSXP, CHARSXP = 0, 1, 2, 6, 9
LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP, EXPRSXP = 10, 13, 14, 16, 19, 20
REFSXP, NILVALUE_SXP = 255, 254
# Pseudo-SEXPs that stand for a fixed object and carry no payload.
_SINGLETONS = {
    253: "GlobalEnv",
    252: "UnboundValue",
    251: "MissingArg",
    250: "BaseNamespace",
    242: "EmptyEnv",
    241: "BaseEnv",
}
_HAS_ATTR, _HAS_TAG, _LATIN1 = 1 << 9, 1 << 10, 1 << 2
NA_INTEGER = -(2**31)


@dataclass(frozen=True)
class RSymbol:
    """An R symbol (a name)."""

    name: str


@dataclass
class RObject:
    """An R value: its SEXPTYPE, its payload and its attributes.

    Payloads: ``list[str | None]`` for character vectors (``None`` is ``NA``),
    ``list[int | None]`` for integer and logical vectors, ``list[float]`` for doubles,
    ``list[RObject | None]`` for generic vectors (lists) and ``list[tuple[str | None, Any]]``
    (tag, value) for pairlists.
    """

    sexptype: int
    value: Any
    attributes: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str | None] | None:
        """The ``names`` attribute as a Python list, if there is one."""
        names = self.attributes.get("names")
        return names.value if isinstance(names, RObject) else None

    def as_dict(self) -> dict[str, Any]:
        """A named vector or list as a dict from name to element."""
        names = self.names()
        if names is None:
            raise ValueError("the R object has no names")
        return {str(n): v for n, v in zip(names, self.value, strict=True)}


class RUnserializer:
    """Reads one object serialized by R's ``serialize()`` in XDR ("X\\n") format.

    Only the types that data sets need are supported: NULL, symbols, pairlists, character,
    logical, integer, double and generic vectors, attributes and references to symbols.
    """

    def __init__(self, data: bytes) -> None:
        """Wrap the serialized bytes (after any decompression)."""
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def read(self) -> Any:
        """Parse the header and return the top-level object."""
        if self.data[:2] != b"X\n":
            raise ValueError(f"not an XDR R serialization (header {self.data[:2]!r})")
        self.pos = 2
        version = self._int()
        self._int()  # the R version that wrote it
        self._int()  # the oldest R version that can read it
        if version == 3:
            length = self._int()
            self.pos += length  # the native encoding's name, e.g. "UTF-8"
        elif version != 2:
            raise ValueError(f"unsupported R serialization version {version}")
        return self._item()

    def _int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return int(value)

    def _length(self) -> int:
        n = self._int()
        if n == -1:  # long vector: two more ints
            upper, lower = self._int(), self._int()
            n = (upper << 32) + (lower & 0xFFFFFFFF)
        return n

    def _item(self) -> Any:
        flags = self._int()
        sexptype = flags & 0xFF
        if sexptype == NILVALUE_SXP:
            return None
        if sexptype == REFSXP:
            index = flags >> 8
            if index == 0:
                index = self._int()
            return self.refs[index - 1]
        if sexptype in _SINGLETONS:
            return RSymbol(_SINGLETONS[sexptype])
        if sexptype == SYMSXP:
            symbol = RSymbol(str(self._item()))
            self.refs.append(symbol)
            return symbol
        if sexptype == CHARSXP:
            return self._charsxp(flags)
        if sexptype in (LISTSXP, LANGSXP):
            return self._pairlist(flags)

        if sexptype in (LGLSXP, INTSXP):
            n = self._length()
            raw = np.frombuffer(self.data, dtype=">i4", count=n, offset=self.pos)
            self.pos += 4 * n
            value: Any = [None if v == NA_INTEGER else int(v) for v in raw]
        elif sexptype == REALSXP:
            n = self._length()
            value = np.frombuffer(self.data, dtype=">f8", count=n, offset=self.pos).tolist()
            self.pos += 8 * n
        elif sexptype in (STRSXP, VECSXP, EXPRSXP):  # elements are whole items
            value = [self._item() for _ in range(self._length())]
        else:
            raise NotImplementedError(f"R SEXPTYPE {sexptype} is not supported by this reader")
        obj = RObject(sexptype, value)
        if flags & _HAS_ATTR:
            obj.attributes = self._attributes()
        return obj

    def _charsxp(self, flags: int) -> str | None:
        n = self._int()
        if n == -1:
            return None  # NA_STRING
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        encoding = "latin-1" if (flags >> 12) & _LATIN1 else "utf-8"
        return raw.decode(encoding, errors="replace")

    def _pairlist(self, flags: int) -> RObject:
        """A pairlist, read iteratively (its CDR chain would otherwise recurse)."""
        sexptype = flags & 0xFF
        cells: list[tuple[str | None, Any]] = []
        attributes: dict[str, Any] = {}
        while True:
            if flags & _HAS_ATTR:
                attrs = self._attributes()
                if not cells:
                    attributes = attrs
            tag = self._item() if flags & _HAS_TAG else None
            cells.append((tag.name if isinstance(tag, RSymbol) else tag, self._item()))
            flags = self._int()
            if flags & 0xFF != LISTSXP:
                self.pos -= 4
                tail = self._item()
                if tail is not None:
                    cells.append((None, tail))
                return RObject(sexptype, cells, attributes)

    def _attributes(self) -> dict[str, Any]:
        attrs = self._item()
        if not isinstance(attrs, RObject) or attrs.sexptype != LISTSXP:
            raise ValueError("malformed attribute pairlist")
        return {str(tag): value for tag, value in attrs.value}


def unserialize(data: bytes) -> Any:
    """Deserialize R's XDR serialization of one object."""
    return RUnserializer(data).read()


def _decompress_rds(data: bytes) -> bytes:
    """An .rds/.rdx file as written by saveRDS(): gzip, bzip2, xz or uncompressed."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        import bz2

        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    return data


def _decompress_lazyload(blob: bytes, compressed: int) -> bytes:
    """One entry of a lazy-load database: a 4-byte big-endian length, then the payload.

    ``compressed`` 1 (R's default) means zlib; 2 and 3 prefix a type byte:
    ``Z`` xz, ``2`` bzip2, ``0`` stored.
    """
    (length,) = struct.unpack_from(">I", blob, 0)
    if compressed in (0, 1):
        out = zlib.decompress(blob[4:]) if compressed else blob[4:]
    else:
        kind, payload = blob[4:5], blob[5:]
        if kind == b"Z":
            out = lzma.decompress(payload)
        elif kind == b"2":
            import bz2

            out = bz2.decompress(payload)
        elif kind == b"0":
            out = payload
        else:
            out = zlib.decompress(payload)
    if len(out) != length:
        raise ValueError(f"lazy-load entry decompressed to {len(out)} bytes, expected {length}")
    return out


def read_lazyload_db(rdb: bytes, rdx: bytes) -> dict[str, Any]:
    """All objects of an R lazy-load database (``.rdb`` data plus ``.rdx`` index).

    The index is a list with ``variables`` (name -> (offset, length) into the .rdb),
    ``references`` and ``compressed``. Each .rdb entry is one compressed serialization.
    """
    index_raw = _decompress_rds(rdx)
    if index_raw[:2] != b"X\n":  # the lazy-load framing instead: length prefix + zlib
        index_raw = _decompress_lazyload(rdx, 1)
    index = unserialize(index_raw)
    if not isinstance(index, RObject):
        raise ValueError("the .rdx index is not an R list")
    fields = index.as_dict()
    compressed_field = fields.get("compressed")
    compressed = 1
    if isinstance(compressed_field, RObject) and compressed_field.value:
        compressed = int(compressed_field.value[0])
    objects: dict[str, Any] = {}
    for name, where in fields["variables"].as_dict().items():
        offset, length = (int(v) for v in where.value)
        objects[name] = unserialize(_decompress_lazyload(rdb[offset : offset + length], compressed))
    return objects


# --------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------


def read_ar_members(data: bytes) -> dict[str, bytes]:
    """The members of a Unix ``ar`` archive (a Debian .deb is one)."""
    if data[:8] != b"!<arch>\n":
        raise ValueError("not an ar archive")
    members: dict[str, bytes] = {}
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


def deb_files(deb_path: Path, wanted: Iterable[str]) -> dict[str, bytes]:
    """Read some files out of a .deb's data archive, without dpkg."""
    members = read_ar_members(deb_path.read_bytes())
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise ValueError(f"{deb_path} has no data.tar member")
    wanted = list(wanted)
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if name in wanted and member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    out[name] = handle.read()
    missing = set(wanted) - set(out)
    if missing:
        raise ValueError(f"{deb_path} lacks {sorted(missing)}")
    return out


def fetch_deb(cache_dir: Path, package: str = DEB_PACKAGE) -> Path:
    """The package's .deb in ``cache_dir``, downloaded with ``apt-get download`` if absent."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    log(f"corpus: apt-get download {package} -> {cache_dir}")
    try:
        result = subprocess.run(
            ["apt-get", "download", package],
            cwd=cache_dir,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SystemExit(
            "apt-get is not available; pass --corpus-file with a plain UTF-8 text instead"
        ) from exc
    if result.returncode != 0 and os.geteuid() == 0:
        # A fresh machine may have no package lists yet; as root, fetch them once and retry.
        log("corpus: no package lists? running apt-get update, then trying again")
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        result = subprocess.run(["apt-get", "download", package], cwd=cache_dir,
                                capture_output=True, text=True, check=False)
    found = sorted(cache_dir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not found:
        raise SystemExit(
            f"apt-get download {package} failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}\n"
            "Run `apt-get update` first, or pass --corpus-file."
        )
    return found[-1]


def load_austen_novels(cache_dir: Path) -> tuple[dict[str, list[str]], str]:
    """Jane Austen's six novels as lists of text lines, plus the .deb's file name."""
    deb = fetch_deb(cache_dir)
    files = deb_files(deb, [RDATA_DIR + "Rdata.rdb", RDATA_DIR + "Rdata.rdx"])
    objects = read_lazyload_db(files[RDATA_DIR + "Rdata.rdb"], files[RDATA_DIR + "Rdata.rdx"])
    novels: dict[str, list[str]] = {}
    for name in NOVELS:
        obj = objects[name]
        if not isinstance(obj, RObject) or obj.sexptype != STRSXP:
            raise ValueError(f"{name} is not a character vector")
        novels[name] = [line or "" for line in obj.value]
    return novels, deb.name


_HEADING = re.compile(r"^(chapter|volume|vol\.)\s+([ivxlc]+|\d+|[a-z-]+)\.?$", re.IGNORECASE)
# End marks; whatever follows them (an editor's note in Northanger Abbey) is not the novel.
_END = re.compile(r"^(the end|finis|a note on the text)\.?$", re.IGNORECASE)


def normalise(text: str) -> str:
    """Tidy one paragraph: drop the _italics_ underscores, collapse whitespace."""
    return re.sub(r"\s+", " ", text.replace("_", "")).strip()


def novel_paragraphs(lines: Sequence[str]) -> list[str]:
    """Prose paragraphs of a novel.

    The title page (everything before the first chapter or volume heading), the headings
    themselves and everything from the end mark on are dropped; the lines of each
    paragraph are joined; paragraphs without letters (``***``) are left out.
    """
    start = next((i for i, line in enumerate(lines) if _HEADING.match(line.strip())), 0)
    paragraphs: list[str] = []
    current: list[str] = []
    for raw in [*lines[start:], ""]:
        line = raw.strip()
        if _END.match(line):
            break
        if not line or _HEADING.match(line):
            if current:
                paragraphs.append(normalise(" ".join(current)))
                current = []
            continue
        current.append(line)
    if current:
        paragraphs.append(normalise(" ".join(current)))
    return [p for p in paragraphs if re.search("[A-Za-z]", p)]


def text_paragraphs(text: str) -> list[str]:
    """Paragraphs of a plain text: blocks separated by blank lines."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    return [p for p in (normalise(b) for b in blocks) if p]


def split_holdout(paragraphs: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Hold out the last ``fraction`` of the characters, at a paragraph boundary."""
    total = sum(len(p) for p in paragraphs)
    held, cut = 0, len(paragraphs)
    while cut > 1 and held < fraction * total:
        cut -= 1
        held += len(paragraphs[cut])
    return paragraphs[:cut], paragraphs[cut:]


@dataclass
class Corpus:
    """Training and validation paragraphs per document, and where they came from."""

    train: dict[str, list[str]]
    val: dict[str, list[str]]
    source: dict[str, Any]

    def train_text(self) -> str:
        """All training text, documents separated by blank lines."""
        return "\n\n".join("\n".join(p) for p in self.train.values())


def build_corpus(
    cache_dir: Path,
    corpus_file: Path | None,
    holdout: float,
    max_train_chars: int | None,
    max_val_chars: int | None,
) -> Corpus:
    """Load, clean and split the corpus; optionally cut it down for quick runs."""
    if corpus_file is not None:
        documents = {corpus_file.stem: text_paragraphs(corpus_file.read_text(encoding="utf-8"))}
        source: dict[str, Any] = {"kind": "file", "path": str(corpus_file)}
    else:
        novels, deb_name = load_austen_novels(cache_dir)
        documents = {name: novel_paragraphs(lines) for name, lines in novels.items()}
        source = {
            "kind": "debian-package",
            "package": DEB_PACKAGE,
            "deb": deb_name,
            "package_licence": "MIT",
            "text": "Jane Austen's six novels (public domain)",
            "objects": list(NOVELS),
            "raw_lines": {name: len(lines) for name, lines in novels.items()},
        }
    train: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    for name, paragraphs in documents.items():
        train[name], val[name] = split_holdout(paragraphs, holdout)
    if max_train_chars is not None:
        train = _truncate(train, max_train_chars)
    if max_val_chars is not None:
        per_doc = max(1, max_val_chars // max(1, len(val)))
        val = _truncate(val, per_doc, per_document=True)
    source["holdout_fraction"] = holdout
    return Corpus(train=train, val=val, source=source)


def _truncate(
    docs: dict[str, list[str]], limit: int, per_document: bool = False
) -> dict[str, list[str]]:
    """Keep whole paragraphs, in order, until ``limit`` characters (in all or per document)."""
    out: dict[str, list[str]] = {}
    used = 0
    for name, paragraphs in docs.items():
        if per_document:
            used = 0
        kept: list[str] = []
        for paragraph in paragraphs:
            if used >= limit:
                break
            kept.append(paragraph)
            used += len(paragraph) + 1
        if kept:
            out[name] = kept
    return out


_WORD_STRIP = re.compile(r"[^a-z']")


def word_forms(text: str) -> list[str]:
    """Whitespace-separated words, lowercased, punctuation stripped, empties dropped."""
    words = (_WORD_STRIP.sub("", w.lower()).strip("'") for w in text.split())
    return [w for w in words if w]


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------


def train_tokenizer(paragraphs: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE over the training paragraphs; encodings start with ``<s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(paragraphs, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    for token, expected in zip(SPECIAL_TOKENS, (UNK_ID, BOS_ID, EOS_ID), strict=True):
        if tokenizer.token_to_id(token) != expected:
            raise RuntimeError(f"special token {token} did not get id {expected}")
    return tokenizer


def save_tokenizer(tokenizer: Any, out: Path, max_length: int) -> None:
    """Write tokenizer.json and a tokenizer_config.json that AutoTokenizer understands."""
    tokenizer.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def encode_documents(tokenizer: Any, docs: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Token ids of each document (paragraphs joined by newlines), without specials."""
    texts = ["\n".join(paragraphs) for paragraphs in docs.values()]
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    return {
        name: np.asarray(enc.ids, dtype=np.int32) for name, enc in zip(docs, encodings, strict=True)
    }


# --------------------------------------------------------------------------------------
# Model, router capture and losses
# --------------------------------------------------------------------------------------


def install_router_recorders(model: nn.Module) -> adapters.RouterLogitsLog:
    """Attach mixtui's routing hooks; the log holds one entry per MoE layer per forward."""
    router_log = adapters.RouterLogitsLog()
    adapters.attach(_ADAPTER, model, router_log)
    return router_log


def remove_router_recorders(model: nn.Module) -> None:
    """Detach the hooks: the blocks run exactly as mlx-lm wrote them."""
    adapters.detach(_ADAPTER, model)


def load_balancing_loss(router_logits: Sequence[mx.array], top_k: int) -> mx.array:
    """Switch-Transformer auxiliary loss, summed over layers.

    Per layer: ``E * sum_i f_i * P_i`` with ``f_i`` the fraction of the token-to-expert
    assignments (top-k) that go to expert ``i`` and ``P_i`` the mean router probability of
    expert ``i``. It is 1 per layer when the routing is uniform.
    """
    total = mx.array(0.0)
    for logits in router_logits:
        num_experts = logits.shape[-1]
        flat = logits.reshape(-1, num_experts)
        probs = mx.softmax(flat, axis=-1, precise=True)
        top = mx.argpartition(-flat, kth=top_k - 1, axis=-1)[:, :top_k]
        one_hot = (top[..., None] == mx.arange(num_experts)).astype(mx.float32)
        fraction = mx.stop_gradient(one_hot.sum(axis=1).mean(axis=0) / top_k)
        total = total + num_experts * (fraction * probs.mean(axis=0)).sum()
    return total


def model_config(
    geometry: dict[str, Any], max_positions: int, aux_coef: float = 0.01
) -> dict[str, Any]:
    """A Hugging Face style Mixtral config.json for the geometry."""
    return {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        **geometry,
        "hidden_act": "silu",
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_theta": ROPE_THETA,
        "max_position_embeddings": max_positions,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "attention_dropout": 0.0,
        "router_aux_loss_coef": aux_coef,
        "output_router_logits": False,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": None,
        "torch_dtype": "float32",
    }


def build_model(config: dict[str, Any]) -> Model:
    """A fresh float32 Mixtral from mlx-lm (the RNG must be seeded first)."""
    return Model(ModelArgs.from_dict(config))


def flat_parameters(model: nn.Module) -> dict[str, mx.array]:
    """The model's parameters by dotted name, as mlx-lm saves and loads them."""
    return cast(dict[str, mx.array], dict(tree_flatten(model.parameters())))


def count_parameters(model: nn.Module) -> int:
    """Number of scalars in the model's parameters."""
    return sum(int(v.size) for v in flat_parameters(model).values())


def idle_expert_parameters(config: dict[str, Any]) -> int:
    """Parameters of the experts a token does not use (total minus active parameters)."""
    h, i = config["hidden_size"], config["intermediate_size"]
    idle = config["num_local_experts"] - config["num_experts_per_tok"]
    return 3 * h * i * idle * config["num_hidden_layers"]


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def batch_iterator(
    stream: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator
) -> Iterator[tuple[mx.array, mx.array]]:
    """Random windows of the token stream; inputs start with ``<s>``, targets are shifted."""
    high = len(stream) - seq_len
    if high <= 0:
        raise SystemExit(f"training text has {len(stream)} tokens, fewer than --seq-len")
    while True:
        starts = rng.integers(0, high + 1, size=batch_size)
        targets = np.stack([stream[s : s + seq_len] for s in starts])
        inputs = np.concatenate(
            [np.full((batch_size, 1), BOS_ID, dtype=np.int32), targets[:, :-1]], axis=1
        )
        yield mx.array(inputs), mx.array(targets)


def lr_schedule(peak: float, warmup: int, steps: int, final_fraction: float) -> Any:
    """Linear warmup from ~0 to ``peak``, then cosine decay to ``final_fraction * peak``."""
    warmup = max(1, min(warmup, steps - 1)) if steps > 1 else 1
    rise = optim.linear_schedule(peak / warmup, peak, warmup)
    decay = optim.cosine_decay(peak, max(1, steps - warmup), end=peak * final_fraction)
    return optim.join_schedules([rise, decay], [warmup])


def train(
    model: Model,
    stream: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train in place; returns the training figures for the report."""
    router_log = install_router_recorders(model)
    top_k = model.args.num_experts_per_tok
    schedule = lr_schedule(args.lr, args.warmup, args.steps, 0.1)
    optimizer = optim.AdamW(
        learning_rate=schedule, betas=[0.9, 0.95], weight_decay=args.weight_decay
    )

    def loss_fn(model: Model, inputs: mx.array, targets: mx.array) -> tuple[mx.array, Any]:
        router_log.clear()
        logits = model(inputs)
        ce = nn.losses.cross_entropy(logits, targets, reduction="mean")
        aux = load_balancing_loss(router_log.logits, top_k)
        router_log.clear()
        return ce + args.aux_coef * aux, (ce, aux)

    loss_and_grad = nn.value_and_grad(model, loss_fn)

    def step(inputs: mx.array, targets: mx.array) -> tuple[mx.array, mx.array]:
        (_, (ce, aux)), grads = loss_and_grad(model, inputs, targets)
        grads, _ = optim.clip_grad_norm(grads, args.clip)
        optimizer.update(model, grads)
        return ce, aux

    state = [model.state, optimizer.state]
    if not args.no_compile:
        step = partial(mx.compile, inputs=state, outputs=state)(step)

    rng = np.random.default_rng(args.seed)
    batches = batch_iterator(stream, args.batch_size, args.seq_len, rng)
    tokens_per_step = args.batch_size * args.seq_len
    curve: list[dict[str, float]] = []
    window_ce: list[float] = []
    start = time.perf_counter()
    last_time, last_step = start, 0
    ce_value = aux_value = float("nan")
    for it in range(1, args.steps + 1):
        inputs, targets = next(batches)
        ce, aux = step(inputs, targets)
        mx.eval(ce, aux, state)
        ce_value, aux_value = cast(float, ce.item()), cast(float, aux.item())
        window_ce.append(ce_value)
        if it % args.log_every == 0 or it == args.steps or it == 1:
            now = time.perf_counter()
            tps = (it - last_step) * tokens_per_step / max(now - last_time, 1e-9)
            elapsed = now - start
            eta = elapsed / it * (args.steps - it)
            mean_ce = float(np.mean(window_ce))
            log(
                f"step {it:5d}/{args.steps}  loss {mean_ce:.4f}  aux {aux_value:.3f}  "
                f"lr {float(schedule(mx.array(it - 1))):.2e}  {tps:7.0f} tok/s  "
                f"elapsed {elapsed / 60:5.1f} min  eta {eta / 60:5.1f} min"
            )
            curve.append({"step": it, "loss": round(mean_ce, 4), "aux": round(aux_value, 4)})
            window_ce = []
            last_time, last_step = now, it
    seconds = time.perf_counter() - start
    remove_router_recorders(model)
    tokens_seen = args.steps * tokens_per_step
    return {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "tokens_seen": tokens_seen,
        "epochs": round(tokens_seen / len(stream), 3),
        "optimizer": "AdamW",
        "betas": [0.9, 0.95],
        "peak_lr": args.lr,
        "warmup_steps": args.warmup,
        "final_lr_fraction": 0.1,
        "schedule": "linear warmup + cosine decay",
        "weight_decay": args.weight_decay,
        "grad_clip": args.clip,
        "aux_loss": "Switch-Transformer E*sum(f_i*P_i), summed over layers",
        "aux_coef": args.aux_coef,
        "seed": args.seed,
        "compiled": not args.no_compile,
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens_seen / max(seconds, 1e-9), 1),
        "final_train_loss": round(ce_value, 4),
        "final_aux_loss": round(aux_value, 4),
        "loss_curve": curve,
    }


def save_model(model: Model, config: dict[str, Any], out: Path) -> None:
    """config.json, model.safetensors (mlx-lm's parameter names) and generation_config."""
    weights = flat_parameters(model)  # the hooks swap classes only: names are mlx-lm's
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "do_sample": True,
        "temperature": 0.8,
    }
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


def validation_windows(
    docs: dict[str, np.ndarray], seq_len: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Non-overlapping windows: every validation token is a target exactly once."""
    windows = []
    for ids in docs.values():
        for s in range(0, len(ids), seq_len):
            targets = ids[s : s + seq_len]
            if len(targets) == 0:
                continue
            inputs = np.concatenate([[BOS_ID], targets[:-1]]).astype(np.int32)
            windows.append((inputs, targets.astype(np.int32)))
    return windows


@dataclass
class Evaluation:
    """Held-out loss and the router logits seen on the held-out text.

    ``router_logits`` has one (tokens, experts) array per layer: the windows' tokens
    concatenated, position 0 of each window (``<s>``) left out; ``window_lengths`` says how
    many rows each window contributed, so consecutive-token pairs never cross windows.
    """

    loss: float
    tokens: int
    router_logits: list[np.ndarray]
    window_lengths: list[int]


def evaluate(
    model: nn.Module, val_ids: dict[str, np.ndarray], seq_len: int, batch_size: int
) -> Evaluation:
    """Validation loss (nats/token) and router logits, batching windows of equal length."""
    router_log = install_router_recorders(model)
    windows = validation_windows(val_ids, seq_len)
    # Batch windows of the same length together.
    by_length: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for window in windows:
        by_length.setdefault(len(window[1]), []).append(window)
    total_nll, total_tokens = 0.0, 0
    layers = len(model.layers)
    per_layer: list[list[np.ndarray]] = [[] for _ in range(layers)]
    boundaries: list[int] = []
    for group in by_length.values():
        for b in range(0, len(group), batch_size):
            chunk = group[b : b + batch_size]
            inputs = mx.array(np.stack([w[0] for w in chunk]))
            targets = mx.array(np.stack([w[1] for w in chunk]))
            router_log.clear()
            logits = model(inputs)
            nll = nn.losses.cross_entropy(logits, targets, reduction="sum")
            mx.eval(nll, router_log.logits)
            total_nll += cast(float, nll.item())
            total_tokens += int(targets.size)
            for layer, gate in enumerate(router_log.logits):
                values = np.array(gate.astype(mx.float32))[:, 1:, :]
                for row in values:
                    per_layer[layer].append(row)
            boundaries.extend(len(w[1]) - 1 for w in chunk)
    remove_router_recorders(model)
    stacked = [np.concatenate(rows, axis=0) for rows in per_layer]
    return Evaluation(total_nll / max(total_tokens, 1), total_tokens, stacked, boundaries)


def unigram_loss(train_stream: np.ndarray, val_targets: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy of the add-one-smoothed training unigram distribution on validation."""
    counts = np.bincount(train_stream, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[val_targets].mean())


def routing_statistics(
    router_logits: list[np.ndarray], window_lengths: list[int], top_k: int
) -> list[dict[str, Any]]:
    """Per layer: expert shares of top-1 choices and consecutive-token routing rates."""
    stats = []
    # Pairs (t, t+1) inside the same window only.
    same_window = np.ones(sum(window_lengths), dtype=bool)
    pos = 0
    for length in window_lengths:
        pos += length
        if length:
            same_window[pos - 1] = False  # a window's last token has no successor there
    pair_mask = same_window[:-1] if len(same_window) else same_window
    for layer, logits in enumerate(router_logits):
        num_experts = logits.shape[1]
        order = np.argsort(-logits, axis=1, kind="stable")
        top1 = order[:, 0]
        topk = np.sort(order[:, :top_k], axis=1)
        shares = np.bincount(top1, minlength=num_experts) / max(len(top1), 1)
        k_shares = np.bincount(topk.ravel(), minlength=num_experts) / max(topk.size, 1)
        cur, nxt = slice(0, len(top1) - 1), slice(1, len(top1))
        same = (top1[cur] == top1[nxt])[pair_mask]
        in_top2 = (topk[cur] == top1[nxt][:, None]).any(axis=1)[pair_mask]
        overlap = (topk[cur][:, :, None] == topk[nxt][:, None, :]).any(axis=(1, 2))[pair_mask]
        stats.append(
            {
                "layer": layer,
                "tokens": int(len(top1)),
                "top1_share": [round(float(s), 4) for s in shares],
                "top2_share": [round(float(s), 4) for s in k_shares],
                "min_top1_share": round(float(shares.min()), 4),
                "max_top1_share": round(float(shares.max()), 4),
                "same_top1_rate": round(float(same.mean()), 4),
                "next_top1_in_top2_rate": round(float(in_top2.mean()), 4),
                "top2_overlap_rate": round(float(overlap.mean()), 4),
            }
        )
    return stats


def sample_texts(
    model: nn.Module, tokenizer: Any, seed: int, max_tokens: int, temp: float
) -> list[dict[str, Any]]:
    """Sampled continuations of :data:`PROMPTS` with a fixed seed."""
    from mlx_lm.generate import stream_generate
    from mlx_lm.sample_utils import make_sampler

    samples = []
    for i, prompt in enumerate(PROMPTS):
        mx.random.seed(seed + i)
        prompt_ids = tokenizer.encode(prompt)
        tokens: list[int] = []
        streamed = ""
        for response in stream_generate(
            model,
            tokenizer,
            prompt_ids,
            max_tokens=max_tokens,
            sampler=make_sampler(temp=temp),
        ):
            streamed += response.text
            if response.finish_reason != "stop":
                tokens.append(int(response.token))
        full = tokenizer.decode(prompt_ids + tokens, skip_special_tokens=True)
        completion = full[len(prompt) :] if full.startswith(prompt) else full
        samples.append(
            {
                "prompt": prompt,
                "completion": completion,
                "generated_tokens": len(tokens),
                "streamed_matches_decode": streamed.strip() == completion.strip(),
            }
        )
    return samples


def tokenizer_roundtrip(tokenizer: Any, text: str) -> dict[str, Any]:
    """Check that encode/decode and mlx-lm's streaming detokenizer give the text back."""
    ids = tokenizer.encode(text)
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    detok = tokenizer.detokenizer
    detok.reset()
    for token in ids[1:]:
        detok.add_token(token)
    detok.finalize()
    return {
        "starts_with_bos": ids[0] == BOS_ID,
        "decode_roundtrip": decoded == text,
        "stream_roundtrip": detok.text == text,
        "detokenizer": type(detok).__name__,
    }


def machine_info() -> dict[str, Any]:
    """What ran the training."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib import metadata

    versions = {}
    for package in ("mlx", "mlx-lm", "tokenizers", "transformers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "mlx_device": str(mx.default_device()),
        "blas": blas.preloaded() or "bundled with mlx",
        "python": platform.python_version(),
        "versions": versions,
    }


def file_sizes(out: Path) -> dict[str, int]:
    """Sizes in bytes of the files in the output directory."""
    return {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--steps", type=int, default=1800, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model directory to write")
    p.add_argument("--report", type=Path, default=None, help="default: OUT/train_report.json")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the .deb goes")
    p.add_argument("--corpus-file", type=Path, default=None, help="plain UTF-8 text instead")
    p.add_argument("--max-train-chars", type=int, default=None, help="cut the training text")
    p.add_argument("--max-val-chars", type=int, default=None, help="cut the validation text")
    p.add_argument("--holdout", type=float, default=0.05, help="held-out tail of each novel")
    p.add_argument("--vocab-size", type=int, default=GEOMETRY["vocab_size"])
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--aux-coef", type=float, default=0.01, help="load-balancing loss weight")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--sample-tokens", type=int, default=48)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--no-compile", action="store_true", help="do not mx.compile the step")
    p.add_argument("--bundled-blas", action="store_true", help="do not preload BLIS/OpenBLAS")
    return p.parse_args(argv)


def maybe_reexec_with_fast_blas(args: argparse.Namespace) -> None:
    """On Linux, restart with a system BLIS or OpenBLAS preloaded (see the module docstring).

    MLX resolves ``cblas_sgemm`` at load time, so a preloaded library takes its place.
    """
    if sys.platform != "linux" or args.bundled_blas or os.environ.get("MIXTUI_NANO_REEXEC"):
        return
    library = blas.fast_blas()
    if library is None:
        log("blas: no system BLIS/OpenBLAS found; MLX's bundled BLAS is slower (see --help)")
        return
    env = blas.with_preload(dict(os.environ)) | {"MIXTUI_NANO_REEXEC": "1"}
    log(f"blas: restarting with {library} preloaded")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the corpus and tokenizer, train, save, evaluate, report."""
    args = parse_args(argv)
    if argv is None:
        maybe_reexec_with_fast_blas(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report_path: Path = args.report or out / "train_report.json"
    run_start = time.perf_counter()
    mx.random.seed(args.seed)
    np.random.seed(args.seed)

    corpus = build_corpus(
        args.cache_dir, args.corpus_file, args.holdout, args.max_train_chars, args.max_val_chars
    )
    train_chars = sum(len(p) + 1 for ps in corpus.train.values() for p in ps)
    val_chars = sum(len(p) + 1 for ps in corpus.val.values() for p in ps)
    log(
        f"corpus: {len(corpus.train)} documents, {train_chars:,} training and "
        f"{val_chars:,} held-out characters"
    )

    tokenizer = train_tokenizer((p for ps in corpus.train.values() for p in ps), args.vocab_size)
    vocab_size = tokenizer.get_vocab_size()
    save_tokenizer(tokenizer, out, args.seq_len)
    train_ids = encode_documents(tokenizer, corpus.train)
    val_ids = encode_documents(tokenizer, corpus.val)
    stream = np.concatenate([np.concatenate([ids, [EOS_ID]]) for ids in train_ids.values()]).astype(
        np.int32
    )
    val_tokens = int(sum(len(v) for v in val_ids.values()))
    log(
        f"tokenizer: {vocab_size} tokens; {len(stream):,} training tokens "
        f"({train_chars / len(stream):.2f} chars/token), {val_tokens:,} held-out tokens"
    )

    geometry = dict(GEOMETRY, vocab_size=vocab_size)
    config = model_config(geometry, args.seq_len, args.aux_coef)
    model = build_model(config)
    n_params = count_parameters(model)
    log(
        f"model: mixtral {geometry['num_hidden_layers']} layers, hidden "
        f"{geometry['hidden_size']}, {geometry['num_local_experts']} experts x "
        f"{geometry['intermediate_size']}, top-{geometry['num_experts_per_tok']}: "
        f"{n_params:,} parameters ({n_params * 4 / 1e6:.1f} MB float32)"
    )
    training = train(model, stream, args)
    save_model(model, config, out)
    log(f"saved: {out}")

    # Everything below goes through the saved files, as mixtui will load them.
    from mlx_lm import load

    loaded_pair = load(str(out))
    loaded, hf_tokenizer = loaded_pair[0], loaded_pair[1]
    held_out = evaluate(loaded, val_ids, args.seq_len, 16)
    val_loss, n_val = held_out.loss, held_out.tokens
    val_targets = np.concatenate(list(val_ids.values()))
    unigram = unigram_loss(stream, val_targets, vocab_size)
    routing = routing_statistics(
        held_out.router_logits, held_out.window_lengths, config["num_experts_per_tok"]
    )
    samples = sample_texts(loaded, hf_tokenizer, args.seed, args.sample_tokens, args.temperature)
    vocabulary = set(word_forms(corpus.train_text()))
    generated_words = [w for s in samples for w in word_forms(s["completion"])]
    known = sum(w in vocabulary for w in generated_words)
    first_val = next(iter(corpus.val.values()))[0]
    roundtrip = tokenizer_roundtrip(hf_tokenizer, first_val[:400])

    report: dict[str, Any] = {
        "model": {
            **config,
            "parameters": n_params,
            "active_parameters_per_token": n_params - idle_expert_parameters(config),
        },
        "corpus": {
            **corpus.source,
            "documents": list(corpus.train),
            "train_chars": train_chars,
            "val_chars": val_chars,
            "train_tokens": int(len(stream)),
            "val_tokens": val_tokens,
            "chars_per_token": round(train_chars / len(stream), 3),
        },
        "tokenizer": {"type": "byte-level BPE", "vocab_size": vocab_size, **roundtrip},
        "training": training,
        "evaluation": {
            "val_loss": round(val_loss, 4),
            "val_perplexity": round(math.exp(val_loss), 2),
            "val_bits_per_char": round(val_loss * n_val / math.log(2) / max(val_chars, 1), 4),
            "unigram_loss": round(unigram, 4),
            "val_tokens": n_val,
            "units": "nats per token",
        },
        "routing": {
            "layers": routing,
            "min_top1_share": min(r["min_top1_share"] for r in routing),
            "random_baselines": {
                "same_top1_rate": 1 / 8,
                "next_top1_in_top2_rate": 2 / 8,
                "top2_overlap_rate": round(1 - math.comb(6, 2) / math.comb(8, 2), 4),
            },
        },
        "samples": samples,
        "words": {
            "generated": len(generated_words),
            "in_training_vocabulary": known,
            "fraction": round(known / max(len(generated_words), 1), 4),
            "training_vocabulary_size": len(vocabulary),
        },
        "machine": machine_info(),
        "total_seconds": 0.0,
    }
    report["total_seconds"] = round(time.perf_counter() - run_start, 1)
    write_report(report, report_path, out)
    print_summary(report)
    return 0


def write_report(report: dict[str, Any], path: Path, out: Path) -> None:
    """Write the report, its ``files`` entry counting the report itself when it is in ``out``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    others = {k: v for k, v in file_sizes(out).items() if out / k != path}
    text = ""
    for _ in range(5):  # the sizes are part of the text they measure: iterate to a fixed point
        sizes = dict(others)
        if path.parent.resolve() == out.resolve():
            sizes[path.name] = len(text.encode("utf-8"))
        report["files"] = {"bytes": dict(sorted(sizes.items())), "total_bytes": sum(sizes.values())}
        new_text = json.dumps(report, indent=2) + "\n"
        if new_text == text:
            break
        text = new_text
    path.write_text(text, encoding="utf-8")


def print_summary(report: dict[str, Any]) -> None:
    """The report's headline figures."""
    ev, tr, rt = report["evaluation"], report["training"], report["routing"]
    log("")
    log("=== nano training report ===")
    log(
        f"parameters {report['model']['parameters']:,}; files "
        f"{report['files']['total_bytes'] / 1e6:.2f} MB"
    )
    log(
        f"trained {tr['steps']} steps, {tr['tokens_seen']:,} tokens ({tr['epochs']} epochs) "
        f"in {tr['seconds'] / 60:.1f} min ({tr['tokens_per_second']:.0f} tok/s)"
    )
    log(
        f"validation loss {ev['val_loss']:.3f} nats/token (ppl {ev['val_perplexity']}), "
        f"unigram baseline {ev['unigram_loss']:.3f}; {ev['val_bits_per_char']:.3f} bits/char"
    )
    base = rt["random_baselines"]
    log(
        f"routing (random: same {base['same_top1_rate']:.1%}, next-in-top2 "
        f"{base['next_top1_in_top2_rate']:.1%}, top2 overlap {base['top2_overlap_rate']:.1%}):"
    )
    for layer in rt["layers"]:
        log(
            f"  layer {layer['layer']}: top-1 share min {layer['min_top1_share']:.1%} max "
            f"{layer['max_top1_share']:.1%}; same {layer['same_top1_rate']:.1%}, "
            f"next-in-top2 {layer['next_top1_in_top2_rate']:.1%}, "
            f"overlap {layer['top2_overlap_rate']:.1%}"
        )
    words = report["words"]
    log(f"generated words in training vocabulary: {words['fraction']:.1%} of {words['generated']}")
    for sample in report["samples"]:
        log(f"  [{sample['prompt']}]{sample['completion']}")


if __name__ == "__main__":
    sys.exit(main())
