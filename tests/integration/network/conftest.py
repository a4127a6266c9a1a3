"""Test networks: a unique bridge and a unique 10.250.X.0/24 per test, namespaces the test makes, all removed."""

from __future__ import annotations

import ipaddress
import random
import subprocess
from collections.abc import Callable, Iterator

import pytest

from kapal.network import netns
from kapal.network.bridge import BridgeNetwork, remove_unused_portmap_chains


def _free_subnet(prefix: int = 24) -> str:
    """A 10.250.X.0/PREFIX that no route on the host overlaps."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = []
    for line in routes.splitlines():
        try:
            used.append(ipaddress.ip_network(line.split()[0] if line.split()[0] != "local" else line.split()[1],
                                             strict=False))
        except (ValueError, IndexError):
            continue
    for _ in range(100):
        candidate = ipaddress.ip_network(f"10.250.{random.randrange(256)}.0/{prefix}")
        if not any(candidate.overlaps(u) for u in used if u.prefixlen > 0):
            return str(candidate)
    raise RuntimeError("no free 10.250.X.0 subnet")


@pytest.fixture
def make_network(tmp_path, unique) -> Iterator[Callable[..., BridgeNetwork]]:
    made: list[BridgeNetwork] = []

    def make(prefix: int = 24, **kwargs) -> BridgeNetwork:
        n = len(made)
        net = BridgeNetwork(f"{unique}-{n}", f"{unique}{n}", _free_subnet(prefix), tmp_path / f"net{n}", **kwargs)
        made.append(net)
        return net

    yield make
    for net in made:
        net.teardown()
    remove_unused_portmap_chains()


@pytest.fixture
def network(make_network) -> BridgeNetwork:
    return make_network()


@pytest.fixture
def make_netns(tmp_path) -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def make(name: str) -> str:
        path = netns.create(tmp_path / "netns" / name)
        made.append(path)
        return path

    yield make
    for path in made:
        netns.remove(path)

