"""`kapal up` and `kapal down`: a single-node cluster in one supervised process, and its removal.

    kapal up [--data-dir DIR]     API server (SQLite in DIR/db), controller manager, scheduler and kubelet as
                                  asyncio tasks of this process; the engine as a child process (live restore on,
                                  so pods outlive it and the next `kapal up` adopts them)
    kapal down [--data-dir DIR]   stop it, remove every container, sandbox, veth, rule, mount and cgroup it made;
                                  the cluster's state (DIR/db, DIR/pki) stays unless --purge

Layout under DIR (default /var/lib/kapal): db/, pki/, engine/, kubelet/, manifests/ (static pods), logs/,
lxcfs/ (the engine's lxcfs, so pods see their limits in /proc, unless a host-wide one answers),
admin.kubeconfig, and the engine socket DIR/docker.sock when DIR is given (else /run/kapal/docker.sock).
Ranges: pods 10.244.0.0/16 (a /24 per node), services 10.96.0.0/12, the engine's bridge 10.89.0.0/16.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kapal.kube.api.config import ApiServerConfig
    from kapal.kube.kubelet.config import KubeletConfig

DEFAULT_DIR = Path("/var/lib/kapal")
DEFAULT_SOCKET = Path("/run/kapal/docker.sock")
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
KEY_ALGORITHM = "ECDSA-P256"  # as k3s: ~0.1 ms a key (RSA-2048: ~40 ms, and ten of them on a fresh start)


def _parser(verb: str) -> argparse.ArgumentParser:
    if verb == "down":
        p = argparse.ArgumentParser(prog="kapal down", description="Stop the single-node cluster and clean up.")
        p.add_argument("--data-dir", type=Path, help=f"the cluster's directory (default {DEFAULT_DIR})")
        p.add_argument("--purge", action="store_true", help="also delete DIR (state, certificates) and the "
                                                            "kubectl context")
        p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for `kapal up` to stop")
        return p
    p = argparse.ArgumentParser(prog="kapal up", description="Start a single-node cluster plus the engine.")
    p.add_argument("--data-dir", type=Path, help=f"where everything lives (default {DEFAULT_DIR})")
    p.add_argument("--secure-port", type=int, default=6443, help="API server port (default 6443; 0 picks one)")
    p.add_argument("--kubelet-port", type=int, default=10250, help="kubelet port (default 10250; 0 picks one)")
    p.add_argument("--node-name", help="node name (default: this host's name)")
    p.add_argument("--pod-network-cidr", default=POD_CIDR, help=f"pod range, a /24 per node (default {POD_CIDR})")
    p.add_argument("--service-cidr", default=SERVICE_CIDR, help=f"Service ClusterIP range (default {SERVICE_CIDR})")
    p.add_argument("--dns-port", type=int, default=53, help="port of the cluster DNS server on the node's IP "
                                                             "(default 53; 0 picks one)")
    p.add_argument("--proxy-chain-prefix", default="KAPAL-", help="prefix of the Service proxy's iptables chains")
    p.add_argument("--pod-bridge-name", default="kapal-cni0", help="Linux bridge for pods (default kapal-cni0)")
    p.add_argument("--cgroup-root", default="/", help="cgroup under which kubepods lives (default /)")
    p.add_argument("--engine-arg", action="append", default=[], metavar="ARG",
                   help="extra flag for `kapal engine` (repeatable), e.g. --engine-arg=--bip=10.89.0.1/16")
    p.add_argument("--no-kubeconfig", action="store_true", help="do not merge the context into ~/.kube/config")
    p.add_argument("-v", "--v", type=int, default=0, dest="verbosity", help="log verbosity (0-5)")
    return p


class Layout:
    def __init__(self, data_dir: Path | None) -> None:
        self.explicit = data_dir is not None
        self.dir = (data_dir or DEFAULT_DIR).absolute()
        self.socket = self.dir / "docker.sock" if self.explicit else DEFAULT_SOCKET

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def context(self) -> str:
        if not self.explicit or self.dir == DEFAULT_DIR:
            return "kapal"
        return "kapal-" + hashlib.sha1(str(self.dir).encode()).hexdigest()[:6]  # a name, not a secret

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stop_pid(pid: int, timeout: float, what: str) -> bool:
    """SIGTERM, wait, then SIGKILL; True when it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    print(f"kapal: {what} (pid {pid}) did not stop within {timeout:.0f}s; killing it", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    return not _alive(pid)


def _kapal_command() -> list[str]:
    return [sys.executable, "-m", "kapal.cli.main"]


def _merge_kubeconfig(layout: Layout, admin: Path) -> Path:
    import yaml

    from kapal.kube import pki

    data = yaml.safe_load(admin.read_text())
    name = layout.context
    cluster = data["clusters"][0]["cluster"]
    user = data["users"][0]["user"]
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "preferences": {},
                           "clusters": [{"name": name, "cluster": cluster}],
                           "users": [{"name": f"{name}-admin", "user": user}],
                           "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
                           "current-context": name})
    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    target = home / ".kube" / "config"
    pki.merge_kubeconfig(target, text)
    return target


