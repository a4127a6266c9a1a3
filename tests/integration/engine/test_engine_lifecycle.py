"""Everyday container verbs with the real docker CLI: a published httpd, logs -f, stats, top, diff,
restart, rm -f (port freed, veth gone), pause, rename, kill WINCH, exec -it with resize, cp, events,
networks, system df."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
from engine_helpers import PtySession, cgroup_dir, host_veths, iptables_rules

pytestmark = pytest.mark.root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _host_veth(engine_session, sandbox_id: str) -> str:
    record = Path("/run/kapal/network") / engine_session["bridge"] / "results" / (
        f"kapal-{engine_session['bridge']}-{sandbox_id}-eth0.json")
    result = json.loads(record.read_text())["result"]
    bridge = engine_session["bridge"]
    return next(i["name"] for i in result["interfaces"] if not i.get("sandbox") and i["name"] != bridge)


def test_published_httpd_and_everyday_verbs(docker, busybox, engine_session, unique, tmp_path):
    port = free_port()
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("hello from kapal\n")
    name = f"{unique}-web"
    cid = docker.out("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", "-v", f"{www}:/www", busybox,
                     "httpd", "-f", "-v", "-p", "80", "-h", "/www")
    try:
        assert _get(f"http://127.0.0.1:{port}/") == "hello from kapal\n"
        ps = docker.out("ps", "--format", "{{.Names}} {{.Ports}}", "-f", f"name={name}")
        assert ps == f"{name} 127.0.0.1:{port}->80/tcp"
        assert docker.out("port", name) == f"80/tcp -> 127.0.0.1:{port}"
        pid = docker.out("inspect", "-f", "{{.State.Pid}}", name)
        top = docker.out("top", name).splitlines()
        assert top[0].split()[:2] == ["UID", "PID"] and any(line.split()[1] == pid for line in top[1:])
        stats = docker.out("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", name)
        assert re.fullmatch(rf"{name} 1 [\d.]+[KMG]?i?B / [\d.]+[KMG]iB", stats), stats
        docker("exec", name, "sh", "-c", "echo changed > /etc/motd && mkdir /made")
        diff = docker.out("diff", name).splitlines()
        assert "C /etc/motd" in diff and "A /made" in diff and not any("hosts" in d for d in diff)
        started = docker.out("inspect", "-f", "{{.State.StartedAt}}", name)
        assert docker.out("restart", "-t", "1", name) == name
        assert docker.out("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", name).split()[0] == "running"
        assert docker.out("inspect", "-f", "{{.State.StartedAt}}", name) != started
        assert _get(f"http://127.0.0.1:{port}/") == "hello from kapal\n"
        sandbox = docker.out("inspect", "-f", "{{.NetworkSettings.SandboxID}}", name)
        netns = docker.out("inspect", "-f", "{{.NetworkSettings.SandboxKey}}", name)
        ip = docker.out("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
        bridge = engine_session["bridge"]
        lease = Path("/run/kapal/network") / bridge / "ipam" / f"kapal-{bridge}" / ip
        assert lease.read_text().split()[0] == sandbox  # host-local: the holder, then the interface
        veth = _host_veth(engine_session, sandbox)
        assert veth in host_veths(engine_session["bridge"]) and os.path.exists(netns)
        assert f"--dport {port}" in iptables_rules()
        df = docker.out("system", "df").splitlines()
        assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
        containers = next(line.split() for line in df if line.startswith("Containers"))
        assert int(containers[1]) >= 1 and int(containers[2]) >= 1
    finally:
        assert docker.out("rm", "-f", name) == name
    assert not os.path.exists(f"/sys/class/net/{veth}") and not os.path.exists(netns) and not lease.exists()
    assert f"--dport {port}" not in iptables_rules()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the host port is free again
    assert not cgroup_dir("memory", cid).exists()


def test_logs_follow_timestamps_tail_and_since(docker, busybox, unique):
    name = f"{unique}-logs"
    docker("run", "-d", "--name", name, busybox, "sh", "-c",
           "for i in 1 2 3 4; do echo line $i; echo err $i >&2; sleep 0.3; done")
    try:
        r = docker("logs", "-f", name)
        assert r.stdout.split("\n")[:4] == ["line 1", "line 2", "line 3", "line 4"]
        assert r.stderr.split("\n")[:4] == ["err 1", "err 2", "err 3", "err 4"]
        last = docker("logs", "-t", "--tail", "2", name)  # the last two records: "line 4" and "err 4"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z line 4\n", last.stdout), last.stdout
        assert last.stderr.endswith("Z err 4\n")
        assert docker.out("logs", "--since", "2030-01-01T00:00:00Z", name) == ""
        assert docker.out("wait", name) == "0"
        log_path = docker.out("inspect", "-f", "{{.LogPath}} {{.HostConfig.LogConfig.Type}}", name).split()
        assert log_path[1] == "json-file"
        records = [json.loads(line) for line in Path(log_path[0]).read_text().splitlines()]
        assert {"log": "line 1\n", "stream": "stdout"}.items() <= records[0].items()
    finally:
        docker("rm", "-f", name, check=False)


def test_log_rotation_by_max_size(docker, busybox, unique):
    name = f"{unique}-rot"
    docker("run", "--name", name, "--log-opt", "max-size=2k", "--log-opt", "max-file=3", busybox, "sh", "-c",
           "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done")
    try:
        path = Path(docker.out("inspect", "-f", "{{.LogPath}}", name))
        files = sorted(path.parent.glob(path.name + "*"))
        assert [f.name for f in files] == [path.name, path.name + ".1", path.name + ".2"]
        assert all(f.stat().st_size <= 2048 for f in files)
        lines = docker.out("logs", name).splitlines()
        assert lines[-1] == "line-299" and lines == [f"line-{i}" for i in range(300 - len(lines), 300)]
    finally:
        docker("rm", name, check=False)


def test_pause_rename_winch_kill_wait(docker, busybox, unique):
    name, renamed = f"{unique}-p", f"{unique}-q"
    cid = docker.out("run", "-d", "--name", name, busybox, "sleep", "600")
    try:
        docker("pause", name)
        assert docker.out("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", name) == "paused true"
        assert (cgroup_dir("freezer", cid) / "freezer.state").read_text().strip() == "FROZEN"
        docker("unpause", name)
        assert docker.out("inspect", "-f", "{{.State.Status}}", name) == "running"
        docker("rename", name, renamed)
        assert docker.out("ps", "--format", "{{.Names}}", "-f", f"id={cid}") == renamed
        docker("kill", "-s", "WINCH", renamed)
        assert docker.out("inspect", "-f", "{{.State.Running}}", renamed) == "true"
        docker("kill", renamed)
        assert docker.out("wait", renamed) == "137"
        assert docker.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", renamed) == "exited 137"
    finally:
        docker("rm", "-f", name, renamed, check=False)


def test_exec_it_sees_the_terminal_size_and_its_changes(docker, busybox, unique):
    name = f"{unique}-tty"
    docker("run", "-d", "--name", name, busybox, "sleep", "600")
    try:
        session = PtySession([docker.binary, "exec", "-it", name, "sh"], docker.env, rows=33, cols=111)
        session.read_until(r"[#$] ")
        session.send("stty size")
        session.read_until(r"33 111\r\n")
        session.resize(44, 122)
        session.ask_until("stty size", r"44 122\r\n")
        session.send("exit 9")
        assert session.wait() == 9
        assert docker("exec", name, "no-such-command", check=False).returncode == 127
    finally:
        docker("rm", "-f", name, check=False)


def test_run_it_follows_the_terminal_size_and_winch_is_not_a_kill(docker, busybox, unique):
    name = f"{unique}-runtty"
    session = PtySession([docker.binary, "run", "-it", "--rm", "--name", name, busybox, "sh"], docker.env,
                         rows=31, cols=101)
    session.read_until(r"[#$] ")
    session.send("stty size")
    session.read_until(r"31 101\r\n")
    session.resize(42, 121)  # the CLI sends kill?signal=WINCH and resize
    session.ask_until("stty size", r"42 121\r\n")
    session.send("exit 4")
    assert session.wait() == 4
    assert docker("inspect", name, check=False).returncode == 1  # --rm removed it


def test_run_i_passes_stdin_sent_before_start_and_its_end(docker, busybox):
    assert docker.out("run", "-i", "--rm", busybox, "cat", input="hello\n") == "hello"
    big = "x" * 999_999 + "\n"
    assert docker.out("run", "-i", "--rm", busybox, "wc", "-c", input=big) == "1000000"


def test_cp_both_ways(docker, busybox, unique, tmp_path):
    name = f"{unique}-cp"
    docker("run", "-d", "--name", name, "-v", "/data", busybox, "sleep", "600")
    try:
        src = tmp_path / "in.txt"
        src.write_text("copied in\n")
        docker("cp", str(src), f"{name}:/tmp/in.txt")
        docker("cp", str(src), f"{name}:/data/")
        assert docker.out("exec", name, "cat", "/tmp/in.txt", "/data/in.txt") == "copied in\ncopied in"
        raw = docker("cp", f"{name}:/etc/motd", "-").stdout.encode()
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            assert tar.getnames() == ["motd"] and tar.extractfile("motd").read() == b"original\n"
        docker("cp", f"{name}:/etc", str(tmp_path / "etc-copy"))
        assert (tmp_path / "etc-copy" / "passwd").read_text().startswith("root:")
        r = docker("cp", f"{name}:/no/such/file", str(tmp_path / "x"), check=False)
        assert r.returncode == 1 and "No such container:path" in r.stderr or "Could not find" in r.stderr
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_events_networks_and_modes(docker, busybox, unique):
    since = f"{time.time() - 1:.3f}"
    name = f"{unique}-ev"
    docker("run", "--rm", "--name", name, busybox, "true")
    events = docker.out("events", "--since", since, "--until", f"{time.time() + 0.5:.3f}", "--filter",
                        f"container={name}", "--format", "{{.Action}}").split()
    assert events[:1] == ["create"] and "start" in events and events[-2:] == ["die", "destroy"]
    networks = docker.out("network", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines()
    assert networks == ["bridge bridge", "host host", "none null"]
    subnet = docker.out("network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", "bridge")
    assert re.fullmatch(r"10\.197\.\d+\.0/24", subnet)
    assert docker.out("run", "--rm", "--network", "none", busybox, "sh", "-c", "ls /sys/class/net") == "lo"
    assert docker.out("run", "--rm", "--network", "host", busybox, "hostname") == os.uname().nodename
    out = docker.out("run", "--rm", busybox, "sh", "-c", "ip -o -4 addr show eth0; ip route")
    assert subnet.rsplit(".", 1)[0] in out and "default via" in out


def test_system_prune(docker, busybox, unique):
    name = f"{unique}-pr"
    docker("run", "--name", name, busybox, "sh", "-c", "echo x > /made")
    dangling = docker.out("commit", name)
    out = docker.out("system", "prune", "-f")
    assert docker("inspect", name, check=False).returncode == 1 and dangling.split(":")[1][:12] in out
    assert docker.out("image", "inspect", "-f", "{{.Id}}", busybox)  # tagged images stay
