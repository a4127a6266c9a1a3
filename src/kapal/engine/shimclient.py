"""The engine's side of a container shim (kapal.engine.shim): start one, reconnect to one, talk to it.

A shim lives in the container's directory: `shim.settings` (marshalled), `shim.sock`, `shim.pid`,
`exit.json` once the container ended. Paths on the wire are relative to that directory or reached
through `/proc/self/fd/N/…`, so long data roots stay within the 108 bytes of a unix socket address.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import kapal

from .shim import HEADER, SIZE, FrameReader, pack

log = logging.getLogger(__name__)

_SRC = str(Path(kapal.__file__).resolve().parent.parent)
_CODE = f"import sys; sys.path.insert(0, {_SRC!r}); from kapal.engine.shim import main; sys.exit(main())"
PYTHON = os.path.realpath(os.environ.get("KAPAL_SHIM_PYTHON") or __import__("sys").executable)


class ShimError(Exception):
    """The shim could not start the container; the message is the runtime's."""


OutputFn = Callable[[int, bytes], None]
ExitFn = Callable[[dict | None], None]


class ShimConnection:
    """One connection to a shim. A reader thread calls on_output(stream, bytes) for each chunk and, once,
    on_exit(exit doc) when the container ended or on_exit(None) when the shim went away without saying."""

    def __init__(self, sock: socket.socket, on_output: OutputFn, on_exit: ExitFn) -> None:
        self.sock = sock
        self.on_output = on_output
        self.on_exit = on_exit
        self._send_lock = threading.Lock()
        self._reader = FrameReader()
        self._backlog: list[tuple[bytes, bytes]] = []  # frames read past read_until's match
        self._thread: threading.Thread | None = None
        self.closed = False

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        with self._send_lock:
            try:
                self.sock.sendall(pack(kind, payload))
            except OSError:
                pass  # the reader sees the shim go

    def send_stdin(self, data: bytes) -> None:
        if data:
            self.send(b"I", data)

    def close_stdin(self) -> None:
        self.send(b"C")

    def resize(self, rows: int, cols: int) -> None:
        self.send(b"R", SIZE.pack(max(0, min(rows, 65535)), max(0, min(cols, 65535))))

    def read_until(self, kinds: set[bytes], timeout: float) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
        """Blocking read of the first frame whose kind is in `kinds`; frames before it are returned too."""
        self.sock.settimeout(timeout)
        seen: list[tuple[bytes, bytes]] = []
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return b"", b"", seen
                frames = self._reader.feed(data)
                for i, (kind, payload) in enumerate(frames):
                    if kind in kinds:
                        self._backlog.extend(frames[i + 1 :])
                        return kind, payload, seen
                    seen.append((kind, payload))
        finally:
            self.sock.settimeout(None)

    def start_reader(self, pending: list[tuple[bytes, bytes]] | None = None, name: str = "shim") -> None:
        self._thread = threading.Thread(target=self._read_loop, args=(pending or [],), daemon=True, name=name)
        self._thread.start()

    def _read_loop(self, pending: list[tuple[bytes, bytes]]) -> None:
        exit_doc: dict | None = None
        try:
            frames = list(pending) + self._backlog + self._reader.feed(b"")
            self._backlog = []
            while exit_doc is None:
                for kind, payload in frames:
                    if kind in (b"1", b"2"):
                        self._deliver(kind[0] - 48, payload)
                    elif kind == b"X":
                        exit_doc = json.loads(payload)
                        break
                if exit_doc is not None:
                    break
                try:
                    data = self.sock.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    break
                frames = self._reader.feed(data)
        finally:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass
            self.on_exit(exit_doc)

    def _deliver(self, stream: int, data: bytes) -> None:
        try:
            self.on_output(stream, data)
        except Exception:
            log.exception("delivering container output")

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ShimLauncher:
    """Starts shims, keeping one started ahead (interpreter up, imports done) so that a container start
    waits only for the runtime."""

    def __init__(self, warm: bool = True, preload_runtime: bool = False) -> None:
        """`preload_runtime`: shims started ahead import kapal's runtime (for `KapalRuntime`) while they wait."""
        self.warm = warm
        self.preload_runtime = preload_runtime
        self._lock = threading.Lock()
        self._ready: tuple[subprocess.Popen, socket.socket] | None = None
        self._closed = False
        if warm:
            self._refill()

    def _start(self, settings_path: str) -> tuple[subprocess.Popen, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(
                [PYTHON, "-SE", "-c", _CODE, settings_path, str(theirs.fileno()),
                 *(["runtime"] if self.preload_runtime and settings_path == "-" else [])],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            )
        finally:
            theirs.close()
        return proc, ours

    def _refill(self) -> None:
        def work() -> None:
            started = self._start("-")
            with self._lock:
                if self._ready is None and not self._closed:
                    self._ready, started = started, None
            if started is not None:
                _discard(started)

        threading.Thread(target=work, daemon=True, name="shim-warm").start()

    def spawn(
        self, directory: Path, settings: dict, *, stdin: bytes = b"", close_stdin: bool = False, timeout: float = 120
    ) -> tuple[subprocess.Popen, ShimConnection, int, list[tuple[bytes, bytes]]]:
        """Start the container described by settings under a shim; returns (shim process, connection, init
        PID, output frames that came with the start report). Raises ShimError with the runtime's message."""
        config = directory / "shim.settings"
        config.write_bytes(marshal.dumps(settings))
        with self._lock:
            ready, self._ready = self._ready, None
        if self.warm:
            self._refill()
        if ready is not None:
            proc, sock = ready
            try:
                sock.sendall(pack(b"G", str(config).encode()))
            except OSError:
                _discard(ready)
                proc, sock = self._start(str(config))
        else:
            proc, sock = self._start(str(config))
        conn = ShimConnection(sock, lambda _s, _d: None, lambda _doc: None)
        if stdin:
            conn.send_stdin(stdin)
        if close_stdin:
            conn.close_stdin()
        kind, payload, early = conn.read_until({b"P", b"F", b"X"}, timeout)
        if kind == b"P":
            return proc, conn, int(json.loads(payload)["pid"]), early
        sock.close()
        proc.wait()
        if kind == b"F":
            raise ShimError(json.loads(payload).get("error") or "the OCI runtime failed")
        try:
            tail = (directory / "shim.log").read_text().strip().splitlines()[-1]
        except (OSError, IndexError):
            tail = f"exit status {proc.returncode}"
        raise ShimError(f"the container shim failed: {tail}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, None
        if ready is not None:
            _discard(ready)


def _discard(started: tuple[subprocess.Popen, socket.socket]) -> None:
    """A shim that never got a container: closing its socket makes it exit."""
    proc, sock = started
    sock.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def connect(directory: Path, timeout: float = 5) -> socket.socket:
    """A connection to a running shim's socket (OSError when nobody listens)."""
    dfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(f"/proc/self/fd/{dfd}/shim.sock")
        except OSError:
            sock.close()
            raise
        sock.settimeout(None)
        return sock
    finally:
        os.close(dfd)


def shim_alive(directory: Path) -> int:
    """The shim's PID when its process still runs (a shim works in its container's directory), else 0."""
    try:
        pid = int((directory / "shim.pid").read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError):
        return 0
    return pid if b"kapal.engine.shim" in cmdline and cwd == str(directory.resolve()) else 0


def read_exit(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "exit.json").read_text())
    except (OSError, ValueError):
        return None


__all__ = ["HEADER", "ShimConnection", "ShimError", "ShimLauncher", "connect", "read_exit", "shim_alive"]
