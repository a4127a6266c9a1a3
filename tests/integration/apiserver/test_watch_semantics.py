"""Watch semantics on an in-process server (ServerThread): bookmarks, sendInitialEvents, timeoutSeconds,
resumes older than the cache ring, and 410 Gone once storage has compacted the history a resume needs."""

from __future__ import annotations

import asyncio
import http.client
import json
import time

import pytest

from kapal.kube.api.config import ApiServerConfig
from kapal.kube.api.server import ServerThread
from kapal.kube.pki import load_kubeconfig

NS = "watching"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = ApiServerConfig(data_dir=tmp_path_factory.mktemp("inproc"), secure_port=0, bind_address="127.0.0.1",
                             bookmark_interval=0.3, watch_cache_size=5, event_ttl=4.0)
    thread = ServerThread(config)
    srv = thread.start()
    srv.ssl = load_kubeconfig(srv.admin_kubeconfig).ssl_context()
    srv.thread = thread
    status, _ = call(srv, "POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    assert status == 201
    yield srv
    thread.stop()


def call(srv, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=srv.ssl, timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def watch(srv, query: str, until=None, seconds: float = 5.0) -> list[dict]:
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=srv.ssl, timeout=seconds + 5)
    conn.request("GET", f"/api/v1/namespaces/{NS}/configmaps?watch=1&{query}")
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    events = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            break
        events.append(json.loads(line))
        if until is not None and until(events):
            break
    conn.close()
    return events


def test_bookmarks_and_timeout(server):
    started = time.monotonic()
    events = watch(server, "allowWatchBookmarks=true&timeoutSeconds=1", seconds=5)
    assert 0.9 < time.monotonic() - started < 3
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) > 0


def test_send_initial_events_ends_with_an_annotated_bookmark(server):
    call(server, "POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "initial"}})
    events = watch(server, "allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                           "&resourceVersion=0",
                   until=lambda evs: evs[-1]["type"] == "BOOKMARK")
    assert [e["type"] for e in events[:-1]] == ["ADDED"] * (len(events) - 1)
    assert "initial" in {e["object"]["metadata"]["name"] for e in events[:-1]}
    assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    status, body = call(server, "GET", f"/api/v1/namespaces/{NS}/configmaps?watch=1&sendInitialEvents=true")
    assert status == 400


def test_resume_older_than_the_ring_then_410_after_compaction(server):
    _, listing = call(server, "GET", f"/api/v1/namespaces/{NS}/configmaps")
    start = listing["metadata"]["resourceVersion"]
    for i in range(12):
        call(server, "POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": f"burst-{i}"}})
    events = watch(server, f"resourceVersion={start}", until=lambda evs: len(evs) == 12)
    assert [e["object"]["metadata"]["name"] for e in events] == [f"burst-{i}" for i in range(12)]
    backend = server.ctx.backend
    current = asyncio.run_coroutine_threadsafe(backend.current_revision(), server.thread._loop).result(5)
    asyncio.run_coroutine_threadsafe(backend.compact(current), server.thread._loop).result(5)
    events = watch(server, f"resourceVersion={start}", until=lambda evs: True)
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
    status, body = call(server, "GET", f"/api/v1/namespaces/{NS}/configmaps?limit=2")
    assert status == 200 and body["metadata"].get("continue")


def test_too_large_resource_version_times_out_with_504(server):
    status, body = call(server, "GET", f"/api/v1/namespaces/{NS}/configmaps?resourceVersion=999999999"
                                       "&resourceVersionMatch=NotOlderThan")
    assert status == 504 and body["reason"] == "Timeout"
    assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_new_namespace_gets_default_service_account_at_once(server):
    status, _ = call(server, "POST", "/api/v1/namespaces", {"metadata": {"name": "fresh"}})
    assert status == 201
    status, body = call(server, "POST", "/api/v1/namespaces/fresh/pods", {
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert status == 201, body
    assert body["spec"]["serviceAccountName"] == "default"


def test_events_expire_after_the_ttl(server):
    old = {"metadata": {"name": "old"}, "involvedObject": {"kind": "Pod", "name": "x", "namespace": NS},
           "reason": "Test", "message": "old news", "type": "Normal", "lastTimestamp": "2020-01-01T00:00:00Z"}
    new = dict(old, metadata={"name": "new"}, lastTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for ev in (old, new):
        assert call(server, "POST", f"/api/v1/namespaces/{NS}/events", ev)[0] == 201
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and call(server, "GET", f"/api/v1/namespaces/{NS}/events/old")[0] != 404:
        time.sleep(0.1)
    assert call(server, "GET", f"/api/v1/namespaces/{NS}/events/old")[0] == 404
    assert call(server, "GET", f"/api/v1/namespaces/{NS}/events/new")[0] == 200
