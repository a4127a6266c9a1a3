"""A light, synchronous Docker API client for the CLI: stdlib http.client over AF_UNIX, no asyncio.

Finds the engine with -H / KAPAL_HOST (unix:///PATH or tcp://HOST:PORT) and
says how to start one when nobody answers.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

from .config import DEFAULT_HOST

API_PREFIX = "/v1.47"


class EngineUnavailable(Exception):
    pass


class APIError(Exception):
    """A non-2xx answer: status and the daemon's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def engine_host() -> str:
    return os.environ.get("KAPAL_HOST") or DEFAULT_HOST


class EngineClient:
    def __init__(self, host: str | None = None) -> None:
        self.host = host or engine_host()
        self._conn: http.client.HTTPConnection | None = None

    def _new_conn(self, timeout: float | None = None) -> http.client.HTTPConnection:
        if self.host.startswith("unix://"):
            return _UnixConnection(self.host[len("unix://") :], timeout=timeout)
        if self.host.startswith("tcp://"):
            return http.client.HTTPConnection(self.host[len("tcp://") :], timeout=timeout)
        raise EngineUnavailable(f"unsupported engine address {self.host!r}: use unix:///PATH or tcp://HOST:PORT")

    def unavailable(self, err: Exception) -> EngineUnavailable:
        return EngineUnavailable(
            f"Cannot connect to the kapal engine at {self.host} ({err.strerror if isinstance(err, OSError) else err}). "
            "Is the engine running? Start one with `sudo kapal engine` "
            "(or `kapal engine --data-root DIR -H unix:///PATH`), or point -H / KAPAL_HOST at a running one."
        )

    @staticmethod
    def path(path: str, params: dict[str, Any] | None = None) -> str:
        full = API_PREFIX + path
        if params:
            items = []
            for k, v in params.items():
                if v is None:
                    continue
                for item in v if isinstance(v, list) else [v]:
                    items.append((k, "1" if item is True else "0" if item is False else str(item)))
            if items:
                full += "?" + urllib.parse.urlencode(items)
        return full

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> http.client.HTTPResponse:
        """Send a request; returns the response (status checked: non-2xx raises APIError)."""
        hdrs = {"User-Agent": "kapal-cli", **(headers or {})}
        data: Any = None
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = body
        conn = self._new_conn(timeout)
        try:
            if data is not None and not isinstance(data, (bytes, bytearray)):
                hdrs["Transfer-Encoding"] = "chunked"
                conn.request(method, self.path(path, params), body=_chunks(data), headers=hdrs, encode_chunked=True)
            else:
                conn.request(method, self.path(path, params), body=data, headers=hdrs)
            resp = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError) as e:
            conn.close()
            raise self.unavailable(e) from None
        if resp.status >= 400:
            raw = resp.read()
            conn.close()
            try:
                message = json.loads(raw).get("message", "")
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace").strip()
            raise APIError(resp.status, message or f"HTTP {resp.status}")
        return resp

    def json(self, method: str, path: str, params: dict | None = None, body: Any = None, **kw: Any) -> Any:
        resp = self.request(method, path, params, body, **kw)
        raw = resp.read()
        resp.close()
        return json.loads(raw) if raw.strip() else None

    def stream(self, method: str, path: str, params: dict | None = None, body: Any = None, **kw: Any) -> Iterator[dict]:
        """A JSON-lines progress stream; an `error` message raises APIError (status stays 200 as in Docker)."""
        resp = self.request(method, path, params, body, **kw)
        try:
            buf = b""
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        msg = json.loads(line)
                        if "error" in msg:
                            raise APIError(200, msg.get("errorDetail", {}).get("message") or msg["error"])
                        yield msg
            if buf.strip():
                msg = json.loads(buf)
                if "error" in msg:
                    raise APIError(200, msg.get("errorDetail", {}).get("message") or msg["error"])
                yield msg
        finally:
            resp.close()


def _chunks(stream) -> Iterator[bytes]:
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            return
        yield chunk
