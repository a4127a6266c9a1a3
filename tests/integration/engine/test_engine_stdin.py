"""stdin a client sends the moment its stream opens - before the process has a pipe - reaches the process,
its end included: `docker exec -i`, the SDK's exec socket, and `docker run -i` (attached before the start).
A lost chunk or EOF shows as an empty answer or a hang (each call has a timeout)."""

from __future__ import annotations

import socket
import struct

import pytest

pytestmark = pytest.mark.root

docker_sdk = pytest.importorskip("docker")
ROUNDS = [8, pytest.param(30, marks=pytest.mark.full)]


@pytest.fixture(scope="module")
def sleeper(docker, busybox, unique_module):
    name = f"{unique_module}-stdin"
    docker("run", "-d", "--name", name, busybox, "sleep", "600")
    yield name
    docker("rm", "-f", name)


def _stdout_of(frames: bytes) -> bytes:
    out = b""
    while frames:
        stream, size = struct.unpack(">BxxxL", frames[:8])
        if stream == 1:
            out += frames[8 : 8 + size]
        frames = frames[8 + size :]
    return out


@pytest.mark.parametrize("rounds", ROUNDS)
def test_docker_exec_i_gets_early_stdin_and_eof(docker, sleeper, rounds):
    answers = [docker("exec", "-i", sleeper, "tr", "a-z", "A-Z", input="shout\n", timeout=20).stdout
               for _ in range(rounds)]
    assert answers == ["SHOUT\n"] * rounds


@pytest.mark.parametrize("rounds", ROUNDS)
def test_sdk_exec_socket_gets_early_stdin_and_eof(engine, sleeper, rounds):
    client = docker_sdk.APIClient(base_url=engine.host, timeout=20)
    try:
        answers = []
        for _ in range(rounds):
            exec_id = client.exec_create(sleeper, ["tr", "a-z", "A-Z"], stdin=True)["Id"]
            sock = client.exec_start(exec_id, socket=True)
            raw: socket.socket = getattr(sock, "_sock", sock)
            raw.settimeout(20)
            raw.sendall(b"shout\n")
            raw.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := raw.recv(65536):
                received += chunk
            sock.close()
            answers.append(_stdout_of(received))
            assert client.exec_inspect(exec_id)["ExitCode"] == 0
    finally:
        client.close()
    assert answers == [b"SHOUT\n"] * rounds


@pytest.mark.parametrize("rounds", ROUNDS)
def test_docker_run_i_gets_early_stdin_and_eof(docker, busybox, rounds):
    answers = [docker("run", "--rm", "-i", "--network", "none", busybox, "tr", "a-z", "A-Z", input="shout\n",
                      timeout=20).stdout for _ in range(rounds)]
    assert answers == ["SHOUT\n"] * rounds
