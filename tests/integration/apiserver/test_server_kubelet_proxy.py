"""pods/log, exec, attach and port-forward reach the kubelet's own paths, and streaming upgrades pass through
byte for byte. Stand-in kubelets: an aiohttp server (logs, WebSocket exec) and a raw one that answers any
Upgrade with 101 and echoes every byte (as a SPDY/3.1 stream would flow)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web
from apiserver_harness import kubectl_binary

from kapal.kube import pki
from kapal.kube.pki import load_kubeconfig

NS = "proxy"


class FakeKubelets:
    def __init__(self, tmp: Path) -> None:
        ca = pki.new_ca("fake-kubelet-ca")
        cert = pki.issue(ca, "node", ip_addresses=["127.0.0.1"], server=True)
        pki.write(cert, tmp / "k.crt", tmp / "k.key")
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl.load_cert_chain(tmp / "k.crt", tmp / "k.key")
        self.requests: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.http_port = asyncio.run_coroutine_threadsafe(self._start_http(), self.loop).result(10)
        self.plain_port = asyncio.run_coroutine_threadsafe(self._start_plain(), self.loop).result(10)
        self.raw_port = asyncio.run_coroutine_threadsafe(self._start_raw(), self.loop).result(10)

    async def _start_http(self) -> int:
        async def logs(request: web.Request) -> web.Response:
            self.requests.append(request.path_qs)
            return web.Response(text=f"hello from {request.match_info['container']}\nsecond line\n")

        async def exec_(request: web.Request) -> web.StreamResponse:
            self.requests.append(request.path_qs)
            ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io", "channel.k8s.io"))
            await ws.prepare(request)
            await ws.send_bytes(b"\x01" + b"started\n")
            async for msg in ws:
                data = msg.data.encode() if msg.type == WSMsgType.TEXT else msg.data
                if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT) and data[:1] == b"\x00":
                    await ws.send_bytes(b"\x01" + data[1:].upper())
                    if b"exit" in data:
                        break
            await ws.send_bytes(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode())
            await ws.close()
            return ws

        async def hello(request: web.Request) -> web.Response:
            self.requests.append(request.path_qs)
            return web.Response(text=f"hello {request.query.get('who', 'nobody')}")

        app = web.Application()
        app.router.add_get("/hello", hello)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", logs)
        app.router.add_route("*", "/exec/{ns}/{pod}/{container}", exec_)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _start_plain(self) -> int:
        """The same app over plain HTTP: a pod's web server, for pods|services/proxy."""
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _start_raw(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head.split(b"\r\n")[0].decode())
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
            )
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        self.raw_server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.ssl)
        return self.raw_server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def stop() -> None:
            self.raw_server.close()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kubelets(apiserver, tmp_path_factory):
    from kubernetes import client, config

    fake = FakeKubelets(tmp_path_factory.mktemp("kubelet"))
    core = client.CoreV1Api(config.new_client_from_config(str(apiserver.kubeconfig)))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    for node, port in (("node-http", fake.http_port), ("node-raw", fake.raw_port), ("node-down", _free_port())):
        core.create_node(
            {
                "metadata": {"name": node},
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": node},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                },
            }
        )
        core.create_namespaced_pod(
            NS,
            {
                "metadata": {"name": f"on-{node}"},
                "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]},
            },
        )
    core.create_namespaced_pod(
        NS, {"metadata": {"name": "unscheduled"}, "spec": {"containers": [{"name": "app", "image": "busybox"}]}}
    )
    yield fake
    fake.close()


def test_logs_reach_the_kubelet_path(apiserver, kubelets, tmp_path):
    kubectl = kubectl_binary("1.33")
    env = {"KUBECONFIG": str(apiserver.kubeconfig), "HOME": str(tmp_path)}
    p = subprocess.run(
        [str(kubectl), "--cache-dir", str(tmp_path), "-n", NS, "logs", "on-node-http", "--tail=5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from app\nsecond line\n"
    assert f"/containerLogs/{NS}/on-node-http/app?tailLines=5" in kubelets.requests


def test_clear_errors_without_a_kubelet(apiserver, kubelets, tmp_path):
    kubectl = kubectl_binary("1.33")
    env = {"KUBECONFIG": str(apiserver.kubeconfig), "HOME": str(tmp_path)}
    p = subprocess.run(
        [str(kubectl), "--cache-dir", str(tmp_path), "-n", NS, "logs", "unscheduled"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert p.returncode == 1 and "does not have a host assigned" in p.stderr
    p = subprocess.run(
        [str(kubectl), "--cache-dir", str(tmp_path), "-n", NS, "logs", "on-node-down"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert p.returncode == 1 and "is not reachable" in p.stderr and "500" not in p.stderr


def test_websocket_exec_passes_through(apiserver, kubelets):
    from kubernetes import client, config
    from kubernetes.stream import stream

    core = client.CoreV1Api(config.new_client_from_config(str(apiserver.kubeconfig)))
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "on-node-http",
        NS,
        command=["sh"],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        _preload_content=False,
    )
    out = ""
    resp.update(timeout=5)
    out += resp.read_stdout()
    resp.write_stdin("hello exit")
    for _ in range(20):
        resp.update(timeout=1)
        if resp.peek_stdout():
            out += resp.read_stdout()
        if "HELLO EXIT" in out:
            break
    resp.close()
    assert out == "started\nHELLO EXIT"
    assert any(r.startswith(f"/exec/{NS}/on-node-http/app?command=sh") for r in kubelets.requests)


def test_spdy_upgrade_is_spliced_byte_for_byte(apiserver, kubelets):
    ctx = load_kubeconfig(apiserver.kubeconfig).ssl_context()
    with socket.create_connection(("127.0.0.1", apiserver.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(
                (
                    f"POST /api/v1/namespaces/{NS}/pods/on-node-raw/exec?command=sh&stdin=true&stdout=true "
                    f"HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                    f"X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
                ).encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            status_line = head.split(b"\r\n")[0]
            assert status_line.startswith(b"HTTP/1.1 101"), head
            assert b"x-stream-protocol-version: v4.channel.k8s.io" in head.lower()
            payload = bytes(range(256)) * 64
            s.sendall(payload)
            got = head.split(b"\r\n\r\n", 1)[1]
            while len(got) < len(payload):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    assert got == payload
    assert any(r.startswith(f"POST /exec/{NS}/on-node-raw/app?command=sh") for r in kubelets.requests)


def test_pod_and_service_proxy_reach_the_pod(apiserver, kubelets):
    from kubernetes import client, config

    api = config.new_client_from_config(str(apiserver.kubeconfig))
    core = client.CoreV1Api(api)
    core.patch_namespaced_pod_status("on-node-http", NS, {"status": {"podIP": "127.0.0.1"}})
    port = kubelets.plain_port
    out = core.connect_get_namespaced_pod_proxy_with_path(f"on-node-http:{port}", NS, "hello", path2="hello")
    assert out == "hello nobody"
    core.create_namespaced_service(NS, {"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http",
                                                                                         "port": 80}]}})
    core.create_namespaced_endpoints(NS, {"metadata": {"name": "web"}, "subsets": [{
        "addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}]})
    assert core.connect_get_namespaced_service_proxy_with_path("web:http", NS, "hello", path2="hello") == \
        "hello nobody"
    assert sum(r.startswith("/hello") for r in kubelets.requests) == 2, kubelets.requests
