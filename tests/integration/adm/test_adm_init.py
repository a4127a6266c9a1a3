"""`kapal adm init` on this machine, checked the way a user checks a kubeadm node, then `kapal adm reset -f`.

One init is shared by the module (it takes a few seconds); it runs with a CA the "user" put in
/etc/kubernetes/pki beforehand, so the reuse of a provided CA is part of it. The module refuses to run when
/etc/kubernetes already exists (it would clobber a real node) and always resets at the end; the last test checks
what reset leaves behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[3]
KUBE_DIR = Path("/etc/kubernetes")
PKI = KUBE_DIR / "pki"
ADMIN = KUBE_DIR / "admin.conf"
ENGINE = "unix:///run/kapal/docker.sock"
KUBECTL = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
# not kubeadm's usual 10.244.0.0/16: other clusters on a shared test machine (kapal up) use that one, and two
# bridges routing the same node /24 would take each other's pod traffic
POD_CIDR = "10.236.0.0/16"


def kapal(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kapal.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def kubectl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    binary = KUBECTL if KUBECTL.exists() else Path(shutil.which("kubectl") or "kubectl")
    return subprocess.run([str(binary), f"--kubeconfig={ADMIN}", *args], capture_output=True, text=True,
                          timeout=timeout)


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def host_state() -> dict[str, set[str]]:
    """What the node could leave behind, host-wide: mounts, chains, pinned netns, daemons and control-plane processes,
    links (the pods' own cgroups and processes are checked by pod UID)."""
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(("/var/lib/kubelet", "/etc/kubernetes"))}
    chains = set()
    for table in ("filter", "nat"):
        out = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True).stdout
        chains |= {f"{table}:{line.split()[0][1:]}" for line in out.splitlines() if line.startswith(":")}
        chains |= {f"{table}:rule:{line}" for line in out.splitlines()
                   if "kapal-cni0" in line or POD_CIDR.rsplit(".", 2)[0] + "." in line}
    # kapal pins network namespaces as nsfs bind mounts: the kubelet's under its root, the engine's under its data root
    netns = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
             if " - nsfs " in line and line.split()[4].startswith(("/var/lib/kubelet/", "/var/lib/kapal/engine/"))}
    procs = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if (re.search(r"kapal(\.cli\.main)? (kubelet|apiserver|controller-manager|scheduler)", cmd)
                and "/etc/kubernetes" in cmd) or "--data-root /var/lib/kapal/engine" in cmd:
            procs.add(pid)
    links = set(subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.split("\n"))
    return {"mounts": mounts, "chains": chains, "netns": netns, "procs": procs,
            "links": {line.split(":")[1].strip().split("@")[0] for line in links if line.strip()}}


@pytest.fixture(scope="module")
def node():
    if KUBE_DIR.exists():
        pytest.skip("/etc/kubernetes exists: this test would overwrite a real node (run 'kapal adm reset -f' "
                    "first if it is a leftover)")
    import socket

    for port in (6443, 10250, 10257, 10259):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is in use: another cluster runs on this machine")
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    if POD_CIDR.rsplit(".", 2)[0] + "." in routes:
        pytest.skip(f"a route into {POD_CIDR} exists already: another cluster uses that pod network")
    made_log_dir = not Path("/var/log/kapal").exists()
    before = host_state()
    from kapal.kube.pki import new_ca, write

    user_ca = new_ca("kubernetes")
    write(user_ca, PKI / "ca.crt", PKI / "ca.key")
    started = time.monotonic()
    result = kapal("adm", "init", f"--pod-network-cidr={POD_CIDR}")
    info = {"result": result, "seconds": time.monotonic() - started, "before": before,
            "ca_pem": (PKI / "ca.crt").read_bytes()}
    try:
        assert result.returncode == 0, f"init failed:\n{result.stdout}\n{result.stderr}"
        yield info
    finally:
        if KUBE_DIR.exists():
            kapal("adm", "reset", "-f", timeout=120)
        if made_log_dir:
            shutil.rmtree("/var/log/kapal", ignore_errors=True)


