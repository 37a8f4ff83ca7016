"""Digests of file contents: what pins an artifact to the bytes it was built from, not to a path."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path


def files_digest(files: Iterable[Path], root: Path | None = None) -> str:
    """sha256 over every file's name (relative to ``root`` when given) and bytes, in the order given."""
    digest = hashlib.sha256()
    for file in files:
        name = str(file.relative_to(root)) if root is not None else file.name
        digest.update(name.encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def directory_digest(directory: str | Path) -> str:
    """Digest of every file below ``directory``; cached while no file's size or mtime moves.

    A model directory is hundreds of megabytes and its digest enters every id computed from it, so
    rereading it for each id would dominate a cached rerun; the stat signature decides when to.
    """
    root = Path(directory).expanduser().resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _cached_directory_digest(str(root), signature)


@lru_cache(maxsize=64)
def _cached_directory_digest(root: str, signature: tuple) -> str:
    return files_digest([Path(entry[0]) for entry in signature], Path(root))
