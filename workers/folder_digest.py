"""A tracer folder's identity: one sha256 over its files, in a canonical order.

The digest is what an operator puts on the allow-list (``sha256:<hex>``), so it must not
depend on how the folder was copied or archived: only relative paths and contents count,
never timestamps, owners or modes. Python's byte-code caches (``__pycache__``, ``*.pyc``)
are left out: they are not part of a tracer, and copies the agent makes never contain them.

Definition: for every regular file below the folder, sorted by its relative POSIX path (as
UTF-8 bytes), feed ``path NUL size NUL content`` into one sha256.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PREFIX = "sha256:"
CACHE_DIRS = frozenset({"__pycache__"})


def is_cache(relative: str) -> bool:
    """A byte-code cache path that digests skip and copies leave out."""
    parts = relative.split("/")
    return any(p in CACHE_DIRS for p in parts[:-1]) or parts[-1] in CACHE_DIRS or relative.endswith(".pyc")


def folder_files(folder: Path) -> list[str]:
    """The folder's regular files as sorted relative POSIX paths (caches skipped)."""
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in CACHE_DIRS]
        base = Path(root).relative_to(folder)
        for name in files:
            relative = (base / name).as_posix()
            if not is_cache(relative) and (Path(root) / name).is_file():
                out.append(relative)
    return sorted(out, key=lambda p: p.encode())


def folder_digest(folder: Path) -> str:
    folder = Path(folder)
    digest = hashlib.sha256()
    for relative in folder_files(folder):
        content = (folder / relative).read_bytes()
        digest.update(relative.encode() + b"\0" + str(len(content)).encode() + b"\0")
        digest.update(content)
    return PREFIX + digest.hexdigest()


def is_digest(text: str) -> bool:
    hexpart = text.removeprefix(PREFIX)
    return text.startswith(PREFIX) and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)
