"""One API server per test module: a real `kapal apiserver` process on a free port, with its own data dir."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from apiserver_harness import start_apiserver


@pytest.fixture(scope="module")
def apiserver():
    tmp = Path(tempfile.mkdtemp(prefix="kapal-apiserver-"))
    server = start_apiserver(tmp / "data")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

