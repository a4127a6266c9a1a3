"""A light, synchronous Docker API client for the CLI: HTTP/1.1 on a plain socket, no asyncio.

Finds the engine with -H / KAPAL_HOST (unix:///PATH or tcp://HOST:PORT) and says how to start one
when nobody answers. `kapal run` starts on every container run, so this module imports almost nothing:
the C socket module rather than `socket` (whose enums cost ~3 ms), its own HTTP (Content-Length or
chunked bodies) rather than http.client, its own URL quoting rather than urllib.parse, and JSON through
the json package's C scanner and string encoder rather than the package itself (which imports `re`).
"""

from __future__ import annotations

import _socket
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_HOST = "unix:///run/kapal/docker.sock"
API_PREFIX = "/v1.47"


class EngineUnavailable(Exception):
    pass


# ------------------------------------------------------------------ JSON without the json package


def dumps(obj: Any) -> str:
    """JSON text as json.dumps(obj) gives, without its spaces after separators."""
    if isinstance(obj, str):
        return _quote_string(obj)
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
        return float.__repr__(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(_quote_string(_key(k)) + ":" + dumps(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return dumps(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def loads(data: bytes | str) -> Any:
    """json.loads for the engine's UTF-8 answers."""
    text = data.decode() if isinstance(data, (bytes, bytearray)) else data
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        obj, end = _scan_value(text, start)
    except StopIteration as e:
        raise _decode_error("Expecting value", text, e.value) from None
    rest = text[end:].lstrip(" \t\n\r")
    if rest:
        raise _decode_error("Extra data", text, len(text) - len(rest))
    return obj


def _decode_error(message: str, text: str, pos: int) -> ValueError:
    from json import JSONDecodeError

    return JSONDecodeError(message, text, pos)


class _ScanContext:
    """What the C scanner reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


try:
    from _json import encode_basestring_ascii as _quote_string
    from _json import make_scanner as _make_scanner

    _scan_value = _make_scanner(_ScanContext())
except ImportError:  # an interpreter without the C accelerator: the json package then
    from json import JSONDecoder
    from json.encoder import encode_basestring_ascii as _quote_string  # type: ignore[assignment]

    _scan_value = JSONDecoder().scan_once


# ------------------------------------------------------------------ URLs

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "/") -> str:
    """urllib.parse.quote."""
    ok = _UNRESERVED.union(safe.encode())
    raw = text.encode()
    if all(b in ok for b in raw):
        return text
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in raw)


def quote_plus(text: str) -> str:
    """urllib.parse.quote_plus with safe=''."""
    return quote(text, " ").replace(" ", "+") if " " in text else quote(text, "")


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

    def __init__(self, sock: _socket.socket, buf: bytes, method: str) -> None:
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

    def connect(self, timeout: float | None = None) -> _socket.socket:
        try:
            if self.host.startswith("unix://"):
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(self.host[len("unix://") :])
                except BaseException:
                    sock.close()
                    raise
                return sock
            if self.host.startswith("tcp://"):
                import socket

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
                full += "?" + "&".join(quote_plus(k) + "=" + quote_plus(v) for k, v in items)
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
        return self.receive(self.send(method, path, params, body, headers, timeout), method)

    def send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> _socket.socket:
        """Send a request on a connection of its own; receive() reads the answer (the engine works meanwhile)."""
        hdrs = {"Host": "api.moby.localhost", "User-Agent": "kapal-cli", **(headers or {})}
        data: Any = None
        if isinstance(body, (dict, list)):
            data = dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = body
        streamed = data is not None and not isinstance(data, (bytes, bytearray))
        if streamed:
            hdrs["Transfer-Encoding"] = "chunked"
        elif "Content-Length" not in hdrs:
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
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as e:
            sock.close()
            raise self.unavailable(e) from None
        except BaseException:
            sock.close()
            raise
        return sock

    def receive(self, sock: _socket.socket, method: str = "GET") -> Response:
        """The answer to the request send() put on sock (status checked: non-2xx raises APIError)."""
        try:
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
                message = loads(raw).get("message", "")
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace").strip()
            raise APIError(resp.status, message or f"HTTP {resp.status}")
        return resp

    def hijack(self, path: str, params: dict, body: dict | None = None) -> tuple[_socket.socket, bytes]:
        """POST with Upgrade: tcp (attach, exec start); returns the raw socket and the bytes after the 101 head."""
        headers = {"Connection": "Upgrade", "Upgrade": "tcp",
                   "Content-Type": "application/json" if body is not None else "text/plain"}
        sock = self.send("POST", path, params, dumps(body).encode() if body is not None else b"", headers)
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise APIError(500, "the engine closed the connection")
                buf += chunk
        except BaseException:
            sock.close()
            raise
        header, rest = buf.split(b"\r\n\r\n", 1)
        status_line = header.split(b"\r\n", 1)[0].decode()
        status = int(status_line.split()[1])
        if status != 101:
            try:
                message = loads(rest).get("message", "")
            except ValueError:
                message = rest.decode(errors="replace")
            sock.close()
            raise APIError(status, message or status_line)
        return sock, rest

    def json(self, method: str, path: str, params: dict | None = None, body: Any = None, **kw: Any) -> Any:
        resp = self.request(method, path, params, body, **kw)
        raw = resp.read()
        resp.close()
        return loads(raw) if raw.strip() else None

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
    msg = loads(line)
    if "error" in msg:
        raise APIError(200, msg.get("errorDetail", {}).get("message") or msg["error"])
    return msg
