"""`kapal engine --cleanup`: remove what a stopped engine put on the host, and nothing of anyone else's.

An engine with live restore leaves its containers, network sandboxes, overlay mounts and lxcfs behind on
purpose (the next engine adopts them). When it is not coming back (`kapal down`), this removes them:
processes of containers still running, their cgroups, the bridge network's leases and veths, the bridge
with its NAT/forward rules (only when this engine attached containers to it — networking.BRIDGE_MARKER — and
no other engine runs on it or has a container on it: engines that share a bridge share it), portmap's chains
once unused, every mount under the data root, and the lxcfs this engine started (`lxcfs.release`) when no
container uses it. Idempotent; refuses while an engine answers on the socket.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from kapal.errors import FailedPrecondition, Invalid, KapalError
from kapal.linux.cgroups.common import remove_dir

from . import lxcfs
from .config import DEFAULT_DATA_ROOT, EngineConfig

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_BRIDGE = EngineConfig().bridge


@dataclass
class TeardownReport:
    done: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def engine_listening(path: Path, timeout: float = 2.0) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def teardown(config: EngineConfig) -> TeardownReport:
    if engine_listening(config.socket_path):
        raise FailedPrecondition(
            f"an engine still answers on {config.socket_path}: stop it first (SIGTERM), then run --cleanup"
        )
    report = TeardownReport()
    root = Path(config.data_root).absolute()
    if root.is_dir():
        _stop_leftover_containers(root, report)
        _remove_network(config, root, report)
    done = lxcfs.release(root)
    if done is not None:
        (report.kept if "kept" in done else report.done).append(done)
    _unmount_under(root, report)
    return report


def _records(root: Path) -> list[dict]:
    out = []
    for cfg in sorted((root / "containers").glob("*/config.v2.json")):
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(cfg.read_text()))
    return out


def _pid_of(directory: Path, name: str) -> int:
    try:
        return int((directory / name).read_text().strip())
    except (OSError, ValueError):
        return 0


def _in_cgroup(pid: int, container_id: str) -> bool:
    try:
        return container_id in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def _stop_leftover_containers(root: Path, report: TeardownReport) -> None:
    """Containers a live-restore engine left running: their processes (by PID, checked to be theirs), then
    their cgroups."""
    from .shimclient import shim_alive

    for doc in _records(root):
        cid = doc["Id"]
        cdir = root / "containers" / cid
        killed = []
        init = _pid_of(cdir, "init.pid") or int((doc.get("State") or {}).get("Pid") or 0)
        if init and _in_cgroup(init, cid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
                killed.append(init)
        shim = shim_alive(cdir)
        if shim:
            with contextlib.suppress(ProcessLookupError):
                os.kill(shim, signal.SIGKILL)
                killed.append(shim)
        deadline = time.monotonic() + 5
        while not all(_gone(p) for p in killed) and time.monotonic() < deadline:
            time.sleep(0.02)
        if killed:
            report.done.append(f"container {cid[:12]} was still running: killed pids {killed}")
        cgroup = _cgroup_of(doc)
        for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
            leaf = hierarchy / cgroup.strip("/")
            if cgroup.strip("/") and leaf.is_dir():
                try:
                    remove_dir(str(leaf), timeout=1.0)
                except FailedPrecondition as e:
                    report.problems.append(f"container {cid[:12]}: {e}")


def _cgroup_of(doc: dict) -> str:
    from .containers import CGROUP_PARENT, PRIVATE

    return (doc.get(PRIVATE) or {}).get("cgroup") or f"/{CGROUP_PARENT}/{doc['Id']}"


def _remove_network(config: EngineConfig, root: Path, report: TeardownReport) -> None:
    from kapal.network.bridge import remove_unused_portmap_chains

    from .networking import BRIDGE_MARKER, EngineNetworks

    try:
        iface = ipaddress.ip_interface(config.bridge_cidr)
    except ValueError as e:
        raise Invalid(f"--bip {config.bridge_cidr!r}: give the bridge's address and prefix (10.89.0.1/16)") from e
    networks = EngineNetworks(root, config.bridge, str(iface.network), pool_size=0, gateway=str(iface.ip))
    bridge = networks.bridge
    try:
        sandboxes = sorted(p.name for p in networks.netns_dir.iterdir() if not p.name.startswith("."))
        networks.sweep(set())  # every sandbox of this engine: veth, lease and port rules, then its netns file
        if sandboxes:
            report.done.append(f"{len(sandboxes)} network sandbox(es) on {bridge.bridge}")
    finally:
        networks.close()
    marker = root / BRIDGE_MARKER
    try:
        ours = json.loads(marker.read_text()).get("bridge") == bridge.bridge
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours and not sandboxes:
        return  # this engine never attached a container to the bridge: it is not its to remove
    from kapal.network import netns

    others = []
    for att in bridge.attachments():
        if att.netns and netns.is_netns(att.netns):
            others.append(att.container_id)
            continue
        with contextlib.suppress(KapalError):
            bridge.cleanup(att.container_id, att.ifname)  # a lease whose namespace is gone
    engines = _other_engines_on(bridge.bridge, root)
    if engines:
        report.kept.append(f"bridge {bridge.bridge} kept: engine pid(s) {', '.join(map(str, engines))} use it")
        return
    ports = _bridge_ports(bridge.bridge)
    deadline = time.monotonic() + 3
    while ports and not others and time.monotonic() < deadline:  # veths of namespaces just released go async
        time.sleep(0.05)
        ports = _bridge_ports(bridge.bridge)
    if others or ports:
        report.kept.append(f"bridge {bridge.bridge} kept: {len(others) or len(ports)} other container(s) are on it")
    elif os.path.exists(f"/sys/class/net/{bridge.bridge}") or bridge.data_dir.exists():
        try:
            bridge.teardown()
            report.done.append(f"bridge {bridge.bridge} and its NAT/forward rules")
            marker.unlink(missing_ok=True)
        except KapalError as e:
            report.problems.append(f"bridge {bridge.bridge}: {e}")
    with contextlib.suppress(KapalError):
        removed = remove_unused_portmap_chains()
        if removed:
            report.done.append(f"portmap chains {' '.join(removed)}")


def _other_engines_on(bridge: str, root: Path) -> list[int]:
    """PIDs of running `kapal engine` daemons on `bridge` with another data root (from their command lines)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "engine" not in argv or "--cleanup" in argv or not any("kapal" in a for a in argv[: argv.index("engine")]):
            continue
        opts = _options(argv[argv.index("engine") + 1 :])
        theirs = opts.get("--bridge") or opts.get("-b") or DEFAULT_BRIDGE
        data_root = Path(opts.get("--data-root") or DEFAULT_DATA_ROOT)
        if theirs == bridge and data_root.absolute() != root:
            found.append(int(entry))
    return found


def _options(args: list[str]) -> dict[str, str]:
    out = {}
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.partition("=")
        if eq:
            out[name] = value
        elif i + 1 < len(args):
            out[name] = args[i + 1]
    return out


def _bridge_ports(name: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{name}/brif"))
    except OSError:
        return []


def _unmount_under(root: Path, report: TeardownReport) -> None:
    """Every mount at or below the data root, deepest first (overlay rootfs, shm, netns pins, volumes)."""
    from kapal.linux.mount import unmount_tree

    unmounted, problems = unmount_tree(root)
    report.problems += problems
    if unmounted:
        report.done.append(f"{len(unmounted)} mount(s) under {root}")
