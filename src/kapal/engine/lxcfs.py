"""/proc that tells the truth: Debian's lxcfs shows a process its own cgroup's memory, CPUs and load.

The engine uses a running lxcfs (its mount is found in /proc/self/mountinfo) or starts one,
detached in its own session, as a host-wide service that stays after the engine: `lxcfs
--enable-cfs --enable-loadavg -p DIR.pid DIR` (CPU views from cfs quota/period, MemTotal from the
memory limit; lxcfs stays in the foreground of the process that starts it). Each container then
gets its /proc files bind-mounted from DIR. Without lxcfs the engine says so once and carries on.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

PROC_FILES = ("cpuinfo", "meminfo", "stat", "uptime", "loadavg", "diskstats", "swaps")
SYS_FILES = ("devices/system/cpu/online",)
DEFAULT_DIR = Path("/var/lib/kapal/lxcfs")


def mounted_dirs() -> list[str]:
    """Mount points of lxcfs on this host (fuse.lxcfs), in mount order."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                dash = fields.index("-")
                if fields[dash + 1] == "fuse.lxcfs":
                    out.append(fields[4].replace("\\040", " "))
    except (OSError, ValueError):
        pass
    return out


class Lxcfs:
    """Where lxcfs's files are (`dir`), or None when they are not available."""

    def __init__(self, directory: Path | None) -> None:
        self.dir = directory
        self._warned = False

    @classmethod
    def disabled(cls) -> Lxcfs:
        return cls(None)

    @classmethod
    def ensure(cls, directory: Path = DEFAULT_DIR, timeout: float = 5.0) -> Lxcfs:
        """Use lxcfs at `directory`, or any running one, or start one at `directory`."""
        mounted = mounted_dirs()
        if str(directory) in mounted:
            return cls(directory)
        if mounted:
            log.info("lxcfs: using the one mounted at %s", mounted[0])
            return cls(Path(mounted[0]))
        binary = shutil.which("lxcfs")
        if binary is None:
            log.warning(
                "lxcfs is not installed: containers see the host's /proc/meminfo and /proc/cpuinfo "
                "(apt-get install lxcfs, or start the engine with --no-lxcfs to silence this)"
            )
            return cls(None)
        directory.mkdir(parents=True, exist_ok=True)
        pid_file = directory.with_name(directory.name + ".pid")
        argv = [binary, "--enable-cfs", "--enable-loadavg", "-p", str(pid_file), str(directory)]
        log_path = directory.with_name(directory.name + ".log")
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if str(directory) in mounted_dirs():
                log.info("lxcfs: started at %s, pid %d (it stays, like a system service)", directory, proc.pid)
                return cls(directory)
            time.sleep(0.02)
        log.warning(
            "lxcfs did not come up at %s (exit status %s, see %s): containers see the host's /proc files",
            directory,
            proc.returncode,
            log_path,
        )
        return cls(None)

    def mounts(self) -> list[dict]:
        """OCI bind mounts of lxcfs's files over the container's /proc (and cpu/online); [] without lxcfs."""
        if self.dir is None:
            return []
        try:
            os.stat(self.dir / "proc" / "meminfo")
        except OSError as e:
            if not self._warned:
                log.warning("lxcfs at %s does not answer (%s): containers see the host's /proc files", self.dir, e)
                self._warned = True
            return []
        out = []
        for name in PROC_FILES:
            out.append(_bind(self.dir / "proc" / name, f"/proc/{name}"))
        for name in SYS_FILES:
            source = self.dir / "sys" / name
            if source.exists():
                out.append(_bind(source, f"/sys/{name}"))
        return out


def _bind(source: Path, destination: str) -> dict:
    return {"destination": destination, "type": "bind", "source": str(source), "options": ["rbind", "rprivate"]}