def test_init_prints_kubeadms_text_and_a_join_line(node):
    out = node["result"].stdout
    for line in ("[preflight] Running pre-flight checks", "[certs] Using existing ca certificate authority",
                 '[certs] Generating "apiserver" certificate and key',
                 '[kubeconfig] Writing "admin.conf" kubeconfig file',
                 '[control-plane] Creating static Pod manifest for "kube-apiserver"',
                 "[kubelet-start] Starting the kubelet",
                 "[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles",
                 "Your Kubernetes control-plane has initialized successfully!"):
        assert line in out, line
    m = re.search(r"kapal adm join (\S+) --token ([a-z0-9]{6}\.[a-z0-9]{16}) \\\n\t--discovery-token-ca-cert-hash "
                  r"sha256:([0-9a-f]{64})", out)
    assert m, out
    pub = openssl("x509", "-pubkey", "-noout", "-in", str(PKI / "ca.crt"))
    der = openssl("rsa", "-pubin", "-outform", "der", data=pub)
    sha = subprocess.run(["sha256sum"], input=der, capture_output=True, check=True).stdout.split()[0].decode()
    assert m.group(3) == sha


def test_the_users_ca_is_reused(node):
    assert (PKI / "ca.crt").read_bytes() == node["ca_pem"]
    issuer = openssl("x509", "-noout", "-issuer", "-nameopt", "RFC2253", "-in", str(PKI / "apiserver.crt")).decode()
    assert issuer.strip() == "issuer=CN=kubernetes"
    openssl("verify", "-CAfile", str(PKI / "ca.crt"), str(PKI / "apiserver.crt"))


def test_node_is_ready(node):
    r = kubectl("get", "nodes", "-o", "json")
    assert r.returncode == 0, r.stderr
    nodes = json.loads(r.stdout)["items"]
    assert len(nodes) == 1
    conditions = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    labels = nodes[0]["metadata"]["labels"]
    assert labels.get("node-role.kubernetes.io/control-plane") == ""


