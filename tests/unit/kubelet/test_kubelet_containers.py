"""Pod containers as engine create bodies, labels and names; spec hashes; crash backoff."""

from __future__ import annotations

import pytest

from kapal.kube.kubelet.backoff import Backoff
from kapal.kube.kubelet.containers import Placement, container_hash, create_body, engine_name, labels_for
from kapal.kube.kubelet.envvars import ConfigError
from kapal.kube.kubelet.qos import container_resources

PLACE = Placement("ns:/p/net", "ns:/p/ipc", "ns:/p/uts", "web-0", "/kubepods/burstable/podu", ("/a:/b",), 500)


def pod(container, **sc):
    return {"metadata": {"name": "web-0", "namespace": "shop", "uid": "u"},
            "spec": {"containers": [container], "securityContext": sc, "terminationGracePeriodSeconds": 5}}


def body(container, image_user="", **sc):
    p = pod(container, **sc)
    return create_body(p, container, image="sha256:i", image_config={"User": image_user}, env=["A=1"],
                       labels=labels_for(p, container, "regular", 2, "node1"), place=PLACE,
                       resources=container_resources(container))


def test_command_args_and_placement():
    b = body({"name": "c", "command": ["sh", "-c"], "args": ["echo $(A)"],
              "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}})
    assert b["Entrypoint"] == ["sh", "-c"] and b["Cmd"] == ["echo 1"]
    hc = b["HostConfig"]
    assert (hc["NetworkMode"], hc["IpcMode"], hc["UTSMode"]) == ("ns:/p/net", "ns:/p/ipc", "ns:/p/uts")
    assert hc["CgroupParent"] == "/kubepods/burstable/podu" and hc["OomScoreAdj"] == 500
    assert hc["Memory"] == hc["MemorySwap"] == 64 * 2**20 and hc["CpuQuota"] == 50000 and hc["CpuPeriod"] == 100000
    assert b["Hostname"] == "web-0" and hc["RestartPolicy"] == {"Name": "no"}
    assert b["Labels"]["io.kubernetes.container.restartCount"] == "2"
    assert b["Labels"]["io.kubernetes.pod.uid"] == "u" and b["Labels"]["kapal.io/node"] == "node1"
    only_args = body({"name": "c", "args": ["x"]})
    assert "Entrypoint" not in only_args and only_args["Cmd"] == ["x"]


def test_security_context():
    b = body({"name": "c", "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"],
                                                                                    "drop": ["ALL"]},
                                               "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                               "privileged": False}},
             runAsGroup=3000, fsGroup=2000, supplementalGroups=[4000])
    hc = b["HostConfig"]
    assert b["User"] == "1000:3000" and hc["GroupAdd"] == ["4000", "2000"]
    assert hc["CapAdd"] == ["NET_ADMIN"] and hc["CapDrop"] == ["ALL"] and hc["ReadonlyRootfs"]
    assert hc["SecurityOpt"] == ["no-new-privileges", "seccomp=unconfined"] and "Privileged" not in hc
    confined = body({"name": "c", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}})
    assert "SecurityOpt" not in confined["HostConfig"]  # the engine's default profile
    assert "SecurityOpt" not in body({"name": "c"}, seccompProfile={"type": "RuntimeDefault"})["HostConfig"]
    with pytest.raises(ConfigError, match="runAsNonRoot and image will run as root"):
        body({"name": "c"}, runAsNonRoot=True)
    with pytest.raises(ConfigError, match="non-numeric user"):
        body({"name": "c"}, "nobody", runAsNonRoot=True)
    assert body({"name": "c"}, "1000", runAsNonRoot=True)["User"] == "1000"


def test_hash_ignores_resources_and_names_are_dockershims():
    c = {"name": "c", "image": "x", "resources": {"limits": {"cpu": "1"}}}
    assert container_hash(c) == container_hash({**c, "resources": {}}) != container_hash({**c, "image": "y"})
    assert engine_name(pod(c), "c", 3) == "k8s_c_web-0_shop_u_3"


def test_backoff_doubles_and_caps():
    now = [1000.0]
    b = Backoff(10, 40, clock=lambda: now[0])
    assert b.remaining("k", now[0]) == 0
    assert [b.next("k") for _ in range(4)] == [10, 20, 40, 40]
    assert b.remaining("k", now[0] - 15) == 25
    now[0] += 81  # untouched for twice the cap: starts over
    assert b.remaining("k", now[0]) == 0 and b.next("k") == 10
