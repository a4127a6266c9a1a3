"""Fixtures for the runtime's real-kernel tests: a busybox rootfs, bundles, and a kapal-runtime driver.

Every bundle gets a unique container id and a unique top-level cgroupsPath; `runtime` deletes (--force)
whatever is left under its state root after the test, and the test fails if a cgroup directory of
that name survives.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from runtime_helpers import RUNTIME, leftover_cgroups

from kapal.runtime.minimal_rootfs import busybox_rootfs
from kapal.runtime.spec import default_spec


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory) -> Path:
    """A busybox rootfs shared by the tests; configs mount it read-only."""
    path = tmp_path_factory.mktemp("busybox") / "rootfs"
    busybox_rootfs(str(path))
    (path / "etc" / "hostname").write_text("image\n")
    return path


class Bundle:
    def __init__(self, path: Path, config: dict, cid: str) -> None:
        self.path = path
        self.config = config
        self.id = cid

    def write(self) -> Bundle:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=1))
        return self

    @property
    def cgroup_path(self) -> str:
        return self.config["linux"]["cgroupsPath"]


@pytest.fixture
def make_bundle(tmp_path, rootfs, runtime):
    """make_bundle(args, **changes) -> Bundle: the default spec, terminal off, the shared rootfs, read-only."""
    made: list[Bundle] = []

    def make(args: list[str] | None = None, *, hostname: str = "box", writable_rootfs: Path | None = None) -> Bundle:
        cid = "kt" + uuid.uuid4().hex[:10]
        path = tmp_path / cid
        path.mkdir()
        config = copy.deepcopy(default_spec())
        config["process"]["terminal"] = False
        config["process"]["args"] = args or ["/bin/true"]
        config["hostname"] = hostname
        config["root"] = {"path": str(writable_rootfs or rootfs), "readonly": writable_rootfs is None}
        config["linux"]["cgroupsPath"] = "/" + cid
        bundle = Bundle(path, config, cid)
        made.append(bundle)
        return bundle.write()

    yield make
    runtime.cleanup()
    for bundle in made:
        left = leftover_cgroups(bundle.cgroup_path)
        for path in left:
            try:
                os.rmdir(path)
            except OSError:
                pass
        assert not left, f"cgroups left behind: {left}"


class Runtime:
    """kapal-runtime with its own --root; `run_cli` returns the CompletedProcess."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def cmd(self, *args: str) -> list[str]:
        return [str(RUNTIME), "--root", str(self.root), *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        result = subprocess.run(self.cmd(*args), timeout=timeout, **kw)
        if check and result.returncode != 0:
            raise AssertionError(f"kapal-runtime {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def cleanup(self) -> None:
        for cid in self.ids():
            self("delete", "--force", cid, check=False)
        assert self.ids() == [], "containers left behind"

    def ids(self) -> list[str]:
        if not self.root.exists():
            return []
        return [p.name for p in self.root.iterdir() if (p / "state.json").exists()]


@pytest.fixture
def runtime(tmp_path) -> Runtime:
    rt = Runtime(tmp_path / "state")
    yield rt
    rt.cleanup()
