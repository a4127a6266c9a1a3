"""reset's pieces that need no node: where the datastore is, which CNI files are kapal's, what it leaves alone."""

from __future__ import annotations

from pathlib import Path

from kapal.kube.adm.constants import KubeadmPaths
from kapal.kube.adm.reset import datastore_dir, kapal_cni_configs, reset


def test_the_datastore_comes_from_the_manifest(tmp_path: Path):
    paths = KubeadmPaths().under(tmp_path)
    assert datastore_dir(paths) is None
    paths.manifests_dir.mkdir(parents=True)
    (paths.manifests_dir / "kube-apiserver.yaml").write_text(
        "spec:\n  containers:\n  - command:\n    - kapal\n    - apiserver\n    - --data-dir=/srv/db\n")
    assert datastore_dir(paths) == Path("/srv/db")


def test_only_kapals_cni_files_are_chosen(tmp_path: Path):
    (tmp_path / "10-kapal.conflist").write_text('{"name": "kapal-pods"}')
    (tmp_path / "20-other.conflist").write_text('{"name": "flannel"}')
    (tmp_path / "README").write_text("kapal")
    assert kapal_cni_configs(tmp_path) == [tmp_path / "10-kapal.conflist"]
    assert kapal_cni_configs(tmp_path / "missing") == []


def test_without_adms_kubelet_only_its_files_go(tmp_path: Path):
    """No kubelet config and no pidfiles: the engine, containers and cgroups of others are not touched."""
    paths = KubeadmPaths().under(tmp_path)
    (paths.kubernetes_dir / "pki").mkdir(parents=True)
    (paths.kubernetes_dir / "pki" / "ca.crt").write_text("x")
    lines: list[str] = []
    report = reset(paths, lines.append)
    assert not paths.kubernetes_dir.exists()
    assert any("left alone" in line for line in lines)
    assert not report.containers and not report.cgroups and not report.problems
