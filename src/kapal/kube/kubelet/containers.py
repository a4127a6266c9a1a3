"""Pod containers as engine containers: names, labels, the create body, and records read back from the engine.

Every container the kubelet makes carries dockershim's labels (io.kubernetes.pod.uid, .container.name,
.container.hash, .container.restartCount, ...) plus `kapal.io/node`, so a restarted kubelet finds its pods
in the engine and tells whether a running container still matches the pod spec (same hash: adopt it, do
not restart it). Names follow dockershim: k8s_<container>_<pod>_<namespace>_<uid>_<attempt>.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kapal import errors

from .envvars import ConfigError, expand

L_POD_NAME = "io.kubernetes.pod.name"
L_POD_NAMESPACE = "io.kubernetes.pod.namespace"
L_POD_UID = "io.kubernetes.pod.uid"
L_CONTAINER_NAME = "io.kubernetes.container.name"
L_HASH = "io.kubernetes.container.hash"
L_RESTART_COUNT = "io.kubernetes.container.restartCount"
L_TERMINATION_PATH = "io.kubernetes.container.terminationMessagePath"
L_TERMINATION_POLICY = "io.kubernetes.container.terminationMessagePolicy"
L_GRACE = "io.kubernetes.pod.terminationGracePeriod"
L_PRESTOP = "io.kubernetes.container.preStopHandler"
L_TERMINATION_FILE = "kapal.io/termination-message-file"
L_TYPE = "kapal.io/container-type"
L_NODE = "kapal.io/node"
L_MANAGED = "io.kubernetes.docker.type"

RUNTIME = "kapal"


def container_hash(container: dict[str, Any]) -> str:
    """Changes when the container's spec does (resources excluded, as upstream, for in-place resize)."""
    pruned = {k: v for k, v in container.items() if k != "resources"}
    return hashlib.sha256(json.dumps(pruned, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:8]


def engine_name(pod: dict[str, Any], container: str, attempt: int) -> str:
    meta = pod["metadata"]
    return f"k8s_{container}_{meta['name']}_{meta.get('namespace') or 'default'}_{meta['uid']}_{attempt}"


def container_id(engine_id: str) -> str:
    return f"{RUNTIME}://{engine_id}"


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        t = dt.datetime.strptime(head[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    if frac:
        t = t.replace(microsecond=int(frac[:6].ljust(6, "0")))
    return t


@dataclass
class ContainerRecord:
    """What the engine says about one container the kubelet made."""

    id: str
    name: str  # the pod container's name
    pod_uid: str
    kind: str  # "init" | "regular"
    state: str  # created | running | exited | dead | ...
    hash: str = ""
    restart_count: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    created: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    image_id: str = ""
    image: str = ""
    pid: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")

    @property
    def exited(self) -> bool:
        return self.state in ("exited", "dead") or (self.state == "created" and bool(self.error))

    @classmethod
    def from_inspect(cls, doc: dict[str, Any]) -> ContainerRecord:
        cfg = doc.get("Config") or {}
        labels = cfg.get("Labels") or {}
        st = doc.get("State") or {}
        return cls(
            id=doc["Id"], name=labels.get(L_CONTAINER_NAME, ""), pod_uid=labels.get(L_POD_UID, ""),
            kind=labels.get(L_TYPE, "regular"), state=st.get("Status") or ("running" if st.get("Running") else
                                                                           "exited"),
            hash=labels.get(L_HASH, ""), restart_count=int(labels.get(L_RESTART_COUNT) or 0),
            exit_code=int(st.get("ExitCode") or 0), oom_killed=bool(st.get("OOMKilled")), error=st.get("Error") or "",
            created=_parse_time(doc.get("Created")), started_at=_parse_time(st.get("StartedAt")),
            finished_at=_parse_time(st.get("FinishedAt")), image_id=doc.get("Image") or "",
            image=cfg.get("Image") or "", pid=int(st.get("Pid") or 0), labels=labels, tty=bool(cfg.get("Tty")))


def _pod_labels(pod: dict[str, Any], node: str) -> dict[str, str]:
    meta = pod["metadata"]
    spec = pod.get("spec") or {}
    return {L_POD_NAME: meta["name"], L_POD_NAMESPACE: meta.get("namespace") or "default", L_POD_UID: meta["uid"],
            L_GRACE: str(spec.get("terminationGracePeriodSeconds", 30)), L_NODE: node, L_MANAGED: "container"}


def labels_for(pod: dict[str, Any], container: dict[str, Any], kind: str, restart_count: int,
               node: str) -> dict[str, str]:
    labels = _pod_labels(pod, node)
    labels.update({L_CONTAINER_NAME: container["name"], L_HASH: container_hash(container),
                   L_RESTART_COUNT: str(restart_count), L_TYPE: kind,
                   L_TERMINATION_PATH: container.get("terminationMessagePath") or "/dev/termination-log",
                   L_TERMINATION_POLICY: container.get("terminationMessagePolicy") or "File"})
    pre_stop = (container.get("lifecycle") or {}).get("preStop")
    if pre_stop:
        labels[L_PRESTOP] = json.dumps(pre_stop, separators=(",", ":"))
    return labels


@dataclass(frozen=True)
class Placement:
    """Where a container goes: the sandbox's namespaces and files, the pod cgroup."""

    network_mode: str
    ipc_mode: str
    uts_mode: str
    hostname: str
    cgroup_parent: str
    binds: tuple[str, ...]
    oom_score_adj: int = 0


def _security(pod: dict[str, Any], c: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return (pod.get("spec") or {}).get("securityContext") or {}, c.get("securityContext") or {}


def user_of(pod: dict[str, Any], c: dict[str, Any], image_user: str) -> str:
    pod_sc, sc = _security(pod, c)
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    meta = pod["metadata"]
    where = f"pod: \"{meta['name']}_{meta.get('namespace') or 'default'}({meta['uid']})\", container: {c['name']}"
    if uid is None:
        user_part = image_user.partition(":")[0]
        if non_root:
            if user_part and not user_part.isdigit():
                raise ConfigError(f"container has runAsNonRoot and image has non-numeric user ({user_part}), "
                                  f"cannot verify user is non-root ({where})")
            if not user_part or int(user_part) == 0:
                raise ConfigError(f"container has runAsNonRoot and image will run as root ({where})")
        if gid is not None:
            return f"{user_part or 0}:{gid}"
        return image_user
    if non_root and int(uid) == 0:
        raise ConfigError(f"container's runAsUser breaks non-root policy ({where})")
    return f"{uid}:{gid}" if gid is not None else str(uid)


def create_body(pod: dict[str, Any], c: dict[str, Any], *, image: str, image_config: dict[str, Any], env: list[str],
                labels: dict[str, str], place: Placement, resources: Any) -> dict[str, Any]:
    """The engine's POST /containers/create body for container `c` of `pod`."""
    env_map = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    pod_sc, sc = _security(pod, c)
    command = [expand(a, env_map) for a in c.get("command") or []]
    args = [expand(a, env_map) for a in c.get("args") or []]
    body: dict[str, Any] = {"Image": image, "Env": env, "Labels": labels, "Tty": bool(c.get("tty")),
                            "OpenStdin": bool(c.get("stdin")), "StdinOnce": bool(c.get("stdinOnce"))}
    if command:
        body["Entrypoint"] = command
        body["Cmd"] = args
    elif args:
        body["Cmd"] = args
    if c.get("workingDir"):
        body["WorkingDir"] = c["workingDir"]
    user = user_of(pod, c, image_config.get("User") or "")
    if user:
        body["User"] = user
    if place.uts_mode != "host":
        body["Hostname"] = place.hostname
    caps = sc.get("capabilities") or {}
    groups = [str(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(str(pod_sc["fsGroup"]))
    security_opt = []
    if sc.get("allowPrivilegeEscalation") is False:
        security_opt.append("no-new-privileges")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp in (None, "Unconfined"):  # upstream's kubelet (no SeccompDefault): unconfined unless asked
        security_opt.append("seccomp=unconfined")
    elif seccomp == "Localhost":
        raise errors.Unsupported("seccompProfile type Localhost is not supported by kapal's kubelet; use "
                                 "RuntimeDefault or Unconfined")
    if sc.get("procMount") not in (None, "Default"):
        raise errors.Unsupported(f"securityContext.procMount {sc['procMount']} is not supported")
    host: dict[str, Any] = {
        "NetworkMode": place.network_mode, "IpcMode": place.ipc_mode, "UTSMode": place.uts_mode,
        "CgroupParent": place.cgroup_parent, "Binds": list(place.binds), "RestartPolicy": {"Name": "no"},
        "OomScoreAdj": place.oom_score_adj,
    }
    if resources.memory_limit:
        host["Memory"] = resources.memory_limit
        host["MemorySwap"] = resources.memory_limit
    host["CpuShares"] = resources.cpu_shares
    if resources.cpu_quota:
        host["CpuQuota"] = resources.cpu_quota
        host["CpuPeriod"] = resources.cpu_period
    if sc.get("privileged"):
        host["Privileged"] = True
    if caps.get("add"):
        host["CapAdd"] = list(caps["add"])
    if caps.get("drop"):
        host["CapDrop"] = list(caps["drop"])
    if sc.get("readOnlyRootFilesystem"):
        host["ReadonlyRootfs"] = True
    if security_opt:
        host["SecurityOpt"] = security_opt
    if groups:
        host["GroupAdd"] = groups
    body["HostConfig"] = host
    return body
