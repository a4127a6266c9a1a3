"""Static pod manifests: naming, UIDs, annotations, defaults, and the mirror pod."""

from __future__ import annotations

import pytest

from kapal.kube.kubelet.static import StaticPodSource, is_mirror, load_manifest, mirror_of

MANIFEST = """apiVersion: v1
kind: Pod
metadata:
  name: st
spec:
  containers:
  - name: web
    image: bar/busybox:1
    command: [httpd, -f]
"""


def test_load_names_and_annotates(tmp_path):
    (tmp_path / "st.yaml").write_text(MANIFEST)
    pod = load_manifest(tmp_path / "st.yaml", "node1")
    meta = pod["metadata"]
    assert meta["name"] == "st-node1" and meta["namespace"] == "default"
    assert meta["annotations"]["kubernetes.io/config.source"] == "file"
    assert meta["annotations"]["kubernetes.io/config.hash"] == meta["uid"]
    assert pod["spec"]["nodeName"] == "node1" and pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    again = load_manifest(tmp_path / "st.yaml", "node1")
    assert again["metadata"]["uid"] == meta["uid"]  # stable across kubelet restarts
    (tmp_path / "st.yaml").write_text(MANIFEST.replace("httpd, -f", "httpd, -f, -v"))
    assert load_manifest(tmp_path / "st.yaml", "node1")["metadata"]["uid"] != meta["uid"]
    mirror = mirror_of(pod, "node-uid")
    assert is_mirror(mirror) and mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"] == meta["uid"]
    assert mirror["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Node", "name": "node1",
                                                         "uid": "node-uid", "controller": True}


@pytest.mark.parametrize("text, why", [("kind: Deployment\napiVersion: apps/v1\nmetadata: {name: x}\n", "not a v1 Pod"),
                                       ("kind: Pod\nmetadata: {}\nspec: {containers: [{name: a}]}\n", "name"),
                                       ("kind: Pod\nmetadata: {name: x}\n", "containers"),
                                       (": : :", "YAML")])
def test_bad_manifests_are_skipped(tmp_path, text, why):
    (tmp_path / "bad.yaml").write_text(text)
    (tmp_path / "good.yaml").write_text(MANIFEST)
    (tmp_path / ".hidden.yaml").write_text(MANIFEST)
    src = StaticPodSource(tmp_path, "n")
    pods = src.scan()
    assert [p["metadata"]["name"] for p in pods.values()] == ["st-n"]
    assert why in src.errors[str(tmp_path / "bad.yaml")]
    (tmp_path / "good.yaml").unlink()
    assert src.scan() == {}
