"""`run --rm IMAGE true` through the docker CLI against kapal's engine, through podman, through `kapal run`,
and through Debian's dockerd where it is installed — interleaved, in one run; `ps`, `images`, `exec`, `logs`
through the docker CLI and through kapal; then 50 `run -d` in a row and the engine's and shims' memory.

Every tool runs the same busybox rootfs (imported into each) on its default bridge network: kapal's
engine on a private bridge (a unique name, 10.198.x.0/24) with a private lxcfs, both removed at the end,
like the temp data roots. podman gets the ulimit flags this host needs and `--runtime runc`.

Usage: bench/engine_run/run [--runs 10] [--warmup 3] [--detached 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/integration/image"))
sys.path.insert(0, str(ROOT / "src"))

from image_helpers import busybox_rootfs_tar, cleanup_tree  # noqa: E402

KAPAL = ROOT / ".venv/bin/kapal"
PODMAN_ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def rss_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in kB."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def timed(argv: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}… failed ({r.returncode}): {r.stderr.decode().strip()[-400:]}")
    return elapsed * 1000


class Engine:
    def __init__(self, base: Path, bridge: str, bip: str, lxcfs_dir: Path | None, runtime: str) -> None:
        self.base = base
        self.sock = base / "engine.sock"
        self.host = f"unix://{self.sock}"
        args = [str(KAPAL), "engine", "--data-root", str(base / "data"), "-H", self.host, "--bridge", bridge,
                "--bip", bip, "--runtime", runtime, "--log-level", "warning"]
        args += ["--lxcfs-dir", str(lxcfs_dir)] if lxcfs_dir else ["--no-lxcfs"]
        self.log = open(base / "engine.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"kapal engine did not start: {(base / 'engine.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self.env = {**os.environ, "DOCKER_HOST": self.host, "KAPAL_HOST": self.host,
                    "DOCKER_CONFIG": str(base / "docker-config")}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)
        self.log.close()


def start_lxcfs(directory: Path) -> subprocess.Popen | None:
    binary = shutil.which("lxcfs")
    if binary is None:
        return None
    directory.mkdir()
    proc = subprocess.Popen([binary, "--enable-cfs", "--enable-loadavg", "-p", str(directory) + ".pid",
                             str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        if (directory / "proc" / "meminfo").exists():
            return proc
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    return None


def verbs(docker: str, cid: str, env: dict, warmup: int, runs: int) -> dict[str, tuple[float, float]]:
    """Median wall times of `ps`, `images`, `exec`, `logs` through the docker CLI and through kapal."""
    commands = {"ps": ["ps"], "ps -a": ["ps", "-a"], "images": ["images"], "exec CTR true": ["exec", cid, "true"],
                "logs CTR": ["logs", cid]}
    times: dict[tuple[str, str], list[float]] = {}
    for i in range(warmup + runs):
        for verb, argv in commands.items():
            pair = [("docker", docker), ("kapal", str(KAPAL))]
            for tool, binary in pair if i % 2 else pair[::-1]:
                elapsed = timed([binary, *argv], env)
                if i >= warmup:
                    times.setdefault((verb, tool), []).append(elapsed)
    return {verb: (statistics.median(times[verb, "docker"]), statistics.median(times[verb, "kapal"]))
            for verb in commands}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="counted rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up rounds (default 3)")
    parser.add_argument("--detached", type=int, default=50, help="containers for the run -d series (default 50)")
    parser.add_argument("--runtime", default="kapal", help="the engine's OCI runtime (default kapal: its own)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` or a kill: clean up all the same
    if os.geteuid() != 0:
        print("engine_run: needs root", file=sys.stderr)
        return 1
    docker, podman, dockerd = shutil.which("docker"), shutil.which("podman"), shutil.which("dockerd")
    if docker is None:
        print("engine_run: the docker CLI is not installed", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="kapal-bench-run-", dir="/tmp"))
    bridge = "kb" + uuid.uuid4().hex[:6]
    bip = f"10.198.{os.getpid() % 250}.1/24"
    lxcfs = start_lxcfs(base / "lxcfs")
    engine = None
    podman_base: list[str] = []
    try:
        engine = Engine(base, bridge, bip, base / "lxcfs" if lxcfs else None, args.runtime)
        tar = base / "busybox.tar"
        tar.write_bytes(busybox_rootfs_tar())
        image = "kbench/busybox:1"
        subprocess.run([docker, "import", str(tar), image], env=engine.env, check=True, capture_output=True)
        runners: dict[str, list[str]] = {
            "docker CLI → kapal engine": [docker, "run", "--rm", image, "true"],
            "kapal run": [str(KAPAL), "run", "--rm", image, "true"],
        }
        envs: dict[str, dict | None] = {"docker CLI → kapal engine": engine.env, "kapal run": engine.env}
        if podman:
            podman_root = base / "podman"
            podman_base = [podman, "--root", str(podman_root / "root"), "--runroot", str(podman_root / "run"),
                           "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                           "--runtime", "runc"]
            subprocess.run([*podman_base, "import", str(tar), image], check=True, capture_output=True)
            runners["podman"] = [*podman_base, "run", "--rm", *PODMAN_ULIMITS, image, "true"]
            envs["podman"] = None
        if dockerd:
            print("engine_run: dockerd is installed but starting it is not automated here; skipped")
        times: dict[str, list[float]] = {name: [] for name in runners}
        names = list(runners)
        for i in range(args.warmup + args.runs):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                elapsed = timed(runners[name], envs[name])
                if i >= args.warmup:
                    times[name].append(elapsed)
        med = {name: statistics.median(v) for name, v in times.items()}
        print(f"engine_run: `run --rm IMAGE true` (busybox, bridge network, engine runtime {args.runtime}), "
              f"{args.runs} interleaved rounds after {args.warmup} warm-up rounds; wall time in ms")
        print(f"  {'client → engine':30s} {'median':>8s} {'p25':>8s} {'min':>8s} {'max':>8s}")
        for name, values in times.items():
            p25 = statistics.quantiles(values, n=4)[0] if len(values) > 1 else values[0]
            print(f"  {name:30s} {med[name]:8.1f} {p25:8.1f} {min(values):8.1f} {max(values):8.1f}")
        docker_med = med["docker CLI → kapal engine"]
        print("ratios (median / median):")
        print(f"  kapal run / docker→kapal = {med['kapal run'] / docker_med:.2f}")
        if "podman" in med:
            print(f"  docker→kapal / podman = {docker_med / med['podman']:.2f}")
            print(f"  kapal run / podman    = {med['kapal run'] / med['podman']:.2f}")
            ok = docker_med <= med["podman"] / 2
            print(f"acceptance: docker→kapal median <= half of podman's: {'yes' if ok else 'NO'}")

        # the other everyday verbs, docker CLI and kapal against one running container, interleaved
        ids = [subprocess.run([docker, "run", "-d", image, "sh", "-c", "echo hello; sleep 600"], env=engine.env,
                              check=True, capture_output=True, text=True).stdout.strip()]
        verb_times = verbs(docker, ids[0], engine.env, args.warmup, args.runs)
        print(f"other verbs against one running container ({args.runs} interleaved rounds); median wall time in ms")
        print(f"  {'verb':24s} {'docker CLI':>10s} {'kapal':>8s} {'ratio':>6s}")
        for verb, (d, k) in verb_times.items():
            print(f"  {verb:24s} {d:10.1f} {k:8.1f} {k / d:6.2f}")

        # 50 `run -d` in a row, then the memory of the engine and of the shims holding them
        t0 = time.perf_counter()
        for _ in range(args.detached):
            out = subprocess.run([docker, "run", "-d", image, "sleep", "600"], env=engine.env, check=True,
                                 capture_output=True, text=True).stdout.strip()
            ids.append(out)
        per = (time.perf_counter() - t0) * 1000 / max(1, args.detached)
        print(f"{args.detached} × `docker run -d IMAGE sleep 600` in a row: {per:.1f} ms per container")
        engine_rss = rss_kb(engine.proc.pid)
        shim_pids = []
        for cid in ids:
            try:
                shim_pids.append(int((base / "data/containers" / cid / "shim.pid").read_text()))
            except (OSError, ValueError):
                pass
        shims = [rss_kb(pid) for pid in shim_pids]
        if shims:
            print(f"memory: engine RSS {engine_rss[0] / 1024:.1f} MB (PSS {engine_rss[1] / 1024:.1f} MB) with "
                  f"{len(ids)} containers; per shim RSS {statistics.median(r for r, _ in shims) / 1024:.1f} MB "
                  f"(PSS {statistics.median(p for _, p in shims) / 1024:.1f} MB)")
        t0 = time.perf_counter()
        subprocess.run([docker, "rm", "-f", *ids], env=engine.env, check=True, capture_output=True)
        print(f"`docker rm -f` of the {len(ids)}: {(time.perf_counter() - t0) * 1000 / max(1, len(ids)):.1f} ms "
              "per container")
    finally:
        if engine is not None:
            engine.stop()
        if podman_base:
            subprocess.run([*podman_base, "system", "reset", "--force"], capture_output=True)
        if lxcfs is not None:
            os.kill(lxcfs.pid, signal.SIGTERM)
            lxcfs.wait(10)
        import ipaddress

        from kapal.network.bridge import BridgeNetwork, remove_unused_portmap_chains

        subnet = str(ipaddress.ip_interface(bip).network)
        BridgeNetwork(f"kapal-{bridge}", bridge, subnet, Path("/run/kapal/network") / bridge).teardown()
        remove_unused_portmap_chains()
        cleanup_tree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
