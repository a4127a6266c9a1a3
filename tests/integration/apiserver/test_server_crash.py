"""kill -9 of the API server during a write storm: no acknowledged write is lost, and a watcher that resumes from
its last resourceVersion sees every object exactly once, in revision order."""

from __future__ import annotations

import http.client
import json
import threading
import time

from apiserver_harness import start_apiserver

from kapal.kube.pki import load_kubeconfig

NS = "storm"


def _conn(server, ctx):
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=10)


def _request(server, ctx, method, path, body=None):
    conn = _conn(server, ctx)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


class Watcher(threading.Thread):
    """A raw watch that reconnects from its last resourceVersion, as an informer would."""

    def __init__(self, server, ctx, rv: str) -> None:
        super().__init__(daemon=True)
        self.server, self.ctx, self.rv = server, ctx, rv
        self.events: list[tuple[str, str, int]] = []
        self.errors: list[str] = []
        self.reconnects = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = _conn(self.server, self.ctx)
                conn.request("GET", f"/api/v1/namespaces/{NS}/configmaps?watch=1&allowWatchBookmarks=true"
                                    f"&resourceVersion={self.rv}&timeoutSeconds=60")
                resp = conn.getresponse()
                if resp.status != 200:
                    self.errors.append(f"watch answered {resp.status}")
                    time.sleep(0.2)
                    continue
                while not self.stop.is_set():
                    line = resp.readline()
                    if not line:
                        break
                    ev = json.loads(line)
                    if ev["type"] == "ERROR":
                        self.errors.append(json.dumps(ev))
                        return
                    rv = ev["object"]["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self.events.append((ev["type"], ev["object"]["metadata"]["name"], int(rv)))
                    self.rv = rv
            except (OSError, http.client.HTTPException, ValueError):
                self.reconnects += 1
                time.sleep(0.1)


def test_kill_9_during_write_storm_loses_nothing(tmp_path):
    server = start_apiserver(tmp_path / "data")
    try:
        ctx = load_kubeconfig(server.kubeconfig).ssl_context()
        assert _request(server, ctx, "POST", "/api/v1/namespaces", {"metadata": {"name": NS}})[0] == 201
        code, listing = _request(server, ctx, "GET", f"/api/v1/namespaces/{NS}/configmaps")
        watcher = Watcher(server, ctx, listing["metadata"]["resourceVersion"])
        watcher.start()
        acked: dict[str, int] = {}
        lock = threading.Lock()
        go = threading.Event()

        def writer(t: int) -> None:
            go.wait()
            conn = _conn(server, ctx)
            for i in range(100000):
                name = f"cm-{t}-{i}"
                try:
                    conn.request("POST", f"/api/v1/namespaces/{NS}/configmaps",
                                 body=json.dumps({"metadata": {"name": name}, "data": {"i": str(i)}}),
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    body = json.loads(resp.read())
                except (OSError, http.client.HTTPException, ValueError):
                    return
                if resp.status == 201:
                    with lock:
                        acked[name] = int(body["metadata"]["resourceVersion"])

        writers = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(6)]
        for w in writers:
            w.start()
        go.set()
        deadline = time.monotonic() + 20
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill9()
        for w in writers:
            w.join(15)
        assert len(acked) >= 300
        server = start_apiserver(server.data_dir, port=server.port)
        code, listing = _request(server, ctx, "GET", f"/api/v1/namespaces/{NS}/configmaps")
        stored = {item["metadata"]["name"]: int(item["metadata"]["resourceVersion"]) for item in listing["items"]}
        missing = [n for n in acked if n not in stored]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        assert all(stored[n] == rv for n, rv in acked.items())
        deadline = time.monotonic() + 20
        while len({name for _, name, _ in watcher.events}) < len(stored) and time.monotonic() < deadline:
            time.sleep(0.05)
        watcher.stop.set()
        assert not watcher.errors, watcher.errors
        names = [name for _, name, _ in watcher.events]
        assert len(names) == len(set(names)), "a watcher saw some event twice"
        assert set(names) == set(stored), "a watcher missed events across the restart"
        revisions = [rv for _, _, rv in watcher.events]
        assert revisions == sorted(revisions)
        assert all(t == "ADDED" for t, _, _ in watcher.events)
        assert watcher.reconnects >= 1
    finally:
        server.stop()
