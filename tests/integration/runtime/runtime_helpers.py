"""Constants and helpers the runtime tests share (conftest.py holds the fixtures)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RUNTIME = ROOT / ".venv" / "bin" / "kapal-runtime"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def leftover_cgroups(name: str) -> list[str]:
    out = []
    for hierarchy in CGROUP_ROOT.iterdir():
        candidate = hierarchy / name.strip("/")
        if candidate.is_dir():
            out.append(str(candidate))
    return out
