"""Containers: create → start → exit → remove, with their filesystems, volumes, networks, stdio and logs.

A container's root filesystem is the image's layer snapshots + an `-init` snapshot (/etc/hosts,
/etc/hostname, /etc/resolv.conf and the mountpoints /proc, /sys, /dev) + its own rw snapshot, mounted
with overlay at `<data-root>/containers/<id>/rootfs` while it runs. Volumes are bind mounts given to
the runtime. `commit` reads only the rw snapshot; `diff` lists it.

Each running container has a shim (shim.py) that holds its stdio, writes its json-file log and
records its exit; the engine keeps one connection per shim for output (attach, logs -f) and the exit.
With live restore (the default) containers outlive the engine: the next engine reconnects to their
shims, or reads the exit the shim recorded.

In-process use (what `kapal engine` wires in daemon.build_containers): every method is synchronous,
thread-safe, raises kapal.errors and takes Docker API bodies, so the HTTP layer is a thin shell:

    engine = Engine(EngineConfig(data_root=ROOT))
    mgr = build_containers(engine, config)            # or ContainerManager(engine, runtime_for(...), ...)
    cid = mgr.create({"Image": "bb:1", "Cmd": ["sh"], "HostConfig": {
        "NetworkMode": "ns:/path/to/pinned/netns",   # a pod sandbox's namespaces, joined by path
        "IpcMode": "ns:/path/ipc", "UTSMode": "ns:/path/uts", "CgroupParent": "/kubepods/pod<uid>"}},
        name="k8s_c_pod")["Id"]
    mgr.attach(cid, Attacher(on_data, on_close)); mgr.start(cid); mgr.wait(cid, "next-exit")
    mgr.logs(cid, follow=True) -> (stream, bytes, time_ns)...; mgr.execs.create/start; mgr.stop/kill/remove
    mgr.networks.sandbox("bridge", ports) -> Sandbox(netns path, attachment)   # a pod network of its own

`container:<id>` joins another container's namespace (network, ipc, pid), as Docker does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from kapal.errors import Conflict, FailedPrecondition, Invalid, KapalError, NotFound, Unsupported
from kapal.image.archive import upper_changes, write_layer
from kapal.image.reference import parse
from kapal.linux.securepath import resolve_in_root
from kapal.units import human_duration

from . import _mount, health, hostconfig, resource_update, stats
from .events import EventLog
from .jsonlog import LogFollower
from .lxcfs import Lxcfs
from .networking import EngineNetworks, hosts_file, parse_port_bindings
from .ocispec import build_spec, command_of, default_mounts, merge_env, resolve_user
from .restart_policy import Backoff, wants_restart
from .restart_policy import normalize as normalize_policy
from .runtimes import ContainerRuntime, start_exit_code, start_failure
from .seccomp_profile import default_profile
from .service import DEFAULT_CONTAINER_CONFIG, Engine
from .shimclient import ShimConnection, ShimError, ShimLauncher, connect, read_exit, shim_alive
from .volume_copyup import copy_up

log = logging.getLogger(__name__)

INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
CGROUP_PARENT = "kapal"
ZERO_TIME = "0001-01-01T00:00:00Z"
PRIVATE = "KapalState"  # the engine's own fields in the record; never shown by inspect
INIT_PATH = "/sbin/docker-init"
_ADJ = "admiring brave clever dazzling eager festive gifted happy jolly keen lucid modest nifty quirky serene".split()
_NAMES = "turing hopper lovelace ritchie thompson torvalds liskov knuth dijkstra hamilton noether curie bohr".split()


def now_iso() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def _parse_iso(text: str) -> float:
    if not text or text.startswith("0001"):
        return 0.0
    head = text.rstrip("Z").split(".")[0]
    return datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()


@dataclass
class Attacher:
    """Receives a container's output: on_data(stream 1|2, bytes); on_close() once the process is gone."""

    on_data: Callable[[int, bytes], None]
    on_close: Callable[[], None]


class Container:
    """The persisted record (Docker's inspect fields, plus PRIVATE) and the live handles while it runs."""

    def __init__(self, doc: dict, root: Path) -> None:
        self.doc = doc
        self.dir = root / doc["Id"]
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.exits = 0
        self.output_seq = 0
        self.removed = False
        self.attachers: list[Attacher] = []
        self.shim: ShimConnection | None = None
        self.shim_proc: subprocess.Popen | None = None
        self.generation = 0
        self.pending_stdin = bytearray()
        self.pending_stdin_closed = False
        self.listeners: list[Callable[[], None]] = []  # told when the container exits or goes
        self.backoff = Backoff()
        self.restart_timer: threading.Timer | None = None
        self.started_mono = 0.0

    @property
    def id(self) -> str:
        return self.doc["Id"]

    @property
    def name(self) -> str:
        return self.doc["Name"].lstrip("/")

    @property
    def state(self) -> dict:
        return self.doc["State"]

    @property
    def private(self) -> dict:
        return self.doc.setdefault(PRIVATE, {})

    @property
    def running(self) -> bool:
        """Its process lives (a container waiting to be restarted by its policy shows Running, as in
        Docker, but has none)."""
        return bool(self.state["Running"]) and not self.state.get("Restarting")

    @property
    def restarting(self) -> bool:
        return bool(self.state.get("Restarting"))

    @property
    def tty(self) -> bool:
        return bool(self.doc["Config"].get("Tty"))

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def cgroup(self) -> str:
        return self.private.get("cgroup") or f"/{CGROUP_PARENT}/{self.id}"

    def save(self) -> None:
        tmp = self.dir / "config.v2.json.tmp"
        tmp.write_text(json.dumps(self.doc))
        os.rename(tmp, self.dir / "config.v2.json")

    def state_changed(self) -> None:
        """Wake the threads waiting on `changed` and call the listeners (async waiters); holds the lock."""
        self.changed.notify_all()
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:
                log.exception("a wait listener of %s", self.id[:12])

    def output(self, stream: int, data: bytes) -> None:
        with self.lock:
            attachers = list(self.attachers)
            self.output_seq += 1
            self.changed.notify_all()
        for a in attachers:
            try:
                a.on_data(stream, data)
            except Exception:
                log.exception("attach stream of %s", self.id[:12])


