"""The rules the proxy renders and what a sync writes: partial syncs rewrite only what changed."""

from __future__ import annotations

import re

import pytest

from kapal.kube.proxy.model import Endpoint, ServicePort, ServicePortName
from kapal.kube.proxy.proxier import IptablesProxier
from kapal.kube.proxy.rules import MAX_CHAIN_NAME, ChainNames, RuleConfig, render_port, restore_text

NAMES = ChainNames("KT-")
CFG = RuleConfig(prefix="KT-", cluster_cidrs=("10.244.0.0/16",))


def port(**kw):
    base = dict(name=ServicePortName("default", "web", "http"), protocol="TCP", port=80, cluster_ip="10.96.0.20")
    base.update(kw)
    return ServicePort(**base)


EPS = [Endpoint("10.244.0.2", 8080), Endpoint("10.244.0.3", 8080), Endpoint("10.244.0.4", 8080)]


def test_chain_names_are_stable_short_and_owned():
    sp = port()
    assert NAMES.svc(sp) == NAMES.svc(port())
    assert NAMES.svc(sp) != NAMES.svc(port(protocol="UDP"))
    assert NAMES.sep(sp, EPS[0]) != NAMES.sep(sp, EPS[1])
    longest = ChainNames("ABCDEFG-")
    assert len(longest.sep(sp, EPS[0])) <= MAX_CHAIN_NAME
    assert len(longest.postrouting) <= MAX_CHAIN_NAME
    assert NAMES.owns("nat", NAMES.svc(sp)) and NAMES.owns("filter", NAMES.services)
    assert not NAMES.owns("nat", "KT-POSTROUTING") and not NAMES.owns("nat", "KAPAL-SVC-AAAAAAAAAAAAAAAA")
    with pytest.raises(ValueError):
        RuleConfig(prefix="TOOLONGPREFIX-")


def test_cluster_ip_spreads_with_falling_probabilities():
    r = render_port(port(), EPS, [], NAMES, CFG)
    svc = NAMES.svc(port())
    assert r.services == [f'-A KT-SERVICES -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -m comment --comment '
                          f'"default/web:http cluster IP" -j {svc}']
    lines = r.chains[svc]
    assert lines[0].startswith(f"-A {svc} ! -s 10.244.0.0/16 -d 10.96.0.20/32") and "KT-MARK-MASQ" in lines[0]
    probs = [re.search(r"--probability (\S+)", ln) for ln in lines[1:]]
    assert [float(m.group(1)) if m else None for m in probs] == [pytest.approx(1 / 3), pytest.approx(1 / 2), None]
    for e in EPS:
        sep = NAMES.sep(port(), e)
        assert r.chains[sep] == [
            f'-A {sep} -s {e.ip}/32 -m comment --comment "default/web:http" -j KT-MARK-MASQ',
            f'-A {sep} -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination {e}']
    assert not r.filter_services and not r.nodeports


def test_no_endpoints_rejects_instead():
    r = render_port(port(node_port=30080), [], [], NAMES, CFG)
    assert not r.chains and not r.services and not r.nodeports
    assert "-j REJECT" in r.filter_services[0] and "-d 10.96.0.20/32" in r.filter_services[0]
    assert "--dport 30080" in r.filter_external[0] and "-j REJECT" in r.filter_external[0]


def test_node_port_masquerades_then_balances():
    sp = port(node_port=30080)
    r = render_port(sp, EPS[:1], [], NAMES, CFG)
    ext = NAMES.ext(sp)
    assert r.nodeports == [f'-A KT-NODEPORTS -p tcp -m tcp --dport 30080 -m comment --comment "default/web:http" '
                           f"-j {ext}"]
    assert r.chains[ext][0].endswith("-j KT-MARK-MASQ") and r.chains[ext][1] == f"-A {ext} -j {NAMES.svc(sp)}"


def test_external_traffic_policy_local_uses_local_endpoints_and_drops_without_them():
    sp = port(node_port=30080, external_local=True)
    r = render_port(sp, EPS, EPS[:1], NAMES, CFG)
    svl = NAMES.svl(sp)
    assert r.chains[NAMES.ext(sp)][-1] == f"-A {NAMES.ext(sp)} -j {svl}"
    assert [ln.split()[-1] for ln in r.chains[svl]] == [NAMES.sep(sp, EPS[0])]
    none_local = render_port(sp, EPS, [], NAMES, CFG)
    assert none_local.filter_external and none_local.filter_external[0].endswith("-j DROP")


def test_session_affinity_uses_recent():
    sp = port(affinity_seconds=600)
    r = render_port(sp, EPS[:2], [], NAMES, CFG)
    svc = r.chains[NAMES.svc(sp)]
    checks = [ln for ln in svc if "--rcheck" in ln]
    assert len(checks) == 2 and all("--seconds 600 --reap" in ln for ln in checks)
    sep = NAMES.sep(sp, EPS[0])
    assert f"-m recent --set --name {sep}" in r.chains[sep][1]


