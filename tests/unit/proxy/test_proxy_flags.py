"""`kapal proxy` flags as kube-proxy spells them, to the ProxyConfig they mean; unsupported ones refused by name."""

from __future__ import annotations

import pytest

from kapal import errors
from kapal.cli.proxy import _proxy_parser, proxy_config


def config(*argv):
    return proxy_config(_proxy_parser().parse_args(["--kubeconfig", "/k", *argv]))


def test_kube_proxy_flags():
    c = config("--hostname-override", "Node-1", "--cluster-cidr", "10.244.0.0/16,fd00::/48", "--masquerade-all",
               "--nodeport-addresses", "192.0.2.0/24,127.0.0.0/8", "--iptables-sync-period", "1m30s",
               "--iptables-min-sync-period", "500ms", "--iptables-masquerade-bit", "15",
               "--healthz-bind-address", "127.0.0.1:12345", "--metrics-bind-address", "")
    assert c.node_name == "node-1" and c.masquerade_all and c.sync_period == 90 and c.min_sync_period == 0.5
    rc = c.rule_config()
    assert rc.cluster_cidrs == ("10.244.0.0/16",) and rc.nodeport_cidrs == ("192.0.2.0/24", "127.0.0.0/8")
    assert rc.mark == "0x8000" and rc.localhost_nodeports
    assert c.healthz_bind_address == "127.0.0.1:12345" and c.metrics_bind_address == ""


def test_defaults_as_upstream():
    c = config()
    assert (c.sync_period, c.min_sync_period, c.masquerade_bit) == (30, 1, 14)
    assert (c.healthz_bind_address, c.metrics_bind_address) == ("0.0.0.0:10256", "127.0.0.1:10249")
    assert c.rule_config().nodeport_cidrs == () and c.chain_prefix == "KAPAL-"


def test_localhost_node_ports_follow_the_nodeport_addresses():
    assert not config("--nodeport-addresses", "192.0.2.0/24").rule_config().localhost_nodeports
    assert not config("--iptables-localhost-nodeports=false").rule_config().localhost_nodeports


@pytest.mark.parametrize("argv, words", [
    (("--proxy-mode", "ipvs"), "--proxy-mode=ipvs"),
    (("--config", "/etc/kube-proxy.yaml"), "--config"),
    (("--cluster-cidr", "not-a-cidr"), "--cluster-cidr"),
    (("--nodeport-addresses", "primary"), "--nodeport-addresses"),
    (("--chain-prefix", "WAYTOOLONG-"), "chain prefix"),
    (("--iptables-masquerade-bit", "40"), "masquerade bit"),
])
def test_refusals_name_the_flag(argv, words):
    with pytest.raises(errors.KapalError, match=words):
        config(*argv)


def test_kubeconfig_required_except_for_cleanup():
    with pytest.raises(errors.Invalid, match="--kubeconfig"):
        proxy_config(_proxy_parser().parse_args([]))
    assert proxy_config(_proxy_parser().parse_args(["--cleanup"])).chain_prefix == "KAPAL-"
