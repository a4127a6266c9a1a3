"""Medians of attach/detach through kapal.network and of the same plugins called bare, with ratios."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from kapal.network import netns
from kapal.network.bridge import BridgeNetwork, remove_unused_portmap_chains
from kapal.network.cni import CniRunner

SUBNET = "10.250.254.0/24"


def bare(runner: CniRunner, conflist: dict, command: str, cid: str, ns: str, prev: dict | None = None,
         ports: list | None = None) -> dict | None:
    """The reference: each plugin of the chain exec'd directly, no cache, no checks, no rollback."""
    result = prev
    plugins = conflist["plugins"] if command == "ADD" else list(reversed(conflist["plugins"]))
    for plugin in plugins:
        conf = {**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
        if ports and plugin["type"] == "portmap":
            conf["runtimeConfig"] = {"portMappings": ports}
        if result is not None:
            conf["prevResult"] = result
        env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": ns, "CNI_IFNAME": "eth0",
               "CNI_PATH": "/usr/lib/cni", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        out = subprocess.run([runner.find(plugin["type"])], input=json.dumps(conf).encode(), env=env,
                             capture_output=True, check=True).stdout
        if command == "ADD":
            result = json.loads(out)
    return result


def ours(net: BridgeNetwork, clock, tag: str, ns: str, port: int) -> None:
    clock("kapal attach", net.attach, f"k{tag}", ns)
    clock("kapal detach", net.detach, f"k{tag}", ns)
    clock("kapal attach -p", net.attach, f"k{tag}", ns, port_mappings=[f"{port}:80"])
    clock("kapal detach -p", net.detach, f"k{tag}", ns)


def reference(net: BridgeNetwork, clock, tag: str, ns: str, port: int) -> None:
    plain, ported = net.conflist(with_portmap=False), net.conflist(with_portmap=True)
    maps = [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]
    res = clock("bare attach", bare, net.runner, plain, "ADD", f"b{tag}", ns)
    clock("bare detach", bare, net.runner, plain, "DEL", f"b{tag}", ns, res)
    res = clock("bare attach -p", bare, net.runner, ported, "ADD", f"b{tag}", ns, None, maps)
    clock("bare detach -p", bare, net.runner, ported, "DEL", f"b{tag}", ns, res, maps)


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    if os.geteuid() != 0:
        print("needs root (network namespaces, bridges, iptables)", file=sys.stderr)
        return 1
    tag = "kb" + uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="kapal-bench-net-") as tmp:
        net = BridgeNetwork(tag, tag, SUBNET, os.path.join(tmp, "data"))
        samples: dict[str, list[float]] = {}

        def clock(name: str, fn, *args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            samples.setdefault(name, []).append((time.perf_counter() - start) * 1000)
            return out

        try:
            net.setup()
            for i in range(rounds):
                ns = netns.create(os.path.join(tmp, "ns", str(i)))
                try:
                    port = 30000 + i

                    steps = (ours, reference) if i % 2 == 0 else (reference, ours)  # alternate the order
                    for step in steps:
                        step(net, clock, f"{i}", ns, port)
                finally:
                    netns.remove(ns)
        finally:
            net.teardown()
            remove_unused_portmap_chains()
    print(f"network attach/detach, {rounds} rounds, median ms (bare = the same CNI plugins exec'd directly)")
    print(f"{'operation':<14}{'kapal':>9}{'bare':>9}{'ratio':>8}")
    for op in ("attach", "detach", "attach -p", "detach -p"):
        k, b = statistics.median(samples[f"kapal {op}"]), statistics.median(samples[f"bare {op}"])
        print(f"{op:<14}{k:>9.1f}{b:>9.1f}{k / b:>8.2f}")
    print("kapal attach also runs the loopback plugin; -p publishes one port through portmap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
