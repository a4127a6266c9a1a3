"""The DNS server's wire answers (dnslib in, dnslib out), its upstream choice and its cache."""

from __future__ import annotations

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from kapal.kube.dns.forward import AnswerCache, Upstream, nameservers, upstreams_from_resolv_conf
from kapal.kube.dns.records import ClusterRecords
from kapal.kube.dns.server import DnsServer


def server():
    z = ClusterRecords()
    z.update_service({"metadata": {"name": "web", "namespace": "default"},
                      "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                               "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    z.update_service({"metadata": {"name": "big", "namespace": "default"},
                      "spec": {"clusterIP": "None", "ports": [{"name": "p", "port": 1, "protocol": "TCP"}]}})
    z.update_slice({"metadata": {"name": "big-1", "namespace": "default",
                                 "labels": {"kubernetes.io/service-name": "big"}},
                    "addressType": "IPv4", "ports": [{"name": "p", "port": 1, "protocol": "TCP"}],
                    "endpoints": [{"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"], "conditions": {"ready": True}}
                                  for i in range(60)]})
    return DnsServer(z, None)


def ask(s, name, qtype="A", proto="udp", edns=False):
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=4096))
    out = s.answer(q.pack(), proto)
    assert isinstance(out, bytes)
    reply = DNSRecord.parse(out)
    assert reply.header.id == q.header.id and reply.header.qr == 1
    return reply


def test_cluster_answer_is_authoritative():
    r = ask(server(), "web.default.svc.cluster.local")
    assert r.header.aa == 1 and r.header.rcode == RCODE.NOERROR
    assert [(str(rr.rdata), rr.ttl) for rr in r.rr] == [("10.96.0.20", 5)]


def test_nxdomain_and_nodata_carry_the_soa():
    s = server()
    nx = ask(s, "missing.default.svc.cluster.local")
    assert nx.header.rcode == RCODE.NXDOMAIN and not nx.rr and nx.auth[0].rtype == QTYPE.SOA
    nodata = ask(s, "web.default.svc.cluster.local", "AAAA")
    assert nodata.header.rcode == RCODE.NOERROR and not nodata.rr and nodata.auth[0].rtype == QTYPE.SOA
    assert nodata.auth[0].rdata.times[-1] == 5


def test_big_udp_answers_are_truncated_but_tcp_and_edns_carry_them():
    s = server()
    udp = ask(s, "big.default.svc.cluster.local")
    assert udp.header.tc == 1 and not udp.rr
    assert len(ask(s, "big.default.svc.cluster.local", proto="tcp").rr) == 60
    assert len(ask(s, "big.default.svc.cluster.local", edns=True).rr) == 60


def test_without_upstreams_other_names_fail_loudly():
    s = server()
    out = s.answer(DNSRecord.question("example.com").pack(), "udp")
    import asyncio

    reply = DNSRecord.parse(asyncio.run(out))
    assert reply.header.rcode == RCODE.SERVFAIL


def test_garbage_gets_formerr_or_silence():
    s = server()
    assert s.answer(b"\x00", "udp") is None
    reply = DNSRecord.parse(s.answer(b"\x12\x34" + b"\xff" * 5, "udp"))
    assert reply.header.id == 0x1234 and reply.header.rcode == RCODE.FORMERR


def test_resolv_conf_skips_resolvers_that_would_loop(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# c\nsearch example\nnameserver 127.0.0.53\nnameserver 192.0.2.9 # x\noptions ndots:1\n")
    assert nameservers(conf.read_text()) == ["127.0.0.53", "192.0.2.9"]
    assert upstreams_from_resolv_conf(str(conf), [("10.0.0.1", 53)]) == [Upstream("127.0.0.53"),
                                                                          Upstream("192.0.2.9")]
    assert upstreams_from_resolv_conf(str(conf), [("0.0.0.0", 53)]) == [Upstream("192.0.2.9")]
    assert upstreams_from_resolv_conf(str(conf), [("192.0.2.9", 53), ("0.0.0.0", 53)]) == []
    assert upstreams_from_resolv_conf(str(conf), [("192.0.2.9", 5353)]) == [Upstream("127.0.0.53"),
                                                                              Upstream("192.0.2.9")]


def test_upstream_spelling():
    assert Upstream.parse("1.2.3.4") == Upstream("1.2.3.4", 53)
    assert Upstream.parse("1.2.3.4:5353") == Upstream("1.2.3.4", 5353)
    assert Upstream.parse("[::1]:53") == Upstream("::1", 53)
    with pytest.raises(Exception, match="IP"):
        Upstream.parse("dns.example")


def test_cache_keeps_positive_answers_longer_than_negative_ones():
    cache = AnswerCache(max_ttl=30, negative_ttl=5)
    q = DNSRecord.question("a.example")
    pos = q.reply()
    pos.add_answer(RR("a.example", QTYPE.A, rdata=A("1.2.3.4"), ttl=300))
    cache.put(("a.example.", 1, 1), pos, pos.pack())
    neg = q.reply()
    neg.header.rcode = RCODE.NXDOMAIN
    cache.put(("b.example.", 1, 1), neg, neg.pack())
    fail = q.reply()
    fail.header.rcode = RCODE.SERVFAIL
    cache.put(("c.example.", 1, 1), fail, fail.pack())
    assert cache.get(("a.example.", 1, 1)) is not None and cache.get(("b.example.", 1, 1)) is not None
    assert cache.get(("c.example.", 1, 1)) is None
    expiry = {k: v[0] for k, v in cache._items.items()}
    assert expiry[("a.example.", 1, 1)] - expiry[("b.example.", 1, 1)] == pytest.approx(25, abs=1)
