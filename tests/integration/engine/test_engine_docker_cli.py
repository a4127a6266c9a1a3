"""The real docker CLI against the engine, for the image and volume verbs this issue serves."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def docker(engine, tmp_path_factory):
    binary = shutil.which("docker")
    if binary is None:
        pytest.skip("the docker CLI is not installed")
    config = tmp_path_factory.mktemp("docker-config")
    env = {**os.environ, "DOCKER_HOST": engine.host, "DOCKER_CONFIG": str(config)}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=120)
        assert not check or r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
        return r

    return run


def test_docker_cli_images_volumes_and_run(docker, registry, rootfs_tar, unique):
    ref = f"{registry.host}/{unique}/viadocker:1"
    image_id = docker("import", "-c", 'CMD ["cat", "/etc/motd"]', str(rootfs_tar), ref).stdout.strip()
    assert docker("image", "inspect", "-f", "{{.Id}} {{len .RootFS.Layers}}", ref).stdout.split() == [image_id, "1"]
    listed = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.split("\n")
    assert f"{ref} {image_id[7:19]}" in listed
    assert "Pushed" in docker("push", ref).stdout
    docker("rmi", ref)
    pulled = docker("pull", ref).stdout
    assert "Pull complete" in pulled and pulled.strip().endswith(ref)
    assert docker("run", "--rm", ref).stdout == "original\n"
    r = docker("run", "--rm", ref, "sh", "-c", "exit 9", check=False)
    assert r.returncode == 9
    vol = f"{unique}-dv"
    assert docker("volume", "create", vol).stdout.strip() == vol
    assert vol in docker("volume", "ls", "-q").stdout.split()
    docker("volume", "rm", vol)
    docker("rmi", ref)
    r = docker("pull", f"{registry.host}/{unique}/missing:1", check=False)
    assert r.returncode == 1
    assert f"manifest for {registry.host}/{unique}/missing:1 not found" in r.stderr
    r = docker("image", "inspect", f"{unique}-nope", check=False)
    assert r.returncode == 1 and f"No such image: {unique}-nope" in r.stderr
