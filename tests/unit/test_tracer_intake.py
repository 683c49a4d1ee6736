"""Safe intake of tracer folders and archives, and the policy that admits them."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from supervisor.tracer_intake import IntakeError, IntakeLimits, TooLarge, copy_folder, extract_archive, spec_name
from supervisor.tracer_policy import CustomTracerPolicy, Refused

SPEC = b"name: demo\ndescription: d\nprobes: [{tracepoint: 'sched:sched_process_exec'}]\nevent: {fields: []}\n"


def _tar(entries: list[tuple[str, bytes | None, bytes]], mode: str = "w:gz") -> bytes:
    """(name, data or None, type) → archive bytes; link targets go in data for link types."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = (data or b"").decode()
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def _reg(name: str, data: bytes = b"x") -> tuple[str, bytes, bytes]:
    return name, data, tarfile.REGTYPE


@pytest.mark.parametrize("prefix", ["", "demo/", "./", "anything/"])
def test_archive_at_the_top_or_in_one_folder(tmp_path: Path, prefix: str) -> None:
    folder = [(prefix.rstrip("/"), None, tarfile.DIRTYPE)] if prefix not in ("", "./") else []
    data = _tar(folder + [_reg(f"{prefix}tracer.yaml", SPEC), _reg(f"{prefix}program.bpf.c", b"int x;"),
                   _reg(f"{prefix}inc/a.h", b"#define A"), _reg(f"{prefix}__pycache__/hook.pyc", b"\0")])
    extract_archive(data, tmp_path / "out")
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()) == \
        ["inc/a.h", "program.bpf.c", "tracer.yaml"]
    assert (tmp_path / "out" / "tracer.yaml").read_bytes() == SPEC
    assert oct(os.stat(tmp_path / "out" / "tracer.yaml").st_mode & 0o777) == "0o600"
    assert spec_name(tmp_path / "out") == "demo"


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz"])
def test_other_compressions(tmp_path: Path, mode: str) -> None:
    extract_archive(_tar([_reg("tracer.yaml", SPEC)], mode), tmp_path / "out")
    assert (tmp_path / "out" / "tracer.yaml").exists()


@pytest.mark.parametrize(("entries", "needle"), [
    ([_reg("tracer.yaml"), _reg("../x")], "'..' is not allowed"),
    ([_reg("tracer.yaml"), _reg("a/../../x")], "'..' is not allowed"),
    ([_reg("tracer.yaml"), _reg("/etc/x")], "absolute paths"),
    ([_reg("tracer.yaml"), ("l", b"/etc/passwd", tarfile.SYMTYPE)], "a link"),
    ([_reg("tracer.yaml"), ("l", b"tracer.yaml", tarfile.LNKTYPE)], "a link"),
    ([_reg("tracer.yaml"), ("dev", None, tarfile.CHRTYPE)], "not a regular file"),
    ([_reg("tracer.yaml"), ("fifo", None, tarfile.FIFOTYPE)], "not a regular file"),
    ([_reg("tracer.yaml"), _reg("tracer.yaml")], "twice"),
    ([_reg("a/tracer.yaml"), _reg("b/x")], "no tracer.yaml"),
    ([_reg("program.bpf.c")], "no tracer.yaml"),
])
def test_unsafe_or_unusable_archives(tmp_path: Path, entries: list, needle: str) -> None:
    with pytest.raises(IntakeError) as caught:
        extract_archive(_tar(entries), tmp_path / "out")
    assert needle in str(caught.value)
    assert not (tmp_path / "x").exists()


def test_limits(tmp_path: Path) -> None:
    limits = IntakeLimits(max_archive_bytes=4096, max_total_bytes=300, max_file_bytes=200, max_files=3)
    with pytest.raises(TooLarge, match="limit per file is 200"):
        extract_archive(_tar([_reg("tracer.yaml", b"x" * 201)]), tmp_path / "a", limits)
    with pytest.raises(TooLarge, match="more than 300 bytes"):
        extract_archive(_tar([_reg("tracer.yaml", b"x" * 200), _reg("b", b"x" * 101)]), tmp_path / "b", limits)
    with pytest.raises(TooLarge, match="more than 3 files"):
        extract_archive(_tar([_reg(f"f{i}") for i in range(4)]), tmp_path / "c", limits)
    with pytest.raises(TooLarge, match="the archive is 5000 bytes"):
        extract_archive(b"\0" * 5000, tmp_path / "d", limits)
    bomb = _tar([_reg("tracer.yaml", b"\0" * (1 << 20))])  # a megabyte of zeros compresses to ~1 KiB
    assert len(bomb) < 4096
    with pytest.raises(TooLarge):
        extract_archive(bomb, tmp_path / "e", limits)