def _remove_context(layout: Layout) -> None:
    import yaml

    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    target = home / ".kube" / "config"
    try:
        data = yaml.safe_load(target.read_text()) or {}
    except FileNotFoundError:
        return
    name = layout.context
    for section, key in (("clusters", name), ("contexts", name), ("users", f"{name}-admin")):
        data[section] = [e for e in data.get(section) or [] if e.get("name") != key]
    if data.get("current-context") == name:
        data["current-context"] = ""
    from kapal.kube import pki

    pki.write_kubeconfig(target, yaml.safe_dump(data))


# ---- up ----------------------------------------------------------------------------------------------------------


class EngineChild:
    """The engine as a supervised child process; it dies with us (PDEATHSIG), its containers do not."""

    def __init__(self, layout: Layout, extra: list[str]) -> None:
        self.layout = layout
        self.extra = extra
        self.proc = None
        self.restarts = 0

    async def start(self) -> None:
        import asyncio

        self.layout.path("logs").mkdir(parents=True, exist_ok=True)
        self.layout.socket.parent.mkdir(parents=True, exist_ok=True)
        stale = _read_pid(self.layout.path("engine.pid"))
        if stale is not None and "engine" in _cmdline(stale):
            _stop_pid(stale, 15, "a leftover engine")
        log = open(self.layout.path("logs", "engine.log"), "ab")

        def die_with_parent() -> None:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

        self.proc = await asyncio.create_subprocess_exec(
            *_kapal_command(), "engine", "--data-root", str(self.layout.path("engine")), "-H",
            self.layout.docker_host, *self.extra, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        log.close()
        self.layout.path("engine.pid").write_text(str(self.proc.pid))

    async def wait_ready(self, timeout: float = 30.0) -> None:
        import asyncio

        from kapal.kube.kubelet.engineapi import EngineApi

        api = EngineApi(self.layout.docker_host)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"the engine exited with status {self.proc.returncode}; see "
                                       f"{self.layout.path('logs', 'engine.log')}")
                if self.layout.socket.exists():
                    with contextlib.suppress(Exception):
                        await api.version()
                        return
                await asyncio.sleep(0.05)
        finally:
            await api.close()
        raise RuntimeError(f"the engine did not answer on {self.layout.socket} within {timeout:.0f}s")

    async def supervise(self, stop) -> None:  # type: ignore[no-untyped-def]
        import asyncio
        import logging

        log = logging.getLogger("kapal.up")
        while not stop.is_set():
            assert self.proc is not None
            waiter = asyncio.create_task(self.proc.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                waiter.cancel()
                return
            self.restarts += 1
            log.error("the engine exited (status %s); restarting it (its containers keep running)",
                      self.proc.returncode)
            await asyncio.sleep(min(5.0, 0.5 * self.restarts))
            await self.start()

    async def stop(self) -> None:
        import asyncio

        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:  # with live restore nothing is lost by not waiting long: containers stay, the next engine adopts them
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(FileNotFoundError):
            self.layout.path("engine.pid").unlink()


def _lxcfs_args(layout: Layout) -> list[str]:
    """Pods see their own limits in /proc through the engine's lxcfs: the host-wide one when it answers, else one
    the engine starts under DIR (recorded in DIR/engine, stopped by `kapal down`)."""
    from kapal.engine.lxcfs import DEFAULT_DIR, mounted_dirs, probe

    if str(DEFAULT_DIR) in mounted_dirs() and probe(DEFAULT_DIR) is None:
        return ["--lxcfs-dir", str(DEFAULT_DIR)]
    return ["--lxcfs-dir", str(layout.path("lxcfs"))]


def _client_identities(layout: Layout, node: str) -> dict[str, tuple[Path, str, tuple[str, ...]]]:
    """component -> (its kubeconfig, user, groups)."""
    from kapal.kube.kubelet.credentials import NODES_GROUP, node_user

    return {"kubelet": (layout.path("kubelet.conf"), node_user(node), NODES_GROUP),
            "controller-manager": (layout.path("controller-manager.conf"), "system:kube-controller-manager", ()),
            "scheduler": (layout.path("scheduler.conf"), "system:kube-scheduler", ())}


def _prepare_pki(layout: Layout, api: ApiServerConfig, kubelet: KubeletConfig, node_ip: str,
                 ) -> dict[str, tuple[bytes, bytes]]:
    """Every certificate this cluster needs, before anything listens: the API server's PKI, the kubelet's serving
    pair and the components' client keys, made at once in threads (OpenSSL releases the GIL; the service-account
    key is RSA, ~40 ms). Returns the new client credentials (cert PEM, key PEM) by component."""
    from concurrent.futures import ThreadPoolExecutor

    from kapal.kube import pki
    from kapal.kube.api.serving_pki import ensure_pki
    from kapal.kube.kubelet.server import serving_cert_files

    ca_crt, ca_key = layout.path("pki", "ca.crt"), layout.path("pki", "ca.key")
    ca_pem = ca_crt.read_bytes() if ca_crt.exists() else None
    identities = _client_identities(layout, kubelet.node_name)
    missing = [name for name, (path, user, groups) in identities.items()
               if ca_pem is None or pki.client_credentials(path, user, groups, ca_pem) is None]
    with ThreadPoolExecutor(1 + len(missing), thread_name_prefix="kapal-up-pki") as pool:
        keys = {name: pool.submit(pki.new_private_key, KEY_ALGORITHM) for name in missing}
        serving = pool.submit(serving_cert_files, kubelet, node_ip, KEY_ALGORITHM)
        ensure_pki(api)
        serving.result()
        if not missing:
            return {}
        ca = pki.load(ca_crt, ca_key)
        made = {}
        for name in missing:
            _, user, groups = identities[name]
            leaf = pki.issue(ca, user, organizations=groups, client=True, key=keys[name].result())
            made[name] = (leaf.cert_pem(), leaf.key_pem())
        return made


def _component_kubeconfigs(layout: Layout, server: str, node: str,
                           credentials: dict[str, tuple[bytes, bytes]]) -> dict[str, Path]:
    from kapal.kube import pki

    ca_crt, ca_key = layout.path("pki", "ca.crt"), layout.path("pki", "ca.key")
    return {name: pki.ensure_client_kubeconfig(path, server, ca_crt, ca_key, user, groups,
                                               credentials=credentials.get(name))
            for name, (path, user, groups) in _client_identities(layout, node).items()}


async def _wait_node_ready(kubelets: list, stop) -> float:  # type: ignore[no-untyped-def]
    """When this run's kubelet has posted its node Ready (not a Ready left in the store by an earlier run)."""
    import asyncio

    while not kubelets and not stop.is_set():
        await asyncio.sleep(0.02)
    if kubelets:
        waiter = asyncio.create_task(kubelets[0].node_ready.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
    return time.monotonic()


async def _optional(what: str, coro) -> None:  # type: ignore[no-untyped-def]
    """A component the cluster can live without: its failure is reported, not fatal."""
    import logging

    from kapal import errors

    try:
        await coro
    except errors.KapalError as e:
        logging.getLogger("kapal.up").error("%s is not running: %s", what, e)
    except Exception:
        logging.getLogger("kapal.up").exception("%s is not running", what)


async def _dns_with_fallback(config, stop, client, informers) -> None:  # type: ignore[no-untyped-def]
    """Cluster DNS on the node's port 53, or on any free port when 53 is taken (the Service points at it)."""
    import logging
    from dataclasses import replace

    from kapal import errors
    from kapal.kube.dns.app import run_dns

    try:
        await run_dns(config, stop, client=client, informers=informers)
    except errors.FailedPrecondition as e:
        if config.port == 0:
            raise
        logging.getLogger("kapal.up").warning("cluster DNS: %s; using a free port instead", e)
        await run_dns(replace(config, port=0, state={}), stop, client=client, informers=informers)


async def _up(args: argparse.Namespace, layout: Layout) -> int:
    import asyncio
    import ipaddress
    import logging

    from kapal.kube.api.config import ApiServerConfig
    from kapal.kube.kubelet.config import KubeletConfig, default_node_name
    from kapal.kube.kubelet.preflight import node_address, preflight

    log = logging.getLogger("kapal.up")
    started = time.monotonic()

    def mark(what: str) -> None:
        log.debug("start-up: %s at %.3fs", what, time.monotonic() - started)

    node = (args.node_name or default_node_name()).lower()
    dns_ip = str(ipaddress.ip_network(args.service_cidr)[10])  # 10.96.0.10, as kubeadm
    for sub in ("db", "manifests", "logs", "kubelet"):
        layout.path(sub).mkdir(parents=True, exist_ok=True)
    kubelet_config = KubeletConfig(
        node_name=node, root_dir=layout.path("kubelet"), pod_manifest_path=layout.path("manifests"),
        container_runtime_endpoint=layout.docker_host, port=args.kubelet_port, anonymous_auth=False,
        cgroup_root=args.cgroup_root,
        authentication_token_webhook=True, authorization_mode="Webhook", client_ca_file=layout.path("pki", "ca.crt"),
        cluster_dns=[dns_ip], pod_bridge=args.pod_bridge_name, non_masquerade_cidr=args.pod_network_cidr,
        healthz_port=0)
    preflight(kubelet_config)
    node_ip = node_address(kubelet_config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engine_args = [*_lxcfs_args(layout), *args.engine_arg]  # the user's flags come last: theirs win
    layout.path("up.json").write_text(json.dumps({"node": node, "cgroup_root": args.cgroup_root,
                                                  "pod_bridge": args.pod_bridge_name, "engine_args": engine_args,
                                                  "proxy_chain_prefix": args.proxy_chain_prefix}))
    api_config = ApiServerConfig(
        data_dir=layout.dir, secure_port=args.secure_port, storage=f"sqlite://{layout.path('db', 'state.db')}",
        service_cluster_ip_range=args.service_cidr, key_algorithm=KEY_ALGORITHM)
    credentials = asyncio.create_task(asyncio.to_thread(_prepare_pki, layout, api_config, kubelet_config, node_ip))
    engine = EngineChild(layout, engine_args)
    try:
        await engine.start()
        mark("engine started")
        # the engine, a process of its own, starts up while this one imports the components
        from kapal.kube.api.server import serve
        from kapal.kube.controllers.manager import ControllerManagerConfig, run_controller_manager
        from kapal.kube.kubelet.kubelet import run_kubelet
        from kapal.kube.scheduler.app import SchedulerConfig, run_scheduler

        mark("components imported")
        client_credentials = await credentials
        mark("certificates ready")
    except BaseException:
        credentials.cancel()
        await engine.stop()
        raise
    server = await serve(api_config)
    mark("API server ready")
    tasks: list[asyncio.Task] = []
    exit_code = 0
    services_client = shared = None
    try:
        port = int(server.url.rsplit(":", 1)[1])
        kubeconfigs = await asyncio.to_thread(_component_kubeconfigs, layout, f"https://127.0.0.1:{port}", node,
                                              client_credentials)
        kubelet_config.kubeconfig = kubeconfigs["kubelet"]
        mark("component kubeconfigs written")
        await engine.wait_ready()
        mark("engine answers")
        no_election = {"leader_elect": False}
        from kapal.kube.client.leaderelection import LeaderElectionFlags

        cm = ControllerManagerConfig(
            kubeconfig=kubeconfigs["controller-manager"], cluster_cidr=args.pod_network_cidr,
            allocate_node_cidrs=True, node_cidr_mask_size=24, service_cluster_ip_range=args.service_cidr,
            use_service_account_credentials=True,
            service_account_private_key_file=layout.path("pki", "sa.key"),
            root_ca_file=layout.path("pki", "ca.crt"), cluster_signing_cert_file=layout.path("pki", "ca.crt"),
            cluster_signing_key_file=layout.path("pki", "ca.key"), leader_election=LeaderElectionFlags(**no_election))
        sched = SchedulerConfig(kubeconfig=kubeconfigs["scheduler"], leader_election=LeaderElectionFlags(**no_election))
        kubelets: list = []
        from kapal.kube.client.client import ApiClient
        from kapal.kube.client.config import ClientConfig
        from kapal.kube.client.informer import InformerFactory
        from kapal.kube.dns.app import DnsConfig
        from kapal.kube.pki import load_kubeconfig
        from kapal.kube.proxy.app import ProxyConfig, run_proxy

        services_client = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(server.admin_kubeconfig),
                                                                 user_agent="kapal-up/services"))
        shared = InformerFactory(services_client)  # the proxy and the DNS server watch the same Services
        node_ip = node_address(kubelet_config)
        proxy = ProxyConfig(hostname_override=node, cluster_cidr=args.pod_network_cidr, healthz_bind_address="",
                            metrics_bind_address="", chain_prefix=args.proxy_chain_prefix)
        dns = DnsConfig(listen_address=node_ip, port=args.dns_port, publish=True, service_ip=dns_ip, node_name=node,
                        metrics_bind_address="", health_bind_address="", ready_bind_address="")
        components = {
            "proxy": _optional("the Service proxy", run_proxy(proxy, stop, client=services_client,
                                                                informers=shared)),
            "dns": _optional("cluster DNS", _dns_with_fallback(dns, stop, services_client, shared)),
            "controller-manager": run_controller_manager(cm, stop),
            "scheduler": run_scheduler(sched, stop),
            "kubelet": run_kubelet(kubelet_config, stop, on_ready=kubelets.append),
            "engine-supervisor": engine.supervise(stop),
        }
        tasks = [asyncio.create_task(coro, name=name) for name, coro in components.items()]
        mark("components started")
        ready_at = await _wait_node_ready(kubelets, stop)
        mark("node Ready")
        if stop.is_set():
            return 0
        target = None if args.no_kubeconfig else await asyncio.to_thread(_merge_kubeconfig, layout,
                                                                          server.admin_kubeconfig)
        print(f"kapal up: node {node} Ready {ready_at - started:.1f}s after start; API server {server.url}",
              file=sys.stderr, flush=True)
        if target is not None:
            print(f"kapal up: kubectl context {layout.context!r} merged into {target}", file=sys.stderr)
        print(f"kapal up: admin kubeconfig {server.admin_kubeconfig}", file=sys.stderr)
        print(f"export DOCKER_HOST={layout.docker_host}", flush=True)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                log.error("%s failed: %s", t.get_name(), t.exception())
                exit_code = 1
        stopper.cancel()
        stop.set()
    finally:
        stop.set()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=15)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if shared is not None:
            await shared.stop()
        if services_client is not None:
            await services_client.close()
        await server.stop()
        await engine.stop()
    print("kapal up: stopped; pods keep their state (`kapal up` resumes them, `kapal down` removes them)",
          file=sys.stderr)
    return exit_code


