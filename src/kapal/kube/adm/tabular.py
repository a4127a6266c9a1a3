"""Go's text/tabwriter as kubeadm configures it (minwidth 10, padding 3, spaces), and kubeadm's short durations.

`kapal adm token list` and `certs check-expiration` print through these so their columns line up exactly as
kubeadm's do: a column is as wide as its widest cell plus 3 (at least 10), the last cell of a line is not
padded, and an empty line starts a new block of columns.
"""

from __future__ import annotations

import datetime as dt


def tabwrite(lines: list[str], minwidth: int = 10, padding: int = 3) -> str:
    out: list[str] = []
    block: list[list[str]] = []

    def flush() -> None:
        if not block:
            return
        widths: dict[int, int] = {}
        for cells in block:
            for i, cell in enumerate(cells[:-1]):
                widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
        for cells in block:
            out.append("".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1])
        block.clear()

    for line in lines:
        cells = line.split("\t")
        if len(cells) == 1:
            flush()
            out.append(line)
        else:
            block.append(cells)
    flush()
    return "\n".join(out) + "\n"


def short_human_duration(seconds: float) -> str:
    """k8s.io/apimachinery's ShortHumanDuration: 45s, 5m, 23h, 364d, 9y."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60:
        return f"{s}s"
    if s // 60 < 60:
        return f"{s // 60}m"
    hours = s // 3600
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
