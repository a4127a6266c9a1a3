"""Our own CNI caller (CNI spec 1.0): run plugin binaries with the CNI environment and JSON on stdin.

Glossary (from the spec): a *network configuration list* ("conflist") names a
network and chains plugins; ADD runs them in order, each one receiving the
previous one's result as `prevResult`; DEL runs them in reverse with the
cached ADD result; CHECK runs them in order with that result. A plugin that
declares a capability (e.g. `"capabilities": {"portMappings": true}`) gets
the runtime's value under `runtimeConfig`.

Beyond libcni: a failed ADD is rolled back (DEL of the whole chain), so no
veth, lease or rule outlives it; DEL tries every plugin even when one fails,
and works without a namespace (`netns=""`) for containers whose namespace is
already gone. Results are cached under the caller's directory, never in
/var/lib/cni.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kapal.errors import FailedPrecondition, Invalid, KapalError, NotFound, Temporary, Unsupported

log = logging.getLogger(__name__)

CNI_VERSION = "1.0.0"
DEFAULT_PLUGIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PORTMAP_LOCK = "/run/kapal/portmap.lock"


@contextlib.contextmanager
def portmap_lock(path: str = PORTMAP_LOCK) -> Iterator[None]:
    """Serialise host-wide work on portmap's shared chains across kapal processes.

    portmap creates CNI-HOSTPORT-SETMARK/-MASQ/-DNAT in several iptables calls; an engine or kubelet
    deleting those chains as unused in between would break the other's ADD.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

# CNI error codes (spec, "Error" section) -> kapal error classes
_ERRORS: dict[int, type[KapalError]] = {
    1: Unsupported,  # incompatible CNI version
    2: Unsupported,  # unsupported field in network configuration
    3: NotFound,  # container unknown or does not exist
    4: Invalid,  # invalid necessary environment variables
    5: KapalError,  # I/O failure
    6: Invalid,  # failed to decode content
    7: Invalid,  # invalid network config
    11: Temporary,  # try again later
}


@dataclass(frozen=True)
class RuntimeConf:
    """What the runtime tells each plugin about the container."""

    container_id: str
    netns: str  # namespace path; "" when it is gone (DEL only)
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()  # CNI_ARGS, e.g. (("K8S_POD_NAME", "web"),)
    capabilities: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"portMappings": [...]}


def cni_error(plugin: str, command: str, network: str, container_id: str, payload: Mapping[str, Any]) -> KapalError:
    code = payload.get("code")
    message = payload.get("msg") or "failed without a message"
    details = payload.get("details")
    text = f"CNI plugin {plugin} failed to {command} container {container_id[:12]} on network {network}: {message}"
    if details and details != message:
        text += f" ({details})"
    cls = _ERRORS.get(code, KapalError) if isinstance(code, int) else KapalError
    return cls(text)


def validate_conflist(conflist: Mapping[str, Any]) -> None:
    if not isinstance(conflist.get("name"), str) or not conflist["name"]:
        raise Invalid("a CNI network configuration list needs a name")
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise Invalid(f"CNI network {conflist['name']}: 'plugins' must be a non-empty list")
    for p in plugins:
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise Invalid(f"CNI network {conflist['name']}: every plugin needs a 'type'")


