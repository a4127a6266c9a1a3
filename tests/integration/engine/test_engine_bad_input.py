"""Bad input gets Docker-shaped errors (JSON {"message"} with Docker's status codes, the CLI's exit
codes and words), and leaves nothing behind: no container, cgroup, mount, veth, netns or rule."""

from __future__ import annotations

import http.client
import json
import os
import socket

import pytest
from engine_helpers import host_veths, iptables_rules, kapal_cgroups
from image_helpers import EngineProcess, leftover_mounts

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def engine(workdir):
    """This module's engine keeps no namespaces attached ahead, so every one it holds belongs to a container."""
    eng = EngineProcess(workdir / "engine-nopool", extra=["--network-pool", "0"])
    eng.workdir.mkdir()
    eng.start()
    yield eng
    left = eng.leftover_containers()
    eng.kill()
    assert not left and not eng.sweep()
    assert leftover_mounts(eng.data_root) == []


class Raw:
    """Plain HTTP on the engine's socket, to send what no client would."""

    def __init__(self, path: str) -> None:
        self.path = path

    def post(self, url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str, dict]:
        conn = http.client.HTTPConnection("localhost")
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(self.path)
        conn.sock = sock
        conn.request("POST", url, body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, resp.getheader("Content-Type"), json.loads(data)


def _world(engine, engine_session) -> dict:
    return {
        "containers": sorted(p.name for p in (engine.data_root / "containers").iterdir()),
        "cgroups": kapal_cgroups(),
        "mounts": leftover_mounts(engine.data_root),
        "netns": sorted(p.name for p in (engine.data_root / "netns").iterdir()),
        "rules": [r for r in iptables_rules().splitlines() if "--dport 1" in r],
    }


def test_bad_input_answers_like_docker_and_leaks_nothing(engine, engine_session, docker, busybox, unique):
    before = _world(engine, engine_session)
    veths_before = host_veths(engine_session["bridge"])
    raw = Raw(str(engine.socket))

    r = docker("run", "--rm", f"{unique}-nosuch:1", check=False)
    assert r.returncode == 125
    assert f"Unable to find image '{unique}-nosuch:1' locally" in r.stderr
    status, ctype, doc = raw.post("/v1.47/containers/create", json.dumps({"Image": f"{unique}-nosuch"}).encode())
    assert (status, ctype) == (404, "application/json")
    assert doc == {"message": f"No such image: {unique}-nosuch:latest"}

    r = docker("run", "--rm", "-p", "99999:80", busybox, "true", check=False)
    assert r.returncode == 125 and "invalid hostPort: 99999" in r.stderr
    body = {"Image": busybox, "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}}
    status, _, doc = raw.post("/v1.47/containers/create", json.dumps(body).encode())
    assert (status, doc) == (400, {"message": 'invalid port specification: "99999"'})

    r = docker("run", "--rm", "-m", "1m", busybox, "true", check=False)
    assert r.returncode == 125 and "Minimum memory limit allowed is 6MB" in r.stderr
    body = {"Image": busybox, "HostConfig": {"Memory": 1 << 20}}
    assert raw.post("/v1.47/containers/create", json.dumps(body).encode())[0] == 400

    name = f"{unique}-taken"
    docker("create", "--name", name, busybox)
    try:
        r = docker("run", "--name", name, busybox, "true", check=False)
        assert r.returncode == 125 and f'The container name "/{name}" is already in use' in r.stderr
        status, _, doc = raw.post(f"/v1.47/containers/create?name={name}", json.dumps({"Image": busybox}).encode())
        assert status == 409 and "is already in use" in doc["message"]
    finally:
        docker("rm", name)

    status, ctype, doc = raw.post("/v1.47/containers/create", b'{"Image": ')
    assert (status, ctype) == (400, "application/json") and doc["message"].startswith("invalid JSON body")
    assert raw.post("/v1.47/containers/create", b"[]")[0] == 400
    status, _, doc = raw.post("/v1.47/containers/create", json.dumps({"Image": busybox, "HostConfig": {
        "RestartPolicy": {"Name": "sometimes"}}}).encode())
    assert status == 400 and "invalid restart policy: unknown policy 'sometimes'" in doc["message"]

    # a failed start: the port is taken on the host, so the container stays created and takes nothing
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        r = docker("run", "--name", f"{unique}-busyport", "-p", f"127.0.0.1:{port}:80", busybox, "true", check=False)
        assert r.returncode == 125 and "port is already allocated" in r.stderr
        assert docker.out("inspect", "-f", "{{.State.Status}}", f"{unique}-busyport") == "created"
    finally:
        holder.close()
        docker("rm", f"{unique}-busyport", check=False)
    r = docker("run", "--rm", busybox, "no-such-command", check=False)
    assert r.returncode == 127 and "executable file not found" in r.stderr

    after = _world(engine, engine_session)
    assert after == before
    assert host_veths(engine_session["bridge"]) <= veths_before | set(), "a veth outlived its container"
    assert not any(name.startswith(unique) for name in docker.out("ps", "-a", "--format", "{{.Names}}").split())
    assert os.path.isdir(engine.data_root / "containers")
