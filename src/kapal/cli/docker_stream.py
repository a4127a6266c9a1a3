"""The CLI side of attach and exec streams: a hijacked connection, the terminal in raw mode, stdin
copied in, output copied (or demultiplexed) out, and the terminal's size sent on SIGWINCH.

Standard library only (sockets, termios, threads): `kapal run -it` must not pay for asyncio.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

from kapal.engine.client import APIError, EngineClient, EngineUnavailable


def hijack(c: EngineClient, path: str, params: dict, body: dict | None = None) -> tuple[socket.socket, bytes]:
    """POST with Upgrade: tcp; returns the raw socket and the bytes that came after the 101 head."""
    if not c.host.startswith("unix://"):
        raise EngineUnavailable("attach and exec need a unix:// engine address")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(c.host[len("unix://") :])
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise c.unavailable(e) from None
    data = json.dumps(body).encode() if body is not None else b""
    content_type = "application/json" if body is not None else "text/plain"
    head = (
        f"POST {c.path(path, params)} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: kapal-cli\r\n"
        f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise APIError(500, "the engine closed the connection")
        buf += chunk
    header, rest = buf.split(b"\r\n\r\n", 1)
    status_line = header.split(b"\r\n", 1)[0].decode()
    status = int(status_line.split()[1])
    if status != 101:
        try:
            message = json.loads(rest).get("message", "")
        except ValueError:
            message = rest.decode(errors="replace")
        sock.close()
        raise APIError(status, message or status_line)
    return sock, rest


def terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        return size.lines, size.columns
    except OSError:
        return 0, 0


class RawTerminal:
    """stdin in raw mode while the session lasts (the container's terminal echoes and edits)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stdin.isatty()
        self.saved: Any = None

    def __enter__(self) -> RawTerminal:
        if self.enabled:
            import termios
            import tty

            self.saved = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def copy_stdin(sock: socket.socket) -> threading.Thread:
    """stdin → the socket until EOF, then half-close (the engine closes the container's stdin)."""

    def run() -> None:
        fd = sys.stdin.fileno()
        try:
            while True:
                try:
                    data = os.read(fd, 32768)
                except OSError:
                    data = b""
                if not data:
                    break
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=run, daemon=True, name="stdin")
    t.start()
    return t


def copy_output(sock: socket.socket, rest: bytes, tty: bool) -> str | None:
    """The stream → stdout/stderr until the engine closes it; returns an error the engine sent in-stream."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    if tty:
        if rest:
            out.write(rest)
            out.flush()
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            out.write(chunk)
            out.flush()
    buf = rest
    while True:
        while len(buf) >= 8:
            stream, size = struct.unpack(">BxxxL", buf[:8])
            if len(buf) < 8 + size:
                break
            payload, buf = buf[8 : 8 + size], buf[8 + size :]
            if stream == 3:
                return payload.decode(errors="replace").strip()
            target = err if stream == 2 else out
            target.write(payload)
            target.flush()
        try:
            chunk = sock.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk


def on_resize(send: Callable[[int, int], None]) -> Callable[[], None]:
    """Send the terminal size now and on every SIGWINCH; returns the function that stops it."""

    def handler(*_: object) -> None:
        rows, cols = terminal_size()
        if rows and cols:
            try:
                send(rows, cols)
            except (APIError, OSError):
                pass

    previous = signal.signal(signal.SIGWINCH, handler)
    handler()
    return lambda: signal.signal(signal.SIGWINCH, previous)
