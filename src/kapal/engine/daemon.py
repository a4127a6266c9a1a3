"""`kapal engine`: serve the Docker Engine API on a unix socket, in the foreground."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path

from aiohttp import web

from kapal.errors import FailedPrecondition, Invalid

from .api import build_app
from .config import EngineConfig
from .containers import ContainerManager
from .lxcfs import Lxcfs
from .networking import EngineNetworks
from .runtimes import KapalRuntime, become_subreaper, runtime_for
from .service import Engine
from .shimclient import ShimLauncher

log = logging.getLogger(__name__)


def claim_socket(path: Path) -> socket.socket:
    """Bind the unix socket; refuse when another server answers on it, replace a stale one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody listens any more
        else:
            raise FailedPrecondition(
                f"another engine is already listening on {path}: stop it first, or start this one with "
                "-H unix:///OTHER/PATH and --data-root OTHER_DIR"
            )
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o660)
    sock.listen(128)
    return sock


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(config: EngineConfig, ready: asyncio.Event | None = None) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>` dumps every thread's stack
    raise_nofile()
    sock = claim_socket(config.socket_path)
    socket_inode = config.socket_path.stat().st_ino
    engine = Engine(config)
    become_subreaper()
    manager = build_containers(engine, config)
    app = build_app(engine)
    # with live restore nothing waits for requests in flight (a stop?t=30, a log or attach stream): the container
    # keeps its state and the next engine knows it; without, they get a second to finish
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=0.1 if config.live_restore else 1)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    log.info(
        "kapal engine: API listening on %s, data root %s, runtime %s, live restore %s",
        config.host, config.data_root, config.runtime, "on" if config.live_restore else "off",
    )
    print(f"kapal engine is ready: export DOCKER_HOST={config.host}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info(
            "kapal engine: shutting down (%s)",
            "containers keep running: live restore" if config.live_restore else "stopping containers, 10 s grace",
        )
        t0 = time.monotonic()
        await loop.run_in_executor(None, manager.shutdown)
        t1 = time.monotonic()
        await runner.cleanup()
        try:
            if config.socket_path.stat().st_ino == socket_inode:  # not a socket a newer engine bound meanwhile
                config.socket_path.unlink()
        except FileNotFoundError:
            pass
        log.info("kapal engine: stopped (containers %.0f ms, API %.0f ms)", (t1 - t0) * 1000,
                 (time.monotonic() - t1) * 1000)


def build_containers(engine: Engine, config: EngineConfig) -> ContainerManager:
    """The container side of the engine, wired from the config (the kubelet does the same in-process)."""
    import ipaddress

    try:
        iface = ipaddress.ip_interface(config.bridge_cidr)
    except ValueError as e:
        raise Invalid(f"--bip {config.bridge_cidr!r}: give the bridge's address and prefix (10.89.0.1/16)") from e
    networks = EngineNetworks(
        config.data_root, config.bridge, str(iface.network), config.network_pool, gateway=str(iface.ip)
    )
    lxcfs = Lxcfs.ensure(config.lxcfs_dir, data_root=config.data_root) if config.lxcfs_dir is not None \
        else Lxcfs.disabled()
    runtime = runtime_for(config.runtime, config.data_root / "runtime")
    return ContainerManager(
        engine,
        runtime,
        networks=networks,
        lxcfs=lxcfs,
        launcher=ShimLauncher(preload_runtime=isinstance(runtime, KapalRuntime)),
        live_restore=config.live_restore,
        events=engine.events,
    )


def run(config: EngineConfig) -> None:
    asyncio.run(serve(config))
    if config.live_restore:
        # API threads may still be blocked in requests that no longer matter (a stop waiting out its grace):
        # leave without joining them, as a kill would, but with the logs flushed and the socket gone
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
