"""Container probes (exec, httpGet, tcpSocket) and the workers that run them on a schedule.

One `ProbeWorker` per (container, probe kind), started when the container starts: it waits
initialDelaySeconds, then probes every periodSeconds, and flips its result after failureThreshold
failures or successThreshold successes (upstream's rules). Liveness and startup failures ask the pod
worker to kill the container; readiness results gate the Ready condition. httpGet and tcpSocket reach
the pod's IP from the host, as the upstream kubelet does; exec runs through the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LIVENESS, READINESS, STARTUP = "Liveness", "Readiness", "Startup"
USER_AGENT = "kube-probe/1.33"
MAX_BODY = 10 * 1024

ExecFn = Callable[[list[str], float], Awaitable[tuple[int, bytes]]]  # (command, timeout) -> (exit code, output)


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    message: str = ""


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f'couldn\'t find port "{port}" in container {container.get("name")}')


async def http_get(host: str, port: int, path: str, scheme: str, headers: list[dict[str, str]],
                   timeout: float) -> ProbeOutcome:
    ctx = None
    if scheme.upper() == "HTTPS":
        from kapal.kube.pki.tls import client_context

        ctx = client_context(verify=False)  # as upstream: probes do not verify the container's certificate
    target = f"{scheme.lower()}://{host}:{port}{path or '/'}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), timeout)
    except (OSError, TimeoutError) as e:
        return ProbeOutcome(False, f'Get "{target}": dial tcp {host}:{port}: connect: '
                                   f'{"i/o timeout" if isinstance(e, TimeoutError) else "connection refused"}')
    try:
        names = {h.get("name", "").lower() for h in headers}
        lines = [f"GET {path or '/'} HTTP/1.1", f"Host: {host}:{port}" if "host" not in names else ""]
        lines = [line for line in lines if line]
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
        if "accept" not in names:
            lines.append("Accept: */*")
        lines += [f"{h['name']}: {h.get('value', '')}" for h in headers if h.get("name")]
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return ProbeOutcome(False, f'Get "{target}": malformed HTTP response {status_line[:40]!r}')
        code = int(parts[1])
        if 200 <= code < 400:
            return ProbeOutcome(True)
        return ProbeOutcome(False, f"HTTP probe failed with statuscode: {code}")
    except (OSError, TimeoutError) as e:
        return ProbeOutcome(False, f'Get "{target}": {e or "context deadline exceeded"}')
    finally:
        writer.close()


async def tcp_socket(host: str, port: int, timeout: float) -> ProbeOutcome:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as e:
        why = "i/o timeout" if isinstance(e, TimeoutError) else "connect: connection refused"
        return ProbeOutcome(False, f"dial tcp {host}:{port}: {why}")
    writer.close()
    return ProbeOutcome(True)


async def run_probe(probe: dict[str, Any], container: dict[str, Any], pod_ip: str, exec_fn: ExecFn) -> ProbeOutcome:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "exec" in probe:
            cmd = list((probe["exec"] or {}).get("command") or [])
            code, out = await exec_fn(cmd, timeout)
            if code == 0:
                return ProbeOutcome(True)
            text = out.decode(errors="replace").strip()
            return ProbeOutcome(False, text or f"command {cmd!r} exited with {code}")
        if "httpGet" in probe:
            h = probe["httpGet"]
            port = resolve_port(h.get("port"), container)
            return await http_get(h.get("host") or pod_ip, port, h.get("path") or "/", h.get("scheme") or "HTTP",
                                  h.get("httpHeaders") or [], timeout)
        if "tcpSocket" in probe:
            t = probe["tcpSocket"]
            return await tcp_socket(t.get("host") or pod_ip, resolve_port(t.get("port"), container), timeout)
        if "grpc" in probe:
            return ProbeOutcome(False, "grpc probes are not supported by kapal's kubelet")
    except TimeoutError:
        return ProbeOutcome(False, f"command timed out after {timeout:g}s")
    except ValueError as e:
        return ProbeOutcome(False, str(e))
    return ProbeOutcome(False, "probe has no handler (exec, httpGet or tcpSocket)")


class ProbeWorker:
    """Runs one probe of one container until stopped; `result` is the current verdict (None: not yet known)."""

    def __init__(self, kind: str, probe: dict[str, Any], container: dict[str, Any], pod_ip: str, exec_fn: ExecFn,
                 on_change: Callable[[ProbeWorker], None], initial: bool | None = None) -> None:
        self.kind = kind
        self.probe = probe
        self.container = container
        self.pod_ip = pod_ip
        self.exec_fn = exec_fn
        self.on_change = on_change
        self.result: bool | None = initial
        self.message = ""
        self._streak = 0
        self._task: asyncio.Task[None] | None = None
        self.paused = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"probe-{self.kind}-{self.container.get('name')}")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _loop(self) -> None:
        period = float(self.probe.get("periodSeconds") or 10)
        await asyncio.sleep(float(self.probe.get("initialDelaySeconds") or 0))
        success_needed = int(self.probe.get("successThreshold") or 1)
        failure_needed = int(self.probe.get("failureThreshold") or 3)
        while True:
            if not self.paused:
                outcome = await run_probe(self.probe, self.container, self.pod_ip, self.exec_fn)
                self._record(outcome, success_needed, failure_needed)
            await asyncio.sleep(period)

    def _record(self, outcome: ProbeOutcome, success_needed: int, failure_needed: int) -> None:
        self.message = outcome.message
        if outcome.ok:
            self._streak = self._streak + 1 if self._streak > 0 else 1
            verdict = True if self._streak >= success_needed else None
        else:
            self._streak = self._streak - 1 if self._streak < 0 else -1
            verdict = False if -self._streak >= failure_needed else None
        if verdict is None:
            if self.result is None and self.kind == READINESS and not outcome.ok:
                self.result = False  # readiness starts out failing, as upstream
            return
        if verdict != self.result or (verdict is False and self.kind != READINESS):
            self.result = verdict
            if verdict is False and self.kind != READINESS:
                self._streak = 0  # the container is about to restart; count afresh
            self.on_change(self)
