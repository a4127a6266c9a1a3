"""Docker's -p syntax into port mappings for portmap."""

from __future__ import annotations

import pytest

from kapal.errors import Invalid, Unsupported
from kapal.network.bridge import PortMapping


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080:80", PortMapping(8080, 80, "tcp", "")),
        ("127.0.0.1:8080:80", PortMapping(8080, 80, "tcp", "127.0.0.1")),
        ("127.0.0.1:8080:80/udp", PortMapping(8080, 80, "udp", "127.0.0.1")),
        ("0.0.0.0:8080:80", PortMapping(8080, 80, "tcp", "")),
        ("[::1]:8080:80/tcp", PortMapping(8080, 80, "tcp", "::1")),
        ("80", PortMapping(0, 80, "tcp", "")),
        ("127.0.0.1::80", PortMapping(0, 80, "tcp", "127.0.0.1")),
        ("53:53/UDP", PortMapping(53, 53, "udp", "")),
    ],
)
def test_parse(spec, expected):
    assert PortMapping.parse(spec) == expected


@pytest.mark.parametrize("spec", ["", "a:80", "8080:", "1.2.3.4:5:6:7", "300.1.1.1:80:80", "8080:80/icmp",
                                  "70000:80", "8080:0", "[::1:8080:80"])
def test_bad_specs_are_refused_by_name(spec):
    with pytest.raises(Invalid):
        PortMapping.parse(spec)


def test_ranges_are_unsupported_loudly():
    with pytest.raises(Unsupported, match="port ranges"):
        PortMapping.parse("8000-8010:80")


def test_to_cni_and_back():
    m = PortMapping.parse("127.0.0.1:8080:80/udp")
    assert m.to_cni() == {"hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": "127.0.0.1"}
    assert PortMapping.from_cni(m.to_cni()) == m
    assert PortMapping.parse("8080:80").to_cni() == {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    assert str(PortMapping.parse("[::1]:1:2")) == "[::1]:1:2/tcp"
