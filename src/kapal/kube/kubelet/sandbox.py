"""Pod sandboxes without a pause image: the kubelet holds the pod's namespaces as bind-mounted files.

A sandbox is what every container of a pod shares:

    <root>/pods/<uid>/ns/net  ns/ipc  ns/uts     namespace files (bind mounts of /proc/<tid>/ns/*)
    <root>/pods/<uid>/etc-hosts  resolv.conf  hostname
    <root>/pods/<uid>/shm                         a tmpfs mounted on every container's /dev/shm
    <root>/pods/<uid>/sandbox.json                what was made, so a restarted kubelet finds it again

The namespaces are made by one short-lived thread (namespaces are per thread, so the kubelet itself never
moves): unshare(net|ipc|uts), sethostname, pin each. The pod's IP comes from the CNI bridge chain
(kapal.network.BridgeNetwork: bridge + host-local on the node's pod CIDR, loopback, portmap for hostPorts).
Containers join with the engine's `ns:/path` modes. All of it is synchronous: call it from a thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kapal.errors import FailedPrecondition, Invalid, KapalError
from kapal.linux import libc
from kapal.linux.mount import MNT_DETACH, MS_NODEV, MS_NOEXEC, MS_NOSUID, mount, umount
from kapal.linux.namespaces import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWUTS, pin, unpin
from kapal.network import netns
from kapal.network.bridge import BridgeNetwork, PortMapping

from .podfiles import ClusterDns, pod_hostname, pod_hosts, pod_resolv_conf

log = logging.getLogger(__name__)

SHM_SIZE = 64 * 1024 * 1024
_NS_FLAGS = {"net": CLONE_NEWNET, "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}
_NS_TYPES = {"net": "network", "ipc": "ipc", "uts": "uts"}


@dataclass
class SandboxState:
    uid: str
    name: str
    namespace: str
    dir: str
    hostname: str
    created: float = field(default_factory=time.time)
    host_network: bool = False
    host_ipc: bool = False
    namespaces: dict[str, str] = field(default_factory=dict)  # net/ipc/uts -> file
    ip: str = ""
    ports: list[str] = field(default_factory=list)
    network_ready: bool = False

    @property
    def network_id(self) -> str:
        return f"pod-{self.uid}"

    @property
    def netns(self) -> str | None:
        return self.namespaces.get("net")

    def file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def mode(self, ns: str) -> str:
        """The engine's NetworkMode / IpcMode / UTSMode value for this sandbox."""
        path = self.namespaces.get(ns)
        if path:
            return f"ns:{path}"
        return "host"

    def save(self) -> None:
        tmp = self.file("sandbox.json.tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
        os.replace(tmp, self.file("sandbox.json"))

    @classmethod
    def load(cls, pod_dir: str | Path) -> SandboxState | None:
        try:
            with open(os.path.join(pod_dir, "sandbox.json")) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def host_ports(pod: dict[str, Any]) -> list[PortMapping]:
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(PortMapping(int(p["hostPort"]), int(p["containerPort"]),
                                       (p.get("protocol") or "TCP").lower(), p.get("hostIP") or ""))
    return out


def _make_namespaces(directory: str, kinds: list[str], hostname: str | None) -> dict[str, str]:
    """unshare the given kinds in a fresh thread, set the hostname inside, pin each; returns kind -> file."""
    os.makedirs(os.path.join(directory, "ns"), exist_ok=True)
    paths = {k: os.path.join(directory, "ns", k) for k in kinds}
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            flags = 0
            for k in kinds:
                flags |= _NS_FLAGS[k]
            libc.unshare(flags)
            if hostname and "uts" in kinds:
                libc.sethostname(hostname)
            tid = threading.get_native_id()
            for k in kinds:
                pin(f"self/task/{tid}", _NS_TYPES[k], paths[k])
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=run, name="kapal-sandbox")
    t.start()
    t.join()
    if "error" in box:
        for p in paths.values():
            with contextlib.suppress(OSError):
                unpin(p)
        e = box["error"]
        if isinstance(e, PermissionError):
            raise FailedPrecondition(f"cannot create the pod's namespaces: {e} (the kubelet needs root)") from e
        raise e
    return paths


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class SandboxManager:
    def __init__(self, root_dir: str | Path, network: BridgeNetwork | None, dns: ClusterDns,
                 node_ip: str = "") -> None:
        self.pods_dir = Path(root_dir) / "pods"
        self.network = network
        self.dns = dns
        self.node_ip = node_ip

    def pod_dir(self, uid: str) -> str:
        return str(self.pods_dir / uid)

    def load(self, uid: str) -> SandboxState | None:
        return SandboxState.load(self.pod_dir(uid))

    def create(self, pod: dict[str, Any]) -> tuple[SandboxState, str | None]:
        """Namespaces, network and files for a pod; (state, DNS warning). Undone completely on failure."""
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        uid = meta["uid"]
        directory = self.pod_dir(uid)
        os.makedirs(directory, exist_ok=True)
        hostname, fqdn = pod_hostname(pod, self.dns.domain)
        if spec.get("setHostnameAsFQDN") and fqdn:
            if len(fqdn) > 64:
                raise Invalid(f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too "
                              "long (64 characters is the max, 65 characters requested)")
            hostname = fqdn
        host_net = bool(spec.get("hostNetwork"))
        host_ipc = bool(spec.get("hostIPC"))
        state = SandboxState(uid=uid, name=meta["name"], namespace=meta.get("namespace") or "default",
                             dir=directory, hostname=hostname if not host_net else os.uname().nodename,
                             host_network=host_net, host_ipc=host_ipc)
        try:
            kinds = [k for k, wanted in (("net", not host_net), ("ipc", not host_ipc), ("uts", not host_net))
                     if wanted]
            if kinds:
                state.namespaces = _make_namespaces(directory, kinds, hostname)
            state.save()
            self._mount_shm(state)
            if not host_net:
                if self.network is None:
                    raise FailedPrecondition("the node has no pod network yet (no pod CIDR: pass --pod-cidr or "
                                             "let the controller manager's node IPAM assign one)")
                ports = host_ports(pod)
                attachment = self.network.attach(state.network_id, state.namespaces["net"], "eth0", ports)
                state.ip = str(attachment.ip)
                state.ports = [str(p) for p in attachment.port_mappings]
            else:
                state.ip = self.node_ip
            state.network_ready = True
            state.save()
            warning = self.write_files(pod, state)
        except BaseException:
            with contextlib.suppress(Exception):
                self.destroy(state)
            raise
        return state, warning

    def write_files(self, pod: dict[str, Any], state: SandboxState) -> str | None:
        resolv, warning = pod_resolv_conf(pod, self.dns)
        _write(state.file("resolv.conf"), resolv.render())
        host_hosts = None
        if state.host_network:
            with contextlib.suppress(OSError):
                host_hosts = open("/etc/hosts").read()
        _write(state.file("etc-hosts"), pod_hosts(pod, [state.ip] if state.ip else [], self.dns.domain, host_hosts))
        _write(state.file("hostname"), state.hostname + "\n")
        return warning

    def _mount_shm(self, state: SandboxState) -> None:
        shm = state.file("shm")
        os.makedirs(shm, exist_ok=True)
        if not os.path.ismount(shm):
            mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={SHM_SIZE}")

    def stop_network(self, state: SandboxState) -> None:
        """Release the pod's IP, veth and port rules (a finished pod keeps its containers but not its address)."""
        if not state.host_network and self.network is not None and state.network_ready:
            try:
                self.network.detach(state.network_id, state.netns if state.netns and netns.is_netns(state.netns)
                                    else None)
            except KapalError as e:
                log.warning("pod %s/%s: releasing its network: %s", state.namespace, state.name, e)
                raise
        state.network_ready = False
        if os.path.isdir(state.dir):
            state.save()

    def destroy(self, state: SandboxState) -> None:
        """Undo create(): network, namespaces, shm, the files (not the volumes: the volume manager's)."""
        if not state.host_network and self.network is not None:
            try:
                self.network.detach(state.network_id, state.netns if state.netns and netns.is_netns(state.netns)
                                    else None)
            except KapalError as e:
                log.warning("pod %s/%s: releasing its network: %s", state.namespace, state.name, e)
        for path in state.namespaces.values():
            with contextlib.suppress(FileNotFoundError):
                unpin(path)
        shm = state.file("shm")
        if os.path.ismount(shm):
            umount(shm, MNT_DETACH)
        with contextlib.suppress(OSError):
            os.rmdir(shm)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(state.dir, "ns"))
        for name in ("sandbox.json", "etc-hosts", "resolv.conf", "hostname"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(state.file(name))

    def alive(self, state: SandboxState) -> bool:
        """Are its namespaces still there (a reboot or a stray umount would have dropped them)?"""
        return all(os.path.exists(p) and os.stat(p).st_ino != 0 and _is_nsfs(p) for p in state.namespaces.values())

    def known(self) -> list[str]:
        """uids with a pod directory on disk."""
        try:
            return [e.name for e in os.scandir(self.pods_dir) if e.is_dir()]
        except FileNotFoundError:
            return []

    def remove_pod_dir(self, uid: str) -> None:
        directory = self.pod_dir(uid)
        if any(m.startswith(directory + "/") for m in _mountpoints()):
            raise FailedPrecondition(f"pod directory {directory} still has mounts")
        shutil.rmtree(directory, ignore_errors=True)


def _is_nsfs(path: str) -> bool:
    return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]
