"""Container environments: $(VAR) expansion, service links, envFrom, valueFrom and their errors."""

from __future__ import annotations

import asyncio
import base64

import pytest

from kapal.kube.kubelet.envvars import ConfigError, build_env, expand, service_env

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]},
       "status": {"podIP": "10.244.0.7", "hostIP": "192.0.2.2"}}
OBJECTS = {("secret", "s"): {"data": {"user": base64.b64encode(b"admin").decode(), "bad-key!": "eA=="}},
           ("configmap", "cm"): {"data": {"MODE": "prod", "LEVEL": "3"}}}


async def fetch(kind, name):
    return OBJECTS.get((kind, name))


def env(container, **kw):
    return dict(e.split("=", 1) for e in asyncio.run(build_env(POD, container, fetch, **kw)))


def test_expand():
    defined = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", defined) == "1-two"
    assert expand("$(C)", defined) == "$(C)"  # undefined stays
    assert expand("$$(A)", defined) == "$(A)"  # escaped
    assert expand("$(A", defined) == "$(A"
    assert expand("cost $5", defined) == "cost $5"


def test_value_from_and_expansion():
    c = {"name": "c", "env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "s", "key": "user"}}},
        {"name": "GREETING", "value": "$(POD) at $(IP)"},
    ]}
    got = env(c)
    assert got["POD"] == "p" and got["IP"] == "10.244.0.7" and got["APP"] == "x"
    assert got["MEM"] == "64" and got["USER"] == "admin" and got["GREETING"] == "p at 10.244.0.7"


def test_env_from_with_prefix_skips_invalid_names():
    warnings = []
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "APP_"}, {"secretRef": {"name": "s"}}]}
    got = dict(e.split("=", 1) for e in asyncio.run(build_env(POD, c, fetch, warnings=warnings)))
    assert got["APP_MODE"] == "prod" and got["user"] == "admin" and "bad-key!" not in got
    assert "bad-key!" in warnings[0]


def test_missing_references():
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        env({"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]})
    with pytest.raises(ConfigError, match="couldn't find key nokey in ConfigMap ns/cm"):
        env({"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nokey"}}}]})
    got = env({"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k",
                                                                                "optional": True}}}],
               "envFrom": [{"configMapRef": {"name": "gone", "optional": True}}]})
    assert "X" not in got


def test_service_links():
    svcs = [{"metadata": {"name": "kubernetes", "namespace": "default"},
             "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
            {"metadata": {"name": "my-db", "namespace": "ns"},
             "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 5432}]}},
            {"metadata": {"name": "headless", "namespace": "ns"},
             "spec": {"clusterIP": "None", "ports": [{"port": 1}]}},
            {"metadata": {"name": "other", "namespace": "elsewhere"},
             "spec": {"clusterIP": "10.96.0.3", "ports": [{"port": 80}]}}]
    e = service_env(svcs, "ns", True)
    assert e["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and e["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert e["MY_DB_SERVICE_HOST"] == "10.96.0.9" and e["MY_DB_PORT"] == "tcp://10.96.0.9:5432"
    assert e["MY_DB_PORT_5432_TCP_ADDR"] == "10.96.0.9"
    assert not any(k.startswith(("HEADLESS", "OTHER")) for k in e)
    assert set(service_env(svcs, "ns", False)) == {k for k in e if k.startswith("KUBERNETES")}
