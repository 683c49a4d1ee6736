"""A tracer folder's digest: files and their paths count, nothing else."""

from __future__ import annotations

import os
from pathlib import Path

from workers.folder_digest import folder_digest, folder_files, is_cache, is_digest


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


FILES = {"tracer.yaml": b"name: t\n", "program.bpf.c": b"int x;\n", "inc/a.h": b"#define A 1\n"}


def test_same_files_same_digest_whatever_the_order_times_and_modes(tmp_path: Path) -> None:
    one = _folder(tmp_path / "one", FILES)
    two = _folder(tmp_path / "two", dict(reversed(FILES.items())))
    os.utime(two / "tracer.yaml", (1, 1))
    os.chmod(two / "program.bpf.c", 0o600)
    assert folder_digest(one) == folder_digest(two)
    assert is_digest(folder_digest(one))


def test_contents_and_names_change_the_digest(tmp_path: Path) -> None:
    base = folder_digest(_folder(tmp_path / "base", FILES))
    assert folder_digest(_folder(tmp_path / "content", {**FILES, "program.bpf.c": b"int y;\n"})) != base
    renamed = {("inc/b.h" if k == "inc/a.h" else k): v for k, v in FILES.items()}
    assert folder_digest(_folder(tmp_path / "renamed", renamed)) != base
    assert folder_digest(_folder(tmp_path / "extra", {**FILES, "README": b""})) != base
    # a boundary between name and content cannot be moved without changing the digest
    assert folder_digest(_folder(tmp_path / "a", {"ab": b"c"})) != folder_digest(_folder(tmp_path / "b", {"a": b"bc"}))


def test_bytecode_caches_are_left_out(tmp_path: Path) -> None:
    base = folder_digest(_folder(tmp_path / "base", FILES))
    cached = _folder(tmp_path / "cached", {**FILES, "__pycache__/hook.cpython-311.pyc": b"\0", "old.pyc": b"\0"})
    assert folder_digest(cached) == base
    assert folder_files(cached) == ["inc/a.h", "program.bpf.c", "tracer.yaml"]
    assert is_cache("__pycache__/x.pyc") and is_cache("a/__pycache__/x") and is_cache("x.pyc")
    assert not is_cache("hook.py")


def test_is_digest() -> None:
    assert is_digest("sha256:" + "0" * 64)
    assert not is_digest("sha256:" + "0" * 63)
    assert not is_digest("sha256:" + "G" * 64)
    assert not is_digest("0" * 64)
