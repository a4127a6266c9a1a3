"""An exec's end closes its stdin only when no write to it is in flight (the fd number could be reused)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

from kapal.engine.execs import ExecManager, ExecSession


class _Events:
    def __init__(self) -> None:
        self.events: list[str] = []

    def _event(self, _c, action: str, **_extra: str) -> None:
        self.events.append(action)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_reap_waits_for_a_stdin_write_in_flight_then_closes():
    events = _Events()
    manager = ExecManager(events)  # type: ignore[arg-type]
    session = ExecSession("e" * 64, None, {"Cmd": ["true"]})  # type: ignore[arg-type]
    r, w = os.pipe()
    proc = subprocess.Popen(["true"])
    session.pid, session.running, session.stdin_fd, session.stdin_open = proc.pid, True, w, True
    closed = threading.Event()
    try:
        with session.stdin_lock:  # a writer is in the middle of os.write(session.stdin_fd, …)
            reaper = threading.Thread(target=manager._reap, args=(session, [], closed.set), daemon=True)
            reaper.start()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and _fd_open(w):
                time.sleep(0.02)
            assert _fd_open(w), "the exec's stdin was closed under a write in flight"
            assert not session.done.is_set()
        reaper.join(5)
        assert session.done.is_set() and closed.is_set()
        assert session.exit_code == 0 and session.stdin_fd is None
        assert not _fd_open(w)
        # a late write goes nowhere, even when the old number now names another pipe
        r2, w2 = os.pipe()
        try:
            session.send_stdin(b"late")
            os.set_blocking(r2, False)
            try:
                leaked = os.read(r2, 10)
            except BlockingIOError:
                leaked = b""
            assert leaked == b""
        finally:
            os.close(r2)
            os.close(w2)
        assert events.events == ["exec_die"]
    finally:
        os.close(r)
        if _fd_open(w) and session.stdin_fd == w:
            os.close(w)
