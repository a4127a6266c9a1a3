"""Shared fixtures. Every test cleans up what it makes; names are unique per run."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `root` with a reason when not running as root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, cgroups, mounts)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def unique() -> str:
    """A short name unique to this test run, for cgroups, containers, netns, chains."""
    return "kt" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def kapal_bin() -> Path:
    return VENV_BIN / "kapal"


@pytest.fixture(scope="session")
def runtime_bin() -> Path:
    return VENV_BIN / "kapal-runtime"


@pytest.fixture(scope="session")
def python_bin() -> str:
    return sys.executable


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make deps installs it)")
    return path
