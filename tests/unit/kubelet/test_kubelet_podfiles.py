"""/etc/resolv.conf, /etc/hosts and hostnames for pods, as upstream writes them."""

from __future__ import annotations

from kapal.kube.kubelet.podfiles import (
    ClusterDns,
    ResolvConf,
    parse_resolv_conf,
    pod_hostname,
    pod_hosts,
    pod_resolv_conf,
)

HOST = ResolvConf(("10.255.255.53",), ("example.com",), ("edns0",))


def pod(**spec):
    return {"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec}


def test_cluster_first():
    conf, warning = pod_resolv_conf(pod(), ClusterDns(("10.96.0.10",), "cluster.local", HOST))
    assert warning is None
    assert conf.render() == ("search shop.svc.cluster.local svc.cluster.local cluster.local example.com\n"
                             "nameserver 10.96.0.10\noptions ndots:5\n")


def test_cluster_first_without_cluster_dns_falls_back_with_a_warning():
    conf, warning = pod_resolv_conf(pod(), ClusterDns((), "cluster.local", HOST))
    assert conf == HOST and "no --cluster-dns" in warning


def test_host_network_and_none_and_dns_config():
    dns = ClusterDns(("10.96.0.10",), "cluster.local", HOST)
    assert pod_resolv_conf(pod(hostNetwork=True), dns)[0] == HOST
    assert pod_resolv_conf(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), dns)[0].nameservers == \
        ("10.96.0.10",)
    conf, _ = pod_resolv_conf(pod(dnsPolicy="None", dnsConfig={
        "nameservers": ["1.1.1.1"], "searches": ["a.b"], "options": [{"name": "ndots", "value": "2"},
                                                                       {"name": "rotate"}]}), dns)
    assert conf.render() == "search a.b\nnameserver 1.1.1.1\noptions ndots:2 rotate\n"
    conf, _ = pod_resolv_conf(pod(dnsConfig={"options": [{"name": "ndots", "value": "1"}]}), dns)
    assert conf.options == ("ndots:1",)  # overrides the default ndots:5


def test_parse_resolv_conf():
    text = "# comment\nnameserver 1.2.3.4\nnameserver 5.6.7.8 ; x\ndomain foo\nsearch a b\noptions ndots:1 rotate\n"
    assert parse_resolv_conf(text) == ResolvConf(("1.2.3.4", "5.6.7.8"), ("a", "b"), ("ndots:1", "rotate"))


def test_hostnames_and_hosts_file():
    assert pod_hostname(pod(), "cluster.local") == ("web-0", None)
    assert pod_hostname(pod(hostname="h", subdomain="s"), "cluster.local") == ("h", "h.s.shop.svc.cluster.local")
    hosts = pod_hosts(pod(hostname="h", subdomain="s", hostAliases=[{"ip": "1.2.3.4", "hostnames": ["x", "y"]}]),
                      ["10.244.0.5"], "cluster.local")
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.244.0.5\th.s.shop.svc.cluster.local\th\n" in hosts
    assert hosts.endswith("# Entries added by HostAliases.\n1.2.3.4\tx\ty\n")
    host_net = pod_hosts(pod(hostNetwork=True), ["192.0.2.2"], "cluster.local", "127.0.0.1 localhost\n")
    assert "127.0.0.1 localhost\n" in host_net and "192.0.2.2" not in host_net