def test_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(IntakeError, match="not a readable tar archive"):
        extract_archive(b"hello", tmp_path / "out")


def test_copy_folder_takes_plain_files_and_refuses_links(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "inc").mkdir(parents=True)
    (source / "tracer.yaml").write_bytes(SPEC)
    (source / "inc" / "a.h").write_text("x")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "hook.pyc").write_bytes(b"\0")
    copy_folder(source, tmp_path / "copy")
    assert sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*") if p.is_file()) == \
        ["inc/a.h", "tracer.yaml"]
    (source / "inc" / "link.h").symlink_to("/etc/hostname")
    with pytest.raises(IntakeError, match="symbolic link"):
        copy_folder(source, tmp_path / "copy2")
    (source / "inc" / "link.h").unlink()
    (source / "inc" / "dirlink").symlink_to("/etc")
    with pytest.raises(IntakeError, match="symbolic link"):
        copy_folder(source, tmp_path / "copy3")
    (source / "inc" / "dirlink").unlink()
    os.mkfifo(source / "fifo")
    with pytest.raises(IntakeError, match="not a regular file"):
        copy_folder(source, tmp_path / "copy4")
    (source / "fifo").unlink()
    with pytest.raises(TooLarge):
        copy_folder(source, tmp_path / "copy5", IntakeLimits(max_files=2))


@pytest.mark.parametrize(("text", "needle"), [
    (b"name: Bad-Name\n", "must match"),
    (b"name: ../../x\n", "must match"),
    (b"- a list\n", "must match"),
    (b"name: [unclosed\n", "not valid YAML"),
])
def test_spec_name_is_a_plain_identifier(tmp_path: Path, text: bytes, needle: str) -> None:
    (tmp_path / "tracer.yaml").write_bytes(text)
    with pytest.raises(IntakeError) as caught:
        spec_name(tmp_path)
    assert needle in str(caught.value)


DIGEST = "sha256:" + "ab" * 32


def test_policy_off_by_default() -> None:
    with pytest.raises(Refused, match="--allow-custom-tracers"):
        CustomTracerPolicy().check_enabled()
    CustomTracerPolicy(api_enabled=True).check_enabled()


def test_policy_without_allow_list_admits_everything(tmp_path: Path) -> None:
    policy = CustomTracerPolicy.from_allow_list(True, [])
    policy.check_path(tmp_path)
    policy.check_digest(DIGEST, tmp_path)
    policy.check_digest(DIGEST, None)


def test_policy_directories_and_digests(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    policy = CustomTracerPolicy.from_allow_list(True, [str(allowed), DIGEST])
    policy.check_digest("sha256:" + "0" * 64, allowed / "t")  # by directory
    policy.check_digest(DIGEST, tmp_path / "elsewhere")  # by digest
    policy.check_digest(DIGEST, None)
    with pytest.raises(Refused, match="not under an allowed directory .* and its digest sha256:0+ is not"):
        policy.check_digest("sha256:" + "0" * 64, tmp_path / "elsewhere")
    with pytest.raises(Refused, match="accepted only by its digest"):
        policy.check_digest("sha256:" + "0" * 64, None)
    policy.check_path(tmp_path / "elsewhere")  # a digest could still admit it
    dirs_only = CustomTracerPolicy.from_allow_list(True, [str(allowed)])
    with pytest.raises(Refused, match="not under an allowed directory"):
        dirs_only.check_path(tmp_path / "elsewhere")
    assert not dirs_only.path_allowed(tmp_path / "allowedx")  # a prefix of the name is not a parent


def test_policy_entries_are_checked() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        CustomTracerPolicy.from_allow_list(True, ["sha256:abc"])
    with pytest.raises(ValueError, match="absolute directory"):
        CustomTracerPolicy.from_allow_list(True, ["relative/dir"])
