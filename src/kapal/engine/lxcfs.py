"""/proc that tells the truth: Debian's lxcfs shows a process its own cgroup's memory, CPUs and load.

lxcfs is a FUSE daemon: its mount outlives it, and a mount whose daemon died answers every call with
ENOTCONN (a stopped one never answers). So a mount is used only after it answered (a read under it, with a
timeout), checked again before each container start (~0.5 ms); a dead one is never bind-mounted.

Where: `--lxcfs-dir DIR` is used as given — the lxcfs running there, or one the engine starts there
(`lxcfs --enable-cfs --enable-loadavg -p DIR.pid DIR`, detached in its own session: CPU views from cfs
quota/period, MemTotal from the memory limit). Only the default, host-wide directory may instead use a
live lxcfs mounted elsewhere. The engine records an lxcfs it started in its data root (`lxcfs.json`), so
`kapal engine --cleanup` stops that one (not another's) once no container uses it. An lxcfs that dies
while the engine runs is started again there (at most every RETRY_SECONDS). Without lxcfs the engine says
so once and containers start with the host's /proc files.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROC_FILES = ("cpuinfo", "meminfo", "stat", "uptime", "loadavg", "diskstats", "swaps")
SYS_FILES = ("devices/system/cpu/online",)
DEFAULT_DIR = Path("/var/lib/kapal/lxcfs")
RECORD = "lxcfs.json"  # in the engine's data root: the lxcfs this engine started
PROBE_TIMEOUT = 1.0
RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class LxcfsMount:
    directory: str
    device: str  # "major:minor" of the FUSE connection: the same in every bind of its files


def lxcfs_mounts(pid: str | int = "self") -> list[LxcfsMount]:
    """lxcfs mounts (fuse.lxcfs) seen by `pid`, in mount order."""
    out = []
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                dash = fields.index("-")
                if fields[dash + 1] == "fuse.lxcfs" and fields[3] == "/":
                    out.append(LxcfsMount(fields[4].replace("\\040", " "), fields[2]))
    except (OSError, ValueError):
        pass
    return out


def mounted_dirs() -> list[str]:
    """Mount points of lxcfs on this host, in mount order."""
    return [m.directory for m in lxcfs_mounts()]


def probe(directory: Path, timeout: float = PROBE_TIMEOUT) -> OSError | None:
    """None when lxcfs at `directory` serves its files; else why not (ENOTCONN: its daemon died;
    ETIMEDOUT: it does not answer). The probe runs in a daemon thread: a hung FUSE call cannot hold us."""
    result: list[OSError | None] = []

    def run() -> None:
        try:  # a read always reaches the daemon (a stat may be answered from the kernel's attribute cache)
            with open(directory / "proc" / "uptime", "rb") as f:
                f.read(64)
            result.append(None)
        except OSError as e:
            result.append(e)

    worker = threading.Thread(target=run, name="lxcfs-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        return TimeoutError(errno.ETIMEDOUT, f"no answer within {timeout:.0f} s")
    return result[0]


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _unmount(directory: Path) -> None:
    from kapal.linux.mount import MNT_DETACH, umount

    for _ in range(4):  # lxcfs may be mounted more than once on the same directory
        if str(directory) not in mounted_dirs():
            return
        try:
            umount(str(directory), MNT_DETACH)
        except OSError as e:
            log.warning("lxcfs: cannot unmount %s: %s", directory, e)
            return


class Lxcfs:
    """Where lxcfs's files are (`dir`), or None when they are not available."""

    def __init__(self, directory: Path | None, *, managed: Path | None = None, data_root: Path | None = None) -> None:
        self.dir = directory
        self.managed = managed  # the directory this engine keeps an lxcfs running in, if any
        self.data_root = data_root
        self._warned = False
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self.share = False

    @classmethod
    def disabled(cls) -> Lxcfs:
        return cls(None)

    @classmethod
    def ensure(cls, directory: Path = DEFAULT_DIR, data_root: Path | None = None, timeout: float = 5.0,
               share: bool | None = None) -> Lxcfs:
        """lxcfs at `directory` (started there when none answers); when `share` (by default: for the default
        directory) a live lxcfs mounted elsewhere will do."""
        directory = Path(directory).absolute()
        lxcfs = cls(None, managed=directory, data_root=data_root)
        lxcfs.share = directory == DEFAULT_DIR if share is None else share
        lxcfs.dir = lxcfs._ensure(timeout, may_share=lxcfs.share)
        return lxcfs

    def _ensure(self, timeout: float, may_share: bool = False) -> Path | None:
        assert self.managed is not None
        directory = self.managed
        if str(directory) in mounted_dirs():
            problem = probe(directory)
            if problem is None:
                return directory
            log.warning("lxcfs at %s does not answer (%s): mounting a new one there", directory, problem)
            _unmount(directory)
        if may_share:
            for m in lxcfs_mounts():
                if m.directory != str(directory) and probe(Path(m.directory)) is None:
                    log.info("lxcfs: using the one mounted at %s", m.directory)
                    return Path(m.directory)
        return self._start(directory, timeout)

    def _start(self, directory: Path, timeout: float) -> Path | None:
        binary = shutil.which("lxcfs")
        if binary is None:
            self._warn_once(
                "lxcfs is not installed: containers see the host's /proc/meminfo and /proc/cpuinfo "
                "(apt-get install lxcfs, or start the engine with --no-lxcfs to silence this)"
            )
            self.managed = None
            return None
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._warn_once(f"lxcfs cannot be mounted at {directory} ({e}): containers see the host's /proc files")
            self.managed = None
            return None
        pid_file = directory.with_name(directory.name + ".pid")
        argv = [binary, "--enable-cfs", "--enable-loadavg", "-p", str(pid_file), str(directory)]
        log_path = directory.with_name(directory.name + ".log")
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                    cwd="/")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if str(directory) in mounted_dirs() and probe(directory) is None:
                log.info("lxcfs: started at %s, pid %d (it stays after the engine; `kapal engine --cleanup` "
                         "stops it)", directory, proc.pid)
                self._record(directory, proc.pid)
                return directory
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _unmount(directory)
        self._warn_once(f"lxcfs did not come up at {directory} (exit status {proc.returncode}, see {log_path}): "
                        "containers see the host's /proc files")
        return None

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            log.warning("%s", message)
            self._warned = True

    def _record(self, directory: Path, pid: int) -> None:
        if self.data_root is None:
            return
        self.data_root.mkdir(parents=True, exist_ok=True)
        tmp = self.data_root / (RECORD + ".tmp")
        tmp.write_text(json.dumps({"dir": str(directory), "pid": pid, "start_time": _start_time(pid)}))
        os.replace(tmp, self.data_root / RECORD)

    def available(self) -> Path | None:
        """The lxcfs directory when it answers now; else None (said once), after one attempt to start it again
        when this engine keeps one."""
        with self._lock:
            if self.dir is not None:
                problem = probe(self.dir)
                if problem is None:
                    return self.dir
                self._warn_once(f"lxcfs at {self.dir} does not answer ({problem}): containers see the host's "
                                "/proc files until it is back")
            if self.managed is None or time.monotonic() < self._retry_at:
                return None
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self.dir = self._ensure(timeout=5.0, may_share=self.share)
            if self.dir is not None:
                self._warned = False
            return self.dir

    def mounts(self) -> list[dict]:
        """OCI bind mounts of lxcfs's files over the container's /proc (and cpu/online); [] without lxcfs."""
        directory = self.available() if (self.dir is not None or self.managed is not None) else None
        if directory is None:
            return []
        out = [_bind(directory / "proc" / name, f"/proc/{name}") for name in PROC_FILES]
        for name in SYS_FILES:
            source = directory / "sys" / name
            with contextlib.suppress(OSError):
                if source.exists():
                    out.append(_bind(source, f"/sys/{name}"))
        return out


