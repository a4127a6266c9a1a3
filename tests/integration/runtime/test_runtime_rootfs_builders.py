"""`kapal rootfs busybox DIR` and `kapal rootfs from-host DIR PROGRAM...`, and containers run on them."""

from __future__ import annotations

import os
import subprocess

import pytest
from runtime_helpers import ROOT

KAPAL = ROOT / ".venv" / "bin" / "kapal"


def test_busybox_rootfs_has_relative_links_and_the_skeleton(tmp_path):
    target = tmp_path / "bb"
    result = subprocess.run([str(KAPAL), "rootfs", "busybox", str(target)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (target / "bin" / "busybox").is_file() and not (target / "bin" / "busybox").is_symlink()
    assert os.readlink(target / "bin" / "sh") == "busybox"
    links = [p for p in (target / "bin").iterdir() if p.is_symlink()]
    assert len(links) > 200 and all(os.readlink(p) == "busybox" for p in links)
    for name in ("proc", "sys", "dev", "etc", "tmp", "run", "root"):
        assert (target / name).is_dir()
    again = subprocess.run([str(KAPAL), "rootfs", "busybox", str(target)], capture_output=True, text=True)
    assert again.returncode == 0 and (target / "bin" / "busybox").stat().st_size > 100_000


def test_from_host_copies_programs_and_every_library(tmp_path):
    target = tmp_path / "host"
    result = subprocess.run([str(KAPAL), "rootfs", "from-host", str(target), "/bin/bash", "/bin/ls"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    ldd = subprocess.run(["ldd", "/bin/bash", "/bin/ls"], capture_output=True, text=True).stdout
    needed = {word for line in ldd.splitlines() for word in line.split()
              if word.startswith("/") and not word.endswith(":")}
    assert needed, ldd
    for path in needed:
        assert (target / path.lstrip("/")).exists(), f"{path} missing"
    out = subprocess.run(["chroot", str(target), "/bin/bash", "-c", "ls / && echo bash-ok"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "bash-ok" in out.stdout


def test_usage_errors(tmp_path):
    result = subprocess.run([str(KAPAL), "rootfs", "from-host", str(tmp_path / "x"), "/no/such/program"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "not found" in result.stderr
    assert subprocess.run([str(KAPAL), "rootfs", "bogus"], capture_output=True).returncode == 1


@pytest.mark.root
def test_a_container_runs_on_a_from_host_rootfs(runtime, make_bundle, tmp_path):
    target = tmp_path / "hostrootfs"
    subprocess.run([str(KAPAL), "rootfs", "from-host", str(target), "/bin/bash", "/bin/cat"], check=True)
    bundle = make_bundle(["/bin/bash", "-c", "echo $$; read comm < /proc/1/comm; echo $comm"])
    bundle.config["root"]["path"] = str(target)
    bundle.write()
    assert runtime("run", "--bundle", str(bundle.path), bundle.id).stdout.split() == ["1", "bash"]
