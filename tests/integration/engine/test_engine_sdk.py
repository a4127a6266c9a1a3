"""The Python docker SDK against the engine: containers.run attached and detached, wait, logs, exec_run,
images.pull from a registry, volumes, and its error types."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.root

docker_sdk = pytest.importorskip("docker")


@pytest.fixture(scope="module")
def sdk(engine):
    client = docker_sdk.DockerClient(base_url=engine.host, timeout=60)
    yield client
    client.close()


def test_run_attached_detached_wait_logs(sdk, busybox, unique):
    assert sdk.ping() is True
    assert sdk.version()["ApiVersion"] >= "1.41"
    assert sdk.containers.run(busybox, ["sh", "-c", "echo hi; echo err >&2"], remove=True) == b"hi\n"
    with pytest.raises(docker_sdk.errors.ContainerError) as e:
        sdk.containers.run(busybox, ["sh", "-c", "exit 3"], remove=True)
    assert e.value.exit_status == 3
    c = sdk.containers.run(busybox, ["sh", "-c", "echo out; echo err >&2; sleep 0.2; exit 5"], detach=True,
                           name=f"{unique}-d", labels={"kapal.test": unique})
    try:
        assert sdk.containers.get(f"{unique}-d").id == c.id
        assert [x.id for x in sdk.containers.list(all=True, filters={"label": f"kapal.test={unique}"})] == [c.id]
        assert c.wait(timeout=30) == {"StatusCode": 5, "Error": None}
        assert c.logs(stdout=True, stderr=False) == b"out\n"
        assert c.logs(stdout=False, stderr=True) == b"err\n"
        c.reload()
        assert c.status == "exited" and c.attrs["HostConfig"]["LogConfig"]["Type"] == "json-file"
    finally:
        c.remove(force=True)
    with pytest.raises(docker_sdk.errors.NotFound):
        sdk.containers.get(c.id)


def test_exec_run(sdk, busybox, unique):
    c = sdk.containers.run(busybox, "sleep 600", detach=True, name=f"{unique}-x")
    try:
        for _ in range(5):  # the first output must not be lost with the response head
            assert c.exec_run(["sh", "-c", "echo a; echo b >&2"], demux=True) == (0, (b"a\n", b"b\n"))
        assert c.exec_run("sh -c 'exit 4'").exit_code == 4
        assert c.exec_run("pwd", workdir="/tmp").output == b"/tmp\n"
        assert c.exec_run("id -u", user="1000").output == b"1000\n"
        assert c.exec_run(["sh", "-c", "echo $K"], environment={"K": "v"}).output == b"v\n"
        assert c.top()["Processes"][0][-1] == "sleep 600"
    finally:
        c.remove(force=True)


def test_images_pull_and_volumes(sdk, docker, busybox, registry, unique):
    ref = f"{registry.host}/{unique}/sdk"
    docker("tag", busybox, f"{ref}:1")
    docker("push", f"{ref}:1")
    docker("rmi", f"{ref}:1")
    image = sdk.images.pull(ref, tag="1")
    assert f"{ref}:1" in image.tags
    assert sdk.containers.run(f"{ref}:1", "cat /etc/motd", remove=True) == b"original\n"
    sdk.images.remove(f"{ref}:1")
    with pytest.raises(docker_sdk.errors.ImageNotFound):
        sdk.images.get(f"{ref}:1")
    vol = sdk.volumes.create(f"{unique}-v")
    try:
        assert f"{unique}-v" in [v.name for v in sdk.volumes.list()]
        out = sdk.containers.run(busybox, "sh -c 'echo kept > /v/f && cat /v/f'", remove=True,
                                 volumes={vol.name: {"bind": "/v", "mode": "rw"}})
        assert out == b"kept\n"
        assert sdk.containers.run(busybox, "cat /v/f", remove=True, volumes=[f"{vol.name}:/v:ro"]) == b"kept\n"
    finally:
        vol.remove()
    assert f"{unique}-v" not in [v.name for v in sdk.volumes.list()]
