"""Bad input gets a proper Status error with the right code: never a 500, never a hang."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from kapal.kube.pki import load_kubeconfig


@pytest.fixture(scope="module")
def raw(apiserver):
    entry = load_kubeconfig(apiserver.kubeconfig)
    ctx = entry.ssl_context()

    def request(method: str, path: str, body: bytes | str | None = None, ctype: str = "application/json",
                headers: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPSConnection("127.0.0.1", apiserver.port, context=ctx, timeout=15)
        try:
            data = body.encode() if isinstance(body, str) else body
            hdrs = {"Content-Type": ctype, **(headers or {})}
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(payload)
        except ValueError:
            return resp.status, {"raw": payload.decode(errors="replace")}

    code, _ = request("POST", "/api/v1/namespaces", json.dumps({"metadata": {"name": "bad"}}))
    assert code == 201
    return request


CM = "/api/v1/namespaces/bad/configmaps"


def _status(body: dict, code: int, reason: str) -> dict:
    assert body.get("kind") == "Status", body
    assert body["code"] == code and body["reason"] == reason, body
    assert body["status"] == "Failure"
    return body


def test_malformed_json(raw):
    code, body = raw("POST", CM, '{"metadata": {"name": "x"')
    assert code == 400
    _status(body, 400, "BadRequest")


def test_body_that_is_not_an_object(raw):
    code, body = raw("POST", CM, "[1, 2, 3]")
    assert code == 400 and "must be a JSON object" in _status(body, 400, "BadRequest")["message"]
    code, body = raw("POST", CM, "")
    assert code == 400


def test_malformed_yaml(raw):
    code, body = raw("POST", CM, "metadata: [unclosed\n  name: x", ctype="application/yaml")
    assert code == 400
    _status(body, 400, "BadRequest")


def test_yaml_body_is_accepted(raw):
    code, body = raw("POST", CM, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fromyaml\ndata:\n  a: b\n",
                     ctype="application/yaml")
    assert code == 201 and body["metadata"]["name"] == "fromyaml"


def test_malformed_protobuf(raw):
    code, body = raw("POST", CM, b"k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\x12\xff\xff\xff",
                     ctype="application/vnd.kubernetes.protobuf")
    assert code in (400, 415), body
    assert body.get("kind") == "Status" and body["code"] == code


def test_unknown_content_type_is_415(raw):
    code, body = raw("POST", CM, "name=x", ctype="application/x-www-form-urlencoded")
    assert code == 415
    _status(body, 415, "UnsupportedMediaType")


def test_kind_that_does_not_match_the_url(raw):
    code, body = raw("POST", CM, json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}}))
    assert code == 400
    _status(body, 400, "BadRequest")
    code, body = raw("POST", CM, json.dumps({"apiVersion": "apps/v1", "kind": "ConfigMap",
                                             "metadata": {"name": "k"}}))
    assert code == 400
    assert "does not match the expected API version" in _status(body, 400, "BadRequest")["message"]


def test_oversized_body_is_413(raw):
    big = json.dumps({"metadata": {"name": "big"}, "data": {"a": "x" * (4 * 1024 * 1024)}})
    code, body = raw("POST", CM, big)
    assert code == 413
    _status(body, 413, "RequestEntityTooLarge")


def test_invalid_name_is_422_with_causes(raw):
    code, body = raw("POST", CM, json.dumps({"metadata": {"name": "Not_Valid"}}))
    assert code == 422
    st = _status(body, 422, "Invalid")
    assert st["message"].startswith('ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid"')
    assert st["details"]["causes"][0]["field"] == "metadata.name"
    assert st["details"]["causes"][0]["reason"] == "FieldValueInvalid"


def test_unknown_and_duplicate_fields_under_strict(raw):
    code, body = raw("POST", CM + "?fieldValidation=Strict",
                     json.dumps({"metadata": {"name": "s"}, "data": {}, "bogus": 1}))
    assert code == 400
    assert 'unknown field "bogus"' in _status(body, 400, "BadRequest")["message"]
    code, body = raw("POST", CM + "?fieldValidation=Strict", '{"metadata": {"name": "d", "name": "e"}}')
    assert code == 400
    assert "duplicate field" in _status(body, 400, "BadRequest")["message"]


def test_unknown_fields_under_warn_are_dropped_with_a_warning(apiserver, raw):
    entry = load_kubeconfig(apiserver.kubeconfig)
    conn = http.client.HTTPSConnection("127.0.0.1", apiserver.port, context=entry.ssl_context(), timeout=15)
    conn.request("POST", CM + "?fieldValidation=Warn", body=json.dumps({"metadata": {"name": "w"}, "bogus": 1}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 201 and "bogus" not in body
    assert 'unknown field \\"bogus\\"' in resp.getheader("Warning", "")


def test_unknown_resource_and_method(raw):
    code, body = raw("GET", "/api/v1/namespaces/bad/frobnicators")
    assert code == 404
    _status(body, 404, "NotFound")
    code, body = raw("PUT", CM, json.dumps({"metadata": {"name": "x"}}))
    assert code == 405
    _status(body, 405, "MethodNotAllowed")


def test_bad_query_parameters(raw):
    for query in ("labelSelector=a%20b%20c", "fieldSelector=spec.nope%3D1", "limit=abc", "continue=%%%",
                  "resourceVersion=abc"):
        code, body = raw("GET", CM + "?" + query)
        assert code == 400, (query, body)
        _status(body, 400, "BadRequest")


def test_deeply_nested_json(raw):
    deep = '{"metadata": {"name": "deep"}, "data": ' + "[" * 100000 + "]" * 100000 + "}"
    code, body = raw("POST", CM, deep)
    assert code in (400, 413), body
    assert body.get("kind") == "Status"


def test_stale_update_is_409(raw):
    code, cm = raw("POST", CM, json.dumps({"metadata": {"name": "cas"}, "data": {"v": "1"}}))
    assert code == 201
    stale = dict(cm)
    cm["data"] = {"v": "2"}
    code, _ = raw("PUT", CM + "/cas", json.dumps(cm))
    assert code == 200
    stale["data"] = {"v": "3"}
    code, body = raw("PUT", CM + "/cas", json.dumps(stale))
    assert code == 409
    st = _status(body, 409, "Conflict")
    assert st["message"] == ('Operation cannot be fulfilled on configmaps "cas": the object has been modified; '
                             "please apply your changes to the latest version and try again")
    code, body = raw("POST", CM, json.dumps({"metadata": {"name": "cas"}}))
    assert code == 409
    assert _status(body, 409, "AlreadyExists")["message"] == 'configmaps "cas" already exists'


def test_namespace_must_exist_and_match(raw):
    code, body = raw("POST", "/api/v1/namespaces/nowhere/configmaps", json.dumps({"metadata": {"name": "x"}}))
    assert code == 404
    assert _status(body, 404, "NotFound")["message"] == 'namespaces "nowhere" not found'
    code, body = raw("POST", CM, json.dumps({"metadata": {"name": "x", "namespace": "other"}}))
    assert code == 400
    _status(body, 400, "BadRequest")


def test_garbage_on_the_wire_is_not_a_500(apiserver):
    entry = load_kubeconfig(apiserver.kubeconfig)
    ctx: ssl.SSLContext = entry.ssl_context()
    import socket

    with socket.create_connection(("127.0.0.1", apiserver.port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GARBAGE \x00\x01\x02 HTTP/9.9\r\n\r\n")
            reply = tls.recv(4096)
    assert reply.startswith(b"HTTP/1.") and b" 500 " not in reply.split(b"\r\n")[0]
