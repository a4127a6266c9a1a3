"""Daemons detached from the terminal: own session, stdin /dev/null, log file, pidfile; stopped by pid."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kapal.kube.adm import daemons
from kapal.kube.adm.constants import KubeadmPaths


def test_start_detaches_and_stop_ends_it(tmp_path: Path, unique: str):
    paths = KubeadmPaths().under(tmp_path)
    pid = daemons.start(paths, unique, ["/bin/sh", "-c", "echo started; exec sleep 60"])
    try:
        assert daemons.running(paths, unique) == pid
        assert os.getsid(pid) == pid  # its own session: no controlling terminal, no SIGHUP from ours
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{pid}/fd/1") == str(paths.logfile(unique))
        deadline = time.monotonic() + 5
        while "started" not in paths.logfile(unique).read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "started" in paths.logfile(unique).read_text()
    finally:
        assert daemons.stop(paths, unique) == pid
    assert daemons.running(paths, unique) is None
    assert not paths.pidfile(unique).exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]


def test_a_stale_pidfile_is_not_running(tmp_path: Path, unique: str):
    paths = KubeadmPaths().under(tmp_path)
    paths.run_dir.mkdir(parents=True)
    paths.pidfile(unique).write_text(f"{os.getpid()} 1\n")  # our pid, but another start time
    assert daemons.running(paths, unique) is None
    assert daemons.stop(paths, unique) is None
