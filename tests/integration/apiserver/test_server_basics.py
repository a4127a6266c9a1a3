"""The API server's front door: HTTPS, public health and version, 401 without credentials, CRUD and watch."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request

import pytest

from kapal.kube.pki import load_kubeconfig


def _get(server, path: str, ctx: ssl.SSLContext | None = None, headers: dict | None = None):
    if ctx is None:
        ctx = ssl.create_default_context(cafile=str(server.data_dir / "pki" / "ca.crt"))
    req = urllib.request.Request(server.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_health_and_version_are_public(apiserver):
    assert _get(apiserver, "/readyz") == (200, b"ok")
    assert _get(apiserver, "/livez")[0] == 200
    code, body = _get(apiserver, "/version")
    assert code == 200 and json.loads(body)["gitVersion"].startswith("v1.33.")


def test_no_credentials_is_401_with_a_status(apiserver):
    code, body = _get(apiserver, "/api/v1/namespaces")
    assert code == 401
    st = json.loads(body)
    assert st["kind"] == "Status" and st["reason"] == "Unauthorized" and st["code"] == 401
    assert _get(apiserver, "/apis")[0] == 401


def test_plain_http_is_refused(apiserver):
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(apiserver.url.replace("https", "http") + "/readyz", timeout=5).read()


def test_serving_certificate_names_the_cluster(apiserver):
    from cryptography import x509

    from kapal.kube.pki import alt_names

    cert = x509.load_pem_x509_certificate((apiserver.data_dir / "pki" / "apiserver.crt").read_bytes())
    dns, ips = alt_names(cert)
    assert {"localhost", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} <= set(dns)
    assert {"127.0.0.1", "10.96.0.1"} <= {str(i) for i in ips}


def test_admin_kubeconfig_is_cluster_admin(apiserver):
    entry = load_kubeconfig(apiserver.kubeconfig)
    assert entry.server == apiserver.url
    code, body = _get(apiserver, "/apis/authentication.k8s.io/v1", entry.ssl_context())
    assert code == 200


def test_python_client_crud_and_watch_resume(apiserver, unique):
    from kubernetes import client, config, watch

    api = config.new_client_from_config(str(apiserver.kubeconfig))
    v1 = client.CoreV1Api(api)
    ns = unique
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    cm = v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a"),
                                                                data={"k": "1"}))
    assert cm.metadata.uid and cm.metadata.resource_version
    listing = v1.list_namespaced_config_map(ns)
    assert [c.metadata.name for c in listing.items] == ["a"]
    start = listing.metadata.resource_version
    v1.patch_namespaced_config_map("a", ns, {"data": {"k": "2"}})
    v1.delete_namespaced_config_map("a", ns)
    seen = []
    for ev in watch.Watch().stream(v1.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name, (ev["object"].data or {}).get("k")))
        if len(seen) == 2:
            break
    assert seen == [("MODIFIED", "a", "2"), ("DELETED", "a", "2")]
    with pytest.raises(client.ApiException) as e:
        v1.read_namespaced_config_map("a", ns)
    assert e.value.status == 404
    assert json.loads(e.value.body)["message"] == 'configmaps "a" not found'


def test_watch_sees_writes_made_while_it_waits(apiserver, unique):
    from kubernetes import client, config, watch

    api = config.new_client_from_config(str(apiserver.kubeconfig))
    v1 = client.CoreV1Api(api)
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique)))
    got: list[str] = []
    started = threading.Event()

    def watcher():
        w = watch.Watch()
        for ev in w.stream(v1.list_namespaced_config_map, unique, timeout_seconds=10):
            started.set()
            got.append(f"{ev['type']} {ev['object'].metadata.name}")
            if len(got) == 3:
                w.stop()

    v1.create_namespaced_config_map(unique, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="first")))
    t = threading.Thread(target=watcher)
    t.start()
    assert started.wait(10)
    for name in ("second", "third"):
        v1.create_namespaced_config_map(unique, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name)))
    t.join(15)
    assert got == ["ADDED first", "ADDED second", "ADDED third"]


def test_metrics_count_requests(apiserver):
    entry = load_kubeconfig(apiserver.kubeconfig)
    _get(apiserver, "/api/v1/namespaces/default/configmaps", entry.ssl_context())
    code, body = _get(apiserver, "/metrics", entry.ssl_context())
    assert code == 200
    text = body.decode()
    assert "# TYPE apiserver_request_total counter" in text
    assert 'apiserver_request_total{verb="LIST",group="",version="v1",resource="configmaps"' in text
    assert "apiserver_request_duration_seconds_bucket" in text


def test_delete_collection_and_subject_access_review(apiserver, unique):
    from kubernetes import client, config

    api = config.new_client_from_config(str(apiserver.kubeconfig))
    v1 = client.CoreV1Api(api)
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique)))
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        v1.create_namespaced_config_map(unique, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"tier": tier})))
    v1.delete_collection_namespaced_config_map(unique, label_selector="tier=x")
    assert [c.metadata.name for c in v1.list_namespaced_config_map(unique).items] == ["c"]
    sar = client.AuthorizationV1Api(api).create_subject_access_review({"spec": {
        "user": "nobody", "groups": ["system:authenticated"],
        "resourceAttributes": {"verb": "get", "resource": "configmaps", "namespace": unique}}})
    assert sar.status.allowed is False
    sar = client.AuthorizationV1Api(api).create_subject_access_review({"spec": {
        "user": "root", "groups": ["system:masters"], "resourceAttributes": {"verb": "delete", "resource": "nodes"}}})
    assert sar.status.allowed is True


def test_service_account_issuer_discovery(apiserver):
    entry = load_kubeconfig(apiserver.kubeconfig)
    code, body = _get(apiserver, "/.well-known/openid-configuration", entry.ssl_context())
    assert code == 200
    doc = json.loads(body)
    assert doc["issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert doc["jwks_uri"].endswith("/openid/v1/jwks") and doc["id_token_signing_alg_values_supported"] == ["RS256"]
    code, body = _get(apiserver, "/openid/v1/jwks", entry.ssl_context())
    keys = json.loads(body)["keys"]
    assert code == 200 and keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256" and keys[0]["kid"]
