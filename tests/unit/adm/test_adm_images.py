"""The control-plane images: references as kubeadm names them, and a layer the engine's safe extraction accepts."""

from __future__ import annotations

import io
import tarfile

from kapal.kube.adm.config import load_init_config
from kapal.kube.adm.images import (
    BASE,
    PythonInstall,
    fingerprint,
    host_files,
    iptables_content,
    list_images,
    write_layer,
)


def test_one_reference_per_component_named_after_it():
    cfg = load_init_config(None, {"apiserver-advertise-address": "192.0.2.1", "node-name": "n"})
    refs = list_images(cfg)
    assert refs[:3] == ["kapal.local/kube-apiserver:v1.33.0", "kapal.local/kube-controller-manager:v1.33.0",
                        "kapal.local/kube-scheduler:v1.33.0"]
    assert not any("etcd" in r for r in refs)  # the datastore is SQLite inside the API server
    cfg.image_repository = "registry.example/kapal"
    assert list_images(cfg)[0] == "registry.example/kapal/kube-apiserver:v1.33.0"


def _entries(content=BASE) -> dict[str, tarfile.TarInfo]:
    install = PythonInstall.current()
    buf = io.BytesIO()
    write_layer(buf, install, host_files(install, content), content)
    buf.seek(0)
    return {m.name: m for m in tarfile.open(fileobj=buf)}


def test_the_layer_never_goes_through_a_link_and_runs_the_installed_kapal():
    entries = _entries()
    links = {name for name, m in entries.items() if m.issym()}
    for name in entries:
        parts = name.split("/")
        assert not any("/".join(parts[:i]) in links for i in range(1, len(parts))), name
    kapal = entries["usr/local/bin/kapal"]
    assert kapal.isfile() and kapal.mode & 0o111  # a real file: the engine finds it before the bind mounts exist
    libc = [n for n in entries if n.endswith("/libc.so.6")]
    assert libc and entries["etc/passwd"].isfile()
    install = PythonInstall.current()
    assert not any(n.startswith(str(install.base_prefix).lstrip("/")) for n in entries)  # bind-mounted, not copied


def test_kube_proxy_adds_iptables():
    content = iptables_content()
    entries = _entries(content)
    assert entries["usr/sbin/iptables-restore"].linkname == "xtables-nft-multi"
    assert any(n.endswith("xtables-nft-multi") and m.isfile() for n, m in entries.items())
    install = PythonInstall.current()
    assert fingerprint(install, content) != fingerprint(install, BASE)
