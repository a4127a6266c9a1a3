"""`docker commit` pauses a running container while it reads its rw layer (as dockerd, unless
`--pause=false`), resumes it afterwards even when the commit fails, and leaves a paused one paused."""

from __future__ import annotations

import time

import docker as docker_sdk
import pytest

pytestmark = pytest.mark.root


def _events(docker, name: str, since: float) -> list[str]:
    out = docker.out("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 0.5:.3f}",
                     "--filter", f"container={name}", "--format", "{{.Action}}")
    return [a for a in out.split() if a in ("pause", "unpause", "commit")]


def test_commit_pauses_and_resumes_a_running_container(docker, busybox, unique):
    name = f"{unique}-run"
    docker("run", "-d", "--name", name, busybox, "sh", "-c", "echo x > /made; sleep 300")
    try:
        since = time.time() - 0.1
        ref = f"{unique}-img:1"
        docker("commit", name, ref)
        assert _events(docker, name, since) == ["pause", "commit", "unpause"]
        assert docker.out("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", name) == "running false"
        assert docker.out("run", "--rm", ref, "cat", "/made") == "x"

        since = time.time() - 0.1
        docker("commit", "--pause=false", name, f"{unique}-img:2")
        assert _events(docker, name, since) == ["commit"]
    finally:
        docker("rm", "-f", name, check=False)
        docker("rmi", f"{unique}-img:1", f"{unique}-img:2", check=False)


def test_a_failed_commit_resumes_and_a_paused_container_stays_paused(engine, docker, busybox, unique):
    name = f"{unique}-fail"
    docker("run", "-d", "--name", name, busybox, "sleep", "300")
    client = docker_sdk.DockerClient(base_url=engine.host)
    try:
        since = time.time() - 0.1
        with pytest.raises(docker_sdk.errors.APIError):
            client.api.commit(name, repository=f"{unique}-bad", changes=["FROBNICATE x"])
        assert _events(docker, name, since) == ["pause", "unpause"]
        assert docker.out("inspect", "-f", "{{.State.Status}}", name) == "running"

        since = time.time() - 0.1
        docker("pause", name)
        docker("commit", name, f"{unique}-paused:1")
        assert _events(docker, name, since) == ["pause", "commit"]  # the user's pause only
        assert docker.out("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", name) == "paused true"
        docker("unpause", name)
        assert docker.out("exec", name, "echo", "alive") == "alive"
    finally:
        client.close()
        docker("rm", "-f", name, check=False)
        docker("rmi", f"{unique}-paused:1", check=False)
