"""The engine's OCI runtime is swappable: kapal's own in the shim's process by default, or a runc-compatible
binary with --runtime (runc, the kapal-runtime launcher). The same docker CLI walk works on each."""

from __future__ import annotations

import json
import shutil

import pytest
from engine_helpers import DockerCLI
from image_helpers import KAPAL, EngineProcess, busybox_rootfs_tar, cleanup_tree

pytestmark = pytest.mark.root

RUNTIMES = {
    "runc": "runc",
    "kapal-runtime": str(KAPAL.parent / "kapal-runtime"),
}


def test_the_default_runtime_is_kapals_own(docker):
    info = json.loads(docker.out("info", "--format", "{{json .}}"))
    assert info["DefaultRuntime"] == "kapal"


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_a_runc_compatible_binary_runs_the_same_containers(name, tmp_path, unique):
    binary = RUNTIMES[name]
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (make deps installs it)")
    eng = EngineProcess(tmp_path / "engine", extra=["--runtime", binary])
    eng.workdir.mkdir()
    eng.start()
    try:
        config = tmp_path / "docker-config"
        config.mkdir()
        docker = DockerCLI(eng.host, config)
        tar = tmp_path / "busybox.tar"
        tar.write_bytes(busybox_rootfs_tar())
        (tmp_path / "tool").write_text("#!/bin/sh\necho tool ran\n")
        (tmp_path / "tool").chmod(0o755)
        image = f"{unique}-bb:1"
        docker("import", "-c", 'CMD ["sh"]', str(tar), image)
        assert json.loads(docker.out("info", "--format", "{{json .}}"))["DefaultRuntime"] == name
        assert docker.out("run", "--rm", "--network", "none", image, "sh", "-c", "echo $$; exit 0") == "1"
        assert docker("run", "--rm", "--network", "none", image, "sh", "-c", "exit 3", check=False).returncode == 3
        missing = docker("run", "--rm", "--network", "none", image, "/nonexistent", check=False)
        assert missing.returncode == 127 and 'exec: "/nonexistent": stat /nonexistent: no such' in missing.stderr
        mounted = docker.out("run", "--rm", "--network", "none", "-v", f"{tar.parent}:/opt/host:ro", image,
                             "/opt/host/tool")  # looked up by the runtime, after the mounts
        assert mounted == "tool ran"
        cid = docker.out("run", "-d", "--network", "none", image, "sleep", "600").strip()
        assert docker.out("exec", cid, "cat", "/proc/1/comm") == "sleep"
        docker("update", "--cpu-quota", "30000", "--pids-limit", "9", cid)  # through `<runtime> update`
        assert docker.out("exec", cid, "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                          "/sys/fs/cgroup/pids/pids.max").split() == ["30000", "9"]
        docker("rm", "-f", cid)
        docker("rmi", image)
        assert eng.leftover_containers() == []
    finally:
        eng.kill()
        cleanup_tree(eng.workdir)
