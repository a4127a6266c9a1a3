"""A light, synchronous Docker API client for the CLI: HTTP/1.1 on a plain socket, no asyncio.

Finds the engine with -H / KAPAL_HOST (unix:///PATH or tcp://HOST:PORT) and says how to start one
when nobody answers. It speaks just the HTTP the engine answers with (Content-Length or chunked
bodies) on its own instead of importing http.client: `kapal run` starts on every container run.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_HOST = "unix:///run/kapal/docker.sock"
API_PREFIX = "/v1.47"


class EngineUnavailable(Exception):
    pass


class APIError(Exception):
    """A non-2xx answer: status and the daemon's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def engine_host() -> str:
    return os.environ.get("KAPAL_HOST") or DEFAULT_HOST


class Response:
    """A response whose body is read as it arrives: read(), read1() (what one chunk gives), getheader()."""

    def __init__(self, sock: socket.socket, buf: bytes, method: str) -> None:
        self._sock = sock
        self._buf = buf
        head = self._line()
        parts = head.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise EngineUnavailable(f"the engine answered something that is not HTTP: {head[:80]!r}")
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers: dict[str, str] = {}
        while True:
            line = self._line()
            if not line:
                break
            key, _, value = line.partition(":")
            self.headers[key.strip().lower()] = value.strip()
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        no_body = method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200
        self._left: int | None = 0 if no_body else (int(length) if length is not None and not self._chunked else None)
        self._chunk_left = 0
        self._done = no_body or self._left == 0

    def _fill(self) -> bool:
        data = self._sock.recv(65536)
        self._buf += data
        return bool(data)

    def _line(self) -> str:
        while b"\r\n" not in self._buf:
            if not self._fill():
                raise EngineUnavailable("the engine closed the connection mid-answer")
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def read1(self, n: int = 65536) -> bytes:
        """Up to n bytes of body that are available now (b"" at its end)."""
        if self._done:
            return b""
        if self._chunked:
            if self._chunk_left == 0:
                size = int(self._line().split(";", 1)[0], 16)
                if size == 0:
                    while self._line():  # trailers
                        pass
                    self._done = True
                    return b""
                self._chunk_left = size
            if not self._buf and not self._fill():
                self._done = True
                return b""
            take = min(n, self._chunk_left, len(self._buf))
            out, self._buf = self._buf[:take], self._buf[take:]
            self._chunk_left -= take
            if self._chunk_left == 0:
                self._line()  # the CRLF after a chunk
            return out
        if not self._buf and not self._fill():
            self._done = True
            return b""
        take = len(self._buf) if self._left is None else min(self._left, len(self._buf))
        take = min(take, n)
        out, self._buf = self._buf[:take], self._buf[take:]
        if self._left is not None:
            self._left -= take
            self._done = self._left == 0
        return out

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            chunk = self.read1(65536 if n < 0 else n - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


class EngineClient:
    def __init__(self, host: str | None = None) -> None:
        self.host = host or engine_host()

    def connect(self, timeout: float | None = None) -> socket.socket:
        try:
            if self.host.startswith("unix://"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(self.host[len("unix://") :])
                return sock
            if self.host.startswith("tcp://"):
                address, _, port = self.host[len("tcp://") :].rpartition(":")
                return socket.create_connection((address, int(port)), timeout=timeout)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError) as e:
            raise self.unavailable(e) from None
        raise EngineUnavailable(f"unsupported engine address {self.host!r}: use unix:///PATH or tcp://HOST:PORT")

    def unavailable(self, err: Exception) -> EngineUnavailable:
        return EngineUnavailable(
            f"Cannot connect to the kapal engine at {self.host} ({err.strerror if isinstance(err, OSError) else err}). "
            "Is the engine running? Start one with `sudo kapal engine` "
            "(or `kapal engine --data-root DIR -H unix:///PATH`), or point -H / KAPAL_HOST at a running one."
        )

    @staticmethod
    def path(path: str, params: dict[str, Any] | None = None) -> str:
        full = API_PREFIX + quote(path, safe="/:@%+,=")
        if params:
            items = []
            for k, v in params.items():
                if v is None:
                    continue
                for item in v if isinstance(v, list) else [v]:
                    items.append((k, "1" if item is True else "0" if item is False else str(item)))
            if items:
                full += "?" + urlencode(items)
        return full

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send a request; returns the response (status checked: non-2xx raises APIError)."""
        hdrs = {"Host": "api.moby.localhost", "User-Agent": "kapal-cli", **(headers or {})}
        data: Any = None
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = body
        streamed = data is not None and not isinstance(data, (bytes, bytearray))
        if streamed:
            hdrs["Transfer-Encoding"] = "chunked"
        else:
            hdrs["Content-Length"] = str(len(data or b""))
        head = f"{method} {self.path(path, params)} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        sock = self.connect(timeout)
        try:
            if streamed:
                sock.sendall(head.encode() + b"\r\n")
                while chunk := data.read(1 << 20):
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(head.encode() + b"\r\n" + bytes(data or b""))
            resp = Response(sock, b"", method)
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as e:
            sock.close()
            raise self.unavailable(e) from None
        except BaseException:
            sock.close()
            raise
        if resp.status >= 400:
            raw = resp.read()
            resp.close()
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
                chunk = resp.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield _message(line)
            if buf.strip():
                yield _message(buf)
        finally:
            resp.close()


def _message(line: bytes) -> dict:
    msg = json.loads(line)
    if "error" in msg:
        raise APIError(200, msg.get("errorDetail", {}).get("message") or msg["error"])
    return msg
