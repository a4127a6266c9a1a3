"""The per-container shim (conmon's role): it holds the container's stdio or pty, writes its json-file
log, reaps its init for the exit code, and serves the engine on a unix socket.

It is a small single-threaded process in its own session that ignores the signals a dying engine or
terminal sends, so containers outlive the engine: a restarted engine reconnects to `<dir>/shim.sock`,
or reads `<dir>/exit.json` when the container ended meanwhile. With kapal's runtime (settings
`runtime_root`) the shim forks the container's init itself through `kapal.runtime.container.run`,
imported while it waited warm; with a runc-compatible binary (settings `runtime`: its argv) it runs
`run --detach`, and the init is re-parented to the shim (a child subreaper) when that returns.

The shim starts on the path of every `docker run`, so it runs as `python -SE` and imports builtins only
(`_socket`, `_signal`, `select`, `marshal`, `_json`; not `socket`, `signal`, `json`, `selectors`, which
pull in `enum` and `re`): about 10 ms from exec to running the runtime.

Start: `python -SE -c … <dir>/shim.settings FD` — the settings are a marshalled dict; FD is one end of
a socket pair, the engine's first client, subscribed to the output from the start. The shim answers
P {"pid"} once the container runs, or F {"error"} and exits. The engine keeps one shim started ahead
(`- FD`: imports done, subreaper set) that waits for G <settings path>, taking the interpreter's start
off the path of `docker run`.

Wire format, both ways: [kind: 1 byte][length: 4 bytes, big-endian][payload]
  engine → shim   G settings path (once, to a shim started ahead)    A subscribe to output
                  I stdin bytes    C close stdin    R resize (rows, cols: 2×u16)    S ask for the state
  shim → engine   1 stdout bytes   2 stderr bytes   P started {"pid"}   F failed {"error"}
                  T state {"pid", "running"}   X exited {"ExitCode", "OOMKilled", "FinishedAt", "Pid"}
"""

from __future__ import annotations

import _signal
import _socket
import errno
import marshal
import os
import select
import struct
import sys
import time
from _json import encode_basestring

from kapal.engine.jsonlog import JsonFileWriter, rfc3339_nano

HEADER = struct.Struct(">BI")
SIZE = struct.Struct(">HH")
MAX_CLIENT_BACKLOG = 8 << 20
MAX_STDIN_BACKLOG = 1 << 20
DRAIN_SECONDS = 2.0
PR_SET_CHILD_SUBREAPER = 36
IN, OUT = select.EPOLLIN, select.EPOLLOUT
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IGNORED = (_signal.SIGHUP, _signal.SIGINT, _signal.SIGTERM, _signal.SIGPIPE, _signal.SIGTTOU, _signal.SIGTTIN)


def pack(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind[0], len(payload)) + payload


