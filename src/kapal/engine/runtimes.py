"""How the engine drives an OCI runtime, behind one Protocol: kapal's own (the default) or a runc-compatible
binary (`runc`, `crun`, `kapal-runtime`).

A container's init is started by its shim (see shim.py), so it outlives the engine; `shim_settings()`
tells the shim how: `KapalRuntime` has it call `kapal.runtime.container.run` in its own, already warm
process (no second interpreter start: a few ms instead of ~20 per container); `OciCliRuntime` has it run
`<binary> run --detach`. The engine uses the runtime for everything else: kill, pause/resume, exec,
delete, state - `KapalRuntime` in the engine's process, `OciCliRuntime` through the binary. An exec'd
process ends up a child of the engine (a child subreaper), which reaps it for its exit code.

`runtime_for(name, root)` picks: "kapal" is the library, anything else a binary on PATH (or a path).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from kapal.errors import FailedPrecondition, Invalid, KapalError, NotFound
from kapal.runtime import container

PR_SET_CHILD_SUBREAPER = 36


class ContainerRuntime(Protocol):
    name: str

    def shim_settings(self) -> dict: ...
    def kill(self, cid: str, sig: int) -> None: ...
    def pause(self, cid: str) -> None: ...
    def resume(self, cid: str) -> None: ...
    def update(self, cid: str, resources: dict) -> None: ...
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

    def shim_settings(self) -> dict:
        return {"runtime": self.argv()}

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

    def update(self, cid: str, resources: dict) -> None:
        """New linux.resources for a running or paused container (`update --resources FILE`)."""
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=self.root) as f:
            json.dump(resources, f)
            f.flush()
            self._run("update", "--resources", f.name, cid)

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


class KapalRuntime:
    """kapal's runtime as a library (kapal.runtime.container), with its state under `root`."""

    name = "kapal"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def shim_settings(self) -> dict:
        return {"runtime_root": str(self.root)}

    def kill(self, cid: str, sig: int) -> None:
        with _as_kapal_errors("kill"):
            container.kill(str(self.root), cid, sig)

    def pause(self, cid: str) -> None:
        with _as_kapal_errors("pause"):
            container.pause(str(self.root), cid)

    def resume(self, cid: str) -> None:
        with _as_kapal_errors("resume"):
            container.resume(str(self.root), cid)

    def update(self, cid: str, resources: dict) -> None:
        with _as_kapal_errors("update"):
            container.update(str(self.root), cid, resources)

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
        if console_socket and cwd is not None:
            console_socket = str(Path(cwd) / console_socket)
        with _as_kapal_errors("exec"):
            return container.exec_process(
                str(self.root), cid, json.loads(process.read_text()), console_socket=console_socket,
                pid_file=str(pid_file), detach=True, stdio=stdio,
            )

    def delete(self, cid: str, force: bool = False) -> None:
        with contextlib.suppress(KapalError, OSError):
            container.delete(str(self.root), cid, force=force)

    def known(self, cid: str) -> bool:
        return (self.root / cid).exists()

    def state(self, cid: str) -> dict:
        with _as_kapal_errors("state"):
            return container.state(str(self.root), cid)


@contextlib.contextmanager
def _as_kapal_errors(verb: str):
    """OSErrors of the runtime as FailedPrecondition, the error the engine expects from a failed runtime call."""
    try:
        yield
    except OSError as e:
        raise FailedPrecondition(f"OCI runtime kapal {verb} failed: {e.strerror or e}") from None


_CRUN_NOT_FOUND = re.compile(r"executable file `([^`]*)` not found in \$PATH(: No such file or directory)?")


def docker_words(runtime_message: str) -> str:
    """A runtime's complaint about the command in Docker's (runc's) words: kapal and runc already say
    `exec: "x": executable file not found in $PATH`; crun says it its own way."""
    return _CRUN_NOT_FOUND.sub(lambda m: f'exec: "{m.group(1)}": executable file not found in $PATH', runtime_message)


def start_exit_code(message: str, argv0: str) -> int:
    """The exit code dockerd records for a start that failed with `message`: 127 when the command is not
    there (or a mount put a directory on a file), 126 when it cannot be run, 128 otherwise."""
    text = message.lower()
    if argv0.lower() in text and ("executable file not found" in text or "no such file or directory" in text):
        return 127
    if "permission denied" in text:
        return 126
    if "not a directory" in text:
        return 127
    return 128


def start_failure(runtime_message: str, argv0: str) -> KapalError:
    """The error a failed start answers with: a bad command is the caller's to fix (400, as dockerd)."""
    message = f"OCI runtime create failed: {docker_words(runtime_message)}"
    return (Invalid if start_exit_code(message, argv0) in (126, 127) else FailedPrecondition)(message)


def runtime_for(name: str, root: Path) -> ContainerRuntime:
    """The engine's runtime: "kapal" (the library, the default) or a runc-compatible binary."""
    if name == "kapal":
        return KapalRuntime(root)
    return OciCliRuntime(name, root)


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