def _bind(source: Path, destination: str) -> dict:
    return {"destination": destination, "type": "bind", "source": str(source), "options": ["rbind", "rprivate"]}


def users(mount: LxcfsMount) -> list[int]:
    """PIDs (one per mount namespace) that have files of this lxcfs bind-mounted: containers using it."""
    found: list[int] = []
    seen: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry}/ns/mnt").st_ino
        except OSError:
            continue
        if ns in seen:
            continue
        seen.add(ns)
        try:
            with open(f"/proc/{entry}/mountinfo") as f:
                for line in f:
                    fields = line.split()
                    if fields[2] == mount.device and fields[3] != "/":
                        found.append(int(entry))
                        break
        except (OSError, IndexError):
            continue
    return found


def release(data_root: Path) -> str | None:
    """Stop the lxcfs this engine started (per its record) when no container uses it, and unmount it.
    Returns what was done or why not, for the user; None when this engine started none."""
    record_path = Path(data_root) / RECORD
    try:
        record = json.loads(record_path.read_text())
        directory, pid = Path(record["dir"]), int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    mount = next((m for m in lxcfs_mounts() if m.directory == str(directory)), None)
    if mount is not None:
        in_use = users(mount)
        if in_use:
            return f"lxcfs at {directory} kept: processes {', '.join(map(str, in_use[:5]))} still use it"
    alive = record.get("start_time") is not None and _start_time(pid) == record["start_time"]
    if alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while _start_time(pid) == record["start_time"] and time.monotonic() < deadline:
            time.sleep(0.02)
        if _start_time(pid) == record["start_time"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    _unmount(directory)
    for leftover in (directory.with_name(directory.name + ".pid"),):
        with contextlib.suppress(OSError):
            leftover.unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()
    record_path.unlink(missing_ok=True)
    return f"lxcfs at {directory} (pid {pid} stopped)" if alive else f"lxcfs at {directory} (its process had gone)"
