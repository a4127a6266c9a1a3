"""Services and EndpointSlices as the proxy reads them: ports, endpoints, and which endpoints get traffic."""

from __future__ import annotations

from kapal.kube.proxy.model import (
    Endpoint,
    ServicePortName,
    endpoints_by_port,
    service_ports,
    slice_service,
    usable_endpoints,
)


def svc(name="web", ns="default", **spec):
    base = {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "type": "ClusterIP",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
    base.update(spec)
    return {"metadata": {"name": name, "namespace": ns}, "spec": base}


def eps_slice(name, svc_name, endpoints, ports=(("http", 8080),), address_type="IPv4"):
    return {"metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "addressType": address_type,
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
            "endpoints": endpoints}


def ep(ip, ready=True, serving=None, terminating=None, node="n1"):
    cond = {"ready": ready}
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    return {"addresses": [ip], "conditions": cond, "nodeName": node}


def test_cluster_ip_service_has_one_port_per_spec_port():
    s = svc(ports=[{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}])
    ports = service_ports(s)
    assert [(str(p.name), p.protocol, p.port, p.cluster_ip) for p in ports] == [
        ("default/web:http", "TCP", 80, "10.96.0.20"), ("default/web:dns", "UDP", 53, "10.96.0.20")]
    assert all(p.node_port == 0 and p.affinity_seconds == 0 for p in ports)


def test_unnamed_port_prints_without_suffix():
    assert str(ServicePortName("ns", "a")) == "ns/a"
    assert str(ServicePortName("ns", "a", "p")) == "ns/a:p"


def test_headless_and_external_name_services_have_no_ports():
    assert service_ports(svc(clusterIP="None", clusterIPs=["None"])) == []
    assert service_ports({"metadata": {"name": "x", "namespace": "d"},
                          "spec": {"type": "ExternalName", "externalName": "example.com"}}) == []


def test_ipv6_only_service_is_skipped():
    assert service_ports(svc(clusterIP="fd00::10", clusterIPs=["fd00::10"])) == []


def test_node_port_and_affinity():
    s = svc(type="NodePort", sessionAffinity="ClientIP",
            ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}])
    (p,) = service_ports(s)
    assert p.node_port == 30080 and p.affinity_seconds == 10800
    s["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 60}}
    assert service_ports(s)[0].affinity_seconds == 60


def test_node_port_ignored_for_cluster_ip_type():
    s = svc(ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}])
    assert service_ports(s)[0].node_port == 0


def test_slices_merge_and_dedupe_per_port():
    a = eps_slice("web-a", "web", [ep("10.1.0.2"), ep("10.1.0.3", ready=False)])
    b = eps_slice("web-b", "web", [ep("10.1.0.3"), ep("10.1.0.4")])
    by = endpoints_by_port([a, b])
    assert [(e.ip, e.port, e.ready) for e in by[("http", "TCP")]] == [
        ("10.1.0.2", 8080, True), ("10.1.0.3", 8080, True), ("10.1.0.4", 8080, True)]
    assert slice_service(a) == ("default", "web")


def test_ipv6_slices_are_ignored():
    assert endpoints_by_port([eps_slice("x", "web", [ep("fd00::1")], address_type="IPv6")]) == {}


def test_ready_endpoints_only():
    (p,) = service_ports(svc())
    eps = endpoints_by_port([eps_slice("s", "web", [ep("10.1.0.2"), ep("10.1.0.3", ready=False)])])
    cluster, local = usable_endpoints(p, eps[("http", "TCP")], "n1")
    assert [e.ip for e in cluster] == ["10.1.0.2"] and local == []


def test_terminating_serving_endpoints_used_only_when_none_is_ready():
    (p,) = service_ports(svc())
    both = [Endpoint("10.1.0.2", 80, ready=False, serving=True, terminating=True),
            Endpoint("10.1.0.3", 80, ready=True)]
    assert [e.ip for e in usable_endpoints(p, both, "n1")[0]] == ["10.1.0.3"]
    draining = [Endpoint("10.1.0.2", 80, ready=False, serving=True, terminating=True),
                Endpoint("10.1.0.4", 80, ready=False, serving=False, terminating=True)]
    assert [e.ip for e in usable_endpoints(p, draining, "n1")[0]] == ["10.1.0.2"]


def test_local_traffic_policies_keep_this_nodes_endpoints():
    (p,) = service_ports(svc(type="NodePort", externalTrafficPolicy="Local", internalTrafficPolicy="Local",
                             ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30001}]))
    eps = [Endpoint("10.1.0.2", 80, node_name="n1"), Endpoint("10.1.1.2", 80, node_name="n2")]
    cluster, local = usable_endpoints(p, eps, "n1")
    assert [e.ip for e in cluster] == ["10.1.0.2"] and [e.ip for e in local] == ["10.1.0.2"]