class CniRunner:
    """Runs CNI plugins from `plugin_dirs` and keeps each attachment's ADD result in `cache_dir`."""

    def __init__(self, cache_dir: str | os.PathLike[str], plugin_dirs: tuple[str, ...] = DEFAULT_PLUGIN_DIRS,
                 timeout: float = 60.0) -> None:
        self.cache_dir = Path(cache_dir)
        self.plugin_dirs = tuple(plugin_dirs)
        self.timeout = timeout
        self._found: dict[str, str] = {}

    # ---- one plugin ---------------------------------------------------------------------------------

    def find(self, plugin_type: str) -> str:
        if plugin_type in self._found:
            return self._found[plugin_type]
        if "/" in plugin_type:
            raise Invalid(f"CNI plugin type {plugin_type!r} must be a plain name")
        for d in self.plugin_dirs:
            candidate = os.path.join(d, plugin_type)
            if os.access(candidate, os.X_OK):
                self._found[plugin_type] = candidate
                return candidate
        raise FailedPrecondition(
            f"CNI plugin {plugin_type!r} not found in {':'.join(self.plugin_dirs)}; "
            "install containernetworking-plugins (make deps does)"
        )

    def exec_plugin(self, plugin_type: str, command: str, config: Mapping[str, Any], rt: RuntimeConf,
                    network: str = "") -> dict[str, Any] | None:
        """Run one plugin; its parsed stdout (None when empty) or a kapal error naming the plugin."""
        binary = self.find(plugin_type)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=rt.container_id,
            CNI_NETNS=rt.netns,
            CNI_IFNAME=rt.ifname,
            CNI_PATH=":".join(self.plugin_dirs),
            PATH=_SBIN_PATH + ((":" + env["PATH"]) if env.get("PATH") else ""),
        )
        if rt.args:
            env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in rt.args)
        lock = portmap_lock() if plugin_type == "portmap" else contextlib.nullcontext()
        try:
            with lock:
                proc = subprocess.run([binary], input=json.dumps(config).encode(), capture_output=True, env=env,
                                      timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise Temporary(f"CNI plugin {plugin_type} did not finish {command} within {self.timeout:.0f}s") from e
        out = proc.stdout.strip()
        if proc.returncode != 0:
            try:
                payload = json.loads(out) if out else {}
            except json.JSONDecodeError:
                payload = {}
            if not isinstance(payload, dict) or not payload.get("msg"):
                payload = {"msg": (proc.stderr.decode(errors="replace").strip() or out.decode(errors="replace")
                                   or f"exit status {proc.returncode}")}
            raise cni_error(plugin_type, command, network or str(config.get("name", "")), rt.container_id, payload)
        if not out:
            return None
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise KapalError(f"CNI plugin {plugin_type} printed a result that is not JSON: {out[:200]!r}") from e

    def version(self, plugin_type: str) -> dict[str, Any]:
        result = self.exec_plugin(plugin_type, "VERSION", {"cniVersion": CNI_VERSION}, RuntimeConf("", ""))
        return result or {}

    # ---- a chain ------------------------------------------------------------------------------------

    @staticmethod
    def _plugin_config(conflist: Mapping[str, Any], plugin: Mapping[str, Any], rt: RuntimeConf,
                       prev: Mapping[str, Any] | None) -> dict[str, Any]:
        conf = dict(plugin)
        conf["name"] = conflist["name"]
        conf["cniVersion"] = conflist.get("cniVersion", CNI_VERSION)
        wanted = {k for k, on in (plugin.get("capabilities") or {}).items() if on}
        runtime = {k: v for k, v in rt.capabilities.items() if k in wanted}
        if runtime:
            conf["runtimeConfig"] = {**conf.get("runtimeConfig", {}), **runtime}
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    def add(self, conflist: Mapping[str, Any], rt: RuntimeConf) -> dict[str, Any]:
        """ADD through the chain; the final result (cached). On failure the chain is deleted again."""
        validate_conflist(conflist)
        name = conflist["name"]
        result: dict[str, Any] | None = None
        try:
            for plugin in conflist["plugins"]:
                conf = self._plugin_config(conflist, plugin, rt, result)
                out = self.exec_plugin(plugin["type"], "ADD", conf, rt, name)
                result = out if out is not None else result
        except BaseException:
            try:
                self._delete_chain(conflist, rt, result)
            except KapalError as cleanup_error:
                log.warning("rolling back CNI ADD of %s on %s failed: %s", rt.container_id, name, cleanup_error)
            raise
        if result is None:
            raise KapalError(f"CNI network {name}: no plugin returned a result for ADD")
        self._write_cache(conflist, rt, result)
        return result

    def delete(self, conflist: Mapping[str, Any] | None, rt: RuntimeConf, network: str = "") -> None:
        """DEL through the chain in reverse; idempotent. Without `conflist`, the cached one is used
        (and nothing is done when there is none)."""
        cached = self.read_cache(network or (conflist or {}).get("name", ""), rt.container_id, rt.ifname)
        if conflist is None:
            if cached is None:
                return
            conflist = cached["config"]
        validate_conflist(conflist)
        if cached is not None and not rt.capabilities and cached.get("capabilities"):
            rt = RuntimeConf(rt.container_id, rt.netns, rt.ifname, rt.args, cached["capabilities"])
        self._delete_chain(conflist, rt, cached["result"] if cached else None)
        self._cache_path(conflist["name"], rt.container_id, rt.ifname).unlink(missing_ok=True)

    def _delete_chain(self, conflist: Mapping[str, Any], rt: RuntimeConf, prev: Mapping[str, Any] | None) -> None:
        errors: list[KapalError] = []
        for plugin in reversed(conflist["plugins"]):
            try:
                conf = self._plugin_config(conflist, plugin, rt, prev)
                self.exec_plugin(plugin["type"], "DEL", conf, rt, conflist["name"])
            except KapalError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def check(self, conflist: Mapping[str, Any] | None, rt: RuntimeConf, network: str = "") -> None:
        """CHECK through the chain with the cached result; raises when the attachment is not as ADD left it."""
        name = network or (conflist or {}).get("name", "")
        cached = self.read_cache(name, rt.container_id, rt.ifname)
        if cached is None:
            raise NotFound(f"container {rt.container_id[:12]} is not attached to network {name} ({rt.ifname})")
        conflist = conflist or cached["config"]
        validate_conflist(conflist)
        if not rt.capabilities and cached.get("capabilities"):
            rt = RuntimeConf(rt.container_id, rt.netns, rt.ifname, rt.args, cached["capabilities"])
        for plugin in conflist["plugins"]:
            conf = self._plugin_config(conflist, plugin, rt, cached["result"])
            self.exec_plugin(plugin["type"], "CHECK", conf, rt, conflist["name"])

    # ---- the result cache ---------------------------------------------------------------------------

    def _cache_path(self, network: str, container_id: str, ifname: str) -> Path:
        return self.cache_dir / f"{network}-{container_id}-{ifname}.json"

    def _write_cache(self, conflist: Mapping[str, Any], rt: RuntimeConf, result: Mapping[str, Any]) -> None:
        record = {
            "kind": "kapal-cni-cache-v1",
            "containerId": rt.container_id,
            "ifName": rt.ifname,
            "netns": rt.netns,
            "networkName": conflist["name"],
            "config": conflist,
            "capabilities": dict(rt.capabilities),
            "result": result,
        }
        path = self._cache_path(conflist["name"], rt.container_id, rt.ifname)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def read_cache(self, network: str, container_id: str, ifname: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._cache_path(network, container_id, ifname).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def cached(self, network: str) -> list[dict[str, Any]]:
        """Every cached attachment of `network` (what survived a restart of the caller)."""
        out = []
        for path in sorted(self.cache_dir.glob(f"{network}-*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if record.get("networkName") == network:
                out.append(record)
        return out
