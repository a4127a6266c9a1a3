"""`kapal adm reset`: undo what `kapal adm init` did to this host, and more thoroughly than kubeadm.

In order: stop the kubelet; remove every container it started (label io.kubernetes.pod.uid) through the
engine, starting the engine for that if it is down; stop the engine if adm started it (its images stay);
let the kubelet and the proxy remove their own host state (mounts, network namespaces, the pod bridge,
iptables chains, cgroups) with their clean-up functions (kubelet.teardown, `kapal proxy --cleanup`'s), and
sweep what is left: mounts under the
kubelet's root, the pod cgroups; then delete /etc/kubernetes itself, the cluster's SQLite datastore, the
kubelet's root directory and the CNI configuration kapal wrote. Logs in /var/log/kapal are kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kapal import errors
from kapal.linux.cgroups.common import remove_dir

from . import daemons
from .config import DEFAULT_DATASTORE_DIR
from .constants import ENGINE_DAEMON, KUBE_APISERVER, KUBELET_DAEMON, KubeadmPaths, static_pod_path

Out = Callable[[str], None]
POD_LABEL = "io.kubernetes.pod.uid"
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class ResetReport:
    containers: list[str] = field(default_factory=list)
    unmounted: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def datastore_dir(paths: KubeadmPaths) -> Path | None:
    """The API server's --data-dir from the manifest adm wrote (works with the cluster down); None without one."""
    manifest = static_pod_path(paths.manifests_dir, KUBE_APISERVER)
    try:
        for line in manifest.read_text().splitlines():
            line = line.strip().removeprefix("- ").strip()
            if line.startswith("--data-dir="):
                return Path(line.split("=", 1)[1])
    except OSError:
        return None
    return DEFAULT_DATASTORE_DIR


def _cgroup_root(paths: KubeadmPaths) -> str:
    try:
        import yaml

        doc = yaml.safe_load(paths.kubelet_config_file.read_text()) or {}
        return str(doc.get("cgroupRoot") or "/")
    except (OSError, ValueError):
        return "/"


