"""Image pull benchmark: throughput of pull+unpack for kapal, skopeo+umoci and podman (medians of N runs).

Usage: bench/image_pull/run [--runs N] [--layers L] [--layer-mb M]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/integration/image"))
sys.path.insert(0, str(ROOT / "src"))

from image_helpers import LocalRegistry, cleanup_tree  # noqa: E402

from kapal.image import manifests as mf  # noqa: E402
from kapal.image.registry import RegistryClient  # noqa: E402

KAPAL = ROOT / ".venv/bin/kapal"


def make_layer(rng: random.Random, index: int, size: int) -> bytes:
    """A layer like real ones: many small files and a few big ones, about half compressible."""
    buf = io.BytesIO()
    written = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        n = 0
        while written < size:
            big = n % 50 == 0
            length = rng.randint(1 << 20, 4 << 20) if big else rng.randint(512, 48 << 10)
            length = min(length, size - written) or 1
            noise = rng.randbytes(length // 2)
            data = (noise + noise[: length - len(noise)])[:length]  # half random, half repeated
            info = tarfile.TarInfo(f"layer{index}/d{n % 97}/f{n}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
            written += length
            n += 1
    return buf.getvalue()


def push_image(registry: LocalRegistry, repo: str, layers: list[bytes]) -> tuple[int, int]:
    client = RegistryClient(registry.host)
    descs, diff_ids, compressed = [], [], 0
    for tar in layers:
        blob = gzip.compress(tar, compresslevel=6)
        compressed += len(blob)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.upload_blob(repo, digest, len(blob), io.BytesIO(blob))
        descs.append(mf.Descriptor(mf.DOCKER_LAYER_GZIP, digest, len(blob)))
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}
    ).encode()
    cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.upload_blob(repo, cdigest, len(config), io.BytesIO(config))
    client.put_manifest(
        repo, "1", mf.build_manifest(mf.Descriptor(mf.DOCKER_CONFIG, cdigest, len(config)), descs), mf.DOCKER_MANIFEST
    )
    return compressed, sum(len(t) for t in layers)


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - start


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)


def bench_kapal(work: Path, ref: str, runs: int) -> list[float]:
    data = work / "kapal"
    sock = work / "kapal.sock"
    log = open(work / "kapal-engine.log", "wb")
    engine = subprocess.Popen(
        [str(KAPAL), "engine", "--data-root", str(data), "-H", f"unix://{sock}"], stdout=log, stderr=subprocess.STDOUT
    )
    env = {**os.environ, "KAPAL_HOST": f"unix://{sock}"}
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        times = []
        for _ in range(runs):
            drop_caches()
            times.append(timed([str(KAPAL), "pull", "-q", ref], env))
            subprocess.run([str(KAPAL), "rmi", ref], check=True, stdout=subprocess.DEVNULL, env=env)
        return times
    finally:
        engine.terminate()
        engine.wait(30)
        log.close()
        cleanup_tree(data)


def bench_skopeo_umoci(work: Path, ref: str, runs: int) -> list[float]:
    policy = work / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    times = []
    for i in range(runs):
        layout, bundle = work / f"oci{i}", work / f"bundle{i}"
        drop_caches()
        start = time.perf_counter()
        subprocess.run(
            [
                "skopeo",
                "--policy",
                str(policy),
                "copy",
                "--src-tls-verify=false",
                f"docker://{ref}",
                f"oci:{layout}:bench",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
        shutil.rmtree(layout)
        cleanup_tree(bundle)
    return times


def bench_podman(ref: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        root = Path(tempfile.mkdtemp(prefix="kb-pod-", dir="/tmp"))
        base = [
            "podman",
            "--root",
            str(root / "r"),
            "--runroot",
            str(root / "rr"),
            "--storage-driver",
            "overlay",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]
        drop_caches()
        try:
            times.append(timed([*base, "pull", "-q", "--tls-verify=false", ref]))
        finally:
            subprocess.run([*base, "system", "reset", "--force"], capture_output=True)
            cleanup_tree(root)
    return times


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--layer-mb", type=int, default=28)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kapal-bench-pull-"))
    registry = LocalRegistry(work / "registry")
    try:
        rng = random.Random(42)
        layers = [make_layer(rng, i, a.layer_mb << 20) for i in range(a.layers)]
        compressed, uncompressed = push_image(registry, "bench/pull", layers)
        del layers
        ref = f"{registry.host}/bench/pull:1"
        print(
            f"image: {a.layers} layers, {uncompressed / 1e6:.0f} MB uncompressed, {compressed / 1e6:.0f} MB gzip; "
            f"{a.runs} runs each, medians"
        )
        results = {
            "kapal pull": bench_kapal(work, ref, a.runs),
            "skopeo copy + umoci unpack": bench_skopeo_umoci(work, ref, a.runs),
            "podman pull": bench_podman(ref, a.runs),
        }
        kapal = statistics.median(results["kapal pull"])
        for name, times in results.items():
            med = statistics.median(times)
            print(
                f"  {name:28s} {med:6.2f} s  {uncompressed / 1e6 / med:6.1f} MB/s unpacked  "
                f"{compressed / 1e6 / med:6.1f} MB/s transferred  kapal speed-up x{med / kapal:.2f}  "
                f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
            )
        return 0
    finally:
        registry.stop()
        cleanup_tree(work)


if __name__ == "__main__":
    sys.exit(main())
