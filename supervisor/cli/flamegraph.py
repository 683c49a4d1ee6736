"""Folded stacks → a flame graph SVG (the layout of Brendan Gregg's flamegraph.pl).

Small on purpose: frames are boxes whose width is their share of the samples, callers
below callees, with the full frame and its count in a tooltip.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from html import escape

WIDTH = 1200
FRAME_HEIGHT = 16
MIN_WIDTH_PX = 0.3
FONT = 12


@dataclass
class _Node:
    name: str
    count: float = 0.0
    children: dict[str, _Node] = field(default_factory=dict)


def _tree(folded: dict[str, float]) -> _Node:
    root = _Node("all")
    for stack, count in folded.items():
        root.count += count
        node = root
        for frame in filter(None, stack.split(";")):
            node = node.children.setdefault(frame, _Node(frame))
            node.count += count
    return root


def _depth(node: _Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0)


def _colour(name: str) -> str:
    h = hashlib.md5(name.encode()).digest()
    return f"rgb({205 + h[0] % 50},{80 + h[1] % 120},{40 + h[2] % 40})"


def render(folded: dict[str, float], title: str = "Flame graph") -> str:
    root = _tree(folded)
    depth = _depth(root)
    height = (depth + 2) * FRAME_HEIGHT + 30
    total = root.count or 1.0
    boxes: list[str] = []

    def draw(node: _Node, x: float, level: int) -> None:
        width = node.count / total * (WIDTH - 20)
        if width < MIN_WIDTH_PX:
            return
        y = height - (level + 2) * FRAME_HEIGHT
        label = escape(node.name)
        share = node.count / total * 100
        chars = int(width / (FONT * 0.6))
        text = label if len(node.name) <= chars else escape(node.name[: max(chars - 2, 0)]) + ".." if chars > 3 else ""
        boxes.append(
            f'<g><title>{label} ({node.count:g} samples, {share:.2f}%)</title>'
            f'<rect x="{x + 10:.1f}" y="{y}" width="{width:.1f}" height="{FRAME_HEIGHT - 1}" '
            f'fill="{_colour(node.name)}" rx="2"/>'
            f'<text x="{x + 13:.1f}" y="{y + FONT}">{text}</text></g>')
        offset = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            draw(child, offset, level + 1)
            offset += child.count / total * (WIDTH - 20)

    draw(root, 0.0, 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'font-family="Verdana" font-size="{FONT}">'
            f'<rect width="100%" height="100%" fill="#f8f8f8"/>'
            f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="16">{escape(title)}</text>'
            + "".join(boxes) + "</svg>\n")
