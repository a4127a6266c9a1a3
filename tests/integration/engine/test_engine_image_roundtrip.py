"""The issue's round trip through a real registry, driven by the kapal CLI against a private engine.

Import a busybox rootfs, push, remove, pull; run a container that changes a file, deletes
another and writes into `-v /test`; commit; push; remove everything; pull it back.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import urllib.request

import pytest

pytestmark = pytest.mark.root


def registry_layers(registry, repo: str, tag: str) -> list[bytes]:
    """The uncompressed layer tars of repo:tag, fetched straight from the registry."""
    req = urllib.request.Request(
        f"http://{registry.host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    manifest = json.load(urllib.request.urlopen(req))
    out = []
    for layer in manifest["layers"]:
        blob = urllib.request.urlopen(f"http://{registry.host}/v2/{repo}/blobs/{layer['digest']}").read()
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
        out.append(gzip.decompress(blob))
    return out


def test_round_trip(engine, registry, rootfs_tar, unique):
    base = f"{registry.host}/{unique}/base:1"
    changed = f"{registry.host}/{unique}/changed:1"
    image_id = engine.ok("import", "-c", 'CMD ["sh"]', str(rootfs_tar), base).strip()
    assert image_id.startswith("sha256:")
    engine.ok("push", base)
    engine.ok("rmi", base)
    assert base not in engine.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    out = engine.ok("pull", base)
    assert "Status: Downloaded newer image" in out and out.strip().endswith(base)
    assert engine.ok("inspect", "--format", "{{.Id}}", base).strip() == image_id

    name = f"{unique}-c"
    script = "echo changed > /etc/motd && rm /etc/group && echo kept-out > /test/data && exit 0"
    r = engine.run("run", "--name", name, "-v", "/test", base, "sh", "-c", script)
    assert r.returncode == 0, r.stderr.decode()
    diff = engine.ok("diff", name).splitlines()
    assert "C /etc/motd" in diff and "D /etc/group" in diff and "A /test" in diff
    assert not any(line.startswith(("A /test/", "C /etc/hosts")) for line in diff)

    new_id = engine.ok("commit", "-m", "roundtrip", "-c", "ENV ROUND=trip", name, changed).strip()
    layers = json.loads(engine.ok("inspect", "--format", "{{json .RootFS.Layers}}", changed))
    base_layers = json.loads(engine.ok("inspect", "--format", "{{json .RootFS.Layers}}", base))
    assert layers[: len(base_layers)] == base_layers and len(layers) == len(base_layers) + 1
    pushed = engine.ok("push", changed)
    assert f"Mounted from {unique}/base" in pushed  # the base layer is mounted across repositories, not re-sent
    tars = registry_layers(registry, f"{unique}/changed", "1")
    assert ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars] == layers

    volumes = json.loads(engine.ok("inspect", "--format", "{{json .Mounts}}", name))
    engine.ok("rm", "-v", name)
    engine.ok("rmi", changed, base)
    assert engine.ok("images", "-q").strip() == ""
    for vol in volumes:
        assert vol["Name"] not in engine.ok("volume", "ls", "-q")

    engine.ok("pull", changed)
    assert engine.ok("inspect", "--format", "{{.Id}}", changed).strip() == new_id
    check = "cat /etc/motd; test -e /etc/group || echo no-group; test -d /test && ls -A /test | wc -l; echo $ROUND"
    out = engine.ok("run", "--rm", changed, "sh", "-c", check)
    assert out.split() == ["changed", "no-group", "0", "trip"]
    hist = engine.ok("history", "--format", "{{.Comment}}", changed).split("\n")
    assert hist[0] == "roundtrip"
    engine.ok("rmi", changed)


def test_run_exit_codes_and_default_path(engine, rootfs_tar, unique):
    img = f"{unique}-exit:1"
    engine.ok("import", str(rootfs_tar), img)
    r = engine.run("run", "--rm", img, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    assert engine.ok("run", "--rm", img, "sh", "-c", "echo $PATH").strip() == (
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    )
    assert engine.ok("run", "--rm", "-e", "A=b", img, "id", "-u").strip() == "0"
    r = engine.run("run", "--rm", img, "no-such-command")
    assert r.returncode == 127 and b"executable file not found" in r.stderr
    r = engine.run("run", "--rm", "nosuchimage-" + unique)
    assert r.returncode == 125
    assert engine.ok("ps", "-a", "-q").strip() == ""
    engine.ok("rmi", img)


def test_bind_volume_named_volume_and_export(engine, rootfs_tar, unique, tmp_path):
    img = f"{unique}-vol:1"
    engine.ok("import", str(rootfs_tar), img)
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from-host\n")
    vol = f"{unique}-v"
    assert engine.ok("volume", "create", vol).strip() == vol
    name = f"{unique}-exp"
    out = engine.ok(
        "run",
        "--name",
        name,
        "-v",
        f"{host}:/h:ro",
        "-v",
        f"{vol}:/named",
        img,
        "sh",
        "-c",
        "cat /h/in; touch /h/x 2>/dev/null || echo read-only; echo n > /named/f; echo e > /exported",
    )
    assert out.split() == ["from-host", "read-only"]
    assert (engine.data_root / "volumes" / vol / "_data" / "f").read_text() == "n\n"
    mounts = engine.ok("inspect", "--format", "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}", name).split()
    assert sorted(mounts) == ["/h=false", "/named=true"]
    r = engine.run("volume", "rm", vol)
    assert r.returncode == 1 and b"volume is in use" in r.stderr
    import io
    import tarfile

    exported = engine.run("export", name).stdout
    names = tarfile.open(fileobj=io.BytesIO(exported)).getnames()
    assert "exported" in names and "bin/busybox" in names and "named/f" not in names
    engine.ok("rm", name)
    engine.ok("volume", "rm", vol)
    engine.ok("rmi", img)
