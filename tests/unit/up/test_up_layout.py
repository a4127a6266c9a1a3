"""`kapal up`'s defaults as the issue names them: where things live, the disjoint address ranges, and the
kubeconfig merge that creates ~/.kube and never clobbers another context."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

from kapal.cli.up import Layout, _merge_kubeconfig, _parser, _remove_context

# Docker's default bridge, podman's, and the engine's own default bridge (kapal engine --bip 10.89.0.1/16)
OTHERS = {"docker": "172.17.0.0/16", "podman": "10.88.0.0/16", "engine": "10.89.0.0/16"}


def test_default_ranges_are_the_documented_ones_and_disjoint():
    args = _parser("up").parse_args([])
    assert args.pod_network_cidr == "10.244.0.0/16"
    assert args.service_cidr == "10.96.0.0/12"
    ranges = {"pods": args.pod_network_cidr, "services": args.service_cidr, **OTHERS}
    nets = {name: ipaddress.ip_network(cidr) for name, cidr in ranges.items()}
    for a in nets:
        for b in nets:
            if a < b:
                assert not nets[a].overlaps(nets[b]), (a, b)


def test_layout_without_and_with_a_data_dir(tmp_path):
    default = Layout(None)
    assert default.dir == Path("/var/lib/kapal")
    assert default.docker_host == "unix:///run/kapal/docker.sock"
    assert default.context == "kapal"
    given = Layout(tmp_path / "c")
    assert given.docker_host == f"unix://{tmp_path / 'c' / 'docker.sock'}"
    for part in ("db", "engine", "kubelet", "manifests", "admin.kubeconfig"):
        assert given.path(part) == tmp_path / "c" / part
    assert given.context != "kapal" and given.context == Layout(tmp_path / "c").context


def _admin(tmp_path: Path) -> Path:
    admin = tmp_path / "admin.kubeconfig"
    admin.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:6443",
                                               "certificate-authority-data": "Q0E="}}],
        "users": [{"name": "x", "user": {"token": "secret"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    return admin


def test_merge_creates_dot_kube_and_keeps_other_contexts(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    layout = Layout(tmp_path / "c")
    target = _merge_kubeconfig(layout, _admin(tmp_path))
    assert target == home / ".kube" / "config"
    merged = yaml.safe_load(target.read_text())
    assert merged["current-context"] == layout.context
    assert [c["cluster"]["server"] for c in merged["clusters"]] == ["https://127.0.0.1:6443"]

    other = {"name": "other", "context": {"cluster": "other", "user": "other"}}
    merged["contexts"].append(other)
    merged["clusters"].append({"name": "other", "cluster": {"server": "https://192.0.2.1:6443"}})
    merged["users"].append({"name": "other", "user": {"token": "t"}})
    target.write_text(yaml.safe_dump(merged))
    _merge_kubeconfig(layout, _admin(tmp_path))  # a second `kapal up`: one entry of ours, theirs untouched
    again = yaml.safe_load(target.read_text())
    assert sorted(c["name"] for c in again["contexts"]) == sorted([layout.context, "other"])
    assert other in again["contexts"]

    _remove_context(layout)  # `kapal down --purge`
    left = yaml.safe_load(target.read_text())
    assert [c["name"] for c in left["contexts"]] == ["other"]
    assert [c["name"] for c in left["clusters"]] == ["other"] and [u["name"] for u in left["users"]] == ["other"]
