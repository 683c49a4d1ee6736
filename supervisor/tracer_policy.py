"""Who may add tracers to a running agent over the API, and which ones.

Off unless the operator turns it on (``eunomiactl run --allow-custom-tracers``). It can then
be limited to tracer folders under some directories of the host and/or to folders with a
given digest (``sha256:…``, see :mod:`workers.folder_digest`); a tracer is accepted when it
passes either. An uploaded archive has no directory on the host, so only its digest can
admit it. With no allow-list at all, any tracer is accepted once enabled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.tracer_intake import IntakeLimits
from workers.folder_digest import is_digest


class Refused(PermissionError):
    """The policy refuses the request; the message says why (the API answers 403)."""


@dataclass(frozen=True, slots=True)
class CustomTracerPolicy:
    api_enabled: bool = False
    allow_dirs: tuple[Path, ...] = ()
    allow_digests: frozenset[str] = frozenset()
    intake: IntakeLimits = field(default_factory=IntakeLimits)

    @classmethod
    def from_allow_list(cls, enabled: bool, entries: list[str] | None = None,
                        intake: IntakeLimits | None = None) -> CustomTracerPolicy:
        """``entries``: absolute directories and ``sha256:<64 hex>`` digests (ValueError names a bad one)."""
        dirs: list[Path] = []
        digests: set[str] = set()
        for entry in entries or []:
            if entry.startswith("sha256:"):
                if not is_digest(entry):
                    raise ValueError(f"allow-list entry {entry!r}: a digest is 'sha256:' and 64 lowercase hex digits")
                digests.add(entry)
            elif os.path.isabs(entry):
                dirs.append(Path(os.path.realpath(entry)))
            else:
                raise ValueError(f"allow-list entry {entry!r}: an absolute directory or a sha256: digest")
        return cls(enabled, tuple(dirs), frozenset(digests), intake or IntakeLimits())

    @property
    def restricted(self) -> bool:
        return bool(self.allow_dirs or self.allow_digests)

    def check_enabled(self) -> None:
        if not self.api_enabled:
            raise Refused("adding and removing tracers over the API is disabled; start the agent with "
                          "--allow-custom-tracers to enable it")

    def path_allowed(self, real_path: Path) -> bool:
        """The folder (already resolved: no symlinks) lies under an allowed directory, or nothing is restricted."""
        return not self.restricted or any(real_path.is_relative_to(d) for d in self.allow_dirs)

    def check_path(self, real_path: Path) -> None:
        """Before copying: refuse early a folder that no directory and no digest could admit."""
        if not self.path_allowed(real_path) and not self.allow_digests:
            dirs = ", ".join(str(d) for d in self.allow_dirs)
            raise Refused(f"{real_path} is not under an allowed directory ({dirs})")

    def check_digest(self, digest: str, where: Path | None) -> None:
        """After copying or extracting: the final word. ``where`` is the host folder, None for an upload."""
        if where is not None and self.path_allowed(where):
            return
        if not self.restricted or digest in self.allow_digests:
            return
        if where is None:
            raise Refused(f"an uploaded tracer is accepted only by its digest, and {digest} is not on the allow-list")
        dirs = ", ".join(str(d) for d in self.allow_dirs) or "none"
        raise Refused(f"{where} is not under an allowed directory ({dirs}) and its digest {digest} "
                      "is not on the allow-list")
