"""How requests are read: paths to resources and verbs, bodies and duplicates, Accept negotiation, tokens."""

from __future__ import annotations

import time

import pytest

from kapal.errors import Invalid, NotFound, Unauthorized
from kapal.kube.api import codec, objects, requestinfo, tokens
from kapal.kube.api.allocator import IPAllocator, PortAllocator
from kapal.kube.api.status import UnsupportedMediaType
from kapal.kube.meta.resources import lookup


@pytest.mark.parametrize("method, path, watch, verb, ns, plural, name, sub", [
    ("GET", "/api/v1/namespaces/a/pods", None, "list", "a", "pods", None, ""),
    ("GET", "/api/v1/namespaces/a/pods", "true", "watch", "a", "pods", None, ""),
    ("GET", "/api/v1/watch/namespaces/a/pods", None, "watch", "a", "pods", None, ""),
    ("GET", "/api/v1/namespaces/a/pods/p/log", None, "get", "a", "pods", "p", "log"),
    ("GET", "/api/v1/namespaces/a", None, "get", None, "namespaces", "a", ""),
    ("PUT", "/api/v1/namespaces/a/finalize", None, "update", None, "namespaces", "a", "finalize"),
    ("DELETE", "/apis/apps/v1/namespaces/a/deployments", None, "deletecollection", "a", "deployments", None, ""),
    ("PATCH", "/apis/apps/v1/namespaces/a/deployments/d/scale", None, "patch", "a", "deployments", "d", "scale"),
    ("GET", "/api/v1/nodes/n1/proxy/stats/summary", None, "get", None, "nodes", "n1", "proxy"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", None, "create", None,
     "selfsubjectaccessreviews", None, ""),
])
def test_request_info(method, path, watch, verb, ns, plural, name, sub):
    info = requestinfo.parse(method, path, watch)
    assert (info.verb, info.namespace, info.plural, info.name, info.subresource) == (verb, ns, plural, name, sub)
    assert info.is_resource and info.resource is not None


def test_non_resource_and_unknown_paths():
    assert not requestinfo.parse("GET", "/apis/apps/v1").is_resource
    assert requestinfo.parse("GET", "/healthz").verb == "get"
    with pytest.raises(NotFound):
        requestinfo.parse("GET", "/api/v1/namespaces/a/widgets")
    with pytest.raises(NotFound):
        requestinfo.parse("GET", "/api/v1/namespaces/a/configmaps/c/status")


def test_upgrade_get_on_exec_needs_create():
    assert requestinfo.parse("GET", "/api/v1/namespaces/a/pods/p/exec", upgrade=True).verb == "create"


def test_json_duplicates_are_reported_by_path():
    d = codec.decode_json(b'{"metadata": {"name": "a", "name": "b"}, "spec": {"x": [{"k": 1, "k": 2}]}}')
    assert d.body["metadata"]["name"] == "b"
    assert d.duplicates == [".metadata.name", ".spec.x[0].k"]
    with pytest.raises(Invalid):
        codec.decode_json(b'{"broken": ')


def test_yaml_bodies_become_json_shaped():
    d = codec.decode_yaml(b"metadata:\n  name: x\n  created: 2024-01-02T03:04:05Z\ndata:\n  yes: on\n")
    assert d.body["metadata"]["created"] == "2024-01-02T03:04:05Z"
    with pytest.raises(Invalid):
        codec.decode_yaml(b"a: 1\n---\nb: 2\n")


def test_content_types():
    with pytest.raises(UnsupportedMediaType):
        codec.decode_body("text/plain", b"x")
    with pytest.raises(UnsupportedMediaType):
        codec.decode_body("application/json", b"{}", patch=True)
    assert codec.decode_body("application/merge-patch+json", b'{"a": 1}', patch=True).body == {"a": 1}


def test_accept_negotiation():
    kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io," \
              "application/json"
    assert codec.negotiate(kubectl).as_kind == "Table"
    assert codec.negotiate("application/vnd.kubernetes.protobuf,application/json").as_kind == ""
    assert codec.negotiate("application/yaml").yaml
    aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    assert codec.negotiate(aggregated) == codec.Accept()


def test_prune_and_generation():
    obj = {"spec": {"containers": [{"name": "a", "bogus": 1}], "extra": {"x": 1}}, "metadata": {}}
    objects.prune(obj, [".spec.containers[0].bogus", ".spec.extra"])
    assert obj == {"spec": {"containers": [{"name": "a"}]}, "metadata": {}}
    deploy = lookup("apps", "v1", "deployments")
    old = {"metadata": {"name": "d", "generation": 3, "uid": "u"}, "spec": {"replicas": 1}, "status": {"r": 1}}
    new = {"metadata": {"name": "d", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {"r": 9}}
    objects.prepare_update(deploy, old, new)
    assert new["metadata"]["generation"] == 3 and new["status"] == {"r": 1} and new["metadata"]["uid"] == "u"
    new["spec"] = {"replicas": 2}
    objects.prepare_update(deploy, old, new)
    assert new["metadata"]["generation"] == 4
    assert objects.qos_class({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}) == \
        "Guaranteed"
    assert objects.qos_class({"containers": [{}]}) == "BestEffort"


def test_tokens_sign_and_verify():
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = tokens.Signer(key, "https://issuer")
    jwt = signer.sign({"iss": "https://issuer", "sub": "x", "exp": int(time.time()) + 60})
    assert tokens.verify(jwt, tokens.key_ring([other.public_key(), key.public_key()]))["sub"] == "x"
    with pytest.raises(Unauthorized):
        tokens.verify(jwt, tokens.key_ring([other.public_key()]))
    expired = signer.sign({"iss": "https://issuer", "exp": int(time.time()) - 10})
    with pytest.raises(Unauthorized):
        tokens.verify(expired, tokens.key_ring([key.public_key()]))
    with pytest.raises(Unauthorized):
        tokens.verify("a.b.c", tokens.key_ring([key.public_key()]))


def test_allocators():
    ips = IPAllocator("10.96.0.0/12")
    assert ips.first == "10.96.0.1"
    assert ips.allocate("10.96.0.1") == "10.96.0.1"
    with pytest.raises(Invalid, match="already allocated"):
        ips.allocate("10.96.0.1")
    with pytest.raises(Invalid, match="not in the valid range"):
        ips.allocate("192.168.0.1")
    got = {ips.allocate() for _ in range(100)}
    assert len(got) == 100
    small = IPAllocator("10.0.0.0/29")
    assert len({small.allocate() for _ in range(6)}) == 6
    with pytest.raises(Invalid):
        small.allocate()
    ports = PortAllocator("30000-30002")
    assert {ports.allocate() for _ in range(3)} == {30000, 30001, 30002}
    ports.release(30001)
    assert ports.allocate() == 30001
