"""Cluster names as the DNS server answers them, straight from Services and EndpointSlices."""

from __future__ import annotations

import pytest

from kapal.kube.dns.records import NOERROR, NXDOMAIN, ClusterRecords, Record


def svc(name, ns="default", ip="10.96.0.20", ports=(("http", 80, "TCP"),), **spec):
    body = {"clusterIP": ip, "clusterIPs": [ip] if ip != "None" else ["None"], "type": "ClusterIP",
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}
    body.update(spec)
    return {"metadata": {"name": name, "namespace": ns}, "spec": body}


def eslice(svc_name, endpoints, ns="default", name=None, ports=(("http", 8080, "TCP"),)):
    return {"metadata": {"name": name or svc_name + "-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": "IPv4", "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, **({"hostname": h} if h else {})}
                          for ip, ready, h in endpoints]}


@pytest.fixture
def zone():
    z = ClusterRecords()
    z.update_service(svc("web"))
    z.update_service(svc("db", ip="None", ports=(("pg", 5432, "TCP"),)))
    z.update_slice(eslice("db", [("10.244.0.5", True, "db-0"), ("10.244.0.6", True, ""),
                                 ("10.244.0.7", False, "db-2")], ports=(("pg", 5432, "TCP"),)))
    z.update_service({"metadata": {"name": "ext", "namespace": "default"},
                      "spec": {"type": "ExternalName", "externalName": "example.com"}})
    return z


def answers(lookup):
    return [(r.rtype, r.data) for r in lookup.answers]


def test_cluster_ip_service(zone):
    got = zone.lookup("web.default.svc.cluster.local.", "A")
    assert got.rcode == NOERROR and answers(got) == [("A", "10.96.0.20")]
    nodata = zone.lookup("web.default.svc.cluster.local", "AAAA")
    assert nodata.rcode == NOERROR and nodata.answers == []
    assert zone.lookup("WEB.Default.SVC.cluster.local", "A").answers  # names are case-insensitive


def test_missing_names_are_nxdomain_and_existing_parents_nodata(zone):
    assert zone.lookup("nope.default.svc.cluster.local", "A").rcode == NXDOMAIN
    assert zone.lookup("web.other.svc.cluster.local", "A").rcode == NXDOMAIN
    assert zone.lookup("other.svc.cluster.local", "A").rcode == NXDOMAIN
    for parent in ("default.svc.cluster.local", "svc.cluster.local", "cluster.local"):
        got = zone.lookup(parent, "A")
        assert got.rcode == NOERROR and got.answers == [], parent
    assert zone.lookup("x.y.cluster.local", "A").rcode == NXDOMAIN
    assert zone.lookup("cluster.local", "SOA").answers[0].rtype == "SOA"


def test_headless_service_resolves_to_ready_pod_ips(zone):
    got = zone.lookup("db.default.svc.cluster.local", "A")
    assert answers(got) == [("A", "10.244.0.5"), ("A", "10.244.0.6")]


def test_headless_pod_hostnames_and_dashed_names(zone):
    assert answers(zone.lookup("db-0.db.default.svc.cluster.local", "A")) == [("A", "10.244.0.5")]
    assert answers(zone.lookup("10-244-0-6.db.default.svc.cluster.local", "A")) == [("A", "10.244.0.6")]
    assert zone.lookup("db-2.db.default.svc.cluster.local", "A").rcode == NXDOMAIN  # not ready


def test_publish_not_ready_addresses(zone):
    zone.update_service(svc("db", ip="None", ports=(("pg", 5432, "TCP"),), publishNotReadyAddresses=True))
    assert len(zone.lookup("db.default.svc.cluster.local", "A").answers) == 3


def test_srv_records(zone):
    got = zone.lookup("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert answers(got) == [("SRV", (0, 100, 80, "web.default.svc.cluster.local"))]
    assert got.additional == [Record("web.default.svc.cluster.local", "A", "10.96.0.20")]
    assert zone.lookup("_nope._tcp.web.default.svc.cluster.local", "SRV").rcode == NXDOMAIN
    headless = zone.lookup("_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted(r.data[3] for r in headless.answers) == ["10-244-0-6.db.default.svc.cluster.local",
                                                           "db-0.db.default.svc.cluster.local"]
    assert {r.data[2] for r in headless.answers} == {5432}
    assert answers(zone.lookup("web.default.svc.cluster.local", "SRV"))[0][1][2] == 80


def test_pod_names(zone):
    assert answers(zone.lookup("10-244-1-9.default.pod.cluster.local", "A")) == [("A", "10.244.1.9")]
    assert zone.lookup("10-244-1-9.default.pod.cluster.local", "AAAA").answers == []
    assert zone.lookup("10-244-1-999.default.pod.cluster.local", "A").rcode == NXDOMAIN


def test_reverse_lookups(zone):
    assert answers(zone.lookup("20.0.96.10.in-addr.arpa.", "PTR")) == [("PTR", "web.default.svc.cluster.local")]
    assert answers(zone.lookup("5.0.244.10.in-addr.arpa", "PTR")) == [("PTR", "db-0.db.default.svc.cluster.local")]
    assert zone.lookup("9.9.9.9.in-addr.arpa", "PTR") is None  # not ours: forwarded


def test_external_name_is_a_cname_to_chase(zone):
    got = zone.lookup("ext.default.svc.cluster.local", "A")
    assert answers(got) == [("CNAME", "example.com")] and got.chase == "example.com"


def test_outside_names_are_forwarded(zone):
    assert zone.lookup("example.com", "A") is None
    assert zone.lookup("cluster.local.example.com", "A") is None


def test_deletes_remove_names_and_ptrs(zone):
    zone.delete_service(svc("web"))
    assert zone.lookup("web.default.svc.cluster.local", "A").rcode == NXDOMAIN
    assert zone.lookup("20.0.96.10.in-addr.arpa", "PTR") is None
    zone.delete_slice(eslice("db", []))
    assert zone.lookup("db.default.svc.cluster.local", "A").answers == []
    assert zone.lookup("5.0.244.10.in-addr.arpa", "PTR") is None


def test_custom_domain():
    z = ClusterRecords("kapal.test")
    z.update_service(svc("web"))
    assert z.lookup("web.default.svc.kapal.test", "A").answers
    assert z.lookup("web.default.svc.cluster.local", "A") is None
