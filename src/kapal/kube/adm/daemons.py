"""The node's daemons without systemd: `kapal engine` and `kapal kubelet` run detached from the terminal.

A daemon gets its own session (no controlling terminal, no SIGHUP when the shell goes), stdin from /dev/null,
stdout and stderr appended to /var/log/kapal/<name>.log, and a pidfile /run/kapal/<name>.pid holding
"<pid> <start time>" so a recycled pid is never mistaken for it. `stop` sends SIGTERM, waits, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from kapal.errors import FailedPrecondition

from .constants import KubeadmPaths


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def running(paths: KubeadmPaths, name: str) -> int | None:
    """The daemon's pid when its pidfile names a live process that is still the one started."""
    try:
        pid_text, _, started = paths.pidfile(name).read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    now = _start_time(pid)
    if now is None or (started and now != started):
        return None
    return pid


def start(paths: KubeadmPaths, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start `argv` detached; returns its pid. A daemon already running under this name is an error."""
    if running(paths, name):
        raise FailedPrecondition(f"the {name} is already running (pid {running(paths, name)}, "
                                 f"{paths.pidfile(name)}); run 'kapal adm reset' first")
    paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    paths.log_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    log = os.open(paths.logfile(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True, cwd="/", env={**os.environ, **(env or {})})
    finally:
        os.close(log)
    proc.returncode = 0  # never waited for here: keep Popen's destructor quiet
    started = None
    for _ in range(50):
        started = _start_time(proc.pid)
        if started:
            break
        time.sleep(0.01)
    tmp = paths.pidfile(name).with_suffix(".tmp")
    tmp.write_text(f"{proc.pid} {started or ''}\n")
    os.replace(tmp, paths.pidfile(name))
    return proc.pid


def _gone(pid: int) -> bool:
    if _start_time(pid) is None:
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child (same process started it): reap it
        except ChildProcessError:
            pass
        return True
    return False


def stop(paths: KubeadmPaths, name: str, timeout: float = 10.0) -> int | None:
    """SIGTERM the daemon, SIGKILL after `timeout`; remove its pidfile. Returns the pid stopped, if any."""
    pid = running(paths, name)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while not _gone(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    try:
        paths.pidfile(name).unlink()
    except FileNotFoundError:
        pass
    return pid
