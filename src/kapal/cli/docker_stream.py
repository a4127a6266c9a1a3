"""The CLI side of attach and exec streams: a hijacked connection, the terminal in raw mode, stdin
copied in, output copied (or demultiplexed) out, and the terminal's size sent on SIGWINCH.

Standard library only (sockets, termios, threads): `kapal run -it` must not pay for asyncio.
"""

from __future__ import annotations

import os
import struct
import sys

from kapal.engine.client import APIError, EngineClient

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from _socket import socket
    from collections.abc import Callable
    from typing import Any

SHUT_WR = 1


def hijack(c: EngineClient, path: str, params: dict, body: dict | None = None) -> tuple[socket, bytes]:
    """POST with Upgrade: tcp; returns the raw socket and the bytes that came after the 101 head."""
    return c.hijack(path, params, body)


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
            tty.setraw(sys.stdin.fileno(), termios.TCSANOW)  # keep what the user typed ahead
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def copy_stdin(sock: socket) -> threading.Thread:
    """stdin → the socket until EOF, then half-close (the engine closes the container's stdin)."""
    import threading

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
            sock.shutdown(SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=run, daemon=True, name="stdin")
    t.start()
    return t


def copy_output(sock: socket, rest: bytes, tty: bool) -> str | None:
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
    import signal

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
