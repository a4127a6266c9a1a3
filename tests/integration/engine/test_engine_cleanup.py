"""`kapal engine --cleanup`: what a stopped engine left (live restore keeps containers, sandboxes, mounts and
its lxcfs on purpose) goes — its bridge and NAT/forward rules, leases, mounts under the data root, container
processes, the lxcfs it started — and nothing of another engine's; it refuses while an engine answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from engine_helpers import DockerCLI, pid_alive
from image_helpers import ENGINE_ARGS, KAPAL, EngineProcess, busybox_rootfs_tar, cleanup_tree, leftover_mounts

pytestmark = pytest.mark.root


def _free_subnet() -> str:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for x in range(1, 250):
        n = (os.getpid() + x) % 250 + 1
        if f" 10.195.{n}." not in used:
            return f"10.195.{n}.1/24"
    pytest.skip("no free 10.195.x.0/24")


def _cleanup(data_root: Path, host: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KAPAL), "engine", "--data-root", str(data_root), "-H", host, *flags, "--cleanup"],
                          capture_output=True, text=True, timeout=120)


def _rules_of(bridge: str) -> list[str]:
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return [line for line in rules.splitlines() if bridge in line]


def test_cleanup_refuses_while_the_engine_answers(engine):
    r = _cleanup(engine.data_root, engine.host, *ENGINE_ARGS)
    assert r.returncode == 125 and "still answers" in r.stderr
    assert engine.run("ps").returncode == 0


def test_cleanup_removes_what_a_live_restore_engine_left(engine, docker, busybox, tmp_path):
    """An engine on a bridge of its own, with its own lxcfs, a running container with a published port, and
    one on the module engine's bridge (another engine's): SIGTERM keeps them; --cleanup removes the first
    engine's everything and leaves the other engine's bridge, rules and container alone."""
    bridge, bip = "kc" + uuid.uuid4().hex[:8], _free_subnet()
    lxcfs_dir = tmp_path / "lxcfs"
    flags = ["--bridge", bridge, "--bip", bip, "--network-pool", "1", "--lxcfs-dir", str(lxcfs_dir)]
    ours = EngineProcess(tmp_path, extra=flags)
    other_cid = docker.out("run", "-d", busybox, "sleep", "300")
    other_rules = _rules_of(ENGINE_ARGS[1])
    try:
        ours.start()
        (tmp_path / "cfg").mkdir()
        cli = DockerCLI(ours.host, tmp_path / "cfg")
        tar = tmp_path / "bb.tar"
        tar.write_bytes(busybox_rootfs_tar())
        cli("import", str(tar), "cleanup-bb:1")
        cid = cli.out("run", "-d", "-p", "127.0.0.1::80", "cleanup-bb:1", "sleep", "300")
        pid = int(cli.out("inspect", "-f", "{{.State.Pid}}", cid))
        lxcfs_pid = json.loads((ours.data_root / "lxcfs.json").read_text())["pid"]
        assert _rules_of(bridge) and leftover_mounts(ours.data_root)
        ours.kill(signal.SIGTERM)
        assert pid_alive(pid), "live restore: the container outlives its engine"

        r = _cleanup(ours.data_root, ours.host, *flags)
        assert r.returncode == 0, r.stderr
        assert not pid_alive(pid) and not pid_alive(lxcfs_pid)
        assert leftover_mounts(tmp_path) == []
        assert not os.path.exists(f"/sys/class/net/{bridge}") and _rules_of(bridge) == []
        assert _cleanup(ours.data_root, ours.host, *flags).returncode == 0  # idempotent

        # the other engine's bridge, rules and container are untouched
        assert os.path.exists(f"/sys/class/net/{ENGINE_ARGS[1]}") and _rules_of(ENGINE_ARGS[1]) == other_rules
        assert docker.out("inspect", "-f", "{{.State.Running}}", other_cid) == "true"
        assert os.listdir(f"/sys/class/net/{ENGINE_ARGS[1]}/brif"), "the other engine's container keeps its veth"
    finally:
        ours.kill(signal.SIGKILL)
        _cleanup(ours.data_root, ours.host, *flags)
        docker("rm", "-f", other_cid, check=False)
        cleanup_tree(tmp_path)


def test_cleanup_leaves_a_bridge_it_never_used(tmp_path):
    """An engine that attached no container to its bridge leaves a bridge of that name alone (it is someone
    else's: made by another engine or by hand)."""
    bridge, bip = "kc" + uuid.uuid4().hex[:8], _free_subnet()
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    try:
        eng = EngineProcess(tmp_path, extra=["--bridge", bridge, "--bip", bip, "--network-pool", "0", "--no-lxcfs"])
        eng.start()
        eng.kill()
        r = _cleanup(eng.data_root, eng.host, "--bridge", bridge, "--bip", bip)
        assert r.returncode == 0, r.stderr
        assert os.path.exists(f"/sys/class/net/{bridge}")
    finally:
        subprocess.run(["ip", "link", "delete", bridge], check=False)
        cleanup_tree(tmp_path)