def test_masquerade_all():
    r = render_port(port(), EPS[:1], [], NAMES, RuleConfig(prefix="KT-", masquerade_all=True))
    first = r.chains[NAMES.svc(port())][0]
    assert "! -s" not in first and first.endswith("-j KT-MARK-MASQ")


def test_restore_text_declares_rewrites_then_deletes():
    text = restore_text({("nat", "KT-A"): ["-A KT-A -j RETURN"], ("filter", "KT-B"): []}, [("nat", "KT-C")])
    assert text == ("*filter\n:KT-B - [0:0]\nCOMMIT\n*nat\n:KT-A - [0:0]\n:KT-C - [0:0]\n-A KT-A -j RETURN\n"
                    "-X KT-C\nCOMMIT\n")


def _service(name, ip, ports=((80, "http"),)):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
                     "ports": [{"name": n, "port": p, "protocol": "TCP"} for p, n in ports]}}


def _slice(svc_name, ips, name=None):
    return {"metadata": {"name": name or svc_name + "-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


def test_partial_sync_writes_only_changed_chains_and_deletes_gone_ones():
    p = IptablesProxier(CFG, "n1", iptables=object())  # type: ignore[arg-type]
    for i in range(3):
        p.update_service(_service(f"s{i}", f"10.96.0.{10 + i}"))
        p.update_slice(_slice(f"s{i}", [f"10.244.{i}.2", f"10.244.{i}.3"]))
    full = p.plan(full=True, existing={("nat", "KT-SVC-AAAAAAAAAAAAAAAA"), ("nat", "KT-POSTROUTING")})
    assert full.full and ("nat", "KT-SVC-AAAAAAAAAAAAAAAA") in full.delete
    assert ("nat", "KT-POSTROUTING") in full.delete  # plan deletes what `existing` lists; owned_chains() filters
    p.commit(full)
    assert not p.pending
    p.update_slice(_slice("s1", ["10.244.1.2"]))  # one endpoint gone
    partial = p.plan()
    assert not partial.full
    sp = port(name=ServicePortName("default", "s1", "http"), cluster_ip="10.96.0.11")
    gone = NAMES.sep(sp, Endpoint("10.244.1.3", 8080))
    assert partial.delete == {("nat", gone)}
    assert set(partial.write) == {("nat", NAMES.svc(sp))}
    p.commit(partial)
    p.delete_service(_service("s2", "10.96.0.12"))
    removal = p.plan()
    assert ("nat", "KT-SERVICES") in removal.write and ("filter", "KT-SERVICES") not in removal.write
    assert len(removal.delete) == 3  # s2's SVC and its two SEPs
    p.commit(removal)
    assert p.plan().empty


def test_unchanged_update_does_not_dirty():
    p = IptablesProxier(CFG, "n1", iptables=object())  # type: ignore[arg-type]
    s = _service("a", "10.96.0.10")
    p.update_service(s)
    p.commit(p.plan(full=True, existing=set()))
    p.update_service(dict(s, metadata={**s["metadata"], "resourceVersion": "9"}))
    assert not p.pending


def test_udp_endpoint_changes_name_the_conntrack_flows_to_forget():
    from kapal.kube.proxy.conntrack import Entry, StaleFlow, Tuple

    p = IptablesProxier(CFG, "n1", iptables=object())  # type: ignore[arg-type]
    svc = _service("dns", "10.96.0.10", ports=((53, "dns"),))
    svc["spec"]["ports"][0]["protocol"] = "UDP"
    p.update_service(svc)
    p.commit(p.plan(full=True, existing=set()))

    def udp_slice(ips):
        s = _slice("dns", ips)
        s["ports"] = [{"name": "dns", "port": 5353, "protocol": "UDP"}]
        return s

    p.update_slice(udp_slice(["10.244.0.2"]))
    appeared = p.plan()
    assert appeared.stale_flows == [StaleFlow("UDP", "10.96.0.10", 53, None)]  # un-NATed flows sent before
    p.commit(appeared)
    p.update_slice(udp_slice(["10.244.0.3"]))
    moved = p.plan()
    assert moved.stale_flows == [StaleFlow("UDP", "10.96.0.10", 53, "10.244.0.2")]
    natted = Entry(Tuple("10.244.0.9", "10.96.0.10", 17, 40000, 53), Tuple("10.244.0.2", "10.244.0.9", 17, 5353,
                                                                             40000))
    raw = Entry(Tuple("10.244.0.9", "10.96.0.10", 17, 40000, 53), Tuple("10.96.0.10", "10.244.0.9", 17, 53, 40000))
    assert moved.stale_flows[0].matches(natted) and not moved.stale_flows[0].matches(raw)
    assert appeared.stale_flows[0].matches(raw) and not appeared.stale_flows[0].matches(natted)
    tcp = Entry(Tuple("10.244.0.9", "10.96.0.10", 6, 40000, 53), natted.reply)
    assert not moved.stale_flows[0].matches(tcp)