def up(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from kapal import errors

    logging.basicConfig(level=logging.DEBUG if args.verbosity >= 4 else logging.INFO if args.verbosity >= 1
                        else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    layout = Layout(args.data_dir)
    layout.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pidfile = layout.path("kapal-up.pid")
    running = _read_pid(pidfile)
    if running is not None and running != os.getpid() and "up" in _cmdline(running):
        print(f"kapal up: already running for {layout.dir} (pid {running}); stop it with `kapal down"
              f"{' --data-dir ' + str(layout.dir) if layout.explicit else ''}`", file=sys.stderr)
        return 1
    pidfile.write_text(str(os.getpid()))
    try:
        return asyncio.run(_up(args, layout))
    except errors.KapalError as e:
        print(f"kapal up: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"kapal up: {e}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(FileNotFoundError):
            if _read_pid(pidfile) in (None, os.getpid()):
                pidfile.unlink()


# ---- down --------------------------------------------------------------------------------------------------------


def _remove_containers(host: str) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from kapal.engine.client import APIError, EngineClient

    client = EngineClient(host)
    containers = client.json("GET", "/containers/json", {"all": True}) or []

    def remove(cid: str) -> None:
        with contextlib.suppress(APIError):
            EngineClient(host).json("DELETE", f"/containers/{cid}", {"force": True}, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(remove, [c["Id"] for c in containers]))
    return len(containers)


def _engine_answers(host: str) -> bool:
    from kapal.engine.client import EngineClient, EngineUnavailable

    try:
        EngineClient(host).json("GET", "/version", timeout=5)
        return True
    except (EngineUnavailable, OSError):
        return False
    except Exception:
        return False


def _engine_cleanup(layout: Layout, engine_args: list[str]) -> list[str]:
    """`kapal engine --cleanup`: the engine's bridge, rules and mounts (when this engine has the flag)."""
    import subprocess

    proc = subprocess.run([*_kapal_command(), "engine", "--data-root", str(layout.path("engine")), "-H",
                           layout.docker_host, *engine_args, "--cleanup"], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode == 0 or "unrecognized arguments: --cleanup" in proc.stderr:
        return []
    return [f"engine cleanup: {proc.stderr.strip() or proc.returncode}"]


def _unmount_under(directory: Path) -> list[str]:
    from kapal.linux.mount import unmount_tree

    return unmount_tree(directory, include_root=False)[1]


def down(args: argparse.Namespace) -> int:
    import subprocess

    layout = Layout(args.data_dir)
    if not layout.dir.exists():
        print(f"kapal down: nothing to do ({layout.dir} does not exist)", file=sys.stderr)
        return 0
    try:
        settings = json.loads(layout.path("up.json").read_text())
    except (FileNotFoundError, ValueError):
        settings = {}
    pid = _read_pid(layout.path("kapal-up.pid"))
    if pid is not None and "up" in _cmdline(pid):
        print(f"kapal down: stopping kapal up (pid {pid})", file=sys.stderr)
        _stop_pid(pid, args.timeout, "kapal up")
    engine_pid = _read_pid(layout.path("engine.pid"))
    own_engine = None
    if not _engine_answers(layout.docker_host):
        if engine_pid is not None:
            _stop_pid(engine_pid, 15, "a stuck engine")
        if layout.path("engine").exists():
            layout.path("logs").mkdir(parents=True, exist_ok=True)
            log = open(layout.path("logs", "engine.log"), "ab")
            own_engine = subprocess.Popen([*_kapal_command(), "engine", "--data-root", str(layout.path("engine")),
                                           "-H", layout.docker_host, *settings.get("engine_args", []), "--no-lxcfs"],
                                          stdout=log, stderr=log)
            log.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not _engine_answers(layout.docker_host):
                if own_engine.poll() is not None:
                    break
                time.sleep(0.1)
    removed = 0
    if _engine_answers(layout.docker_host):
        removed = _remove_containers(layout.docker_host)
        running = own_engine.pid if own_engine is not None else _read_pid(layout.path("engine.pid"))
        if running is not None:
            _stop_pid(running, 30, "the engine")
        if own_engine is not None:
            own_engine.wait()
    with contextlib.suppress(FileNotFoundError):
        layout.path("engine.pid").unlink()
    from kapal.kube.kubelet.teardown import teardown_node

    problems = teardown_node(layout.path("kubelet"), cgroup_root=settings.get("cgroup_root", "/"),
                             bridge=settings.get("pod_bridge", "kapal-cni0"))
    problems += _engine_cleanup(layout, settings.get("engine_args", []))
    try:
        from kapal.kube.proxy.app import cleanup_rules

        cleanup_rules(settings.get("proxy_chain_prefix", "KAPAL-"))
    except Exception as e:  # report, keep cleaning
        problems.append(f"service proxy rules: {e}")
    problems += _unmount_under(layout.dir)  # what the engine left (it is stopped now)
    with contextlib.suppress(FileNotFoundError):
        layout.socket.unlink()
    print(f"kapal down: removed {removed} container(s) and the node's pods, network and cgroups", file=sys.stderr)
    for p in problems:
        print(f"kapal down: could not remove: {p}", file=sys.stderr)
    if args.purge:
        import shutil

        _remove_context(layout)
        shutil.rmtree(layout.dir, ignore_errors=True)
        print(f"kapal down: purged {layout.dir} and the kubectl context {layout.context!r}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    verb = argv[0] if argv else "up"
    args = _parser(verb).parse_args(argv[1:])
    if os.geteuid() != 0:
        print(f"kapal {verb}: needs root (namespaces, mounts, cgroups, networking); try sudo", file=sys.stderr)
        return 1
    return down(args) if verb == "down" else up(args)
