"""Containers: create → start → exit → remove, with their filesystems, volumes, stdio and logs.

A container's root filesystem is the image's layer snapshots + an `-init`
snapshot (/etc/hosts, /etc/hostname, /etc/resolv.conf and the mountpoints
/proc, /sys, /dev) + its own rw snapshot, mounted with overlay at
`<data-root>/containers/<id>/rootfs` while it runs. Volumes are bind mounts
given to the runtime. `commit` reads only the rw snapshot; `diff` lists it.
The engine is the child subreaper and reaps each container's init, so exit
codes arrive without a per-container shim process.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
import signal
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from kapal.errors import Conflict, FailedPrecondition, Invalid, NotFound, Unsupported
from kapal.image.archive import upper_changes, write_layer
from kapal.image.reference import parse

from . import _mount
from .ocispec import build_spec, command_of, merge_env, resolve_command, resolve_user
from .runtimes import ContainerRuntime
from .service import DEFAULT_CONTAINER_CONFIG, Engine

log = logging.getLogger(__name__)

INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
CGROUP_PARENT = "kapal"
# HostConfig keys the engine acts on; any other key with a non-zero value is refused by name.
_HANDLED_HOST_CONFIG = frozenset(
    {"Binds", "AutoRemove", "NetworkMode", "LogConfig", "RestartPolicy", "ConsoleSize", "PortBindings", "Isolation"}
)
ZERO_TIME = "0001-01-01T00:00:00Z"
_ADJ = "admiring brave clever dazzling eager festive gifted happy jolly keen lucid modest nifty quirky serene".split()
_NAMES = "turing hopper lovelace ritchie thompson torvalds liskov knuth dijkstra hamilton noether curie bohr".split()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    """The persisted record (Docker's inspect fields) plus live handles while it runs."""

    def __init__(self, doc: dict, root: Path) -> None:
        self.doc = doc
        self.dir = root / doc["Id"]
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.exits = 0
        self.removed = False
        self.attachers: list[Attacher] = []
        self.pid = 0

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
    def running(self) -> bool:
        return bool(self.state["Running"])

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    def save(self) -> None:
        tmp = self.dir / "config.v2.json.tmp"
        tmp.write_text(json.dumps(self.doc))
        os.rename(tmp, self.dir / "config.v2.json")


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


class ContainerManager:
    def __init__(self, engine: Engine, runtime: ContainerRuntime) -> None:
        self.engine = engine
        self.runtime = runtime
        self.root = engine.root / "containers"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._containers: dict[str, Container] = {}
        for entry in self.root.iterdir():
            cfg = entry / "config.v2.json"
            if cfg.exists():
                c = Container(json.loads(cfg.read_text()), self.root)
                self._containers[c.id] = c
                if c.running:
                    self._recover(c)
        engine.containers = self  # type: ignore[assignment]
        engine.set_image_users(self.image_users)

    def _recover(self, c: Container) -> None:
        """A container that was running when the engine stopped: its reaper is gone; stop and mark it exited."""
        log.warning("container %s was running when the engine stopped; stopping it", c.id[:12])
        try:
            self.runtime.delete(c.id, force=True)
        except Exception:
            pass
        _mount.unmount(str(c.rootfs), detach=True)
        c.state.update(
            Status="exited", Running=False, Pid=0, ExitCode=255, FinishedAt=now_iso(), Error="engine restarted"
        )
        c.save()

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

    def list_all(self) -> list[dict]:
        with self._lock:
            return [{"Id": c.id, "State": c.state["Status"]} for c in self._containers.values()]

    def image_users(self, image_id: str) -> list[str]:
        with self._lock:
            return [c.id for c in self._containers.values() if c.doc["Image"] == image_id]

    def volume_users(self, name: str) -> list[str]:
        with self._lock:
            return [c.id for c in self._containers.values() if any(m.get("Name") == name for m in c.doc["Mounts"])]

    # ------------------------------------------------------------ create

    def create(self, body: dict, name: str | None = None) -> dict:
        host_config = dict(body.get("HostConfig") or {})
        self._refuse_unsupported(body, host_config)
        image_name = body.get("Image") or ""
        if not image_name:
            raise Invalid("no image specified: create needs an image")
        try:
            image = self.engine.images.resolve(image_name)
        except NotFound:
            ref = parse(image_name).tagged_or_latest() if "@" not in image_name else parse(image_name)
            raise NotFound(f"No such image: {ref.familiar()}") from None
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
        image_cfg = image.config.get("config") or {}
        config = dict(DEFAULT_CONTAINER_CONFIG)
        config.update({k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")})
        config["Image"] = image_name
        config["Env"] = merge_env(image_cfg.get("Env"), body.get("Env"))
        if not body.get("Cmd") and body.get("Entrypoint") is None:
            config["Cmd"] = image_cfg.get("Cmd")
        if body.get("Entrypoint") is None:
            config["Entrypoint"] = image_cfg.get("Entrypoint")
        if not config.get("WorkingDir"):
            config["WorkingDir"] = image_cfg.get("WorkingDir") or ""
        if not config.get("User"):
            config["User"] = image_cfg.get("User") or ""
        labels = dict(image_cfg.get("Labels") or {})
        labels.update(body.get("Labels") or {})
        config["Labels"] = labels
        config["Hostname"] = body.get("Hostname") or cid[:12]
        volumes = dict(image_cfg.get("Volumes") or {})
        volumes.update(body.get("Volumes") or {})
        config["Volumes"] = volumes or None
        args = command_of(image_cfg, body)
        try:
            mounts = self._volume_mounts(host_config.get("Binds") or [], volumes)
            top = image.top_chain_id
            init_key, rw_key = f"{cid}-init", cid
            self.engine.snapshots.prepare(f"{init_key}-prep", top)
            self._write_init_layer(f"{init_key}-prep", config["Hostname"], top)
            self.engine.snapshots.commit(init_key, f"{init_key}-prep")
            self.engine.snapshots.prepare(rw_key, init_key)
        except BaseException:
            self._drop_snapshots(cid)
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        host_config.setdefault("NetworkMode", "none")
        host_config["LogConfig"] = {"Type": "json-file", "Config": {}}
        host_config.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        host_config.setdefault("AutoRemove", False)
        host_config.setdefault("Binds", None)
        doc = {
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
            "ResolvConfPath": "",
            "HostnamePath": "",
            "HostsPath": "",
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
            "NetworkSettings": {
                "Bridge": "",
                "SandboxID": "",
                "Ports": {},
                "SandboxKey": "",
                "Networks": {"none": {"NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": ""}},
            },
        }
        c = Container(doc, self.root)
        c.save()
        with self._lock:
            self._containers[cid] = c
        return {"Id": cid, "Warnings": []}

    def _refuse_unsupported(self, body: dict, hc: dict) -> None:
        """Options this engine does not implement yet fail by name instead of being ignored."""
        if body.get("Tty"):
            raise Unsupported("a terminal (-t/Tty) is not supported by this engine yet")
        if body.get("OpenStdin"):
            raise Unsupported("an open stdin (-i/OpenStdin) is not supported by this engine yet")
        if body.get("Healthcheck") and (body["Healthcheck"].get("Test") or []) not in ([], ["NONE"]):
            raise Unsupported("health checks are not supported by this engine yet")
        network = hc.get("NetworkMode") or "default"
        if network not in ("default", "none", "bridge"):
            raise Unsupported(f"network mode {network!r} is not supported yet (containers have loopback only)")
        if hc.get("PortBindings"):
            raise Unsupported("published ports (-p) are not supported yet: containers have no network")
        if (hc.get("LogConfig") or {}).get("Type") not in (None, "", "json-file"):
            raise Unsupported(f"log driver {hc['LogConfig']['Type']!r} is not supported (json-file is)")
        if (hc.get("RestartPolicy") or {}).get("Name") not in (None, "", "no"):
            raise Unsupported(f"restart policy {hc['RestartPolicy']['Name']!r} is not supported yet")
        for key, value in hc.items():
            if key in _HANDLED_HOST_CONFIG or value in (None, 0, -1, "", [], {}, False):
                continue
            raise Unsupported(f"HostConfig.{key} is not supported by this engine yet")

    def _random_name(self) -> str:
        taken = {c.name for c in self._containers.values()}
        while True:
            name = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"
            if name not in taken:
                return name
            name += str(random.randint(0, 99))
            if name not in taken:
                return name

    def _volume_mounts(self, binds: list[str], volumes: dict) -> list[dict]:
        mounts: list[dict] = []
        dests: set[str] = set()
        for spec in binds:
            source, dest, mode = parse_bind(spec)
            if not dest.startswith("/"):
                raise Invalid(f"invalid mount config: mount path must be absolute: {dest}")
            if mode and not set(mode.split(",")) <= {"ro", "rw", "z", "Z", "rprivate", "private"}:
                raise Invalid(f"invalid mode: {mode}")
            rw = "ro" not in mode.split(",")
            if source.startswith("/"):
                if not os.path.exists(source):
                    os.makedirs(source, exist_ok=True)  # Docker creates missing bind sources for -v
                mounts.append(
                    {
                        "Type": "bind",
                        "Source": source,
                        "Destination": dest,
                        "Mode": mode,
                        "RW": rw,
                        "Propagation": "rprivate",
                    }
                )
            else:
                vol = self.engine.volumes.create(source or None)
                mounts.append(_volume_mount(vol.name, str(vol.mountpoint), dest, mode, rw))
            dests.add(dest)
        for dest in volumes:
            if dest in dests:
                continue
            vol = self.engine.volumes.create(None)
            mounts.append(_volume_mount(vol.name, str(vol.mountpoint), dest, "", True))
        return mounts

    def _write_init_layer(self, key: str, hostname: str, parent: str | None) -> None:
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
        (upper / "etc/hosts").write_text(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
            f"ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
        )
        (upper / "etc/resolv.conf").write_text(_resolv_conf())
        for f in INIT_FILES:
            os.chmod(upper / f, 0o644)
        if lower_stat("etc/mtab") is None:
            os.symlink("/proc/mounts", upper / "etc/mtab")

    def _drop_snapshots(self, cid: str) -> None:
        for key in (cid, f"{cid}-init", f"{cid}-init-prep"):
            if self.engine.snapshots.exists(key):
                self.engine.snapshots.remove(key)

    # ------------------------------------------------------------ start / exit

    def start(self, ref: str) -> bool:
        """Start; returns False when it was already running (the API answers 304)."""
        c = self.get(ref)
        with c.lock:
            if c.running:
                return False
            if c.removed:
                raise NotFound(f"No such container: {ref}")
            c.state["Error"] = ""
            try:
                self._start(c)
            except BaseException as e:
                c.state.update(Status="exited" if c.state["StartedAt"] != ZERO_TIME else "created", Error=str(e))
                c.state["ExitCode"] = 127 if "not found" in str(e) or "no such file" in str(e) else 126
                _mount.unmount(str(c.rootfs), detach=True)
                c.save()
                self._close_attachers(c)
                raise
        return True

    def _start(self, c: Container) -> None:
        c.rootfs.mkdir(exist_ok=True)
        if not _mount.is_mounted(str(c.rootfs)):
            _mount.mount_all(self.engine.snapshots.mounts(c.id), str(c.rootfs))
        config = c.doc["Config"]
        env = config["Env"]
        args = [c.doc["Path"], *c.doc["Args"]]
        args[0] = resolve_command(c.rootfs, args[0], env)
        user = resolve_user(c.rootfs, config.get("User") or "")
        oci_mounts = []
        for m in c.doc["Mounts"]:
            target = c.rootfs / m["Destination"].lstrip("/")
            if not target.exists() and not target.is_symlink():
                target.mkdir(parents=True, exist_ok=True)
            oci_mounts.append(
                {
                    "destination": m["Destination"],
                    "type": "bind",
                    "source": m["Source"],
                    "options": ["rbind", "rprivate"] + ([] if m["RW"] else ["ro"]),
                }
            )
        spec = build_spec(
            rootfs=c.rootfs,
            args=args,
            env=env,
            cwd=config.get("WorkingDir") or "/",
            user=user,
            hostname=config["Hostname"],
            tty=False,
            mounts=oci_mounts,
            cgroups_path=f"/{CGROUP_PARENT}/{c.id}",
        )
        (c.dir / "config.json").write_text(json.dumps(spec))
        stdin_r = os.open(os.devnull, os.O_RDONLY)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = self.runtime.create(c.id, c.dir, (stdin_r, out_w, err_w))
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
        c.pid = pid
        pumps = [
            threading.Thread(target=self._pump, args=(c, out_r, 1), daemon=True, name=f"out-{c.id[:12]}"),
            threading.Thread(target=self._pump, args=(c, err_r, 2), daemon=True, name=f"err-{c.id[:12]}"),
        ]
        for t in pumps:
            t.start()
        try:
            self.runtime.start(c.id)
        except BaseException:
            self.runtime.delete(c.id, force=True)
            raise
        c.state.update(Status="running", Running=True, Pid=pid, ExitCode=0, StartedAt=now_iso(), FinishedAt=ZERO_TIME)
        c.save()
        threading.Thread(target=self._reap, args=(c, pid, pumps), daemon=True, name=f"reap-{c.id[:12]}").start()

    def _pump(self, c: Container, fd: int, stream: int) -> None:
        name = "stdout" if stream == 1 else "stderr"
        with open(c.doc["LogPath"], "ab") as logf:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                stamp = now_iso()
                for line in data.splitlines(keepends=True):
                    logf.write(
                        json.dumps({"log": line.decode("utf-8", "replace"), "stream": name, "time": stamp}).encode()
                        + b"\n"
                    )
                logf.flush()
                with c.lock:
                    attachers = list(c.attachers)
                for a in attachers:
                    try:
                        a.on_data(stream, data)
                    except Exception:
                        pass
        os.close(fd)

    def _reap(self, c: Container, pid: int, pumps: list[threading.Thread]) -> None:
        try:
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
        except ChildProcessError:
            code = 255
        for t in pumps:
            t.join(timeout=30)
        self.runtime.delete(c.id, force=True)
        _mount.unmount(str(c.rootfs), detach=True)
        with c.lock:
            c.state.update(Status="exited", Running=False, Pid=0, ExitCode=code, FinishedAt=now_iso())
            c.pid = 0
            c.exits += 1
            c.save()
            c.changed.notify_all()
        self._close_attachers(c)
        if c.doc["HostConfig"].get("AutoRemove"):
            try:
                self.remove(c.id, force=True, volumes=True)
            except Exception:
                log.exception("auto-remove of %s failed", c.id[:12])

    def _close_attachers(self, c: Container) -> None:
        with c.lock:
            attachers, c.attachers = c.attachers, []
        for a in attachers:
            try:
                a.on_close()
            except Exception:
                log.exception("closing an attach stream of %s", c.id[:12])

    # ------------------------------------------------------------ control

    def attach(self, ref: str, attacher: Attacher) -> Container:
        c = self.get(ref)
        with c.lock:
            c.attachers.append(attacher)
        return c

    def detach(self, c: Container, attacher: Attacher) -> None:
        with c.lock:
            if attacher in c.attachers:
                c.attachers.remove(attacher)

    def wait(self, ref: str, condition: str = "not-running", timeout: float | None = None) -> dict:
        """Block until the condition holds: next-exit | not-running | removed. Returns {"StatusCode", "Error"}."""
        if condition not in ("", "next-exit", "not-running", "removed"):
            raise Invalid(f"invalid condition: {condition!r}")
        c = self.get(ref)
        with c.lock:
            start_exits = c.exits
            if condition == "removed":
                ok = c.changed.wait_for(lambda: c.removed, timeout)
            elif condition == "next-exit":
                ok = c.changed.wait_for(lambda: c.exits > start_exits or c.removed, timeout)
            else:
                ok = c.changed.wait_for(lambda: not c.running or c.removed, timeout)
            if not ok:
                raise FailedPrecondition(f"timed out waiting for container {c.id[:12]}")
            error = c.state.get("Error") or None
            return {"StatusCode": c.state["ExitCode"], "Error": {"Message": error} if error else None}

    def kill(self, ref: str, sig: str | int = "KILL") -> None:
        c = self.get(ref)
        signum = _signal_number(sig)
        with c.lock:
            if not c.running:
                raise FailedPrecondition(f"Cannot kill container: {ref}: container {c.id} is not running")
            self.runtime.kill(c.id, signum)

    def stop(self, ref: str, timeout: float | None = None) -> bool:
        """Returns False when it was not running (the API answers 304)."""
        c = self.get(ref)
        if not c.running:
            return False
        stop_signal = _signal_number(c.doc["Config"].get("StopSignal") or "TERM")
        grace = 10.0 if timeout is None else float(timeout)
        try:
            self.runtime.kill(c.id, stop_signal)
        except FailedPrecondition:
            pass
        with c.lock:
            if c.changed.wait_for(lambda: not c.running, grace if grace >= 0 else None):
                return True
        try:
            self.runtime.kill(c.id, signal.SIGKILL)
        except FailedPrecondition:
            pass
        with c.lock:
            c.changed.wait_for(lambda: not c.running, 30)
        return True

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.running:
            if not force:
                raise Conflict(
                    f"You cannot remove a running container {c.id}. Stop the container before attempting removal "
                    "or force remove"
                )
            try:
                self.runtime.kill(c.id, signal.SIGKILL)
            except FailedPrecondition:
                pass
            with c.lock:
                c.changed.wait_for(lambda: not c.running, 30)
        with c.lock:
            if c.removed:
                return
            c.removed = True
            _mount.unmount(str(c.rootfs), detach=True)
            self._drop_snapshots(c.id)
            with self._lock:
                self._containers.pop(c.id, None)
            shutil.rmtree(c.dir, ignore_errors=True)
            c.changed.notify_all()
        self._close_attachers(c)
        if volumes:
            for m in c.doc["Mounts"]:
                if m["Type"] == "volume" and m.get("Name"):
                    try:
                        vol = self.engine.volumes.get(m["Name"])
                    except NotFound:
                        continue
                    if vol.anonymous and not self.volume_users(vol.name):
                        self.engine.volumes.remove(vol.name)

    def shutdown(self) -> None:
        """Engine stop: containers keep no reaper after us, so stop them (as dockerd does without live-restore)."""
        for c in list(self._containers.values()):
            if c.running:
                try:
                    self.stop(c.id, timeout=5)
                except Exception:
                    log.exception("stopping %s", c.id[:12])
        for parent in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"):
            try:
                parent.rmdir()  # only when no other engine's containers are in it
            except OSError:
                pass

    # ------------------------------------------------------------ filesystem

    def _skip_init(self, rel: str) -> bool:
        return rel in INIT_FILES

    def changes(self, ref: str) -> list[dict]:
        c = self.get(ref)
        upper = self.engine.snapshots.upper_dir(c.id)
        lowers = self.engine.snapshots.lower_dirs(c.id)
        return [ch.to_docker() for ch in upper_changes(upper, lowers, skip=self._skip_init)]

    def export(self, ref: str, out: BinaryIO) -> None:
        c = self.get(ref)
        volume_dirs = {m["Destination"].strip("/"): False for m in c.doc["Mounts"]}
        with c.lock:
            mounted_here = False
            if not _mount.is_mounted(str(c.rootfs)):
                c.rootfs.mkdir(exist_ok=True)
                _mount.mount_all(self.engine.snapshots.mounts(c.id), str(c.rootfs))
                mounted_here = True
        try:
            write_layer(c.rootfs, out, overlay_whiteouts=False, only=volume_dirs)
        finally:
            if mounted_here and not c.running:
                _mount.unmount(str(c.rootfs), detach=True)

    def commit(
        self,
        ref: str,
        repo: str = "",
        tag: str = "",
        author: str = "",
        comment: str = "",
        changes: list[str] | None = None,
        config_override: dict | None = None,
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
        return self.engine.commit_layer(
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

    # ------------------------------------------------------------ views

    def inspect(self, ref: str) -> dict:
        c = self.get(ref)
        with c.lock:
            return json.loads(json.dumps(c.doc))

    def list(self, all_containers: bool = False, filters: dict | None = None) -> list[dict]:
        out = []
        with self._lock:
            items = sorted(self._containers.values(), key=lambda c: c.doc["Created"], reverse=True)
        for c in items:
            if not all_containers and not c.running:
                continue
            if filters and not _matches(c, filters):
                continue
            cmd = " ".join([c.doc["Path"], *c.doc["Args"]])
            out.append(
                {
                    "Id": c.id,
                    "Names": [c.doc["Name"]],
                    "Image": c.doc["Config"]["Image"],
                    "ImageID": c.doc["Image"],
                    "Command": cmd,
                    "Created": int(_parse_iso(c.doc["Created"])),
                    "Ports": [],
                    "Labels": c.doc["Config"].get("Labels") or {},
                    "State": c.state["Status"],
                    "Status": _status_text(c.state),
                    "HostConfig": {"NetworkMode": c.doc["HostConfig"].get("NetworkMode", "none")},
                    "NetworkSettings": {"Networks": c.doc["NetworkSettings"]["Networks"]},
                    "Mounts": c.doc["Mounts"],
                }
            )
        return out


def _volume_mount(name: str, source: str, dest: str, mode: str, rw: bool) -> dict:
    return {
        "Type": "volume",
        "Name": name,
        "Source": source,
        "Destination": dest,
        "Driver": "local",
        "Mode": mode or "z",
        "RW": rw,
        "Propagation": "",
    }


def _valid_name(name: str) -> bool:
    import re

    return bool(re.match(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$", name))


def _signal_number(sig: str | int) -> int:
    if isinstance(sig, int) or (isinstance(sig, str) and sig.isdigit()):
        return int(sig)
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal, name))
    except AttributeError:
        raise Invalid(f"invalid signal: {sig}") from None


def _status_text(state: dict) -> str:
    """Docker's STATUS column: Created / Up 3 seconds / Exited (0) 2 seconds ago."""
    if state["Status"] == "running":
        return "Up " + _human(time.time() - _parse_iso(state["StartedAt"]))
    if state["Status"] == "exited":
        return f"Exited ({state['ExitCode']}) " + _human(time.time() - _parse_iso(state["FinishedAt"])) + " ago"
    return state["Status"].capitalize()


def _human(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 14:
        return f"{h // 24} days"
    if h < 24 * 60:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 730:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def _matches(c: Container, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v.lstrip("/") in c.name for v in values):
            return False
        if key == "id" and not any(c.id.startswith(v) for v in values):
            return False
        if key == "status" and c.state["Status"] not in values:
            return False
        if key == "label":
            labels = c.doc["Config"].get("Labels") or {}
            for v in values:
                k, sep, val = v.partition("=")
                if k not in labels or (sep and labels[k] != val):
                    return False
        if key not in ("name", "id", "status", "label"):
            raise Unsupported(f"container list filter {key!r} is not supported (name, id, status, label are)")
    return True


def _resolv_conf() -> str:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    kept = [
        ln for ln in lines if not (ln.startswith("nameserver") and ln.split()[1:2] and ln.split()[1].startswith("127."))
    ]
    if not any(ln.startswith("nameserver") for ln in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(kept) + "\n"
