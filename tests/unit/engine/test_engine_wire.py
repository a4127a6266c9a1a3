"""The engine's wire formats: the shim's frames, Docker's 8-byte stream frames and detach keys, port
bindings, event filters, docker cp's FileMode bits and path mapping, and the CLI's run flags."""

from __future__ import annotations

import argparse
import json
import os
import stat

import pytest

from kapal.cli.docker_create import FlagError, add_flags, container_body, parse_mount, parse_publish
from kapal.engine.archive_cp import GO_MODE_DIR, GO_MODE_SYMLINK, ContainerPaths, go_mode
from kapal.engine.events import matches
from kapal.engine.hijack import frame, parse_detach_keys
from kapal.engine.networking import parse_port_bindings
from kapal.engine.shim import FrameReader, _json_object, pack
from kapal.errors import Invalid


def test_shim_frames_split_across_reads():
    data = pack(b"1", b"hello") + pack(b"X", b'{"ExitCode":0}') + pack(b"A")
    reader = FrameReader()
    got = reader.feed(data[:3]) + reader.feed(data[3:11]) + reader.feed(data[11:])
    assert got == [(b"1", b"hello"), (b"X", b'{"ExitCode":0}'), (b"A", b"")]
    assert reader.buf == b""


def test_shim_json_without_the_json_module():
    doc = {"ExitCode": 137, "OOMKilled": True, "FinishedAt": "2024-01-01T00:00:00Z", "error": 'say "hi"\n'}
    assert json.loads(_json_object(doc)) == doc


def test_docker_stream_frame_and_detach_keys():
    assert frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert frame(2, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@") == b"a\x00"
    with pytest.raises(ValueError):
        parse_detach_keys("ctrl-pp")


def test_port_bindings():
    [m] = parse_port_bindings({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]})
    assert (m.host_ip, m.host_port, m.container_port, m.protocol) == ("127.0.0.1", 8080, 80, "tcp")
    [m] = parse_port_bindings({"53/udp": [{"HostIp": "", "HostPort": ""}]})
    assert (m.host_port, m.protocol) == (0, "udp")  # 0: a free port is picked at start
    with pytest.raises(Invalid, match='invalid port specification: "99999"'):
        parse_port_bindings({"80/tcp": [{"HostPort": "99999"}]})
    with pytest.raises(Invalid, match='invalid port specification: "http"'):
        parse_port_bindings({"http": [{"HostPort": "1"}]})


def test_cli_publish_mount_and_body():
    assert parse_publish("127.0.0.1:8080:80") == ("80/tcp", {"HostIp": "127.0.0.1", "HostPort": "8080"})
    assert parse_publish("8080:80/udp") == ("80/udp", {"HostIp": "", "HostPort": "8080"})
    assert parse_publish("80") == ("80/tcp", {"HostIp": "", "HostPort": ""})
    assert parse_publish("[::1]:53:53/udp") == ("53/udp", {"HostIp": "::1", "HostPort": "53"})
    with pytest.raises(FlagError, match="invalid hostPort: 99999"):
        parse_publish("99999:80")
    assert parse_mount("type=bind,source=/a,target=/b,readonly") == {"Type": "bind", "Source": "/a", "Target": "/b",
                                                                     "ReadOnly": True}
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m")["TmpfsOptions"] == {"SizeBytes": 1 << 20}
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--rm", action="store_true")
    add_flags(p)
    a = p.parse_args(["--rm", "-v", "/test", "-v", "/home:/test2:ro", "--cpu-period=100000", "--cpu-quota=20000",
                      "-m", "256m", "--cpus", "1.5", "-p", "127.0.0.1:8080:80", "--ulimit", "nofile=10:20",
                      "--cap-add", "NET_ADMIN", "--tmpfs", "/run:size=1m", "-e", "A=1", "busybox", "sh", "-c", "x"])
    body = container_body(a, detach=False)
    hc = body["HostConfig"]
    assert body["Volumes"] == {"/test": {}} and hc["Binds"] == ["/home:/test2:ro"]
    assert (hc["CpuPeriod"], hc["CpuQuota"], hc["Memory"], hc["NanoCpus"]) == (100000, 20000, 256 << 20, 1_500_000_000)
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 10, "Hard": 20}] and hc["AutoRemove"] is True
    assert hc["Tmpfs"] == {"/run": "size=1m"} and body["Cmd"] == ["sh", "-c", "x"] and body["Env"] == ["A=1"]


def test_event_filters():
    ev = {"Type": "container", "Action": "die", "Actor": {"ID": "abc123def", "Attributes": {"name": "web",
                                                                                            "image": "busybox"}}}
    assert matches(ev, {"type": ["container"], "event": ["die"], "container": ["web"]})
    assert matches(ev, {"container": ["abc123"]}) and matches(ev, {"image": ["busybox"]})
    assert not matches(ev, {"event": ["start"]}) and not matches(ev, {"type": ["image"]})
    assert not matches(ev, {"label": ["team=x"]})


def test_cp_modes_and_paths(tmp_path):
    assert go_mode(os.stat(tmp_path)) & GO_MODE_DIR
    (tmp_path / "link").symlink_to("target")
    assert go_mode(os.lstat(tmp_path / "link")) & GO_MODE_SYMLINK
    assert go_mode(os.stat("/dev/null")) & ~0o777 != 0
    root, vol = tmp_path / "rootfs", tmp_path / "volume"
    (root / "etc").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc" / "alt").symlink_to("/bin")
    (root / "escape").symlink_to("../../..")
    vol.mkdir()
    paths = ContainerPaths(root, [{"Type": "volume", "Destination": "/data", "Source": str(vol)}])
    assert paths.resolve("/etc/alt/sh") == "/bin/sh"
    assert paths.resolve("/escape/etc") == "/etc"  # `..` stops at the container's root
    assert paths.host("/data/x") == vol / "x" and paths.host("/etc/x") == root / "etc" / "x"
    assert stat.S_ISLNK(os.lstat(paths.host(paths.resolve("/etc/alt"))).st_mode)


def test_a_shim_started_ahead_keeps_the_frames_that_follow_its_settings():
    import socket

    from kapal.engine.shim import _wait_for_settings

    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(pack(b"G", b"/x/shim.settings") + pack(b"I", b"hello\n") + pack(b"C"))
        path, rest = _wait_for_settings(theirs.fileno())
    assert path == "/x/shim.settings"
    assert FrameReader().feed(rest) == [(b"I", b"hello\n"), (b"C", b"")]
