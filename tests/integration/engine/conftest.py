"""An engine on a private data root and socket per test module, a local registry, and a `kapal` runner.

Every engine of the session shares one private bridge (a unique name, 10.197.x.0/24) and one lxcfs
mounted in a temp dir; both go at the end of the session, as do portmap's chains when unused.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))

_spec = importlib.util.spec_from_file_location("image_helpers", ROOT / "tests/integration/image/image_helpers.py")
image_helpers = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["image_helpers"] = image_helpers
_spec.loader.exec_module(image_helpers)  # type: ignore[union-attr]
EngineProcess = image_helpers.EngineProcess
KAPAL = image_helpers.KAPAL
LocalRegistry = image_helpers.LocalRegistry
busybox_rootfs_tar = image_helpers.busybox_rootfs_tar
cleanup_tree = image_helpers.cleanup_tree
leftover_mounts = image_helpers.leftover_mounts

SESSION_BRIDGE = "kt" + uuid.uuid4().hex[:8]


def _free_test_subnet() -> str:
    """A 10.197.x.0/24 no interface on this host uses (concurrent sessions each get their own)."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    start = os.getpid() % 250
    for n in range(250):
        x = (start + n) % 250 + 1
        if f" 10.197.{x}." not in used:
            return f"10.197.{x}.1/24"
    return f"10.197.{start + 1}.1/24"


SESSION_BIP = _free_test_subnet()


def _start_lxcfs(directory: Path) -> int | None:
    binary = shutil.which("lxcfs")
    if binary is None:
        return None
    directory.mkdir(parents=True)
    pid_file = directory.with_name("lxcfs.pid")
    # lxcfs stays in the foreground: started in its own session, stopped by PID at the end
    proc = subprocess.Popen([binary, "--enable-cfs", "--enable-loadavg", "-p", str(pid_file), str(directory)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if (directory / "proc" / "meminfo").exists():
            return proc.pid
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return None


def _stop_lxcfs(pid: int, directory: Path) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
    subprocess.run(["umount", "-l", str(directory)], stderr=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="session", autouse=True)
def engine_session(tmp_path_factory):
    """The session's bridge and lxcfs, given to every test engine through image_helpers.ENGINE_ARGS."""
    if os.geteuid() != 0:
        yield None
        return
    base = tmp_path_factory.mktemp("engine-session")
    lxcfs_dir = base / "lxcfs"
    lxcfs_pid = _start_lxcfs(lxcfs_dir)
    saved = list(image_helpers.ENGINE_ARGS)
    image_helpers.ENGINE_ARGS[:] = [
        "--bridge", SESSION_BRIDGE, "--bip", SESSION_BIP, "--network-pool", "1",
        *(["--lxcfs-dir", str(lxcfs_dir)] if lxcfs_pid else ["--no-lxcfs"]),
    ]
    yield {"bridge": SESSION_BRIDGE, "bip": SESSION_BIP, "lxcfs": lxcfs_dir if lxcfs_pid else None}
    image_helpers.ENGINE_ARGS[:] = saved
    if lxcfs_pid:
        _stop_lxcfs(lxcfs_pid, lxcfs_dir)
    teardown_network(SESSION_BRIDGE, SESSION_BIP)


def teardown_network(bridge: str, bip: str) -> None:
    import ipaddress

    from kapal.network.bridge import BridgeNetwork, remove_unused_portmap_chains

    subnet = str(ipaddress.ip_interface(bip).network)
    net = BridgeNetwork(f"kapal-{bridge}", bridge, subnet, Path("/run/kapal/network") / bridge)
    net.teardown()
    remove_unused_portmap_chains()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine")
    yield path
    cleanup_tree(path)


@pytest.fixture(scope="module")
def registry(workdir):
    reg = LocalRegistry(workdir / "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def engine(workdir):
    eng = EngineProcess(workdir / "engine-main")
    eng.workdir.mkdir()
    eng.start()
    yield eng
    left = eng.leftover_containers()
    eng.kill()
    swept = eng.sweep()
    assert not left and not swept, f"containers left behind: {left} {swept}"
    assert leftover_mounts(eng.data_root) == [], "the engine left mounts behind"


@pytest.fixture(scope="module")
def docker(engine, workdir):
    from engine_helpers import DockerCLI

    config = workdir / "docker-config"
    config.mkdir(exist_ok=True)
    return DockerCLI(engine.host, config)


@pytest.fixture(scope="module")
def busybox(docker, workdir, unique_module) -> str:
    """A busybox image in the module's engine (removed at the end of the module)."""
    tar = workdir / "busybox-image.tar"
    tar.write_bytes(busybox_rootfs_tar({"etc/motd": "original\n"}))
    ref = f"{unique_module}-busybox:1"
    docker("import", "-c", 'CMD ["sh"]', str(tar), ref)
    yield ref
    docker("rmi", "-f", ref, check=False)


@pytest.fixture(scope="module")
def hostimage(docker, workdir, unique_module) -> str:
    """The seed's image: bash and ls (and a few tools) from the host with their libraries."""
    from engine_helpers import host_programs_tar

    tar = workdir / "host-image.tar"
    tar.write_bytes(host_programs_tar(["bash", "ls", "cat", "free", "grep", "sleep", "touch", "nproc"]))
    ref = f"{unique_module}-bashls:1"
    docker("import", "-c", 'CMD ["/bin/bash"]', str(tar), ref)
    yield ref
    docker("rmi", "-f", ref, check=False)


@pytest.fixture(scope="module")
def unique_module() -> str:
    return "kt" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def rootfs_tar(workdir) -> Path:
    path = workdir / "busybox-rootfs.tar"
    path.write_bytes(busybox_rootfs_tar({"etc/motd": "original\n"}))
    return path


@pytest.fixture
def restartable(tmp_path):
    """Engines started and restarted by the test on one private data root: `start(*flags) -> (engine, cli)`,
    `start.engines`; at the end an engine adopts and removes what is left, and nothing may remain."""
    from engine_helpers import DockerCLI

    engines: list[EngineProcess] = []

    def start(*extra: str) -> tuple[EngineProcess, DockerCLI]:
        eng = EngineProcess(tmp_path, data_root=tmp_path / "data", extra=list(extra))
        eng.start()
        engines.append(eng)
        (tmp_path / "docker-config").mkdir(exist_ok=True)
        return eng, DockerCLI(eng.host, tmp_path / "docker-config")

    start.engines = engines  # type: ignore[attr-defined]
    yield start
    # whatever the test left: an engine on the same data root adopts and removes it
    if engines and (engines[-1].proc is None or engines[-1].proc.poll() is not None):
        start()
    if engines:
        cli = DockerCLI(engines[-1].host, tmp_path / "docker-config")
        ids = cli.out("ps", "-aq")
        if ids:
            cli("rm", "-f", *ids.split(), check=False)
    for eng in engines:
        eng.kill()
    swept = engines[0].sweep() if engines else []
    mounts = leftover_mounts(tmp_path)
    cleanup_tree(tmp_path)
    assert not swept, f"processes left behind: {swept}"
    assert mounts == []
