"""Pulls that go wrong (a hostile layer, a pull killed midway, a full disk) and pulls that race each other."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time

import pytest
from image_helpers import KAPAL, EngineProcess, cleanup_tree

from kapal.image import manifests as mf
from kapal.image.registry import RegistryClient

pytestmark = pytest.mark.root


def push_raw_image(registry, repo: str, layers: list[bytes], config_extra: dict | None = None) -> None:
    """Push hand-made (gzip) layers with a matching config straight to the registry."""
    client = RegistryClient(registry.host)
    descs, diff_ids = [], []
    for tar in layers:
        blob = gzip.compress(tar, compresslevel=1)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.upload_blob(repo, digest, len(blob), io.BytesIO(blob))
        descs.append(mf.Descriptor(mf.DOCKER_LAYER_GZIP, digest, len(blob)))
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["sh"]},
        **(config_extra or {}),
    }
    raw = json.dumps(config).encode()
    cdigest = "sha256:" + hashlib.sha256(raw).hexdigest()
    client.upload_blob(repo, cdigest, len(raw), io.BytesIO(raw))
    manifest = mf.build_manifest(mf.Descriptor(mf.DOCKER_CONFIG, cdigest, len(raw)), descs)
    client.put_manifest(repo, "1", manifest, mf.DOCKER_MANIFEST)


def tar_of(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                info.mode = 0o755
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.mode = 0o777
                info.linkname = payload  # type: ignore[assignment]
                tar.addfile(info)
    return buf.getvalue()


def blobs_are_sound(data_root) -> None:
    """Every blob's name is the digest of its content; no temp file is left in ingest/."""
    blobs = data_root / "content" / "blobs" / "sha256"
    for blob in blobs.iterdir():
        h = hashlib.sha256()
        with open(blob, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert h.hexdigest() == blob.name, f"corrupt blob {blob.name}"


@pytest.mark.parametrize(
    "entries, why",
    [
        ([("../../../../../../OUTSIDE/pwned", "file", "x")], "climbs out of the layer directory"),
        ([("esc", "sym", "../../../../../../OUTSIDE"), ("esc/pwned", "file", "x")], "points outside the layer"),
        ([("abs", "sym", "OUTSIDE"), ("abs/pwned", "file", "x")], "which is a symlink"),
        ([("h", "hard", "OUTSIDE/secret")], "the target is not in this layer"),
        ([("../.wh.secret", "file", "")], "climbs out"),
    ],
    ids=["traversal", "symlink-escape", "through-symlink", "hardlink-escape", "whiteout-escape"],
)
def test_hostile_layer_is_refused_and_writes_nothing_outside(engine, registry, unique, tmp_path, entries, why):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep")
    fixed = [
        (
            n.replace("OUTSIDE", str(outside).lstrip("/")) if n.startswith("..") else n,
            k,
            p.replace("OUTSIDE", str(outside)) if isinstance(p, str) and "OUTSIDE" in p else p,
        )
        for n, k, p in entries
    ]
    repo = f"{unique}/hostile"
    push_raw_image(registry, repo, [tar_of(fixed)])
    r = engine.run("pull", f"{registry.host}/{repo}:1")
    assert r.returncode == 1
    assert why in r.stderr.decode() and "refusing layer" in r.stderr.decode()
    assert sorted(os.listdir(outside)) == ["secret"] and (outside / "secret").read_text() == "keep"
    assert f"{registry.host}/{repo}" not in engine.ok("images")
    snapshots = json.loads((engine.data_root / "snapshots" / "metadata.json").read_text())["snapshots"]
    assert not [k for k in snapshots if k.startswith("extract-")]


class SlowProxy:
    """A TCP proxy to the registry that trickles responses, so a pull can be killed midway."""

    def __init__(self, upstream: tuple[str, int], rate: int = 2 << 20) -> None:
        self.upstream, self.rate = upstream, rate
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.closing = False
        self.requests: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.rate), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, rate: int) -> None:
        try:
            while data := src.recv(65536):
                if not rate and data[:4] in (b"GET ", b"HEAD"):
                    self.requests.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closing = True
        self.sock.close()


