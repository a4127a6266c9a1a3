"""The host's names and addresses for SANs: complete on this host, never failing."""

from __future__ import annotations

import ipaddress
import socket

from kapal.kube.pki import hosts


def test_host_addresses_has_loopback_and_hostname():
    found = hosts.host_addresses()
    assert ipaddress.ip_address("127.0.0.1") in found.ips
    assert "localhost" in found.names
    assert socket.gethostname().lower() in found.names
    assert len(set(found.ips)) == len(found.ips)


def test_host_addresses_lists_the_primary_address():
    primary = hosts.primary_ipv4()
    if primary is not None:
        assert primary in hosts.host_addresses().ips
        assert not primary.is_loopback


def test_unreadable_sources_yield_nothing_not_an_error(tmp_path):
    assert hosts._local_ipv4(str(tmp_path / "missing")) == []
    assert hosts._local_ipv6(str(tmp_path / "missing")) == []
    (tmp_path / "garbage").write_text("|-- not-an-ip\n   /32 host LOCAL\nzz\n")
    assert hosts._local_ipv4(str(tmp_path / "garbage")) == []


def test_fib_trie_parsing(tmp_path):
    trie = "\n".join([
        "Local:", "  +-- 0.0.0.0/0 3 0 5", "     |-- 127.0.0.0", "        /8 host LOCAL",
        "     |-- 127.0.0.1", "        /32 host LOCAL", "     |-- 10.1.2.3", "        /32 host LOCAL",
        "     |-- 10.1.2.255", "        /32 link BROADCAST",
    ])
    (tmp_path / "trie").write_text(trie)
    assert hosts._local_ipv4(str(tmp_path / "trie")) == [ipaddress.IPv4Address("127.0.0.1"),
                                                         ipaddress.IPv4Address("10.1.2.3")]