class FrameReader:
    """Splits a byte stream into (kind, payload) frames."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= HEADER.size:
            kind, size = HEADER.unpack_from(self.buf)
            if len(self.buf) < HEADER.size + size:
                break
            out.append((bytes([kind]), self.buf[HEADER.size : HEADER.size + size]))
            self.buf = self.buf[HEADER.size + size :]
        return out


def _json_object(doc: dict) -> bytes:
    """A flat dict of str/int/bool values as JSON (the json module would cost the shim's start time)."""
    parts = []
    for key, value in doc.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = encode_basestring(str(value))
        parts.append(f"{encode_basestring(key)}:{text}")
    return ("{" + ",".join(parts) + "}").encode()


class Client:
    __slots__ = ("sock", "reader", "out", "subscribed")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.out = bytearray()
        self.subscribed = False


def _subreaper() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _runtime_error(log_path: str, code: int) -> str:
    """The last error the runc-style runtime logged (--log-format json), else its last line."""
    try:
        with open(log_path) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if '"level":"error"' in line or '"level":"fatal"' in line:
            start = line.find('"msg":"')
            if start >= 0:
                from _json import scanstring

                return scanstring(line, start + 7)[0]
    return lines[-1] if lines else f"exit status {code}"


def _oom_killed(memory_cgroup: str) -> bool:
    if not memory_cgroup:
        return False
    try:
        with open(os.path.join(memory_cgroup, "memory.oom_control")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
    except (OSError, ValueError):
        pass
    return False


def _write_atomic(path: str, data: bytes) -> None:
    """Whole or absent for a reader after any crash of a process (no fsync: a machine crash takes the
    containers with it, and the exit of a container is on the path of every `docker run --rm`)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _unix_listener(name: str) -> _socket.socket:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.bind(name)
    sock.listen(16)
    return sock


def _receive_fd(conn: _socket.socket) -> int | None:
    _, ancdata, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(4))
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            fds = struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4])
            for extra in fds[1:]:
                os.close(extra)
            return fds[0]
    return None


class Shim:
    def __init__(self, settings: dict, engine_fd: int | None) -> None:
        self.s = settings
        self.poll = select.epoll()
        self.handlers: dict[int, tuple] = {}
        self.clients: dict[int, Client] = {}
        self.init_pid = 0
        self.status: int | None = None
        self.stdin_fd: int | None = None
        self.stdin_buf = bytearray()
        self.stdin_close_pending = False
        self.outputs: dict[int, int] = {}  # fd -> stream number
        self.master: int | None = None
        self.log = JsonFileWriter(
            settings["log_path"], settings.get("log_max_size", 0), settings.get("log_max_files", 1)
        )
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if engine_fd is not None:
            os.set_inheritable(engine_fd, False)
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, engine_fd)
            self._add_client(sock).subscribed = True

    # ------------------------------------------------------------------ container start

    def start(self) -> None:
        s = self.s
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        child_fds: list[int] = []
        console = None
        if s.get("tty"):
            console = _unix_listener("console.sock")
            stdio = (null, null, null)
        else:
            if s.get("stdin"):
                r, w = os.pipe2(os.O_CLOEXEC)
                self.stdin_fd = w
                os.set_blocking(w, False)
                child_fds.append(r)
                stdin = r
            else:
                stdin = null
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            child_fds += [out_w, err_w]
            self.outputs = {out_r: 1, err_r: 2}
            stdio = (stdin, out_w, err_w)
        if "runtime_root" in s:
            self._run_in_process(stdio, console)
        else:
            self._run_runtime_binary(stdio, console)
        for fd in (*child_fds, null):
            os.close(fd)
        if self.master is not None:
            self.outputs = {self.master: 1}
            self.stdin_fd = self.master
            rows, cols = s.get("console_size") or (0, 0)
            if rows and cols:
                self.resize(rows, cols)
        for fd in self.outputs:
            os.set_blocking(fd, False)
            self._register(fd, IN, ("output", fd))

    def _run_in_process(self, stdio: tuple[int, int, int], console: _socket.socket | None) -> None:
        """kapal's runtime as a library: the init is forked from this process, which is already warm."""
        from kapal.errors import KapalError
        from kapal.runtime import container

        s = self.s
        try:
            self.init_pid = container.run(
                s["runtime_root"], s["id"], s["bundle"], detach=True, stdio=stdio, pid_file=s["pid_file"],
                console_socket=os.path.abspath("console.sock") if console is not None else None,
            )
        except KapalError as e:
            raise RuntimeError(str(e)) from None
        except OSError as e:
            raise RuntimeError(f"{e.filename}: {e.strerror}" if e.filename else str(e.strerror or e)) from None
        finally:
            if console is not None:
                self._accept_pty(console)

    def _accept_pty(self, console: _socket.socket) -> None:
        """The pty master the init sent before it became ready (queued on the listener), if it did."""
        console.setblocking(False)
        try:
            fd, _ = console._accept()
        except BlockingIOError:
            fd = None
        finally:
            _close_console(console)
        if fd is not None:
            self._take_master(fd)

    def _take_master(self, fd: int) -> None:
        """Read the pty master the runtime sends on an accepted console-socket connection."""
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        try:
            conn.settimeout(10)
            self.master = _receive_fd(conn)
        finally:
            conn.close()

    def _run_runtime_binary(self, stdio: tuple[int, int, int], console: _socket.socket | None) -> None:
        """A runc-compatible binary: `run --detach`; the init is re-parented to this process when it exits."""
        s = self.s
        argv = [
            *s["runtime"],
            "--log",
            s["runtime_log"],
            "--log-format",
            "json",
            "run",
            "--detach",
            "--bundle",
            s["bundle"],
            "--pid-file",
            s["pid_file"],
            *(["--console-socket", "console.sock"] if console else []),
            s["id"],
        ]
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
        try:
            pid = os.posix_spawn(argv[0], argv, {"PATH": PATH}, file_actions=actions, setsigdef=IGNORED)
        except OSError as e:
            raise RuntimeError(f"cannot run the OCI runtime {argv[0]}: {e.strerror}") from None
        status = self._receive_pty(console, pid) if console is not None else None
        if status is None:
            _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(_runtime_error(s["runtime_log"], code))
        with open(s["pid_file"]) as f:
            self.init_pid = int(f.read().strip())

    def _receive_pty(self, console: _socket.socket, runtime_pid: int) -> int | None:
        """Accept the runtime's pty master on the console socket; returns the runtime's wait status when
        it exited without sending one."""
        console.settimeout(0.02)
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                try:
                    fd, _ = console._accept()
                except TimeoutError:
                    pid, status = os.waitpid(runtime_pid, os.WNOHANG)
                    if pid:
                        return status
                    continue
                self._take_master(fd)
                return None
        finally:
            _close_console(console)
        return None

    # ------------------------------------------------------------------ event loop plumbing

    def _register(self, fd: int, events: int, handler: tuple) -> None:
        self.handlers[fd] = handler
        self.poll.register(fd, events)

    def _modify(self, fd: int, events: int) -> None:
        if fd in self.handlers:
            self.poll.modify(fd, events)

    def _unregister(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.poll.unregister(fd)

    # ------------------------------------------------------------------ clients

    def _add_client(self, sock: _socket.socket) -> Client:
        sock.setblocking(False)
        client = Client(sock)
        self.clients[sock.fileno()] = client
        self._register(sock.fileno(), IN, ("client", client))
        return client

    def _drop_client(self, client: Client) -> None:
        fd = client.sock.fileno()
        if fd < 0 or self.clients.pop(fd, None) is None:
            return
        self._unregister(fd)
        client.sock.close()

    def send(self, client: Client, frame: bytes) -> None:
        if len(client.out) > MAX_CLIENT_BACKLOG:
            self._drop_client(client)  # a client that stopped reading; the log keeps everything
            return
        client.out += frame
        self._flush(client)

    def _flush(self, client: Client) -> None:
        while client.out:
            try:
                n = client.sock.send(client.out)
            except BlockingIOError:
                break
            except OSError:
                self._drop_client(client)
                return
            del client.out[:n]
        self._client_events(client)

    def _client_events(self, client: Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0:
            paused = len(self.stdin_buf) > MAX_STDIN_BACKLOG
            self._modify(fd, (0 if paused else IN) | (OUT if client.out else 0))

    def broadcast(self, frame: bytes) -> None:
        for client in list(self.clients.values()):
            if client.subscribed:
                self.send(client, frame)

    def on_client(self, client: Client, events: int) -> None:
        if events & OUT:
            self._flush(client)
        if not events & (IN | select.EPOLLHUP | select.EPOLLERR) or client.sock.fileno() < 0:
            return
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client(client)
            return
        for kind, payload in client.reader.feed(data):
            self.on_frame(client, kind, payload)

    def on_frame(self, client: Client, kind: bytes, payload: bytes) -> None:
        if kind == b"A":
            client.subscribed = True
        elif kind == b"I":
            self.stdin_buf += payload
            self._write_stdin()
        elif kind == b"C":
            self.stdin_close_pending = True
            self._write_stdin()
        elif kind == b"R" and len(payload) == SIZE.size:
            self.resize(*SIZE.unpack(payload))
        elif kind == b"S":
            doc = {"pid": self.init_pid, "running": self.status is None}
            self.send(client, pack(b"T", _json_object(doc)))

    def resize(self, rows: int, cols: int) -> None:
        if self.master is None:
            return
        import fcntl
        import termios

        try:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        except OSError:
            pass

    def _write_stdin(self) -> None:
        fd = self.stdin_fd
        if fd is None:
            self.stdin_buf.clear()
            return
        while self.stdin_buf:
            try:
                n = os.write(fd, self.stdin_buf)
            except BlockingIOError:
                break
            except OSError:
                self.stdin_buf.clear()  # the container closed its stdin
                break
            del self.stdin_buf[:n]
        if fd != self.master:
            self._unregister(fd)
            if self.stdin_buf:
                self._register(fd, OUT, ("stdin", fd))
            elif self.stdin_close_pending:
                os.close(fd)
                self.stdin_fd = None
        for client in list(self.clients.values()):
            self._client_events(client)

    # ------------------------------------------------------------------ output and exit

    def on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty's last slave closed
                raise
            data = b""
        stream = self.outputs.get(fd, 1)
        if not data:
            self._unregister(fd)
            del self.outputs[fd]
            if fd != self.master:
                os.close(fd)
            return
        self.log.write("stderr" if stream == 2 else "stdout", data)
        self.broadcast(pack(b"1" if stream == 1 else b"2", data))

    def reap(self) -> None:
        if self.status is not None or not self.init_pid:
            return
        try:
            pid, status = os.waitpid(self.init_pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.init_pid, 255 << 8
        if pid:
            self.status = status

    def run(self) -> int:
        self._register(self.wake_r, IN, ("wake", None))
        listener = _unix_listener("shim.sock")
        listener.setblocking(False)
        self._register(listener.fileno(), IN, ("listen", listener))
        _signal.set_wakeup_fd(self.wake_w)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)
        for client in list(self.clients.values()):
            for kind, payload in client.reader.feed(b""):  # frames that came with the settings (stdin, EOF)
                self.on_frame(client, kind, payload)
        self.reap()
        drain_deadline = None
        while True:
            timeout = -1.0
            if self.status is not None:
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + DRAIN_SECONDS
                if not self.outputs or time.monotonic() > drain_deadline:
                    break
                timeout = max(0.0, drain_deadline - time.monotonic())
            try:
                ready = self.poll.poll(timeout)
            except InterruptedError:
                continue
            for fd, events in ready:
                handler = self.handlers.get(fd)
                if handler is None:
                    continue
                what, obj = handler
                if what == "output":
                    self.on_output(obj)
                elif what == "client":
                    self.on_client(obj, events)
                elif what == "listen":
                    try:
                        conn_fd, _ = obj._accept()
                    except OSError:
                        continue
                    self._add_client(_socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, conn_fd))
                elif what == "stdin":
                    self._write_stdin()
                elif what == "wake":
                    try:
                        os.read(self.wake_r, 512)
                    except BlockingIOError:
                        pass
                    self.reap()
        return self.finish(listener)

    def finish(self, listener: _socket.socket) -> int:
        s = self.s
        self.log.close()
        status = self.status if self.status is not None else 255 << 8
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        oom = _oom_killed(s.get("memory_cgroup", ""))
        self._delete_container()
        finished = rfc3339_nano(time.time_ns())
        payload = _json_object({"ExitCode": code, "OOMKilled": oom, "FinishedAt": finished, "Pid": self.init_pid})
        _write_atomic(s["exit_file"], payload)
        listener.close()
        try:
            os.unlink("shim.sock")
        except FileNotFoundError:
            pass
        frame = pack(b"X", payload)
        deadline = time.monotonic() + 5
        for client in list(self.clients.values()):
            client.sock.setblocking(True)
            client.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                client.sock.sendall(bytes(client.out) + frame)
            except OSError:
                pass
            client.sock.close()
        return 0


    def _delete_container(self) -> None:
        s = self.s
        if "runtime_root" in s:
            from kapal.errors import KapalError
            from kapal.runtime import container

            try:
                container.delete(s["runtime_root"], s["id"], force=True)
            except (KapalError, OSError):
                pass
            return
        argv = [*s["runtime"], "delete", "--force", s["id"]]
        null = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawn(
                argv[0],
                argv,
                {"PATH": PATH},
                file_actions=[(os.POSIX_SPAWN_DUP2, null, i) for i in range(3)],
                setsigdef=IGNORED,
            )
            os.waitpid(pid, 0)
        except OSError:
            pass
        os.close(null)


def _wait_for_settings(engine_fd: int) -> tuple[str, bytes]:
    """A pre-started shim: block until the engine sends G <settings path> (or goes away); returns the path
    and the raw bytes that followed it (stdin the engine sent on, for the main loop)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, engine_fd)
    buf = b""
    try:
        while True:
            if len(buf) >= HEADER.size:
                kind, size = HEADER.unpack_from(buf)
                if len(buf) >= HEADER.size + size:
                    if kind != ord("G"):
                        raise SystemExit(f"the engine sent {bytes([kind])!r} before the settings")
                    return buf[HEADER.size : HEADER.size + size].decode(), buf[HEADER.size + size :]
            data = sock.recv(4096)
            if not data:
                raise SystemExit(0)
            buf += data
    finally:
        sock.detach()


def _preload_runtime() -> None:
    """Import kapal's runtime while waiting warm, so that starting the container is only the runtime's work."""
    import kapal.linux.console
    import kapal.runtime.container
    import kapal.runtime.launcher  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """`SETTINGS FD`, or `- FD [runtime]` to start warm (with kapal's runtime imported) and wait for the
    settings' path on FD."""
    args = sys.argv[1:] if argv is None else argv
    for sig in IGNORED:
        _signal.signal(sig, _signal.SIG_IGN)
    try:
        os.setsid()
    except OSError:
        pass
    engine_fd = int(args[1]) if len(args) > 1 else None
    _subreaper()
    path, early = args[0], b""
    if path == "-" and engine_fd is not None:
        if args[2:3] == ["runtime"]:
            _preload_runtime()
        path, early = _wait_for_settings(engine_fd)
    with open(path, "rb") as f:
        settings = marshal.load(f)
    os.chdir(os.path.dirname(os.path.abspath(path)))
    log_fd = os.open("shim.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.dup2(log_fd, 1, inheritable=False)
    os.dup2(log_fd, 2, inheritable=False)
    os.close(log_fd)
    shim = Shim(settings, engine_fd)
    for client in shim.clients.values():
        client.reader.buf = early
    try:
        shim.start()
    except Exception as e:  # reported to the engine, which answers the API call with it
        for client in list(shim.clients.values()):
            client.sock.setblocking(True)
            try:
                client.sock.sendall(pack(b"F", _json_object({"error": str(e)})))
            except OSError:
                pass
        return 1
    _write_atomic("shim.pid", str(os.getpid()).encode())
    started = pack(b"P", _json_object({"pid": shim.init_pid}))
    for client in list(shim.clients.values()):
        shim.send(client, started)
    return shim.run()


def _close_console(console: _socket.socket) -> None:
    """Close the console-socket listener and remove its path (it lives in the shim's directory)."""
    console.close()
    try:
        os.unlink("console.sock")
    except FileNotFoundError:
        pass
