"""The CNI caller against the installed plugins, where no privilege is needed: versions and errors."""

from __future__ import annotations

import pytest

from kapal.errors import FailedPrecondition, Invalid, KapalError, Unsupported
from kapal.network.bridge import BridgeNetwork
from kapal.network.cni import CNI_VERSION, CniRunner, RuntimeConf, cni_error, validate_conflist

PLUGINS = ("bridge", "host-local", "loopback", "portmap")


@pytest.fixture
def runner(tmp_path):
    r = CniRunner(tmp_path / "cache")
    try:
        r.find("bridge")
    except FailedPrecondition:
        pytest.skip("containernetworking-plugins is not installed (make deps installs it)")
    return r


@pytest.mark.parametrize("plugin", PLUGINS)
def test_installed_plugins_speak_our_cni_version(runner, plugin):
    assert CNI_VERSION in runner.version(plugin)["supportedVersions"]


def test_plugin_error_becomes_a_kapal_error_naming_plugin_and_message(runner):
    conf = {"cniVersion": "9.9.9", "name": "n1", "type": "bridge", "bridge": "x"}
    with pytest.raises(Unsupported) as info:
        runner.exec_plugin("bridge", "ADD", conf, RuntimeConf("c1", "/nonexistent"), "n1")
    assert "CNI plugin bridge failed to ADD container c1 on network n1" in str(info.value)
    assert "9.9.9" in str(info.value)


def test_undecodable_config_is_invalid(runner):
    with pytest.raises(KapalError, match="CNI plugin bridge"):
        runner.exec_plugin("bridge", "ADD", {"cniVersion": CNI_VERSION, "name": "n", "type": "bridge",
                                             "ipam": "not-an-object"}, RuntimeConf("c1", "/nonexistent"))


def test_missing_plugin_says_what_to_install(runner):
    with pytest.raises(FailedPrecondition, match="containernetworking-plugins"):
        runner.find("no-such-plugin")
    with pytest.raises(Invalid):
        runner.find("../bridge")


def test_error_codes_map_to_kapal_errors():
    assert type(cni_error("p", "ADD", "n", "c", {"code": 7, "msg": "bad"})) is Invalid
    assert type(cni_error("p", "ADD", "n", "c", {"code": 999, "msg": "x", "details": "why"})) is KapalError
    assert "(why)" in str(cni_error("p", "ADD", "n", "c", {"code": 999, "msg": "x", "details": "why"}))


def test_conflist_validation():
    with pytest.raises(Invalid, match="name"):
        validate_conflist({"plugins": [{"type": "bridge"}]})
    with pytest.raises(Invalid, match="type"):
        validate_conflist({"name": "n", "plugins": [{}]})


def test_delete_without_anything_cached_is_a_no_op(runner):
    runner.delete(None, RuntimeConf("never-added", ""), "n1")


def test_bridge_network_conflist(tmp_path):
    net = BridgeNetwork("kapal", "kapal0", "10.89.0.0/16", tmp_path)
    conf = net.conflist()
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == "kapal0" and bridge["isGateway"] and bridge["hairpinMode"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.89.0.0/16", "gateway": "10.89.0.1"}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")
    assert conf["plugins"][1]["capabilities"] == {"portMappings": True}
    assert [p["type"] for p in net.conflist(with_portmap=False)["plugins"]] == ["bridge"]


@pytest.mark.parametrize(("subnet", "gateway", "error"), [
    ("10.89.0.0/33", None, Invalid), ("10.89.0.1/16", None, Invalid), ("10.89.0.0/31", None, Invalid),
    ("fd00::/64", None, Unsupported), ("10.89.0.0/16", "10.90.0.1", Invalid), ("10.89.0.0/16", "x", Invalid),
])
def test_bad_bridge_networks_are_refused(tmp_path, subnet, gateway, error):
    with pytest.raises(error):
        BridgeNetwork("n", "br-n", subnet, tmp_path, gateway=gateway)
    with pytest.raises(Invalid, match="bridge name"):
        BridgeNetwork("n", "a-bridge-name-too-long", "10.89.0.0/16", tmp_path)