@pytest.fixture(scope="module")
def big_image(registry):
    """Two layers of incompressible data (6 MB, 4 MB) pushed under <registry>/big/<run>:1."""
    repo = f"big/{os.getpid()}"
    push_raw_image(
        registry,
        repo,
        [
            tar_of(
                [
                    ("bin/busybox", "file", open("/bin/busybox", "rb").read()),
                    ("bin/wc", "sym", "busybox"),
                    ("data/a", "file", os.urandom(6 << 20)),
                ]
            ),
            tar_of([("data/b", "file", os.urandom(4 << 20))]),
        ],
    )
    return repo


def test_killed_pull_leaves_no_corrupt_blob_and_the_next_pull_completes(registry, big_image, tmp_path):
    host, port = registry.host.split(":")
    proxy = SlowProxy((host, int(port)))
    eng = EngineProcess(tmp_path, extra=["--insecure-registry", proxy.host])
    eng.start()
    try:
        pull = subprocess.Popen(
            [str(KAPAL), "pull", f"{proxy.host}/{big_image}:1"],
            env={**os.environ, "KAPAL_HOST": eng.host},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ingest = eng.data_root / "content" / "ingest"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ingest.exists() and any(f.stat().st_size > (1 << 20) for f in ingest.iterdir()):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the pull never got going")
        eng.kill(signal.SIGKILL)
        pull.wait(30)
        blobs_are_sound(eng.data_root)
        proxy.close()
        eng.start()
        assert not list(ingest.iterdir())
        eng.ok("pull", f"{registry.host}/{big_image}:1")
        blobs_are_sound(eng.data_root)
        out = eng.ok("run", "--rm", f"{registry.host}/{big_image}:1", "wc", "-c", "/data/a", "/data/b")
        assert out.split()[:4] == [str(6 << 20), "/data/a", str(4 << 20), "/data/b"], out
    finally:
        proxy.close()
        eng.kill()
        cleanup_tree(eng.data_root)


def test_full_disk_leaves_no_corrupt_blob_and_the_next_pull_completes(registry, big_image, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    eng = EngineProcess(tmp_path, data_root=disk / "data")
    try:
        eng.start()
        r = eng.run("pull", f"{registry.host}/{big_image}:1")
        assert r.returncode == 1 and b"No space left on device" in r.stderr, r.stderr
        blobs_are_sound(eng.data_root)
        assert not list((eng.data_root / "content" / "ingest").iterdir())
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        eng.ok("pull", f"{registry.host}/{big_image}:1")
        blobs_are_sound(eng.data_root)
        assert f"{registry.host}/{big_image}" in eng.ok("images")
    finally:
        eng.kill()
        cleanup_tree(disk)


def test_concurrent_pulls_fetch_and_unpack_each_layer_once(registry, big_image, tmp_path):
    host, port = registry.host.split(":")
    proxy = SlowProxy((host, int(port)), rate=16 << 20)
    eng = EngineProcess(tmp_path)
    eng.start()
    try:
        ref = f"{proxy.host}/{big_image}:1"
        pulls = [
            subprocess.Popen(
                [str(KAPAL), "pull", ref], env={**os.environ, "KAPAL_HOST": eng.host}, stdout=subprocess.PIPE
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=120)[0].decode() for p in pulls]
        assert all(p.returncode == 0 for p in pulls), outputs
        blob_gets = [r for r in proxy.requests if r.startswith("GET") and "/blobs/" in r]
        assert len(blob_gets) == len(set(blob_gets)) == 3  # two layers and the config, each fetched once
        layers = json.loads(eng.ok("inspect", "--format", "{{json .RootFS.Layers}}", ref))
        snapshots = json.loads((eng.data_root / "snapshots" / "metadata.json").read_text())["snapshots"]
        assert len(snapshots) == len(layers) == 2
        eng.ok("rmi", ref)
    finally:
        proxy.close()
        eng.kill()
        cleanup_tree(eng.data_root)
