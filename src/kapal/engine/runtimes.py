"""How the engine runs containers: a runc-compatible runtime, behind one Protocol.

`OciCliRuntime` drives any runtime with runc's command line (`kapal-runtime`,
`runc`, `crun`): `create` with the container's stdio as inherited fds, then
`start`, `kill`, `delete`, `state`. The engine is the child subreaper, so the
container's init (orphaned when `create` returns) is re-parented to it and
the engine reaps it for the exit code.
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

    def create(self, cid: str, bundle: Path, stdio: tuple[int, int, int]) -> int: ...
    def start(self, cid: str) -> None: ...
    def kill(self, cid: str, sig: int) -> None: ...
    def delete(self, cid: str, force: bool = False) -> None: ...
    def state(self, cid: str) -> dict: ...


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

    def _run(self, *args: str, stdio: tuple[int, int, int] | None = None, check: bool = True) -> str:
        cmd = [self.binary, "--root", str(self.root), *args]
        if stdio is None:
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            out, err = proc.stdout, proc.stderr
        else:
            # the container inherits stdio from `create`; its errors go to a separate pipe via --log
            log = self.root / f".{args[-1]}.log"
            cmd = [self.binary, "--root", str(self.root), "--log", str(log), "--log-format", "json", *args]
            proc = subprocess.run(cmd, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
            out, err = "", _last_error(log)
            log.unlink(missing_ok=True)
        if check and proc.returncode != 0:
            message = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
            raise FailedPrecondition(f"OCI runtime {self.name} {args[0]} failed: {message}")
        return out

    def create(self, cid: str, bundle: Path, stdio: tuple[int, int, int]) -> int:
        pid_file = bundle / "init.pid"
        self._run("create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid, stdio=stdio)
        return int(pid_file.read_text().strip())

    def start(self, cid: str) -> None:
        self._run("start", cid)

    def kill(self, cid: str, sig: int) -> None:
        self._run("kill", cid, str(sig))

    def delete(self, cid: str, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), cid, check=False)

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
