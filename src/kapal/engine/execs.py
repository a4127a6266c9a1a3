"""`docker exec`: processes started in a running container's namespaces by the runtime's `exec --detach`.

An exec session is created (its config recorded), then started: the engine holds its stdio (pipes, or
a pty received on a console socket) and relays them to the attached client, and reaps the process
(the engine is a child subreaper) for the exit code `GET /exec/ID/json` reports. Exec sessions do not
outlive the engine: their stdio is the engine's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import struct
import termios
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kapal.errors import Conflict, FailedPrecondition, Invalid, KapalError, NotFound

from . import hostconfig
from .ocispec import CommandNotFound, merge_env, resolve_command, resolve_user
from .runtimes import become_subreaper

if TYPE_CHECKING:
    from .containers import Container, ContainerManager

log = logging.getLogger(__name__)

DRAIN_SECONDS = 2.0


class ExecSession:
    def __init__(self, exec_id: str, container: Container, config: dict) -> None:
        self.id = exec_id
        self.container = container
        self.config = config
        self.running = False
        self.started = False
        self.exit_code: int | None = None
        self.pid = 0
        self.master: int | None = None
        self.stdin_fd: int | None = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        # stdin that arrives before the process has its pipe or terminal waits here, as in dockerd
        self.stdin_lock = threading.Lock()
        self.stdin_open = False
        self.stdin_early = bytearray()
        self.stdin_early_eof = False

    def to_docker(self) -> dict:
        cmd = list(self.config.get("Cmd") or [])
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": bool(self.config.get("Tty")),
                "entrypoint": cmd[0] if cmd else "",
                "arguments": cmd[1:],
                "privileged": bool(self.config.get("Privileged")),
                "user": self.config.get("User") or "",
            },
            "OpenStdin": bool(self.config.get("AttachStdin")),
            "OpenStderr": bool(self.config.get("AttachStderr")),
            "OpenStdout": bool(self.config.get("AttachStdout")),
            "CanRemove": False,
            "ContainerID": self.container.id,
            "DetachKeys": self.config.get("DetachKeys") or "",
            "Pid": self.pid,
        }

    def send_stdin(self, data: bytes) -> None:
        with self.stdin_lock:
            if not self.stdin_open:
                self.stdin_early += data
                return
            self._write_stdin(data)

    def close_stdin(self) -> None:
        with self.stdin_lock:
            if not self.stdin_open:
                self.stdin_early_eof = True
                return
            self._close_stdin()

    def open_stdin(self) -> None:
        """The process has its stdin now: what the client sent early goes in first, then an early EOF."""
        with self.stdin_lock:
            self.stdin_open = True
            early, self.stdin_early = bytes(self.stdin_early), bytearray()
            if early:
                self._write_stdin(early)
            if self.stdin_early_eof:
                self._close_stdin()

    def _write_stdin(self, data: bytes) -> None:
        fd = self.stdin_fd
        if fd is None:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except OSError:
                return
            view = view[n:]

    def _close_stdin(self) -> None:
        with self.lock:
            fd, self.stdin_fd = self.stdin_fd, None
        if fd is not None and fd != self.master:
            os.close(fd)
        elif fd is not None:
            self.stdin_fd = fd  # a pty stays open: the shell reads EOF from ^D, not from a close

    def resize(self, rows: int, cols: int) -> None:
        with self.stdin_lock:
            if self.master is None:
                return
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class ExecManager:
    def __init__(self, containers: ContainerManager) -> None:
        self.containers = containers
        self._sessions: dict[str, ExecSession] = {}
        self._lock = threading.Lock()
        become_subreaper()  # `exec --detach` leaves the process to us, for its exit code

    def ids_of(self, container_id: str) -> list[str]:
        with self._lock:
            return [s.id for s in self._sessions.values() if s.container.id == container_id]

    def get(self, exec_id: str) -> ExecSession:
        with self._lock:
            session = self._sessions.get(exec_id)
        if session is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return session

    def create(self, ref: str, body: dict) -> dict:
        c = self.containers.get(ref)
        cmd = body.get("Cmd")
        if not cmd or not isinstance(cmd, list) or not cmd[0]:
            raise Invalid("No exec command specified")
        if c.restarting:
            raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        if c.state.get("Paused"):
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        exec_id = secrets.token_hex(32)
        with self._lock:
            for old in [s for s in self._sessions.values() if s.container.id == c.id and s.done.is_set()][:-16]:
                self._sessions.pop(old.id, None)  # keep the last few finished sessions per container
            self._sessions[exec_id] = ExecSession(exec_id, c, dict(body))
        self.containers._event(c, f"exec_create: {' '.join(cmd)}", execID=exec_id)
        return {"Id": exec_id}

    def start(
        self,
        exec_id: str,
        *,
        tty: bool | None = None,
        detach: bool = False,
        console_size: list[int] | None = None,
        on_data: Callable[[int, bytes], None] = lambda _s, _d: None,
        on_close: Callable[[], None] = lambda: None,
    ) -> ExecSession:
        session = self.get(exec_id)
        with session.lock:
            if session.started:
                raise Conflict(f"Error: Exec command {exec_id} has already run")
            session.started = True
        c = session.container
        cfg = session.config
        tty = bool(cfg.get("Tty")) if tty is None else tty
        try:
            self._launch(session, c, cfg, tty, detach, console_size or cfg.get("ConsoleSize"), on_data, on_close)
        except BaseException as e:
            # as docker exec reports it: 127 when the command is not there, 126 when it cannot run
            session.exit_code = 127 if isinstance(e, CommandNotFound) else 126
            session.done.set()
            on_close()
            raise
        self.containers._event(c, f"exec_start: {' '.join(cfg['Cmd'])}", execID=exec_id)
        return session

    def _process(self, c: Container, cfg: dict, tty: bool, console_size) -> dict:
        root = Path(f"/proc/{c.state['Pid']}/root")
        env = merge_env(c.doc["Config"].get("Env"), cfg.get("Env"))
        args = list(cfg["Cmd"])
        resolve_command(root, args[0], env)
        user = resolve_user(root, cfg.get("User") or c.doc["Config"].get("User") or "")
        hc = c.doc["HostConfig"]
        caps = hostconfig.capabilities({**hc, "Privileged": bool(hc.get("Privileged") or cfg.get("Privileged"))})
        nnp, _ = hostconfig.security_options(hc)
        process: dict = {
            "terminal": tty,
            "user": {"uid": user[0], "gid": user[1], "additionalGids": user[2]},
            "args": args,
            "env": env,
            "cwd": cfg.get("WorkingDir") or c.doc["Config"].get("WorkingDir") or "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": nnp,
        }
        if tty and console_size and console_size[0] and console_size[1]:
            process["consoleSize"] = {"height": int(console_size[0]), "width": int(console_size[1])}
        return process

    def _launch(self, session: ExecSession, c: Container, cfg: dict, tty: bool, detach: bool, console_size,
                on_data, on_close) -> None:
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        process = self._process(c, cfg, tty, console_size)
        workdir = c.dir / "exec"
        workdir.mkdir(exist_ok=True)
        process_path = workdir / f"{session.id}.json"
        process_path.write_text(json.dumps(process))
        pid_file = workdir / f"{session.id}.pid"
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        to_close = [null]
        outputs: dict[int, int] = {}
        console = None
        try:
            if tty and not detach:
                console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                dfd = os.open(workdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    console.bind(f"/proc/self/fd/{dfd}/{session.id[:16]}.sock")
                finally:
                    os.close(dfd)
                console.listen(1)
                stdio = (null, null, null)
            elif detach:
                stdio = (null, null, null)
            else:
                if cfg.get("AttachStdin"):
                    r, w = os.pipe2(os.O_CLOEXEC)
                    session.stdin_fd = w
                    to_close.append(r)
                    stdin = r
                else:
                    stdin = null
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                to_close += [out_w, err_w]
                outputs = {out_r: 1, err_r: 2}
                stdio = (stdin, out_w, err_w)
            result: dict = {}
            if console is not None:
                accept = threading.Thread(target=_accept_pty, args=(console, result), daemon=True)
                accept.start()
            try:
                pid = self.containers.runtime.exec(
                    c.id, process_path, stdio, pid_file,
                    console_socket=f"{session.id[:16]}.sock" if console is not None else None, cwd=workdir,
                )
            except KapalError:
                for fd in outputs:
                    os.close(fd)
                if session.stdin_fd is not None:
                    os.close(session.stdin_fd)
                    session.stdin_fd = None
                raise
            if console is not None:
                accept.join(10)
                session.master = result.get("fd")
                if session.master is None:
                    raise FailedPrecondition("the runtime did not hand over the exec's terminal")
                outputs = {session.master: 1}
                session.stdin_fd = session.master if cfg.get("AttachStdin") else None
        finally:
            for fd in to_close:
                os.close(fd)
            if console is not None:
                console.close()
            process_path.unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)
        session.pid = pid
        session.running = True
        readers = [
            threading.Thread(target=_pump, args=(fd, stream, on_data, fd != session.master), daemon=True,
                             name=f"exec-{fd}")
            for fd, stream in outputs.items()
        ]
        for t in readers:
            t.start()
        threading.Thread(target=self._reap, args=(session, readers, on_close), daemon=True,
                         name=f"exec-wait-{session.id[:8]}").start()
        session.open_stdin()

    def _reap(self, session: ExecSession, readers: list[threading.Thread], on_close) -> None:
        try:
            _, status = os.waitpid(session.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
        except ChildProcessError:
            code = 126  # not ours to reap: the engine is not the process's subreaper
        for t in readers:
            t.join(DRAIN_SECONDS)
        # under the stdin lock (then the session lock, the order _close_stdin takes them): a write or a
        # resize in flight finishes on the fds before they close, and none starts on a number reused since
        with session.stdin_lock, session.lock:
            session.exit_code = code
            session.running = False
            master, session.master = session.master, None
            stdin, session.stdin_fd = session.stdin_fd, None
            for fd in {master, stdin} - {None}:
                with contextlib.suppress(OSError):
                    os.close(fd)  # type: ignore[arg-type]
        session.done.set()
        try:
            on_close()
        finally:
            self.containers._event(session.container, "exec_die", execID=session.id, exitCode=str(code))

    def resize(self, exec_id: str, rows: int, cols: int) -> None:
        session = self.get(exec_id)
        if not session.running:
            raise Conflict(f"exec {exec_id} is not running")
        session.resize(rows, cols)

    def inspect(self, exec_id: str) -> dict:
        return self.get(exec_id).to_docker()

    def discard(self, exec_id: str) -> None:
        """Forget one session (a health probe's, done or given up): its ID leaves ExecIDs."""
        with self._lock:
            self._sessions.pop(exec_id, None)

    def forget(self, container_id: str) -> None:
        with self._lock:
            for sid in [s.id for s in self._sessions.values() if s.container.id == container_id]:
                self._sessions.pop(sid, None)

    def shutdown(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.close_stdin()


def _accept_pty(console: socket.socket, result: dict) -> None:
    console.settimeout(30)
    try:
        conn, _ = console.accept()
        with conn:
            conn.settimeout(10)
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if fds:
            result["fd"] = fds[0]
    except OSError as e:
        log.warning("exec: no terminal from the runtime: %s", e)


def _pump(fd: int, stream: int, on_data: Callable[[int, bytes], None], owned: bool) -> None:
    """Relay one output fd until EOF (EIO on a pty whose last slave closed); close it when `owned`."""
    try:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                return
            try:
                on_data(stream, data)
            except Exception:
                log.exception("exec output")
    finally:
        if owned:
            with contextlib.suppress(OSError):
                os.close(fd)
