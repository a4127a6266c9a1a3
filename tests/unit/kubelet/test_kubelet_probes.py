"""Probe handlers against real local servers, and the thresholds that flip a verdict."""

from __future__ import annotations

import asyncio

from kapal.kube.kubelet.probes import LIVENESS, READINESS, ProbeWorker, resolve_port, run_probe


async def _server(status: int) -> tuple[asyncio.AbstractServer, int, list[bytes]]:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def _no_exec(cmd: list[str], timeout: float) -> tuple[int, bytes]:
    return (0, b"") if cmd == ["true"] else (1, b"nope\n")


def test_http_get_and_tcp_socket():
    async def run() -> None:
        ok, port, seen = await _server(200)
        bad, bad_port, _ = await _server(503)
        container = {"name": "c", "ports": [{"name": "web", "containerPort": port}]}
        r = await run_probe({"httpGet": {"path": "/healthz", "port": "web", "httpHeaders": [
            {"name": "X-Probe", "value": "1"}]}}, container, "127.0.0.1", _no_exec)
        assert r.ok and b"GET /healthz HTTP/1.1" in seen[0] and b"User-Agent: kube-probe/1.33" in seen[0]
        assert b"X-Probe: 1" in seen[0]
        r = await run_probe({"httpGet": {"port": bad_port}}, container, "127.0.0.1", _no_exec)
        assert not r.ok and r.message == "HTTP probe failed with statuscode: 503"
        assert (await run_probe({"tcpSocket": {"port": port}}, container, "127.0.0.1", _no_exec)).ok
        ok.close()
        bad.close()
        r = await run_probe({"tcpSocket": {"port": port}}, container, "127.0.0.1", _no_exec)
        assert not r.ok and "connection refused" in r.message
        assert (await run_probe({"exec": {"command": ["true"]}}, container, "", _no_exec)).ok
        r = await run_probe({"exec": {"command": ["false"]}}, container, "", _no_exec)
        assert not r.ok and r.message == "nope"

    asyncio.run(run())


def test_resolve_named_and_numeric_ports():
    c = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port("http", c) == 8080 and resolve_port(81, c) == 81 and resolve_port("82", c) == 82


def test_thresholds():
    changes: list[tuple[str, bool | None]] = []
    w = ProbeWorker(LIVENESS, {}, {"name": "c"}, "", _no_exec, lambda w: changes.append((w.kind, w.result)))
    from kapal.kube.kubelet.probes import ProbeOutcome

    for outcome in (True, False, False, False):
        w._record(ProbeOutcome(outcome), 1, 3)
    assert changes == [(LIVENESS, True), (LIVENESS, False)]  # the third failure in a row flips it
    r = ProbeWorker(READINESS, {}, {"name": "c"}, "", _no_exec, lambda w: changes.append((w.kind, w.result)))
    r._record(ProbeOutcome(False), 2, 3)
    assert r.result is False  # readiness starts out failing
    r._record(ProbeOutcome(True), 2, 3)
    assert r.result is False
    r._record(ProbeOutcome(True), 2, 3)
    assert r.result is True and changes[-1] == (READINESS, True)
