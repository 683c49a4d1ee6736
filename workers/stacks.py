"""Stack ids from a BPF stack map → symbol names, through BCC's symbolisers."""

from __future__ import annotations

from typing import Any

# get_stackid() returns a negative errno when it could not record the stack.
_MISSING = {-14: "[unreadable stack]", -17: "[stack map collision]", -12: "[stack map full]"}


class StackResolver:
    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf

    def frames(self, stack_map: str, stack_id: int, kind: str, pid: int = -1) -> list[str]:
        """Frames innermost first."""
        if stack_id < 0:
            return [_MISSING.get(stack_id, f"[no stack: {stack_id}]")]
        try:
            addresses = list(self.bpf.get_table(stack_map).walk(stack_id))
        except KeyError:
            return ["[stack evicted]"]
        if kind == "kernel":
            return [self.bpf.ksym(a).decode("utf-8", "replace") for a in addresses]
        return [self.bpf.sym(a, pid, show_module=True).decode("utf-8", "replace") for a in addresses]

    def folded(self, stack_map: str, stack_id: int, kind: str, pid: int = -1) -> str:
        """Outermost frame first, ';'-separated: the folded format of flame graphs.

        Empty when there is no such stack: -1 (not asked for), or -EFAULT for a kernel stack
        sampled in user mode (and a user stack of a kernel thread).
        """
        if stack_id in (-1, -14):
            return ""
        return ";".join(reversed(self.frames(stack_map, stack_id, kind, pid)))
