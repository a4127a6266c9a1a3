"""Namespace files, iptables chains and batches, sysctls: on the real kernel, touching only what the test makes."""

from __future__ import annotations

import os
import subprocess

import pytest

from kapal.errors import AlreadyExists, FailedPrecondition, NotFound
from kapal.network import netns, sysctl
from kapal.network.iptables import Iptables, RestoreBatch

pytestmark = pytest.mark.root


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_netns_create_and_remove(tmp_path):
    path = str(tmp_path / "ns" / "one")
    netns.create(path)
    try:
        assert netns.is_netns(path) and mounted(path)
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
        links = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link"], capture_output=True, text=True,
                               check=True).stdout.splitlines()
        assert len(links) == 1 and ": lo:" in links[0]
        with pytest.raises(AlreadyExists):
            netns.create(path)
        inode = netns.call_in(path, lambda: os.stat(f"/proc/self/task/{__import__('threading').get_native_id()}"
                                                    "/ns/net").st_ino)
        assert inode == os.stat(path).st_ino
        assert os.readlink("/proc/thread-self/ns/net") == os.readlink("/proc/self/ns/net")  # the caller never moved
    finally:
        netns.remove(path)
    assert not os.path.exists(path) and not mounted(path)
    netns.remove(path)  # idempotent
    with pytest.raises(NotFound):
        netns.call_in(path, lambda: None)


def test_sysctls_apply_to_the_namespace_they_run_in(tmp_path):
    path = netns.create(tmp_path / "ns")
    host_lo = sysctl.read("net.ipv4.conf.lo.route_localnet")
    try:
        netns.call_in(path, sysctl.ensure, "net.ipv4.ip_forward", "0")  # a new namespace inherits the host's
        assert netns.call_in(path, sysctl.enable_ip_forward) is True
        assert netns.call_in(path, sysctl.enable_ip_forward) is False
        assert netns.call_in(path, sysctl.enable_route_localnet, "lo") is (host_lo == "0")
        out = subprocess.run(["nsenter", f"--net={path}", "cat", "/proc/sys/net/ipv4/ip_forward",
                              "/proc/sys/net/ipv4/conf/lo/route_localnet"], capture_output=True, text=True).stdout
        assert out.split() == ["1", "1"]
        assert sysctl.read("net.ipv4.conf.lo.route_localnet") == host_lo  # the host's own is untouched
    finally:
        netns.remove(path)
    with pytest.raises(FailedPrecondition, match="does not exist on this kernel"):
        sysctl.ensure(sysctl.path("net", "ipv4", "conf", "no-such-if0", "route_localnet"), "1")


@pytest.fixture
def ipt(unique):
    tables = Iptables()
    yield tables
    tables.delete_chains(f"KAPAL-{unique.upper()}")


def test_chains_rules_and_cleanup(ipt, unique):
    chain = f"KAPAL-{unique.upper()}-A"
    assert ipt.ensure_chain("filter", chain) is True
    assert ipt.ensure_chain("filter", chain) is False
    rule = ["-s", "192.0.2.99/32", "-m", "comment", "--comment", "kapal test rule", "-j", "RETURN"]
    assert ipt.ensure_rule("filter", chain, *rule) is True
    assert ipt.ensure_rule("filter", chain, *rule) is False
    assert ipt.rules("filter", chain) == [rule]
    ipt.ensure_jump("filter", "FORWARD", chain, "-s", "192.0.2.99/32")
    assert f"-A FORWARD -s 192.0.2.99/32 -j {chain}" in ipt.save("filter")
    assert chain in ipt.chains("filter", prefix="KAPAL-")
    assert ipt.delete_rule("filter", chain, *rule) is True
    assert ipt.delete_rule("filter", chain, *rule) is False
    assert ipt.delete_chain("filter", chain) is True
    saved = ipt.save("filter")
    assert chain not in saved  # the jump went with it
    with pytest.raises(NotFound):
        ipt.rules("filter", chain)


def test_restore_batch_programs_thousands_of_rules_in_one_call(ipt, unique):
    top, per = f"KAPAL-{unique.upper()}-SVC", f"KAPAL-{unique.upper()}-EP"
    batch = RestoreBatch().chain("nat", top).chain("nat", per)
    for i in range(2000):
        batch.append("nat", top, "-d", f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}/32", "-p", "tcp",
                     "--dport", "80", "-m", "comment", "--comment", f"ns/svc-{i}: http", "-j", per)
    batch.append("nat", per, "-j", "RETURN")
    ipt.restore(batch)
    assert len(ipt.rules("nat", top)) == 2000
    assert ipt.rules("nat", top)[7][-3:] == ["ns/svc-7: http", "-j", per]
    # declaring a chain again rewrites it whole
    ipt.restore(RestoreBatch().chain("nat", top).append("nat", top, "-j", per))
    assert ipt.rules("nat", top) == [["-j", per]]
    deleted = ipt.delete_chains(f"KAPAL-{unique.upper()}")
    assert sorted(deleted) == sorted([f"nat/{top}", f"nat/{per}"])
    assert unique.upper() not in ipt.save()
