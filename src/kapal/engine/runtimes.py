"""How the engine drives a runc-compatible runtime (`runc`, `crun`, `kapal-runtime`), behind one Protocol.

A container's init is started by its shim (`<runtime> run --detach`, see shim.py), so it outlives the
engine; the engine uses the runtime for everything else: kill, pause/resume, exec, delete, state.
`exec --detach` re-parents the exec'd process to the engine, a child subreaper, which reaps it for
its exit code.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from kapal.errors import FailedPrecondition, Invalid, NotFound

PR_SET_CHILD_SUBREAPER = 36


class ContainerRuntime(Protocol):
    name: str

    def argv(self) -> list[str]: ...
    def kill(self, cid: str, sig: int) -> None: ...
    def pause(self, cid: str) -> None: ...
    def resume(self, cid: str) -> None: ...
    def exec(
        self, cid: str, process: Path, stdio: tuple[int, int, int], pid_file: Path, console_socket: str | None = None,
        cwd: Path | None = None,
    ) -> int: ...
    def delete(self, cid: str, force: bool = False) -> None: ...
    def state(self, cid: str) -> dict: ...
    def known(self, cid: str) -> bool: ...


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


class OciCliRuntime:
    def __init__(self, binary: str, root: Path) -> None:
        path = shutil.which(binary)
        if path is None:
            raise NotFound(f"OCI runtime {binary!r} not found on PATH: install it or choose another with --runtime")
        self.binary = path
        self.name = os.path.basename(binary)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        """The command line prefix the shim runs the runtime with."""
        return [self.binary, "--root", str(self.root)]

    def _run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([*self.argv(), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            err = proc.stderr.strip()
            message = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
            try:
                message = json.loads(message).get("msg", message)
            except (ValueError, AttributeError):
                pass
            raise FailedPrecondition(f"OCI runtime {self.name} {args[0]} failed: {message}")
        return proc.stdout

    def kill(self, cid: str, sig: int) -> None:
        self._run("kill", cid, str(sig))

    def pause(self, cid: str) -> None:
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        self._run("resume", cid)

    def exec(
        self,
        cid: str,
        process: Path,
        stdio: tuple[int, int, int],
        pid_file: Path,
        console_socket: str | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start the process described by `process` (an OCI process JSON) in the container; its host PID."""
        log = pid_file.with_suffix(".log")
        cmd = [*self.argv(), "--log", str(log), "--log-format", "json", "exec", "--detach", "--pid-file",
               str(pid_file), "--process", str(process)]
        if console_socket:
            cmd += ["--console-socket", console_socket]
        proc = subprocess.run([*cmd, cid], stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], cwd=cwd)
        try:
            if proc.returncode != 0:
                message = _last_error(log) or f"exit status {proc.returncode}"
                raise FailedPrecondition(f"OCI runtime exec failed: {message}")
            return int(pid_file.read_text().strip())
        finally:
            log.unlink(missing_ok=True)

    def delete(self, cid: str, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), cid, check=False)

    def known(self, cid: str) -> bool:
        """Whether the runtime has state for the container (runc-style runtimes keep <root>/<id>/)."""
        return (self.root / cid).exists()

    def state(self, cid: str) -> dict:
        try:
            return json.loads(self._run("state", cid))
        except FailedPrecondition as e:
            raise NotFound(f"container {cid} is not known to {self.name}: {e}") from None
        except ValueError as e:
            raise Invalid(f"{self.name} state: {e}") from e


def _last_error(log: Path) -> str:
    try:
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            return entry.get("msg", "")
    return ""