def test_control_plane_runs_as_static_pods_with_mirror_pods(node):
    r = kubectl("get", "pods", "-n", "kube-system", "-o", "json")
    pods = {p["metadata"]["name"]: p for p in json.loads(r.stdout)["items"]}
    host = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"][0]["metadata"]["name"]
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        pod = pods[f"{component}-{host}"]
        assert pod["status"]["phase"] == "Running"
        assert pod["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
        assert "kubernetes.io/config.mirror" in pod["metadata"]["annotations"]
        assert pod["spec"]["hostNetwork"] is True and pod["spec"]["priorityClassName"] == "system-node-critical"
        assert pod["spec"]["containers"][0]["command"][:2] == ["kapal", component.removeprefix("kube-")]
        assert pod["spec"]["containers"][0]["image"] == f"kapal.local/{component}:v1.33.0"
    ps = subprocess.run(["docker", "-H", ENGINE, "ps", "--format", "{{.Names}}"], capture_output=True,
                        text=True).stdout.split()
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        name = next((n for n in ps if n.startswith(f"k8s_{component}_{component}-{host}_kube-system_")), None)
        assert name, ps
        # as kubeadm's: RuntimeDefault, which the kubelet runs under the engine's default seccomp filter
        assert pods[f"{component}-{host}"]["spec"]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        pid = subprocess.run(["docker", "-H", ENGINE, "inspect", "-f", "{{.State.Pid}}", name], capture_output=True,
                             text=True).stdout.strip()
        assert "Seccomp:\t2\n" in Path(f"/proc/{pid}/status").read_text()


def test_addons_run_kube_proxy_and_coredns(node):
    deadline = time.monotonic() + 90
    while True:
        pods = json.loads(kubectl("get", "pods", "-n", "kube-system", "-o", "json").stdout)["items"]
        ready = {p["metadata"]["name"] for p in pods
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))}
        proxies = [n for n in ready if n.startswith("kube-proxy-")]
        dns = [n for n in ready if n.startswith("coredns-")]
        if proxies and len(dns) == 2:
            break
        assert time.monotonic() < deadline, [(p["metadata"]["name"], p["status"].get("phase")) for p in pods]
        time.sleep(1)
    svc = json.loads(kubectl("get", "svc", "-n", "kube-system", "kube-dns", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert "[addons] Applied essential addon: CoreDNS" in node["result"].stdout
    assert "[addons] Applied essential addon: kube-proxy" in node["result"].stdout


def _busybox_image(tag: str) -> None:
    tmp = Path(f"/tmp/{tag.replace(':', '-').replace('/', '-')}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        kapal("rootfs", "busybox", str(tmp / "root"))
        subprocess.run(["tar", "-C", str(tmp / "root"), "-cf", str(tmp / "rootfs.tar"), "."], check=True)
        r = subprocess.run(["docker", "-H", ENGINE, "import", str(tmp / "rootfs.tar"), tag], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_deployment_is_scheduled_and_runs_on_the_node(node, unique):
    # a single control-plane node: remove the control-plane taint, as kubeadm's docs tell single-node users
    r = kubectl("taint", "nodes", "--all", "node-role.kubernetes.io/control-plane-")
    assert r.returncode == 0, r.stderr
    image = f"kapal.local/{unique}:test"
    _busybox_image(image)
    try:
        assert kubectl("create", "deployment", unique, f"--image={image}", "--", "sleep", "3600").returncode == 0
        r = kubectl("wait", "--for=condition=Available", f"deployment/{unique}", "--timeout=90s", timeout=120)
        assert r.returncode == 0, r.stderr + kubectl("describe", "pods").stdout
        pods = json.loads(kubectl("get", "pods", "-l", f"app={unique}", "-o", "json").stdout)["items"]
        assert pods[0]["status"]["phase"] == "Running" and pods[0]["spec"]["nodeName"]
        assert pods[0]["status"]["podIP"].startswith(POD_CIDR.rsplit(".", 2)[0] + ".")
        r = kubectl("exec", f"deploy/{unique}", "--", "cat", "/etc/hostname", timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == pods[0]["metadata"]["name"]
        # the addons at work: the pod asks CoreDNS (kapal dns) at kube-dns's ClusterIP, through kube-proxy's rules
        r = kubectl("exec", f"deploy/{unique}", "--", "nslookup", "kubernetes.default.svc.cluster.local",
                    timeout=60)
        assert r.returncode == 0 and "Address: 10.96.0.1" in r.stdout, r.stdout + r.stderr
    finally:
        kubectl("delete", "deployment", unique, "--wait=true", "--timeout=60s", timeout=90)
        deadline = time.monotonic() + 60
        while kubectl("get", "pods", "-l", f"app={unique}", "-o", "name").stdout.strip() and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        subprocess.run(["docker", "-H", ENGINE, "rmi", "-f", image], capture_output=True)


EXPECTED = {  # file: (subject, CA?, extended key usages, DNS SANs, days)
    "ca.crt": ("CN=kubernetes", True, "", None, 3650),
    "apiserver.crt": ("CN=kube-apiserver", False, "TLS Web Server Authentication", "kubernetes", 365),
    "apiserver-kubelet-client.crt": ("CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins", False,
                                     "TLS Web Client Authentication", None, 365),
    "front-proxy-ca.crt": ("CN=front-proxy-ca", True, "", None, 3650),
    "front-proxy-client.crt": ("CN=front-proxy-client", False, "TLS Web Client Authentication", None, 365),
}
KUBECONFIGS = {"admin.conf": "CN=kubernetes-admin,O=kubeadm:cluster-admins",
               "super-admin.conf": "CN=kubernetes-super-admin,O=system:masters",
               "kubelet.conf": "CN=system:node:{node},O=system:nodes",
               "controller-manager.conf": "CN=system:kube-controller-manager",
               "scheduler.conf": "CN=system:kube-scheduler"}


def _check_cert(text: str, subject: str, ca: bool, eku: str, days: int) -> None:
    assert f"Subject: {subject}\n" in text, text
    assert "Public-Key: (2048 bit)" in text
    assert ("CA:TRUE" if ca else "CA:FALSE") in text
    usage = "Digital Signature, Key Encipherment, Certificate Sign" if ca else "Digital Signature, Key Encipherment"
    assert re.search(r"X509v3 Key Usage: critical\n\s+" + re.escape(usage) + "\n", text), text
    if eku:
        assert re.search(r"X509v3 Extended Key Usage: ?\n\s+" + re.escape(eku) + "\n", text), text
    start = re.search(r"Not Before: (.+)\n", text).group(1).strip()
    end = re.search(r"Not After : (.+)\n", text).group(1).strip()
    import datetime as dt

    fmt = "%b %d %H:%M:%S %Y %Z"
    span = dt.datetime.strptime(end, fmt) - dt.datetime.strptime(re.sub(" +", " ", start), fmt)
    assert abs(span - dt.timedelta(days=days, minutes=5)) < dt.timedelta(minutes=1), span


def test_every_certificate_matches_kubeadms(node):
    import base64

    import yaml

    host = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"][0]["metadata"]["name"]
    address = re.search(r"kapal adm join ([0-9.]+):6443", node["result"].stdout).group(1)
    for name, (subject, ca, eku, dns, days) in EXPECTED.items():
        text = openssl("x509", "-noout", "-text", "-nameopt", "RFC2253", "-in", str(PKI / name)).decode()
        if name == "ca.crt":
            assert "Subject: CN=kubernetes" in text
            continue
        _check_cert(text, subject, ca, eku, days)
        if dns:
            sans = re.search(r"X509v3 Subject Alternative Name: ?\n\s+(.+)\n", text).group(1)
            for want in (f"DNS:{host}", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                         "DNS:kubernetes.default.svc.cluster.local", "IP Address:10.96.0.1", f"IP Address:{address}"):
                assert want in sans, (want, sans)
    for conf, subject in KUBECONFIGS.items():
        user = yaml.safe_load((KUBE_DIR / conf).read_text())["users"][0]["user"]
        pem = base64.b64decode(user["client-certificate-data"])
        text = openssl("x509", "-noout", "-text", "-nameopt", "RFC2253", data=pem).decode()
        _check_cert(text, subject.format(node=host), False, "TLS Web Client Authentication", 365)
    for f in ("sa.key", "sa.pub"):
        assert (PKI / f).is_file()
    assert oct((PKI / "ca.key").stat().st_mode & 0o777) == "0o600"


def test_daemons_run_detached_with_pidfiles_and_logs(node):
    for name in ("kubelet", "engine"):
        pid = int(Path(f"/run/kapal/{name}.pid").read_text().split()[0])
        assert os.getsid(pid) == pid
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{pid}/fd/2") == f"/var/log/kapal/{name}.log"


def test_a_second_init_fails_in_preflight(node):
    r = kapal("adm", "init", timeout=120)
    assert r.returncode == 1
    assert r.stderr.count("error execution phase preflight: [preflight] Some fatal errors occurred:") == 1
    for line in ("\t[ERROR Port-6443]: Port 6443 is in use",
                 "\t[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: "
                 "/etc/kubernetes/manifests/kube-apiserver.yaml already exists",
                 "\t[ERROR DirAvailable--etc-kubernetes-manifests]: /etc/kubernetes/manifests is not empty",
                 "\t[ERROR FileAvailable--etc-kubernetes-admin.conf]: /etc/kubernetes/admin.conf already exists",
                 "\t[ERROR Port-10250]: Port 10250 is in use"):
        assert line in r.stderr, r.stderr
    assert "[preflight] If you know what you are doing, you can make a check non-fatal with " \
           "`--ignore-preflight-errors=...`" in r.stderr
    assert "[certs]" not in r.stdout


def _pod_traces(uids: set[str]) -> tuple[list[str], list[str]]:
    """Cgroups and processes of these pods (other clusters on the host have other pod UIDs)."""
    names = {f"pod{u}" for u in uids}
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods/**/pod*") if p.name in names]
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if any(n in text for n in names):
            procs.append(pid)
    return cgroups, procs


def test_zz_reset_leaves_the_machine_as_it_was(node):
    uids = {p["metadata"]["uid"] for p in json.loads(kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]}
    for p in json.loads(kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]:
        mirror = p["metadata"].get("annotations", {}).get("kubernetes.io/config.mirror")
        if mirror:
            uids.add(mirror)  # a static pod's cgroup is named after its own UID, which the mirror pod records
    cgroups, procs = _pod_traces(uids)
    assert cgroups and procs  # the check below can see them
    r = kapal("adm", "reset", "-f", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not KUBE_DIR.exists() and not Path("/var/lib/kubelet").exists()
    assert not Path("/var/lib/kapal/apiserver").exists()
    after = host_state()
    before = node["before"]
    for key in ("mounts", "netns", "procs"):
        assert after[key] <= before[key], (key, after[key] - before[key])
    assert _pod_traces(uids) == ([], [])
    new_chains = after["chains"] - before["chains"]
    assert not [c for c in new_chains if "KUBE-" in c or "kapal-cni0" in c or POD_CIDR.rsplit(".", 2)[0] in c
                or c.startswith(("filter:KAPAL-SERVICES", "nat:KAPAL-SERVICES"))], new_chains
    assert "kapal-cni0" not in after["links"]
    images = Path("/var/lib/kapal/engine/image/images.json").read_text()
    assert "kapal.local/kube-apiserver" in images  # the engine's images stay, as with kubeadm
