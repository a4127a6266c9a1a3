"""Real pods on this machine through `kapal up`, driven by kubectl 1.27 and 1.33 and the Python client.

One cluster for the module; each test makes its own pods. The last test checks `kapal down` leaves nothing.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from kubelet_harness import IMAGE, UpCluster, kubectl_binary

pytestmark = [pytest.mark.root, pytest.mark.slow]

SECRET_POD = """apiVersion: v1
kind: Pod
metadata: {name: sec}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: prepare
    image: bar/busybox:1
    command: ["sh", "-c", "echo prepared > /work/ready"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: c
    image: bar/busybox:1
    command: ["sh", "-c", "cat /work/ready; echo USER=$USER MODE=$MODE; sleep 3600"]
    env:
    - name: USER
      valueFrom: {secretKeyRef: {name: creds, key: user}}
    envFrom:
    - configMapRef: {name: settings}
    volumeMounts:
    - {name: s, mountPath: /etc/creds, readOnly: true}
    - {name: work, mountPath: /work}
    - {name: info, mountPath: /etc/podinfo}
  volumes:
  - name: s
    secret: {secretName: creds, defaultMode: 0400}
  - name: work
    emptyDir: {medium: Memory, sizeLimit: 8Mi}
  - name: info
    downwardAPI:
      items:
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = UpCluster(tmp_path_factory.mktemp("kubelet-pods"))
    c.stopped = False  # type: ignore[attr-defined]
    try:
        c.start()
        c.import_busybox()
        why = c.engine_supports_pods()
        if why:
            pytest.skip(why)
        yield c
    finally:
        if not c.stopped:  # type: ignore[attr-defined]
            c.stop()


def _apply(cluster: UpCluster, manifest: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=manifest)


def _running(cluster: UpCluster, name: str) -> dict:
    def check():
        pod = cluster.get("pod", name)
        st = pod["status"]
        return pod if st.get("phase") == "Running" and all(
            c.get("ready") for c in st.get("containerStatuses") or [{}]) else None
    return cluster.wait_for(f"pod {name} running", check)


def test_run_and_logs(cluster):
    cluster.kubectl("run", "t", f"--image={IMAGE}", "--restart=Never", "--", "cat", "/etc/hostname")
    cluster.wait_for("pod t succeeded", lambda: cluster.pod_phase("t") == "Succeeded")
    assert cluster.kubectl("logs", "t").stdout == "t\n"
    pod = cluster.get("pod", "t")
    st = pod["status"]
    term = st["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "Completed" and term["exitCode"] == 0
    assert st["containerStatuses"][0]["containerID"].startswith("kapal://")
    assert st["hostIP"] == cluster.get("node", cluster.node)["status"]["addresses"][0]["address"] != "127.0.0.1"
    assert st["qosClass"] == "BestEffort" and st["podIP"].startswith(cluster.pod_range.split(".0.0/")[0])
    assert {c["type"] for c in st["conditions"]} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready",
                                                     "PodReadyToStartContainers"}
    cluster.kubectl("delete", "pod", "t", "--wait=true")


def test_httpd_pod_answers_at_its_ip_and_streams(cluster, tmp_path):
    _apply(cluster, """apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: httpd
    image: bar/busybox:1
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports: [{containerPort: 80, name: http}]
    readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
""")
    pod = _running(cluster, "web")
    ip = pod["status"]["podIP"]
    assert urllib.request.urlopen(f"http://{ip}/", timeout=5).read() == b"hello from a pod\n"
    # exec: 1.33 over WebSocket (v5), 1.27 over SPDY/3.1, exit codes and stdin
    for version in ("1.33", "1.27"):
        r = cluster.kubectl("exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3", version=version,
                            check=False)
        assert (r.returncode, r.stdout) == (3, "out\n") and "err" in r.stderr, (version, r)
        r = cluster.kubectl("exec", "-i", "web", "--", "tr", "a-z", "A-Z", version=version, input="shout\n")
        assert r.stdout == "SHOUT\n"
    # cluster DNS through the Service proxy (kapal up runs both)
    assert cluster.kubectl("exec", "web", "--", "cat", "/etc/resolv.conf").stdout.startswith(
        "search default.svc.cluster.local svc.cluster.local cluster.local")
    looked_up = cluster.kubectl("exec", "web", "--", "nslookup", "kubernetes.default.svc.cluster.local").stdout
    assert "10.96.0.1" in looked_up
    # kubectl cp both ways (tar over exec)
    src = tmp_path / "up.txt"
    src.write_text("copied in\n")
    cluster.kubectl("cp", str(src), "web:/tmp/up.txt")
    assert cluster.kubectl("exec", "web", "--", "cat", "/tmp/up.txt").stdout == "copied in\n"
    cluster.kubectl("cp", "web:/www/index.html", str(tmp_path / "down.txt"), version="1.27")
    assert (tmp_path / "down.txt").read_text() == "hello from a pod\n"
    # port-forward on 127.0.0.1: SPDY over WebSocket (1.33) and plain SPDY (1.27)
    for version in ("1.33", "1.27"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        pf = subprocess.Popen([str(kubectl_binary(version)), "--kubeconfig", str(cluster.admin), "port-forward",
                               "pod/web", f"{port}:80"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=cluster.env, text=True)
        try:
            assert "Forwarding from 127.0.0.1" in pf.stdout.readline()
            for _ in range(2):
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read() == \
                    b"hello from a pod\n"
        finally:
            os.kill(pf.pid, signal.SIGTERM)
            pf.wait(10)


def test_host_port(cluster):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    _apply(cluster, f"""apiVersion: v1
kind: Pod
metadata: {{name: hp}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: bar/busybox:1
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports: [{{containerPort: 80, hostPort: {port}}}]
""")
    _running(cluster, "hp")
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read() == b"hello from a pod\n"
    cluster.kubectl("delete", "pod", "hp", "--wait=true")
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert f"--dport {port}" not in rules


def test_image_pull_policy_always_pulls(cluster, tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "image_helpers", Path(__file__).resolve().parents[1] / "image" / "image_helpers.py")
    helpers = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(helpers)  # type: ignore[union-attr]
    registry = helpers.LocalRegistry(tmp_path)
    try:
        ref = f"{registry.host}/kt/bb:1"
        assert cluster.kapal("tag", IMAGE, ref).returncode == 0
        r = cluster.kapal("push", ref)
        assert r.returncode == 0, r.stderr
        _apply(cluster, f"""apiVersion: v1
kind: Pod
metadata: {{name: pulled}}
spec:
  restartPolicy: Never
  containers: [{{name: c, image: "{ref}", imagePullPolicy: Always, command: ["echo", "pulled"]}}]
""")
        cluster.wait_for("the pulled pod done", lambda: cluster.pod_phase("pulled") == "Succeeded")
        events = json.loads(cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=pulled", "-o",
                                            "json").stdout)["items"]
        messages = [e["message"] for e in events if e["reason"] in ("Pulling", "Pulled")]
        assert f'Pulling image "{ref}"' in messages and any(m.startswith("Successfully pulled image") for m in messages)
        assert cluster.kubectl("logs", "pulled").stdout == "pulled\n"
        cluster.kubectl("delete", "pod", "pulled", "--wait=true")
    finally:
        registry.stop()


def test_containers_of_a_pod_share_network_ipc_and_uts(cluster):
    _apply(cluster, """apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: bar/busybox:1
    command: ["sh", "-c", "echo shared > /dev/shm/note; httpd -f -p 127.0.0.1:8080 -h /dev/shm"]
  - {name: b, image: bar/busybox:1, command: ["sleep", "3600"]}
""")
    _running(cluster, "duo")

    def ns(container: str) -> list[str]:
        out = cluster.kubectl("exec", "duo", "-c", container, "--", "sh", "-c",
                              "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done; hostname").stdout
        return out.split()

    a, b = ns("a"), ns("b")
    assert a[:3] == b[:3] and a[3] != b[3]  # net, ipc, uts shared; each its own pid namespace
    assert a[4] == b[4] == "duo"
    assert cluster.kubectl("exec", "duo", "-c", "b", "--", "cat", "/dev/shm/note").stdout == "shared\n"
    assert cluster.kubectl("exec", "duo", "-c", "b", "--", "wget", "-qO-", "http://127.0.0.1:8080/note").stdout == \
        "shared\n"
    cluster.kubectl("delete", "pod", "duo", "--wait=false")


@pytest.mark.parametrize("version", ["1.33", "1.27"])
def test_run_interactive_attaches(cluster, version):
    name = f"ia{version.replace('.', '')}"
    r = cluster.kubectl("run", "-i", "--rm", name, f"--image={IMAGE}", "--restart=Never", "--", "sh",
                        version=version, input="echo from-$((6*7))\nexit 0\n", timeout=90)
    assert "from-42" in r.stdout and f'pod "{name}" deleted' in r.stdout


def test_python_client_exec_and_logs(cluster):
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream

    _apply(cluster, """apiVersion: v1
kind: Pod
metadata: {name: pyc}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: bar/busybox:1, command: ["sh", "-c", "echo started; sleep 3600"]}
""")
    _running(cluster, "pyc")
    core = client.CoreV1Api(config.new_client_from_config(str(cluster.admin)))
    out = stream(core.connect_get_namespaced_pod_exec, "pyc", "default", command=["sh", "-c", "echo hi; id -u"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hi\n0\n"
    resp = stream(core.connect_get_namespaced_pod_exec, "pyc", "default", command=["sh", "-c", "exit 7"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=10)
    assert resp.returncode == 7
    assert core.read_namespaced_pod_log("pyc", "default") == "started\n"
    # port-forward over WebSocket channels (v4.channel.k8s.io), to an httpd started by exec
    stream(core.connect_get_namespaced_pod_exec, "pyc", "default", command=["httpd", "-p", "8080", "-h", "/www"],
           stderr=True, stdin=False, stdout=True, tty=False)
    pf = portforward(core.connect_get_namespaced_pod_portforward, "pyc", "default", ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: pyc\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    assert data.endswith(b"\r\n\r\nhello from a pod\n") and pf.error(8080) is None
    pf.close()


def test_secret_volume_env_and_updates(cluster):
    cluster.kubectl("create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=pass=one")
    cluster.kubectl("create", "configmap", "settings", "--from-literal=MODE=prod")
    _apply(cluster, SECRET_POD)
    _running(cluster, "sec")
    assert cluster.kubectl("logs", "sec").stdout == "prepared\nUSER=admin MODE=prod\n"
    init = cluster.get("pod", "sec")["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed"
    assert cluster.kubectl("exec", "sec", "--", "cat", "/etc/podinfo/name").stdout == "sec"
    assert cluster.kubectl("exec", "sec", "--", "df", "/work").stdout.split()[-5] == "8192"  # tmpfs of 8Mi
    token = cluster.kubectl("exec", "sec", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token").stdout
    assert token.count(".") == 2  # a JWT from the TokenRequest API
    assert cluster.kubectl("exec", "sec", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
                           ).stdout == "default"
    ls = cluster.kubectl("exec", "sec", "--", "ls", "-L", "/etc/creds").stdout.split()
    assert ls == ["pass", "user"]
    assert cluster.kubectl("exec", "sec", "--", "cat", "/etc/creds/pass").stdout == "one"
    mode = cluster.kubectl("exec", "sec", "--", "stat", "-L", "-c", "%a", "/etc/creds/user").stdout.strip()
    assert mode == "400"
    cluster.kubectl("patch", "secret", "creds", "-p", json.dumps({"data": {"pass": base64.b64encode(b"two").decode()}}))
    started = time.monotonic()
    cluster.wait_for("the secret's new value in the file", lambda: cluster.kubectl(
        "exec", "sec", "--", "cat", "/etc/creds/pass").stdout == "two", timeout=60, interval=1)
    assert time.monotonic() - started < 60


def test_oomkilled_and_liveness_restart(cluster):
    _apply(cluster, """apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: bar/busybox:1
    command: ["sh", "-c", "head -c 300m /dev/zero | tail"]
    resources: {limits: {memory: 32Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: bar/busybox:1
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3600"]
    livenessProbe: {exec: {command: ["cat", "/tmp/nonexistent"]}, periodSeconds: 1, failureThreshold: 1}
""")
    cluster.wait_for("OOMKilled", lambda: cluster.container_state("oom").get("state", {}).get("terminated", {}).get(
        "reason") == "OOMKilled")
    assert cluster.container_state("oom")["state"]["terminated"]["exitCode"] == 137
    assert cluster.get("pod", "oom")["status"]["qosClass"] == "Burstable"
    cluster.wait_for("a liveness restart", lambda: cluster.container_state("live").get("restartCount", 0) >= 1)
    assert cluster.container_state("live")["lastState"]["terminated"]["exitCode"] == 137
    assert cluster.kubectl("logs", "live", "--previous").returncode == 0
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=live", "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"Unhealthy", "Killing"} <= reasons
    cluster.kubectl("delete", "pod", "oom", "live", "--wait=true")


def test_readiness_keeps_a_pod_out_of_endpoints(cluster):
    _apply(cluster, """apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  selector: {app: gated}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: gated, labels: {app: gated}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: bar/busybox:1
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    readinessProbe: {httpGet: {path: /missing, port: 80}, periodSeconds: 1}
    lifecycle:
      preStop: {exec: {command: ["sh", "-c", "echo stopping > /host/prestop"]}}
    volumeMounts: [{name: host, mountPath: /host}]
  volumes:
  - name: host
    hostPath: {path: %s, type: DirectoryOrCreate}
""" % (cluster.workdir / "hostdir"))
    cluster.wait_for("pod gated running", lambda: cluster.pod_phase("gated") == "Running")
    ip = cluster.get("pod", "gated")["status"].get("podIP")

    def not_ready_address():
        subsets = cluster.get("endpoints", "svc").get("subsets") or []
        return subsets and [a["ip"] for a in subsets[0].get("notReadyAddresses") or []] == [ip] and not subsets[0].get(
            "addresses")
    cluster.wait_for("the pod listed as not ready", not_ready_address)
    pod = cluster.get("pod", "gated")
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "False" and ready["ContainersReady"] == "False"
    cluster.kubectl("delete", "pod", "gated", "--wait=true")
    assert (cluster.workdir / "hostdir" / "prestop").read_text() == "stopping\n"  # preStop ran before the kill
    cluster.kubectl("delete", "service", "svc")


def test_static_pod_and_mirror(cluster):
    manifest = cluster.dir / "manifests" / "st.yaml"
    manifest.write_text("""apiVersion: v1
kind: Pod
metadata: {name: st}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: bar/busybox:1, command: ["sh", "-c", "echo static; sleep 3600"]}
""")
    mirror = f"st-{cluster.node}"
    cluster.wait_for("the mirror pod running", lambda: cluster.pod_phase(mirror) == "Running")
    pod = cluster.get("pod", mirror)
    assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert pod["metadata"]["annotations"]["kubernetes.io/config.mirror"]
    assert cluster.kubectl("logs", mirror).stdout == "static\n"
    before = cluster.container_state(mirror)["containerID"]
    cluster.kubectl("delete", "pod", mirror, timeout=60)  # a user deleting the mirror: it comes back, untouched
    cluster.wait_for("the mirror pod back", lambda: (cluster.container_state(mirror) or {}).get("ready"))
    assert cluster.container_state(mirror)["containerID"] == before
    manifest.unlink()
    cluster.wait_for("the mirror pod gone", lambda: cluster.kubectl("get", "pod", mirror, check=False).returncode != 0)


def test_bad_input_has_clear_status(cluster):
    _apply(cluster, """apiVersion: v1
kind: Pod
metadata: {name: noimg}
spec:
  containers: [{name: c, image: "127.0.0.1:1/no/such:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: nocmd}
spec:
  restartPolicy: Never
  containers: [{name: c, image: bar/busybox:1, command: ["no-such-command"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: badvol}
spec:
  containers:
  - {name: c, image: bar/busybox:1, volumeMounts: [{name: h, mountPath: /h}]}
  volumes: [{name: h, hostPath: {path: /no/such/dir/at/all, type: Directory}}]
""")
    cluster.wait_for("ErrImagePull", lambda: cluster.container_state("noimg").get("state", {}).get("waiting", {}).get(
        "reason") == "ErrImagePull")
    cluster.wait_for("ImagePullBackOff", lambda: cluster.container_state("noimg")["state"]["waiting"]["reason"] ==
                     "ImagePullBackOff", timeout=20)
    cluster.wait_for("exit 127", lambda: cluster.container_state("nocmd").get("state", {}).get("terminated", {}).get(
        "exitCode") == 127)
    assert "executable file not found" in cluster.container_state("nocmd")["state"]["terminated"]["message"]
    assert cluster.pod_phase("nocmd") == "Failed"
    assert cluster.wait_for("FailedMount", lambda: any(
        e["reason"] == "FailedMount" and "hostPath type check failed: /no/such/dir/at/all is not a directory" in
        e["message"] for e in json.loads(cluster.kubectl("get", "events", "--field-selector",
                                                         "involvedObject.name=badvol", "-o", "json").stdout)["items"]))
    assert cluster.container_state("badvol")["state"]["waiting"]["reason"] == "ContainerCreating"
    cluster.kubectl("delete", "pod", "noimg", "nocmd", "badvol", "--wait=true")


LIMITS_POD = """apiVersion: v1
kind: Pod
metadata: {name: limits}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: bar/busybox:1
    command: ["sh", "-c", "grep MemTotal /proc/meminfo; grep -c ^processor /proc/cpuinfo"]
    resources:
      limits: {memory: 256Mi, cpu: "1"}
"""


def test_pods_see_their_own_limits_in_proc(cluster):
    """`kapal up`'s engine binds lxcfs's /proc files into pods: the limits, not the host's 24 GB and 2 CPUs (a
    Guaranteed pod: it starts also where root cannot lower oom_score_adj)."""
    _apply(cluster, LIMITS_POD)
    cluster.wait_for("pod limits succeeded", lambda: cluster.pod_phase("limits") == "Succeeded")
    meminfo, cpus = cluster.kubectl("logs", "limits").stdout.splitlines()
    assert meminfo.split() == ["MemTotal:", str(256 * 1024), "kB"] and cpus == "1"
    cluster.kubectl("delete", "pod", "limits", "--wait=true")


def test_nothing_leaks_after_pods_are_deleted(cluster):
    cluster.kubectl("delete", "pods", "--all", "--wait=true", timeout=120)
    pods_dir = cluster.dir / "kubelet" / "pods"
    cluster.wait_for("no pod directories", lambda: not list(pods_dir.iterdir()))
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(pods_dir) in line]
    veths = os.listdir(f"/sys/class/net/{cluster.pod_bridge}/brif") if os.path.exists(
        f"/sys/class/net/{cluster.pod_bridge}/brif") else []
    assert veths == []
    leases = cluster.dir / "kubelet" / "cni" / "ipam" / "kubepods"
    assert not [f for f in leases.iterdir() if f.name[0].isdigit()] if leases.exists() else True
    ps = cluster.kapal("ps", "-a", "-q")
    assert ps.stdout.strip() == b""


def test_down_leaves_nothing(cluster):
    cluster.stopped = True
    assert cluster.stop() == []