def parse_bind(spec: str) -> tuple[str, str, str]:
    """`src:dst[:mode]` or `/dst` (anonymous) → (source or "", destination, mode)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        if parts[1] in ("ro", "rw") or not parts[1].startswith("/"):
            if parts[0].startswith("/") and parts[1] in ("ro", "rw"):
                return "", parts[0], parts[1]
            raise Invalid(f"invalid volume specification: '{spec}'")
        return parts[0], parts[1], ""
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise Invalid(f"invalid volume specification: '{spec}'")


def network_mode(hc: dict, body: dict) -> str:
    mode = hc.get("NetworkMode") or "default"
    if body.get("NetworkDisabled"):
        return "none"
    if mode == "default":
        return "bridge"
    if mode in ("bridge", "host", "none") or mode.startswith(("container:", "ns:")):
        return mode
    raise Unsupported(
        f"network {mode!r}: kapal has the networks bridge, host and none (and container:<id>, ns:<path>); "
        "user-defined networks are not supported"
    )


class ContainerManager:
    def __init__(
        self,
        engine: Engine,
        runtime: ContainerRuntime,
        *,
        networks: EngineNetworks | None = None,
        lxcfs: Lxcfs | None = None,
        launcher: ShimLauncher | None = None,
        live_restore: bool = True,
        events: EventLog | None = None,
    ) -> None:
        self.engine = engine
        self.runtime = runtime
        self.root = engine.root / "containers"
        self.root.mkdir(parents=True, exist_ok=True)
        self.networks = networks or EngineNetworks(engine.root)
        self.lxcfs = lxcfs or Lxcfs.disabled()
        self.launcher = launcher or ShimLauncher()
        self.live_restore = live_restore
        self.events = events or getattr(engine, "events", None) or EventLog()
        self._lock = threading.RLock()
        self._containers: dict[str, Container] = {}
        self._reaper = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reap")
        from .execs import ExecManager

        self.execs = ExecManager(self)
        self.health = health.HealthMonitor(self, now_iso)
        for entry in self.root.iterdir():
            cfg = entry / "config.v2.json"
            if cfg.exists():
                c = Container(json.loads(cfg.read_text()), self.root)
                self._containers[c.id] = c
            elif entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)  # a create cut short
        for c in self._containers.values():
            if c.restarting:  # the last engine went while this one waited for its policy's restart
                c.state.update(Status="exited", Running=False, Restarting=False)
                c.save()
        in_use = {(c.private.get("network") or {}).get("sandbox", {}).get("id", "") for c in self._containers.values()
                  if c.running}
        self.networks.sweep({s for s in in_use if s})
        self._booting = True  # exits found now are the start-up's to act on (as dockerd: no count, no wait)
        for c in list(self._containers.values()):
            if c.running:
                self._restore(c)
        self._booting = False
        for c in list(self._containers.values()):
            if not c.state["Running"] and self._restarts_at_boot(c):
                self._reaper.submit(self._policy_start, c, None)
        engine.containers = self  # type: ignore[assignment]
        engine.set_image_users(self.image_users)

    # ------------------------------------------------------------ lookup

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without '/'), or unique ID prefix — as Docker resolves."""
        with self._lock:
            if ref in self._containers:
                return self._containers[ref]
            name = ref.lstrip("/")
            for c in self._containers.values():
                if c.name == name:
                    return c
            matches = [c for cid, c in self._containers.items() if cid.startswith(ref)] if ref else []
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise Invalid(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        with self._lock:
            return list(self._containers.values())

    def list_all(self) -> list[dict]:
        return [{"Id": c.id, "State": c.state["Status"]} for c in self.all()]

    def image_users(self, image_id: str) -> list[str]:
        return [c.id for c in self.all() if c.doc["Image"] == image_id]

    def volume_users(self, name: str) -> list[str]:
        return [c.id for c in self.all() if any(m.get("Name") == name for m in c.doc["Mounts"])]

    def _event(self, c: Container, action: str, **extra: str) -> None:
        attrs = {"image": c.doc["Config"].get("Image", ""), "name": c.name}
        attrs.update(c.doc["Config"].get("Labels") or {})
        attrs.update(extra)
        self.events.emit("container", action, c.id, attrs)

    # ------------------------------------------------------------ create

    def create(self, body: dict, name: str | None = None) -> dict:
        if not isinstance(body, dict):
            raise Invalid("the container config must be a JSON object")
        host_config = dict(body.get("HostConfig") or {})
        health.validate(body.get("Healthcheck"))
        warnings = hostconfig.validate(host_config, body)
        image_name = body.get("Image") or ""
        if not image_name:
            raise Invalid("no image specified: create needs an image")
        try:
            image = self.engine.images.resolve(image_name)
        except NotFound:
            ref = parse(image_name).tagged_or_latest() if "@" not in image_name else parse(image_name)
            raise NotFound(f"No such image: {ref.familiar()}") from None
        mode = network_mode(host_config, body)
        ports = parse_port_bindings(host_config.get("PortBindings"))
        if ports and mode != "bridge":
            warnings.append(f"Published ports are discarded when using {mode.split(':')[0]} network mode")
        for key in ("NetworkMode", "IpcMode", "PidMode"):
            value = host_config.get(key) or ""
            if value.startswith("container:"):
                self.get(value.split(":", 1)[1])
            if value.startswith("ns:") and not os.path.exists(value[3:]):
                raise NotFound(f"{key} {value}: no such namespace file")
        with self._lock:
            if name:
                if not _valid_name(name):
                    raise Invalid(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
                for c in self._containers.values():
                    if c.name == name.lstrip("/"):
                        raise Conflict(
                            f'Conflict. The container name "/{name.lstrip("/")}" is already in use by container '
                            f'"{c.id}". You have to remove (or rename) that container to be able to reuse that name.'
                        )
            else:
                name = self._random_name()
            cid = secrets.token_hex(32)
            cdir = self.root / cid
            cdir.mkdir()
        try:
            doc = self._new_record(cid, cdir, name, body, host_config, image, mode, ports)
            c = Container(doc, self.root)
            self._copy_up_volumes(c)
        except BaseException:
            _mount.unmount(str(cdir / "rootfs"), detach=True)
            self._drop_snapshots(cid)
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        with self._lock:
            if any(o.name == c.name for o in self._containers.values()):
                self._drop_snapshots(cid)
                shutil.rmtree(cdir, ignore_errors=True)
                raise Conflict(f'Conflict. The container name "/{c.name}" is already in use.')
            self._containers[cid] = c
        c.save()
        self._event(c, "create")
        return {"Id": cid, "Warnings": warnings}

    def _new_record(
        self, cid: str, cdir: Path, name: str, body: dict, host_config: dict, image, mode: str, ports
    ) -> dict:
        image_cfg = image.config.get("config") or {}
        config = dict(DEFAULT_CONTAINER_CONFIG)
        config.update({k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")})
        config["Image"] = body["Image"]
        config["Env"] = merge_env(image_cfg.get("Env"), body.get("Env"))
        if not body.get("Cmd") and body.get("Entrypoint") is None:
            config["Cmd"] = image_cfg.get("Cmd")
        if body.get("Entrypoint") is None:
            config["Entrypoint"] = image_cfg.get("Entrypoint")
        elif body.get("Entrypoint") == [""] or body.get("Entrypoint") == "":
            config["Entrypoint"] = None
        if not config.get("WorkingDir"):
            config["WorkingDir"] = image_cfg.get("WorkingDir") or ""
        if config["WorkingDir"] and not config["WorkingDir"].startswith("/"):
            raise Invalid(f"the working directory '{config['WorkingDir']}' is invalid, it needs to be an absolute path")
        if not config.get("User"):
            config["User"] = image_cfg.get("User") or ""
        check = health.merge(image_cfg.get("Healthcheck"), body.get("Healthcheck"))
        if check:
            config["Healthcheck"] = check
        else:
            config.pop("Healthcheck", None)
        if not config.get("StopSignal") and image_cfg.get("StopSignal"):
            config["StopSignal"] = image_cfg["StopSignal"]
        if config.get("StopSignal"):
            _signal_number(config["StopSignal"])
        labels = dict(image_cfg.get("Labels") or {})
        labels.update(body.get("Labels") or {})
        config["Labels"] = labels
        if mode == "host" and not body.get("Hostname"):
            config["Hostname"] = os.uname().nodename
        else:
            config["Hostname"] = body.get("Hostname") or cid[:12]
        exposed = dict(image_cfg.get("ExposedPorts") or {})
        exposed.update(body.get("ExposedPorts") or {})
        for p in ports:
            exposed.setdefault(f"{p.container_port}/{p.protocol}", {})
        if exposed:
            config["ExposedPorts"] = exposed
        if host_config.get("PublishAllPorts"):
            bindings = dict(host_config.get("PortBindings") or {})
            for key in exposed:
                bindings.setdefault(key, [{"HostIp": "", "HostPort": ""}])
            host_config["PortBindings"] = bindings
        volumes = dict(image_cfg.get("Volumes") or {})
        volumes.update(body.get("Volumes") or {})
        config["Volumes"] = volumes or None
        command_body = dict(body)
        if body.get("Entrypoint") in ([""], ""):
            command_body["Entrypoint"] = []  # --entrypoint "": no entrypoint, and the image's CMD goes too
        args = command_of(image_cfg, command_body)
        if host_config.get("Init"):
            hostconfig.tini_path()
        mounts = self._volume_mounts(host_config.get("Binds") or [], volumes, host_config.get("Mounts") or [])
        top = image.top_chain_id
        init_key, rw_key = f"{cid}-init", cid
        self.engine.snapshots.prepare(f"{init_key}-prep", top)
        self._write_init_layer(f"{init_key}-prep", config["Hostname"], host_config, mode)
        self.engine.snapshots.commit(init_key, f"{init_key}-prep")
        self.engine.snapshots.prepare(rw_key, init_key)
        host_config.setdefault("NetworkMode", "default")
        if host_config["NetworkMode"] == "":
            host_config["NetworkMode"] = "default"
        log_config = dict(host_config.get("LogConfig") or {})
        host_config["LogConfig"] = {"Type": "json-file", "Config": dict(log_config.get("Config") or {})}
        host_config.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        if not (host_config["RestartPolicy"] or {}).get("Name"):
            host_config["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
        host_config.setdefault("AutoRemove", False)
        host_config.setdefault("Binds", None)
        if host_config.get("Memory") and not host_config.get("MemorySwap") and hostconfig.memsw_supported():
            host_config["MemorySwap"] = 2 * int(host_config["Memory"])  # dockerd's default: swap as large as memory
        cgroup_parent = (host_config.get("CgroupParent") or CGROUP_PARENT).strip("/")
        return {
            "Id": cid,
            "Created": now_iso(),
            "Path": args[0],
            "Args": args[1:],
            "State": {
                "Status": "created",
                "Running": False,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 0,
                "ExitCode": 0,
                "Error": "",
                "StartedAt": ZERO_TIME,
                "FinishedAt": ZERO_TIME,
            },
            "Image": image.id,
            "ResolvConfPath": str(self.engine.snapshots.upper_dir(f"{cid}-init") / "etc/resolv.conf"),
            "HostnamePath": str(self.engine.snapshots.upper_dir(f"{cid}-init") / "etc/hostname"),
            "HostsPath": str(self.engine.snapshots.upper_dir(f"{cid}-init") / "etc/hosts"),
            "LogPath": str(cdir / f"{cid}-json.log"),
            "Name": "/" + name.lstrip("/"),
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": host_config,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": ":".join(str(p) for p in self.engine.snapshots.lower_dirs(cid)),
                    "MergedDir": str(cdir / "rootfs"),
                    "UpperDir": str(self.engine.snapshots.upper_dir(cid)),
                    "WorkDir": str(self.engine.snapshots.upper_dir(cid).parent / "work"),
                },
            },
            "Mounts": mounts,
            "Config": config,
            "NetworkSettings": {},
            PRIVATE: {"network": {"mode": mode}, "cgroup": f"/{cgroup_parent}/{cid}"},
        }

    def _copy_up_volumes(self, c: Container) -> None:
        """At create, as dockerd: each new, empty volume takes the image's content at its mountpoint."""
        wanted = [m for m in c.doc["Mounts"] if m.get("CopyUp") and m["Type"] == "volume"]
        if not wanted:
            return
        with self.mounted_rootfs(c) as rootfs:
            for m in wanted:
                if copy_up(str(rootfs), m["Destination"], m["Source"]):
                    log.debug("container %s: volume %s takes the image's content at %s", c.id[:12], m.get("Name"),
                              m["Destination"])
                m.pop("CopyUp")

    def _random_name(self) -> str:
        taken = {c.name for c in self._containers.values()}
        while True:
            name = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"
            if name not in taken:
                return name
            name += str(random.randint(0, 99))
            if name not in taken:
                return name

    def _volume_mounts(self, binds: list[str], volumes: dict, mounts: list[dict]) -> list[dict]:
        out: list[dict] = []
        dests: set[str] = set()

        def add(m: dict) -> None:
            dest = m["Destination"]
            if not dest.startswith("/") or dest == "/":
                raise Invalid(f"invalid mount config: mount path must be absolute: {dest!r}")
            if dest in dests:
                raise Invalid(f"Duplicate mount point: {dest}")
            dests.add(dest)
            out.append(m)

        for spec in binds:
            source, dest, mode = parse_bind(spec)
            opts = set(mode.split(",")) - {""}
            if not opts <= {"ro", "rw", "z", "Z", "rprivate", "private", "rshared", "shared", "rslave", "slave",
                            "nocopy", "copy"}:
                raise Invalid(f"invalid mode: {mode}")
            rw = "ro" not in opts
            propagation = next((o for o in opts if o.endswith(("private", "shared", "slave"))), "rprivate")
            if source.startswith("/"):
                if not os.path.exists(source):
                    os.makedirs(source, exist_ok=True)  # Docker creates missing bind sources for -v
                add({"Type": "bind", "Source": source, "Destination": dest, "Mode": mode, "RW": rw,
                     "Propagation": propagation})
            else:
                vol = self.engine.volumes.create(source or None)
                add(_volume_mount(vol.name, str(vol.mountpoint), dest, mode, rw, "nocopy" not in opts))
        for m in mounts:
            kind = m.get("Type") or "volume"
            target = m.get("Target") or m.get("Destination") or ""
            readonly = bool(m.get("ReadOnly"))
            if kind == "bind":
                source = m.get("Source") or ""
                if not source.startswith("/"):
                    raise Invalid(f'invalid mount config for type "bind": invalid mount path: {source!r} '
                                  "mount path must be absolute")
                if not os.path.exists(source):
                    raise Invalid(f'invalid mount config for type "bind": bind source path does not exist: {source}')
                propagation = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
                add({"Type": "bind", "Source": source, "Destination": target, "Mode": "", "RW": not readonly,
                     "Propagation": propagation})
            elif kind == "volume":
                vol = self.engine.volumes.create(m.get("Source") or None)
                nocopy = bool((m.get("VolumeOptions") or {}).get("NoCopy"))
                add(_volume_mount(vol.name, str(vol.mountpoint), target, "z", not readonly, not nocopy))
            elif kind == "tmpfs":
                if m.get("Source"):
                    raise Invalid('invalid mount config for type "tmpfs": source must not be specified')
                hostconfig.mount_tmpfs(target, m.get("TmpfsOptions"))
                add({"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": not readonly,
                     "Propagation": "", "TmpfsOptions": m.get("TmpfsOptions") or {}})
            else:
                raise Unsupported(f"mount type {kind!r} is not supported (bind, volume, tmpfs are)")
        for dest in volumes:
            if dest in dests:
                continue
            vol = self.engine.volumes.create(None)
            add(_volume_mount(vol.name, str(vol.mountpoint), dest, "", True, True))
        return out

    def _write_init_layer(self, key: str, hostname: str, hc: dict, mode: str) -> None:
        upper = self.engine.snapshots.upper_dir(key)
        lowers = self.engine.snapshots.lower_dirs(key)

        def lower_stat(rel: str) -> os.stat_result | None:
            for lower in lowers:
                try:
                    return os.lstat(lower / rel)
                except OSError:
                    continue
            return None

        for d in ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc"):
            st = lower_stat(d)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                continue
            (upper / d).mkdir(exist_ok=True)
            if st is not None:
                os.chmod(upper / d, stat.S_IMODE(st.st_mode))
                os.chown(upper / d, st.st_uid, st.st_gid)
        if not (upper / "etc").is_dir():
            return
        (upper / "etc/hostname").write_text(hostname + "\n")
        self._write_hosts(upper, hostname, hc, mode, None)
        (upper / "etc/resolv.conf").write_text(_resolv_conf(hc, host=mode == "host"))
        for f in INIT_FILES:
            os.chmod(upper / f, 0o644)
        if lower_stat("etc/mtab") is None:
            os.symlink("/proc/mounts", upper / "etc/mtab")

    def _write_hosts(self, upper: Path, hostname: str, hc: dict, mode: str, address: str | None,
                     gateway: str | None = None) -> None:
        if not (upper / "etc").is_dir():
            return
        if mode == "host":
            try:
                text = Path("/etc/hosts").read_text()
            except OSError:
                text = hosts_file(hostname, None)
        else:
            text = hosts_file(hostname, address)
        for entry in hc.get("ExtraHosts") or []:
            host, sep, ip = entry.partition("=") if "=" in entry else entry.partition(":")
            if not sep or not host or not ip:
                raise Invalid(f"invalid IP address in add-host: {entry!r}")
            if ip == "host-gateway":
                ip = gateway or str(self.networks.bridge.gateway)
            text += f"{ip}\t{host}\n"
        tmp = upper / "etc/.hosts.tmp"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, upper / "etc/hosts")

    def _drop_snapshots(self, cid: str) -> None:
        self.engine.snapshots.remove_chain([cid, f"{cid}-init", f"{cid}-init-prep"])

    # ------------------------------------------------------------ start

    def start(self, ref: str) -> bool:
        """Start; returns False when it was already running (the API answers 304)."""
        c = self.get(ref)
        with c.lock:
            if c.running or c.restarting:
                return False
            if c.removed:
                raise NotFound(f"No such container: {ref}")
            c.state["Error"] = ""
            # the user's start: the policy starts over (dockerd's reset of the restart manager)
            c.backoff.reset()
            c.private["manual_stop"] = False
            c.doc["RestartCount"] = 0
            try:
                self._start(c)
            except BaseException as e:
                message = str(e)
                c.state.update(Error=message, ExitCode=start_exit_code(message, c.doc["Path"]))
                c.save()
                self._close_attachers(c)
                if c.doc["HostConfig"].get("AutoRemove"):
                    self._reaper.submit(self._remove_quietly, c.id)  # as dockerd: --rm goes on a failed start
                raise
        self._event(c, "start")
        return True

    def _remove_quietly(self, ref: str) -> None:
        try:
            self.remove(ref, force=True, volumes=True)
        except NotFound:
            pass
        except (KapalError, OSError) as e:
            log.warning("removing %s: %s", ref[:12], e)

    def _namespaces(self, c: Container, sandbox_path: str | None) -> list[dict]:
        hc = c.doc["HostConfig"]
        mode = c.private["network"]["mode"]
        out: list[dict] = [{"type": "mount"}]

        def joined(kind: str, setting: str) -> dict | None:
            if setting.startswith("ns:"):
                return {"type": kind, "path": setting[3:]}
            other = self.get(setting.split(":", 1)[1])
            if not other.running:
                raise FailedPrecondition(f"cannot join the {kind} namespace of container {other.id[:12]}: "
                                         "it is not running")
            if kind == "network":
                sandbox = (other.private.get("network") or {}).get("sandbox")
                if other.private["network"]["mode"] == "host":
                    return None
                if sandbox:
                    return {"type": kind, "path": sandbox["netns"]}
            return {"type": kind, "path": f"/proc/{other.state['Pid']}/ns/{'net' if kind == 'network' else kind}"}

        if mode != "host":
            ns = joined("network", mode) if mode.startswith(("container:", "ns:")) else \
                {"type": "network", "path": sandbox_path}
            if ns:
                out.append(ns)
        for kind, key in (("pid", "PidMode"), ("ipc", "IpcMode"), ("uts", "UTSMode")):
            mode_value = hc.get(key) or ""
            if mode_value.startswith(("container:", "ns:")):
                out.append(joined(kind, mode_value) or {"type": kind})
            elif mode_value != "host":
                out.append({"type": kind})
        if (hc.get("CgroupnsMode") or "") == "private":
            out.append({"type": "cgroup"})
        return out

    def _start(self, c: Container) -> None:
        hc = c.doc["HostConfig"]
        config = c.doc["Config"]
        net = c.private["network"]
        mode = net["mode"]
        ports = parse_port_bindings(hc.get("PortBindings")) if mode == "bridge" else ()
        sandbox = None
        marks = [("begin", time.perf_counter())]
        if mode in ("bridge", "none"):
            sandbox = self.networks.sandbox(mode, ports)
            net["sandbox"] = sandbox.to_record()
        marks.append(("network", time.perf_counter()))
        try:
            att = sandbox.attachment if sandbox else None
            init_upper = self.engine.snapshots.upper_dir(f"{c.id}-init")
            self._write_hosts(init_upper, config["Hostname"], hc, mode, str(att.ip) if att else None,
                              str(att.gateway) if att and att.gateway else None)
            c.rootfs.mkdir(exist_ok=True)
            if not _mount.is_mounted(str(c.rootfs)):
                _mount.mount_all(self.engine.snapshots.mounts(c.id), str(c.rootfs))
            marks.append(("rootfs", time.perf_counter()))
            spec = self._spec(c, sandbox.netns if sandbox else None)
            (c.dir / "config.json").write_text(json.dumps(spec))
            marks.append(("spec", time.perf_counter()))
            for stale in ("exit.json", "shim.pid"):
                (c.dir / stale).unlink(missing_ok=True)
            max_size, max_file = hostconfig.log_options(hc)
            size = hc.get("ConsoleSize") or [0, 0]
            settings = {
                "id": c.id,
                "bundle": str(c.dir),
                **self.runtime.shim_settings(),
                "log_path": c.doc["LogPath"],
                "log_max_size": max_size,
                "log_max_files": max_file,
                "tty": c.tty,
                "stdin": bool(config.get("OpenStdin")),
                "console_size": [int(size[0] or 0), int(size[1] or 0)] if size else [0, 0],
                "exit_file": str(c.dir / "exit.json"),
                "memory_cgroup": str(stats._controller("memory") / c.cgroup.lstrip("/")),
                "pid_file": str(c.dir / "init.pid"),
                "runtime_log": str(c.dir / "runtime.log"),
            }
            stdin, c.pending_stdin = bytes(c.pending_stdin), bytearray()
            closed, c.pending_stdin_closed = c.pending_stdin_closed, False
            try:
                proc, conn, pid, early = self.launcher.spawn(c.dir, settings, stdin=stdin, close_stdin=closed)
            except ShimError as e:
                self.runtime.delete(c.id, force=True)
                raise start_failure(str(e), c.doc["Path"]) from None
            marks.append(("shim+runtime", time.perf_counter()))
            if log.isEnabledFor(logging.DEBUG):
                steps = ", ".join(f"{name} {(t - marks[i][1]) * 1000:.1f} ms" for i, (name, t) in enumerate(marks[1:]))
                log.debug("started %s: %s", c.id[:12], steps)
        except BaseException:
            _mount.unmount(str(c.rootfs), detach=True)
            net.pop("sandbox", None)
            if sandbox is not None:
                self.networks.release(sandbox.to_record(), wait=True)
            raise
        c.generation += 1
        c.shim, c.shim_proc = conn, proc
        c.state.update(Status="running", Running=True, Restarting=False, Paused=False, OOMKilled=False, Pid=pid,
                       ExitCode=0, StartedAt=now_iso(), FinishedAt=ZERO_TIME, Error="")
        c.started_mono = time.monotonic()
        self.health.started(c)
        c.save()
        self._watch(c, conn, early)

    def _spec(self, c: Container, netns_path: str | None) -> dict:
        hc = c.doc["HostConfig"]
        config = c.doc["Config"]
        env = config["Env"]
        args = [c.doc["Path"], *c.doc["Args"]]
        user = resolve_user(c.rootfs, config.get("User") or "")
        if hc.get("GroupAdd"):
            user = (user[0], user[1], [*user[2], *(_group_id(c.rootfs, g) for g in hc["GroupAdd"])])
        cwd = config.get("WorkingDir") or "/"
        if cwd != "/":
            target = c.rootfs / cwd.lstrip("/")
            if not target.exists():
                target.mkdir(parents=True, exist_ok=True)
                os.chown(target, user[0], user[1])
        caps = hostconfig.capabilities(hc)
        device_nodes, device_rules = hostconfig.devices(hc)
        nnp, seccomp_mode = hostconfig.security_options(hc)
        if seccomp_mode == "unconfined":
            seccomp = None
        elif seccomp_mode == "default":
            seccomp = default_profile(caps)
        else:
            try:
                seccomp = json.loads(seccomp_mode)
            except ValueError as e:
                raise Invalid(f"invalid seccomp profile: {e}") from None
        mounts = default_mounts(
            shm_size=int(hc.get("ShmSize") or 64 << 20),
            ipc_none=(hc.get("IpcMode") or "") == "none",
            privileged=bool(hc.get("Privileged")),
        )
        mounts += self.lxcfs.mounts()
        mounts += hostconfig.tmpfs_mounts(hc)
        mounts += self._user_mounts(c)
        if hc.get("Init"):
            mounts.append({"destination": INIT_PATH, "type": "bind", "source": hostconfig.tini_path(),
                           "options": ["rbind", "ro", "rprivate"]})
            args = [INIT_PATH, "--", *args]
        namespaces = self._namespaces(c, netns_path)
        # the hostname is set only in a UTS namespace of the container's own (not a pod's, not the host's)
        has_uts = any(ns["type"] == "uts" and "path" not in ns for ns in namespaces)
        return build_spec(
            rootfs=c.rootfs,
            args=args,
            env=env,
            cwd=cwd,
            user=user,
            hostname=config["Hostname"] if has_uts else "",
            domainname=(config.get("Domainname") or "") if has_uts else "",
            tty=c.tty,
            mounts=mounts,
            capabilities=caps,
            resources=hostconfig.resources(hc, device_rules),
            namespaces=namespaces,
            readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
            cgroups_path=c.cgroup,
            devices=device_nodes,
            rlimits=hostconfig.rlimits(hc),
            no_new_privileges=nnp,
            seccomp=seccomp,
            privileged=bool(hc.get("Privileged")),
            sysctl=hc.get("Sysctls") or None,
            oom_score_adj=int(hc.get("OomScoreAdj") or 0) or None,
            masked_paths=hc.get("MaskedPaths"),
            readonly_paths=hc.get("ReadonlyPaths"),
        )

    def _user_mounts(self, c: Container) -> list[dict]:
        """Volumes, binds and --mount tmpfs as OCI mounts; mountpoints made in the rootfs, volumes seeded
        from the image's content at their path the first time (Docker's copy-up)."""
        out = []
        for m in sorted(c.doc["Mounts"], key=lambda m: m["Destination"].count("/")):
            if m["Type"] == "tmpfs":
                out.append(hostconfig.mount_tmpfs(m["Destination"], m.get("TmpfsOptions")))
                continue
            source = Path(m["Source"])
            # where the mount lands, with the image's symlinks resolved inside the rootfs, never out of it
            target = Path(resolve_in_root(str(c.rootfs), m["Destination"]))
            copy = m.pop("CopyUp", None) and m["Type"] == "volume"
            if copy and copy_up(str(c.rootfs), m["Destination"], str(source)):
                log.debug("container %s: volume %s takes the image's content at %s", c.id[:12], m.get("Name"),
                          m["Destination"])
            if not os.path.lexists(target):
                if source.is_dir() or not source.exists():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.touch()
            options = ["rbind", m.get("Propagation") or "rprivate"]
            if not m["RW"]:
                options.append("ro")
            out.append({"destination": m["Destination"], "type": "bind", "source": m["Source"], "options": options})
        return out

    # ------------------------------------------------------------ shim connection and exit

    def _watch(self, c: Container, conn: ShimConnection, early: list[tuple[bytes, bytes]]) -> None:
        generation = c.generation
        conn.on_output = c.output
        conn.on_exit = lambda doc: self._exited(c, generation, doc)
        conn.start_reader(early, name=f"shim-{c.id[:12]}")

    def _exited(self, c: Container, generation: int, doc: dict | None) -> None:
        """The shim said the container ended (doc), or went away without saying (None)."""
        if doc is None:
            doc = read_exit(c.dir)
        with c.lock:
            if c.generation != generation or not c.running:
                return
            if doc is None and self._closing:
                return  # the engine is stopping with live restore: the shim lives on
        if doc is None:
            if shim_alive(c.dir):
                log.warning("lost the connection to the shim of %s; reconnecting", c.id[:12])
                self._reaper.submit(self._reconnect, c, generation)
                return
            log.warning("the shim of container %s went away without an exit status; stopping the container",
                        c.id[:12])
            with contextlib.suppress(KapalError):
                self.runtime.kill(c.id, signal.SIGKILL)
            self.runtime.delete(c.id, force=True)
            doc = {"ExitCode": 137, "OOMKilled": False, "FinishedAt": now_iso(),
                   "Error": "the container's shim exited unexpectedly"}
        self._close_attachers(c)
        with c.lock:
            if c.generation != generation or not c.running:
                return
            self.health.stop(c)
            sandbox = c.private["network"].pop("sandbox", None)
            keep_waiting = bool(sandbox and sandbox.get("ports"))
            _mount.unmount(str(c.rootfs), detach=True)
            # ports must be free when stop/rm return; other sandboxes go down in the background
            self.networks.release(sandbox, wait=keep_waiting)
            c.state.update(
                Status="exited", Running=False, Paused=False, Pid=0, ExitCode=int(doc.get("ExitCode", 255)),
                OOMKilled=bool(doc.get("OOMKilled")), FinishedAt=doc.get("FinishedAt") or now_iso(),
                Error=doc.get("Error", ""),
            )
            delay = self._restart_delay(c)
            if delay is not None:  # as dockerd: Running and Restarting while the policy's wait runs
                c.doc["RestartCount"] = int(c.doc.get("RestartCount") or 0) + 1
                c.state.update(Status="restarting", Running=True, Restarting=True)
                timer = threading.Timer(delay, lambda: self._policy_start(c, timer))
                timer.daemon = True
                c.restart_timer = timer
                timer.start()
            c.shim = None
            proc, c.shim_proc = c.shim_proc, None
            c.exits += 1
            c.save()
            c.state_changed()
        if proc is not None:
            self._reaper.submit(proc.wait)
        if doc.get("OOMKilled"):
            self._event(c, "oom")
        self._event(c, "die", exitCode=str(c.state["ExitCode"]))
        if c.doc["HostConfig"].get("AutoRemove") and not c.restarting:
            try:
                self.remove(c.id, force=True, volumes=True)
            except NotFound:
                pass
            except Exception:
                log.exception("auto-remove of %s failed", c.id[:12])

    _closing = False
    _booting = False

    # ------------------------------------------------------------ restart policies

    def _restart_delay(self, c: Container) -> float | None:
        """After an exit (holds c.lock): the wait before the policy restarts it, or None."""
        if self._closing or self._booting or c.removed:
            return None
        if c.started_mono:
            ran = time.monotonic() - c.started_mono
        else:  # started by an earlier engine
            ran = _parse_iso(c.state["FinishedAt"]) - _parse_iso(c.state["StartedAt"])
        return c.backoff.next(c.doc["HostConfig"].get("RestartPolicy") or {}, int(c.state["ExitCode"]),
                              bool(c.private.get("manual_stop")), ran, int(c.doc.get("RestartCount") or 0))

    def _restarts_at_boot(self, c: Container) -> bool:
        """dockerd's start-up rule: a container started before whose policy wants it back (`always` even
        after the user's stop; `unless-stopped` only if not stopped by the user)."""
        if c.state.get("StartedAt", ZERO_TIME) == ZERO_TIME:
            return False
        return wants_restart(c.doc["HostConfig"].get("RestartPolicy") or {}, int(c.state.get("ExitCode") or 0),
                             bool(c.private.get("manual_stop")), int(c.doc.get("RestartCount") or 0))

    def _policy_start(self, c: Container, timer: threading.Timer | None) -> None:
        """The policy's restart (timer None: at engine start) through a new shim; the count is kept."""
        with c.lock:
            if c.removed or self._closing:
                return
            if timer is not None:
                if c.restart_timer is not timer or not c.restarting:
                    return  # cancelled by a stop, kill, rm or start meanwhile
                c.restart_timer = None
            elif c.state["Running"]:
                return
            try:
                self._start(c)
            except BaseException as e:
                log.warning("restarting container %s by its restart policy: %s", c.id[:12], e)
                c.state.update(Status="exited", Running=False, Restarting=False, Error=str(e),
                               ExitCode=start_exit_code(str(e), c.doc["Path"]))
                c.save()
                c.state_changed()
                return
        self._event(c, "start")

    def _cancel_restart(self, c: Container) -> None:
        """A user's stop, kill or rm (holds c.lock): no restart by the policy from now on; a pending one
        ends and the container is exited."""
        c.backoff.cancel()
        timer, c.restart_timer = c.restart_timer, None
        if timer is not None:
            timer.cancel()
        if c.restarting:
            c.state.update(Status="exited", Running=False, Restarting=False)
            c.save()
            c.state_changed()

    def update(self, ref: str, body: dict) -> list[str]:
        """`docker update`: resources (applied at once to a running or paused container, kept in its
        HostConfig for the next start) and the restart policy, with dockerd's checks and words."""
        c = self.get(ref)
        if not isinstance(body, dict):
            raise Invalid("the update config must be a JSON object")
        changes = resource_update.requested(body)
        policy = None
        if (body.get("RestartPolicy") or {}).get("Name"):  # as dockerd: an empty name leaves the policy
            policy = normalize_policy(body["RestartPolicy"])
        with c.lock:
            if c.removed:
                raise NotFound(f"No such container: {ref}")
            try:
                hc = resource_update.merge(c.doc["HostConfig"], changes)
                if policy is not None and hc.get("AutoRemove") and policy["Name"] != "no":
                    raise Invalid("Restart policy cannot be updated because AutoRemove is enabled for the container")
            except Invalid as e:
                raise Invalid(f"Cannot update container {c.id}: {e}") from None
            if policy is not None:
                hc["RestartPolicy"] = policy
            if changes and c.running:  # a container waiting for its policy's restart takes them at start
                try:
                    self.runtime.update(c.id, resource_update.runtime_resources(hc, changes))
                except KapalError as e:
                    raise type(e)(f"Cannot update container {c.id}: {e}") from None
            c.doc["HostConfig"] = hc
            c.save()
        self._event(c, "update")
        return []

    def _close_attachers(self, c: Container) -> None:
        with c.lock:
            attachers, c.attachers = c.attachers, []
        for a in attachers:
            try:
                a.on_close()
            except Exception:
                log.exception("closing an attach stream of %s", c.id[:12])

    def _restore(self, c: Container) -> None:
        """A container that was running when the last engine stopped: reconnect to its shim, or take the
        exit the shim recorded, or (its shim gone without one) stop it."""
        generation = c.generation
        if shim_alive(c.dir):
            try:
                sock = connect(c.dir)
            except OSError:
                sock = None
            if sock is not None:
                conn = ShimConnection(sock, c.output, lambda doc: None)
                conn.send(b"A")
                c.shim = conn
                log.info("container %s: reconnected to its shim (pid %s)", c.id[:12], c.state.get("Pid"))
                if not self.live_restore:
                    self._watch(c, conn, [])
                    self._reaper.submit(self._stop_quietly, c.id, 10)
                    return
                self._watch(c, conn, [])
                with c.lock:
                    self.health.started(c)  # as dockerd's restore: starting again
                    if c.state["Paused"]:
                        self.health.stop(c)
                return
        self._exited(c, generation, None)

    def _reconnect(self, c: Container, generation: int) -> None:
        time.sleep(0.1)
        with c.lock:
            if c.generation != generation or not c.running:
                return
        self._restore(c)

    def _stop_quietly(self, ref: str, timeout: float, manual: bool = False) -> None:
        """The engine's own stop (its shutdown, a restore without live restore): not the user's."""
        try:
            self.stop(ref, timeout, manual=manual)
        except KapalError as e:
            log.warning("stopping %s: %s", ref[:12], e)

    # ------------------------------------------------------------ stdio

    def attach(self, ref: str, attacher: Attacher) -> Container:
        c = self.get(ref)
        with c.lock:
            c.attachers.append(attacher)
        self._event(c, "attach")
        return c

    def detach(self, c: Container, attacher: Attacher) -> None:
        with c.lock:
            if attacher in c.attachers:
                c.attachers.remove(attacher)

    def send_stdin(self, c: Container, data: bytes) -> None:
        with c.lock:
            if c.shim is None:
                c.pending_stdin += data  # before start: the shim gets it first thing
                return
            shim = c.shim
        shim.send_stdin(data)

    def close_stdin(self, c: Container) -> None:
        """The attached client's stdin ended: the container's stdin closes when StdinOnce."""
        if not c.doc["Config"].get("StdinOnce"):
            return
        with c.lock:
            if c.shim is None:
                c.pending_stdin_closed = True
                return
            shim = c.shim
        shim.close_stdin()

    def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if height < 0 or width < 0:
            raise Invalid(f"invalid terminal size {height}x{width}")
        with c.lock:
            if not c.running:
                raise FailedPrecondition(f"Container {c.id} is not running")
            if c.shim is not None and c.tty:
                c.shim.resize(height, width)

    # ------------------------------------------------------------ control

    def wait(self, ref: str, condition: str = "not-running", timeout: float | None = None,
             cancelled: Callable[[], bool] | None = None) -> dict:
        """Block until the condition holds: next-exit | not-running | removed. Returns {"StatusCode", "Error"}."""
        if condition not in ("", "next-exit", "not-running", "removed"):
            raise Invalid(f"invalid condition: {condition!r}")
        c = self.get(ref)
        deadline = None if timeout is None else time.monotonic() + timeout
        with c.lock:
            start_exits = c.exits
            if condition == "removed":
                done = lambda: c.removed  # noqa: E731
            elif condition == "next-exit":
                done = lambda: c.exits > start_exits or c.removed  # noqa: E731
            else:
                done = lambda: not c.running or c.removed  # noqa: E731
            while not done():
                if cancelled is not None and cancelled():
                    raise FailedPrecondition("the client went away")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise FailedPrecondition(f"timed out waiting for container {c.id[:12]}")
                c.changed.wait(min(left, 1.0) if left is not None else 1.0)
            error = c.state.get("Error") or None
            return {"StatusCode": c.state["ExitCode"], "Error": {"Message": error} if error else None}

    def wait_condition(self, c: Container, condition: str) -> Callable[[], bool]:
        """A predicate for `wait`'s condition, from now on (next-exit counts exits after this call)."""
        if condition not in ("", "next-exit", "not-running", "removed"):
            raise Invalid(f"invalid condition: {condition!r}")
        with c.lock:
            start_exits = c.exits
        if condition == "removed":
            return lambda: c.removed
        if condition == "next-exit":
            return lambda: c.exits > start_exits or c.removed
        return lambda: not c.running or c.removed

    def wait_result(self, c: Container) -> dict:
        """The exit code and error; a removed container's error was cleared by its removal (as dockerd's
        SetRemoved), so `docker run --rm` of a missing command reports only the failed start."""
        with c.lock:
            error = None if c.removed else c.state.get("Error") or None
            return {"StatusCode": c.state["ExitCode"], "Error": {"Message": error} if error else None}

    def kill(self, ref: str, sig: str | int = "KILL") -> None:
        c = self.get(ref)
        signum = _signal_number(sig or "KILL")
        with c.lock:
            if signum != signal.SIGWINCH and (c.running or c.restarting):
                # as dockerd: the user's kill is a manual stop; with the stop signal (or SIGKILL, or any
                # signal when the container has no StopSignal) the policy will not restart it
                c.private["manual_stop"] = True
                stop_signal = c.doc["Config"].get("StopSignal")
                if c.restarting or not stop_signal or signum in (signal.SIGKILL, _signal_number(stop_signal)):
                    self._cancel_restart(c)
                c.save()
                if not c.running:
                    return
            if not c.running:
                raise FailedPrecondition(f"Cannot kill container: {ref}: container {c.id} is not running")
            self.runtime.kill(c.id, signum)
            if c.state["Paused"] and signum == signal.SIGKILL:
                with contextlib.suppress(KapalError):
                    self.runtime.resume(c.id)
        self._event(c, "kill", signal=str(signum))

    def stop(self, ref: str, timeout: float | None = None, sig: str | None = None, manual: bool = True) -> bool:
        """Returns False when it was not running (the API answers 304). `manual`: the user's stop, which
        the restart policy respects (dockerd's HasBeenManuallyStopped)."""
        c = self.get(ref)
        with c.lock:
            if manual and (c.running or c.restarting):
                c.private["manual_stop"] = True
                was_restarting = c.restarting
                self._cancel_restart(c)
                c.save()
                if was_restarting:
                    self._event(c, "stop")
                    return True
        if not c.running:
            return False
        stop_signal = _signal_number(sig or c.doc["Config"].get("StopSignal") or "TERM")
        if timeout is None:
            timeout = c.doc["Config"].get("StopTimeout")
        grace = 10.0 if timeout is None else float(timeout)
        with contextlib.suppress(KapalError):
            self.runtime.kill(c.id, stop_signal)
        if c.state.get("Paused"):
            with contextlib.suppress(KapalError):
                self.runtime.resume(c.id)
        with c.lock:
            if grace >= 0 and c.changed.wait_for(lambda: not c.running, grace):
                self._event(c, "stop")
                return True
        with contextlib.suppress(KapalError):
            self.runtime.kill(c.id, signal.SIGKILL)
        with c.lock:
            c.changed.wait_for(lambda: not c.running, 30)
        self._event(c, "stop")
        return True

    def restart(self, ref: str, timeout: float | None = None) -> None:
        c = self.get(ref)
        self.stop(c.id, timeout)
        self.start(c.id)
        with c.lock:
            c.doc["RestartCount"] = c.doc.get("RestartCount", 0)
        self._event(c, "restart")

    def pause(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            if c.restarting:
                raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
            if not c.running:
                raise FailedPrecondition(f"Container {c.id} is not running")
            if c.state["Paused"]:
                raise FailedPrecondition(f"Container {c.id} is already paused")
            self._freeze(c)

    def unpause(self, ref: str) -> None:
        c = self.get(ref)
        with c.lock:
            if not c.state["Paused"]:
                raise FailedPrecondition(f"Container {c.id} is not paused")
            self._thaw(c)

    def _freeze(self, c: Container) -> None:
        """Pause (holds c.lock): the runtime freezes the cgroup, the record and an event say so."""
        self.runtime.pause(c.id)
        self.health.stop(c)
        c.state.update(Paused=True, Status="paused")
        c.save()
        self._event(c, "pause")

    def _thaw(self, c: Container) -> None:
        self.runtime.resume(c.id)
        c.state.update(Paused=False, Status="running" if c.running else c.state["Status"])
        if c.running:
            self.health.resume(c)
        c.save()
        self._event(c, "unpause")

    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise Invalid("Neither old nor new names may be empty")
        if not _valid_name(new_name):
            raise Invalid(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new_name = new_name.lstrip("/")
        with self._lock:
            if c.name == new_name:
                raise Conflict("Renaming a container with the same name as its current name")
            for other in self._containers.values():
                if other.name == new_name:
                    raise Conflict(
                        f'Conflict. The container name "/{new_name}" is already in use by container "{other.id}". '
                        "You have to remove (or rename) that container to be able to reuse that name."
                    )
            old = c.name
            with c.lock:
                c.doc["Name"] = "/" + new_name
                c.save()
        self._event(c, "rename", oldName="/" + old)

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        with c.lock:
            if c.restarting and not force:
                raise Conflict(f"cannot remove container \"/{c.name}\": container is restarting: stop the container "
                               "before removing or force remove")
            if force:
                self._cancel_restart(c)
        if c.running:
            if not force:
                state = "paused" if c.state["Paused"] else "running"
                raise Conflict(
                    f"cannot remove container \"/{c.name}\": container is {state}: stop the container before "
                    "removing or force remove"
                )
            with contextlib.suppress(KapalError):
                self.runtime.kill(c.id, signal.SIGKILL)
            if c.state["Paused"]:
                with contextlib.suppress(KapalError):
                    self.runtime.resume(c.id)
            with c.lock:
                if not c.changed.wait_for(lambda: not c.running, 30):
                    raise FailedPrecondition(f"container {c.id[:12]} did not stop after SIGKILL")
        with c.lock:
            if c.removed:
                return
            c.removed = True
            self.health.stop(c)
            _mount.unmount(str(c.rootfs), detach=True)
            if self.runtime.known(c.id):  # the shim deletes what it ran; this is for a start cut short
                self.runtime.delete(c.id, force=True)
            self.networks.release(c.private["network"].pop("sandbox", None), wait=True)
            self._drop_snapshots(c.id)
            with self._lock:
                self._containers.pop(c.id, None)
            shutil.rmtree(c.dir, ignore_errors=True)
            c.state_changed()
        self._close_attachers(c)
        self.execs.forget(c.id)
        if volumes:
            for m in c.doc["Mounts"]:
                if m["Type"] == "volume" and m.get("Name"):
                    try:
                        vol = self.engine.volumes.get(m["Name"])
                    except NotFound:
                        continue
                    if vol.anonymous and not self.volume_users(vol.name):
                        self.engine.volumes.remove(vol.name)
        self._event(c, "destroy")

    def shutdown(self) -> None:
        """Engine stop. With live restore the shims keep the containers; without, they are stopped (10 s)."""
        self._closing = True
        self.health.close()
        for c in self.all():
            with c.lock:
                timer, c.restart_timer = c.restart_timer, None
            if timer is not None:
                timer.cancel()  # the record stays "restarting": the next engine starts it by its policy
        if not self.live_restore:
            running = [c for c in self.all() if c.running]
            with ThreadPoolExecutor(max_workers=max(1, min(16, len(running)))) as pool:
                for c in running:
                    pool.submit(self._stop_quietly, c.id, 10)
        for c in self.all():
            with c.lock:
                shim = c.shim
            if shim is not None:
                shim.close()
        self.launcher.close()
        self.execs.shutdown()
        self.networks.close()
        self._reaper.shutdown(wait=True)
        if not any(c.running for c in self.all()):
            for parent in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"):
                with contextlib.suppress(OSError):
                    parent.rmdir()  # only when no other engine's containers are in it

    # ------------------------------------------------------------ logs, top, stats

    def logs(
        self,
        ref: str,
        *,
        follow: bool = False,
        since_ns: int = 0,
        until_ns: int = 0,
        tail: int = -1,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[tuple[str, bytes, int]]:
        """(stream name, bytes, time) records; with follow, until the container stops or `cancelled()`."""
        c = self.get(ref)
        with c.lock:
            start_exits = c.exits
            follow = follow and c.running
        follower = LogFollower(c.doc["LogPath"])
        try:
            def wanted(r) -> bool:
                return r.time_ns >= since_ns and (not until_ns or r.time_ns < until_ns)

            backlog = [r for r in follower.backlog() if wanted(r)]
            if tail >= 0:
                backlog = backlog[len(backlog) - tail :] if tail else []
            for r in backlog:
                yield r.stream, r.data, r.time_ns
            while follow and not cancelled():
                with c.lock:
                    seq = c.output_seq
                    ended = c.exits != start_exits or c.removed or not c.running
                    if not ended and c.output_seq == seq:
                        c.changed.wait(0.5)
                for r in follower.poll():
                    if wanted(r):
                        yield r.stream, r.data, r.time_ns
                if ended or (until_ns and time.time_ns() >= until_ns):
                    return
        finally:
            follower.close()

    def top(self, ref: str, ps_args: str = "") -> dict:
        c = self.get(ref)
        if not c.running:
            raise FailedPrecondition(f"Container {c.id} is not running")
        return stats.top(c.cgroup, ps_args or "-ef")

    def stats(self, ref: str, previous: dict | None = None) -> dict:
        c = self.get(ref)
        doc = stats.sample(c.cgroup, c.state["Pid"] if c.running else 0, previous)
        doc.update(name=c.doc["Name"], id=c.id)
        return doc

    # ------------------------------------------------------------ filesystem

    def _skip_init(self, rel: str) -> bool:
        return rel in INIT_FILES

    def changes(self, ref: str) -> list[dict]:
        c = self.get(ref)
        upper = self.engine.snapshots.upper_dir(c.id)
        lowers = self.engine.snapshots.lower_dirs(c.id)
        return [ch.to_docker() for ch in upper_changes(upper, lowers, skip=self._skip_init)]

    @contextlib.contextmanager
    def mounted_rootfs(self, c: Container) -> Iterator[Path]:
        """The container's merged filesystem: its own mount while it runs, a temporary one otherwise."""
        with c.lock:
            mounted_here = False
            if not _mount.is_mounted(str(c.rootfs)):
                c.rootfs.mkdir(exist_ok=True)
                _mount.mount_all(self.engine.snapshots.mounts(c.id), str(c.rootfs))
                mounted_here = True
        try:
            yield c.rootfs
        finally:
            if mounted_here:
                with c.lock:
                    if not c.running:
                        _mount.unmount(str(c.rootfs), detach=True)

    def export(self, ref: str, out: BinaryIO) -> None:
        c = self.get(ref)
        volume_dirs = {m["Destination"].strip("/"): False for m in c.doc["Mounts"]}
        with self.mounted_rootfs(c) as rootfs:
            write_layer(rootfs, out, overlay_whiteouts=False, only=volume_dirs)
        self._event(c, "export")

    def commit(
        self,
        ref: str,
        repo: str = "",
        tag: str = "",
        author: str = "",
        comment: str = "",
        changes: list[str] | None = None,
        config_override: dict | None = None,
        pause: bool = False,
    ) -> str:
        c = self.get(ref)
        base = self.engine.images.get(c.doc["Image"])
        cfg = dict(c.doc["Config"])
        for key in ("Hostname", "Domainname"):
            cfg[key] = ""
        cfg["Image"] = base.id
        if config_override:
            cfg.update(config_override)
        cfg = {k: v for k, v in cfg.items() if k not in ("AttachStdin", "AttachStdout", "AttachStderr")}
        created_by = " ".join([c.doc["Path"], *c.doc["Args"]])
        paused_here = False
        if pause:  # as dockerd: the rw layer is read while nothing in the container can write to it
            with c.lock:
                if c.running and not c.state["Paused"]:
                    self._freeze(c)
                    paused_here = True
        try:
            image_id = self.engine.commit_layer(
                base,
                self.engine.snapshots.upper_dir(c.id),
                container_config=cfg,
                repo=repo,
                tag=tag,
                author=author,
                comment=comment,
                changes=changes,
                skip=self._skip_init,
                volume_dirs=[m["Destination"] for m in c.doc["Mounts"]],
                created_by=created_by,
            )
            self._event(c, "commit", comment=comment)
        finally:
            if paused_here:
                with c.lock:
                    if c.running and c.state["Paused"]:
                        try:
                            self._thaw(c)
                        except KapalError as e:
                            log.warning("resuming %s after its commit: %s", c.id[:12], e)
        return image_id

    def size_rw(self, c: Container) -> int:
        from kapal.image.snapshots import dir_usage

        return dir_usage(self.engine.snapshots.upper_dir(c.id))

    # ------------------------------------------------------------ views

    def ports(self, c: Container) -> dict:
        """NetworkSettings.Ports: each exposed port with its host bindings (null when unpublished)."""
        out: dict = {key: None for key in (c.doc["Config"].get("ExposedPorts") or {})}
        sandbox = (c.private.get("network") or {}).get("sandbox")
        att = self.networks.attachment(sandbox) if sandbox else None
        for p in att.port_mappings if att else ():
            out.setdefault(f"{p.container_port}/{p.protocol}", None)
            out[f"{p.container_port}/{p.protocol}"] = [
                *(out[f"{p.container_port}/{p.protocol}"] or []),
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)},
            ]
        return out

    def inspect(self, ref: str, size: bool = False) -> dict:
        c = self.get(ref)
        with c.lock:
            doc = json.loads(json.dumps(c.doc))
        private = doc.pop(PRIVATE, {})
        network = private.get("network") or {}
        doc["NetworkSettings"] = self.networks.settings(network, self.ports(c)) if c.running else \
            self.networks.settings({"mode": network.get("mode", "")}, {})
        doc["ExecIDs"] = self.execs.ids_of(c.id) or None
        if size:
            doc["SizeRw"] = self.size_rw(c)
            doc["SizeRootFs"] = doc["SizeRw"] + self.engine.images.get(c.doc["Image"]).size
        for m in doc["Mounts"]:
            m.pop("TmpfsOptions", None)
            m.pop("CopyUp", None)
        return doc

    def list(self, all_containers: bool = False, filters: dict | None = None, size: bool = False) -> list[dict]:
        out = []
        items = sorted(self.all(), key=lambda c: c.doc["Created"], reverse=True)
        for c in items:
            if not all_containers and not c.state["Running"] and not (filters or {}).get("status") \
                    and not (filters or {}).get("exited"):
                continue
            if filters and not self._matches(c, filters):
                continue
            cmd = " ".join([c.doc["Path"], *c.doc["Args"]])
            ports = []
            for key, bindings in self.ports(c).items():
                port, _, proto = key.partition("/")
                if not bindings:
                    ports.append({"PrivatePort": int(port), "Type": proto})
                for b in bindings or []:
                    ports.append({"IP": b["HostIp"], "PrivatePort": int(port), "PublicPort": int(b["HostPort"]),
                                  "Type": proto})
            network = c.private.get("network") or {}
            settings = self.networks.settings(network, {}) if c.running else {"Networks": {}}
            item = {
                "Id": c.id,
                "Names": [c.doc["Name"]],
                "Image": c.doc["Config"]["Image"],
                "ImageID": c.doc["Image"],
                "Command": cmd,
                "Created": int(_parse_iso(c.doc["Created"])),
                "Ports": ports,
                "Labels": c.doc["Config"].get("Labels") or {},
                "State": c.state["Status"],
                "Status": _status_text(c.state),
                "HostConfig": {"NetworkMode": c.doc["HostConfig"].get("NetworkMode", "default")},
                "NetworkSettings": {"Networks": settings["Networks"]},
                "Mounts": [{k: v for k, v in m.items() if k not in ("TmpfsOptions", "CopyUp")}
                           for m in c.doc["Mounts"]],
            }
            if size:
                item["SizeRw"] = self.size_rw(c)
                item["SizeRootFs"] = item["SizeRw"] + self.engine.images.get(c.doc["Image"]).size
            out.append(item)
        return out

    def _matches(self, c: Container, filters: dict[str, list[str]]) -> bool:
        for key, values in filters.items():
            if not values:
                continue
            if key == "name" and not any(re.search(v.lstrip("/"), c.name) for v in values):
                return False
            elif key == "id" and not any(c.id.startswith(v) for v in values):
                return False
            elif key == "status" and c.state["Status"] not in values:
                return False
            elif key == "exited" and (c.state["Status"] != "exited" or str(c.state["ExitCode"]) not in values):
                return False
            elif key == "label":
                labels = c.doc["Config"].get("Labels") or {}
                for v in values:
                    k, sep, val = v.partition("=")
                    if k not in labels or (sep and labels[k] != val):
                        return False
            elif key == "ancestor":
                ids = set()
                for v in values:
                    with contextlib.suppress(KapalError):
                        ids.add(self.engine.images.resolve_id(v))
                if c.doc["Image"] not in ids and c.doc["Config"]["Image"] not in values:
                    return False
            elif key == "volume":
                names = {m.get("Name") or m.get("Source") for m in c.doc["Mounts"]} | \
                        {m["Destination"] for m in c.doc["Mounts"]}
                if not any(v in names for v in values):
                    return False
            elif key == "network":
                mode = (c.private.get("network") or {}).get("mode", "")
                if mode not in values:
                    return False
            elif key == "health":
                bad = set(values) - {"starting", "healthy", "unhealthy", "none"}
                if bad:
                    raise Invalid(f"Unrecognised filter value for health: {sorted(bad)[0]}")
                if health.list_status(c.state) not in values:
                    return False
            elif key not in ("name", "id", "status", "label", "exited", "ancestor", "volume", "network"):
                raise Unsupported(
                    f"container list filter {key!r} is not supported "
                    "(name, id, status, label, exited, ancestor, volume, network, health are)"
                )
        return True


def _volume_mount(name: str, source: str, dest: str, mode: str, rw: bool, copy_up: bool) -> dict:
    m = {
        "Type": "volume",
        "Name": name,
        "Source": source,
        "Destination": dest,
        "Driver": "local",
        "Mode": mode or "z",
        "RW": rw,
        "Propagation": "",
    }
    if copy_up:
        m["CopyUp"] = True
    return m


def _valid_name(name: str) -> bool:
    return bool(re.match(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$", name))


def _group_id(rootfs: Path, group: str) -> int:
    if group.isdigit():
        return int(group)
    for path in (rootfs / "etc/group",):
        try:
            for line in path.read_text().splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[0] == group:
                    return int(fields[2])
        except OSError:
            pass
    raise Invalid(f"Unable to find group {group}: no matching entries in group file")


def _signal_number(sig: str | int) -> int:
    if isinstance(sig, int) or (isinstance(sig, str) and sig.isdigit()):
        number = int(sig)
        if not 0 < number < 65:
            raise Invalid(f"Invalid signal: {sig}")
        return number
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal, name))
    except AttributeError:
        raise Invalid(f"Invalid signal: {sig}") from None


def _status_text(state: dict) -> str:
    """Docker's STATUS column: Created / Up 3 seconds / Up 3 seconds (Paused) / Exited (0) 2 seconds ago."""
    if state["Status"] in ("running", "paused"):
        text = "Up " + human_duration(time.time() - _parse_iso(state["StartedAt"]))
        return text + " (Paused)" if state.get("Paused") else text + health.status_suffix(state)
    if state["Status"] == "restarting":
        return f"Restarting ({state['ExitCode']}) " + human_duration(time.time() - _parse_iso(state["FinishedAt"])) \
            + " ago"
    if state["Status"] == "exited":
        return f"Exited ({state['ExitCode']}) " + human_duration(time.time() - _parse_iso(state["FinishedAt"])) + " ago"
    return state["Status"].capitalize()


def _resolv_conf(hc: dict, host: bool = False) -> str:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    if host and not (hc.get("Dns") or hc.get("DnsSearch") or hc.get("DnsOptions")):
        return "\n".join(lines) + "\n"
    kept = [
        ln for ln in lines if not (ln.startswith("nameserver") and ln.split()[1:2] and ln.split()[1].startswith("127."))
    ]
    if hc.get("Dns"):
        kept = [ln for ln in kept if not ln.startswith("nameserver")] + [f"nameserver {d}" for d in hc["Dns"]]
    if hc.get("DnsSearch"):
        kept = [ln for ln in kept if not ln.startswith(("search", "domain"))] + ["search " + " ".join(hc["DnsSearch"])]
    if hc.get("DnsOptions"):
        kept = [ln for ln in kept if not ln.startswith("options")] + ["options " + " ".join(hc["DnsOptions"])]
    if not any(ln.startswith("nameserver") for ln in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept) + "\n"
