"""Read and rewrite a bpftrace script (``program.bt``) for the agent. Stdlib only: the worker uses it.

The worker runs the user's script almost as written. Three things are added, none of
them on a new line inside the user's code, so bpftrace's error messages keep the
script's own line numbers:

* every ``printf`` in a probe block gets the event header in front of its text: a
  ``\\x1e``, then ``nsecs pid tid uid gid cgroup comm``, then ``\\x1f``. So
  ``printf("file=%s\\n", str(args->filename))`` becomes an event with the same header
  fields as a BCC tracer's (:data:`EVENT_HEADER`).
* the first statement of every probe block (not ``BEGIN``/``END``/``interval``) returns
  early for the agent's own processes and for what ``-p``/``-n`` exclude: the map
  ``@eunomia_agent`` holds the agent's pids (seeded in ``BEGIN``, which runs in the
  bpftrace process itself, and followed across forks in the kernel).
* an ``interval`` probe prints the spec's metric maps every metrics interval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AGENT_MAP = "@eunomia_agent"
EVENT_START, HEADER_END = "\x1e", "\x1f"
# The header's printf conversions and arguments, in the order the worker parses them.
HEADER_FORMAT = r"\036%llu %d %d %d %d %llu %s\037"
HEADER_ARGS = "nsecs, pid, tid, uid, gid, cgroup, comm"
#: Probe blocks that run in bpftrace's own context: never filtered, never events.
SPECIAL_PROBES = ("BEGIN", "END", "interval", "i")
_ALIASES = {"t": "tracepoint", "k": "kprobe", "kr": "kretprobe", "u": "uprobe", "ur": "uretprobe",
            "U": "usdt", "p": "profile", "i": "interval", "s": "software", "h": "hardware",
            "rt": "rawtracepoint", "f": "kfunc", "fr": "kretfunc", "w": "watchpoint"}
_MAP = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
_PRINTF = re.compile(r"(?<![A-Za-z0-9_])printf\s*\(\s*\"")
_PROBE_LIST = re.compile(r"^\s*([^\s,]+(?:\s*,\s*[^\s,]+)*)")


class ScriptError(ValueError):
    """A script this module cannot read (unbalanced braces, an unterminated string)."""


@dataclass(frozen=True, slots=True)
class Block:
    """A top-level ``probe[, probe…] [/predicate/] { … }`` block."""

    probes: tuple[str, ...]
    open: int  # index of its '{'
    close: int  # index of its '}'

    @property
    def special(self) -> bool:
        return any(probe_kind(p)[0] in ("BEGIN", "END", "interval") for p in self.probes)


def code_only(text: str) -> str:
    """``text`` with the inside of comments and string literals blanked (same length, quotes kept),
    so braces, ``printf`` and ``@maps`` are found only in code."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ScriptError("a /* comment is not closed")
            out[i:end + 2] = [ch if ch == "\n" else " " for ch in text[i:end + 2]]
            i = end + 2
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise ScriptError(f"a string is not closed (line {text.count(chr(10), 0, i) + 1})")
            out[i + 1:j] = " " * (j - i - 1)
            i = j + 1
        else:
            i += 1
    return "".join(out)


def probe_kind(probe: str) -> tuple[str, str]:
    """``tracepoint:sched:sched_process_exec`` → (``tracepoint``, ``sched:sched_process_exec``);
    short aliases (``t:``, ``u:`` …) are spelled out."""
    kind, _, target = probe.partition(":")
    return _ALIASES.get(kind, kind), target


def blocks(text: str, code: str | None = None) -> list[Block]:
    """The script's top-level probe blocks (struct definitions and preprocessor lines skipped)."""
    code = code_only(text) if code is None else code
    found: list[Block] = []
    depth, start, header_from = 0, -1, 0
    for i, c in enumerate(code):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                raise ScriptError(f"unbalanced '}}' on line {code.count(chr(10), 0, i) + 1}")
            if depth == 0:
                header = "\n".join(ln for ln in code[header_from:start].splitlines()
                                   if not ln.lstrip().startswith("#")).strip().lstrip(";").strip()
                header_from = i + 1
                if header.split(None, 1)[:1] in (["struct"], ["union"], ["enum"]):
                    continue
                match = _PROBE_LIST.match(header)
                probes = tuple(p.strip() for p in match.group(1).split(",")) if match else ()
                found.append(Block(probes, start, i))
    if depth:
        raise ScriptError("a '{' is not closed")
    return found


def probes(text: str) -> list[str]:
    """Every probe the script attaches, in order (``BEGIN``, ``tracepoint:…``, …)."""
    return [p for block in blocks(text) for p in block.probes]


def maps(text: str) -> set[str]:
    """The names of the maps the script uses (without ``@``)."""
    return set(_MAP.findall(code_only(text)))


def _skip_condition(agent: bool, pid: int, comm: str) -> str:
    parts = [f"{AGENT_MAP}[pid]"] if agent else []
    if pid:
        parts.append(f"pid != {int(pid)}")
    if comm:
        parts.append('comm != "' + comm.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " || ".join(parts)


def rewrite(text: str, *, metric_maps: list[str], interval_ms: int, agent_pids: list[int],
            pid: int = 0, comm: str = "") -> str:
    """The script the worker hands to bpftrace (see the module's docstring)."""
    code = code_only(text)
    found = blocks(text, code)
    edits: list[tuple[int, str]] = []  # (index, text to insert there)
    skip = _skip_condition(True, pid, comm)
    seeds = " ".join(f"{AGENT_MAP}[{int(p)}] = 1;" for p in sorted(set(agent_pids)))
    seed = f" {AGENT_MAP}[pid] = 1; {seeds}"  # BEGIN runs in the bpftrace process itself
    has_begin = False
    for block in found:
        if any(probe_kind(p)[0] == "BEGIN" for p in block.probes):
            has_begin = True
            edits.append((block.open + 1, seed))
        if block.special:
            continue
        edits.append((block.open + 1, f" if ({skip}) {{ return; }}"))
        for match in _PRINTF.finditer(code, block.open, block.close):
            quote = match.end() - 1
            closing = code.index('"', quote + 1)
            edits.append((quote + 1, HEADER_FORMAT))
            edits.append((closing + 1, f", {HEADER_ARGS}"))
    out = text
    for index, insert in sorted(edits, key=lambda e: e[0], reverse=True):
        out = out[:index] + insert + out[index:]
    tail = ["", "// added by the Eunomia worker: the agent's own processes, and the metrics"]
    if not has_begin:
        tail.append(f"BEGIN {{{seed} }}")
    tail.append(f"tracepoint:sched:sched_process_fork /{AGENT_MAP}[pid]/ {{ {AGENT_MAP}[args->child_pid] = 1; }}")
    tail.append(f"tracepoint:sched:sched_process_exit /{AGENT_MAP}[tid]/ {{ delete({AGENT_MAP}[tid]); }}")
    if metric_maps:
        prints = " ".join(f"print(@{name});" for name in metric_maps)
        tail.append(f"interval:ms:{max(1, int(interval_ms))} {{ {prints} }}")
    return out.rstrip("\n") + "\n" + "\n".join(tail) + "\n"
