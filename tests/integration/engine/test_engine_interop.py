"""podman and skopeo against images kapal pushed, and kapal against images they pushed."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from image_helpers import cleanup_tree

pytestmark = pytest.mark.root


@pytest.fixture
def podman():
    binary = shutil.which("podman")
    if binary is None:
        pytest.skip("podman is not installed (make deps installs it)")
    root = Path(tempfile.mkdtemp(prefix="kapal-podman-", dir="/tmp"))  # podman wants a runroot under 50 chars
    base = [
        binary,
        "--root",
        str(root / "root"),
        "--runroot",
        str(root / "run"),
        "--storage-driver",
        "overlay",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]

    def run(*args: str) -> str:
        r = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"podman {' '.join(args)}: {r.stderr}"
        return r.stdout

    yield run
    subprocess.run([*base, "system", "reset", "--force"], capture_output=True, timeout=60)
    cleanup_tree(root)


def test_podman_runs_what_kapal_pushed(engine, registry, rootfs_tar, podman, unique):
    ref = f"{registry.host}/{unique}/bykapal:1"
    engine.ok("import", "-c", 'CMD ["cat", "/etc/motd"]', str(rootfs_tar), ref)
    engine.ok("push", ref)
    podman("pull", "--tls-verify=false", ref)
    out = podman(
        "run",
        "--rm",
        "--runtime",
        "runc",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        ref,
    )
    assert out == "original\n"
    engine.ok("rmi", ref)


def test_kapal_runs_what_podman_and_skopeo_pushed(engine, registry, rootfs_tar, podman, unique, tmp_path):
    by_podman = f"{registry.host}/{unique}/bypodman:1"
    podman("import", "--change", 'CMD ["sh"]', str(rootfs_tar), f"localhost/{unique}:1")
    podman("push", "--tls-verify=false", f"localhost/{unique}:1", f"docker://{by_podman}")
    engine.ok("pull", by_podman)
    assert engine.ok("run", "--rm", by_podman, "cat", "/etc/motd") == "original\n"

    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (make deps installs it)")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    by_skopeo = f"{registry.host}/{unique}/byskopeo:oci"
    subprocess.run(
        [
            skopeo,
            "--policy",
            str(policy),
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--format",
            "oci",
            f"docker://{by_podman}",
            f"docker://{by_skopeo}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    engine.ok("pull", by_skopeo)
    assert engine.ok("run", "--rm", by_skopeo, "echo", "oci") == "oci\n"
    engine.ok("rmi", by_podman, by_skopeo)
