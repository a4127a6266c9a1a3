"""An engine on a private data root and socket per test module, a local registry, and a `kapal` runner."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

_spec = importlib.util.spec_from_file_location("image_helpers", ROOT / "tests/integration/image/image_helpers.py")
image_helpers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["image_helpers"] = image_helpers
_spec.loader.exec_module(image_helpers)  # type: ignore[union-attr]
EngineProcess = image_helpers.EngineProcess
KAPAL = image_helpers.KAPAL
LocalRegistry = image_helpers.LocalRegistry
busybox_rootfs_tar = image_helpers.busybox_rootfs_tar
cleanup_tree = image_helpers.cleanup_tree
leftover_mounts = image_helpers.leftover_mounts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine")
    yield path
    cleanup_tree(path)


@pytest.fixture(scope="module")
def registry(workdir):
    reg = LocalRegistry(workdir / "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def engine(workdir):
    eng = EngineProcess(workdir / "engine-main")
    eng.workdir.mkdir()
    eng.start()
    yield eng
    eng.kill()
    assert leftover_mounts(eng.data_root) == [], "the engine left mounts behind"


@pytest.fixture(scope="module")
def rootfs_tar(workdir) -> Path:
    path = workdir / "busybox-rootfs.tar"
    path.write_bytes(busybox_rootfs_tar({"etc/motd": "original\n"}))
    return path