def remove_pod_containers(paths: KubeadmPaths, out: Out, report: ResetReport) -> None:
    from kapal.engine.client import APIError, EngineClient

    from .init import engine_answers
    from .kubelet import engine_argv

    sock = paths.engine_socket
    started_here = False
    if not engine_answers(sock):
        if not paths.engine_data_root.is_dir():
            return
        from .images import PythonInstall

        daemons.start(paths, ENGINE_DAEMON, engine_argv(PythonInstall.current().kapal_command, paths, lxcfs=False))
        started_here = True
        deadline = time.monotonic() + 30
        while not engine_answers(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
    client = EngineClient(f"unix://{sock}")
    try:
        listed = client.json("GET", "/containers/json", {"all": "1", "filters": '{"label":["' + POD_LABEL + '"]}'})
    except (APIError, errors.KapalError, OSError) as e:
        report.problems.append(f"could not list the kubelet's containers: {e}")
        listed = []
    if listed:
        out("[reset] Removing the containers the kubelet started")
    for c in listed or []:
        try:
            client.request("DELETE", f"/containers/{c['Id']}", {"force": "1", "v": "1"}).close()
            report.containers.append(c["Id"][:12])
        except (APIError, errors.KapalError, OSError) as e:
            report.problems.append(f"could not remove container {c['Id'][:12]}: {e}")
    if started_here:
        daemons.stop(paths, ENGINE_DAEMON)


def node_teardown(kubelet_dir: Path, cgroup_root: str, report: ResetReport, out: Out) -> None:
    """The kubelet's and the proxy's own clean-up: sandboxes, CNI, the pod bridge and its NAT, pod cgroups, the
    Service chains."""
    from kapal.kube.kubelet.teardown import teardown_node
    from kapal.kube.proxy.app import cleanup_rules

    out("[reset] Removing the pods' sandboxes, network and cgroups")
    report.problems += teardown_node(kubelet_dir, cgroup_root=cgroup_root)
    try:
        removed = cleanup_rules()
    except (errors.KapalError, OSError) as e:
        report.problems.append(f"removing the proxy's iptables chains: {e}")
    else:
        if removed:
            out(f"[reset] Removed the proxy's iptables chains: {' '.join(removed)}")


def unmount_under(root: Path, report: ResetReport) -> None:
    """Detach every mount at or below `root`, deepest first."""
    from kapal.linux.mount import unmount_tree

    unmounted, problems = unmount_tree(root)
    report.unmounted += unmounted
    report.problems += problems


def _kill_and_rmdir(path: Path, report: ResetReport) -> None:
    for dirpath, _dirs, _files in os.walk(path):
        try:
            pids = [int(p) for p in (Path(dirpath) / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: len(w[0]), reverse=True):
        try:
            remove_dir(dirpath, timeout=1.0)
        except errors.FailedPrecondition as e:
            report.problems.append(str(e))
        else:
            report.cgroups.append(dirpath)


def remove_pod_cgroups(cgroup_root: str, report: ResetReport, sysfs: Path = CGROUP_ROOT) -> None:
    rel = cgroup_root.strip("/")
    for hierarchy in sorted(p for p in sysfs.iterdir() if p.is_dir()):
        target = hierarchy / rel / "kubepods" if rel else hierarchy / "kubepods"
        if target.is_dir():
            _kill_and_rmdir(target, report)


def _rmtree(path: Path, report: ResetReport) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
        report.deleted.append(str(path))
    elif path.exists():
        shutil.rmtree(path, onerror=lambda _f, p, e: report.problems.append(f"could not delete {p}: {e[1]}"))
        report.deleted.append(str(path))


def kapal_cni_configs(cni_dir: Path) -> list[Path]:
    """CNI config files kapal wrote (their name or network says kapal)."""
    out = []
    with contextlib.suppress(OSError):
        for f in sorted(cni_dir.iterdir()):
            if f.suffix in (".conf", ".conflist", ".json") and "kapal" in f.read_text(errors="replace"):
                out.append(f)
    return out


def reset(paths: KubeadmPaths, out: Out) -> ResetReport:
    report = ResetReport()
    data_dir = datastore_dir(paths)
    cgroup_root = _cgroup_root(paths)
    ours = paths.kubelet_config_file.exists() or paths.pidfile(KUBELET_DAEMON).exists() or \
        paths.pidfile(ENGINE_DAEMON).exists()
    if ours:
        out("[reset] Stopping the kubelet")
        daemons.stop(paths, KUBELET_DAEMON)
        remove_pod_containers(paths, out, report)
        if daemons.running(paths, ENGINE_DAEMON):
            out("[reset] Stopping the engine (its images are kept)")
            daemons.stop(paths, ENGINE_DAEMON)
        from .kubelet import engine_cleanup

        report.problems += engine_cleanup(paths, out)
        node_teardown(paths.kubelet_dir, cgroup_root, report, out)
        out(f'[reset] Unmounting mounted directories in "{paths.kubelet_dir}"')
        unmount_under(paths.kubelet_dir, report)
        remove_pod_cgroups(cgroup_root, report)
    else:
        out("[reset] No kubelet was set up by kapal adm on this host: the engine, its containers and the pod "
            "cgroups are left alone")
    targets = [paths.kubernetes_dir, *([data_dir] if data_dir else []), paths.kubelet_dir,
               *kapal_cni_configs(paths.cni_conf_dir)]
    out(f"[reset] Deleting directories and files: [{' '.join(str(t) for t in targets)}]")
    for target in targets:
        _rmtree(target, report)
    for name in (KUBELET_DAEMON, ENGINE_DAEMON):
        with contextlib.suppress(FileNotFoundError):
            paths.pidfile(name).unlink()
    for problem in report.problems:
        out(f"[reset] WARNING: {problem}")
    return report
