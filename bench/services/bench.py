"""Services, measured: programming N Services x M endpoints, endpoint change -> rule latency, DNS queries/s.

1. program: the proxy's full sync of N Services x M endpoints (render + one iptables-restore + jumps), median of
   ROUNDS, next to a bare `iptables-restore` of the very same rules (the floor any iptables proxy pays);
   and `kapal proxy` from process start to its first full sync (list + watch + sync).
2. endpoint change: with `kapal proxy` running (default --iptables-min-sync-period 1s; changes spaced wider),
   the time from the EndpointSlice update (API call returned) until `iptables -S` shows the new endpoint's rule.
3. DNS: queries/s from one asyncio UDP client (64 in flight) against `kapal dns` for a cluster name and for an
   outside name (forwarded once, then cached), and against the host's own resolver (from /etc/resolv.conf)
   for the same outside name, in the same run.

Usage: bench/services/run [--services 1000] [--endpoints 10] [--rounds 3] [--changes 20] [--queries 5000]
Root; uses a scratch API server, chain prefix KBENCH-, and removes everything it made.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "proxy"))

from dnslib import DNSRecord  # noqa: E402
from services_harness import KapalProcess, api_server, endpoint_slice, free_port, service  # noqa: E402

from kapal.kube.client.client import ApiClient  # noqa: E402
from kapal.kube.client.config import ClientConfig  # noqa: E402
from kapal.kube.client.kinds import ENDPOINTSLICES, NAMESPACES, SERVICES  # noqa: E402
from kapal.kube.dns.forward import nameservers  # noqa: E402
from kapal.kube.pki import load_kubeconfig  # noqa: E402
from kapal.kube.proxy.proxier import IptablesProxier, cleanup  # noqa: E402
from kapal.kube.proxy.rules import ChainNames, RuleConfig  # noqa: E402

PREFIX = "KBENCH-"
NS = "bench"
PORTS = [("http", 80, "TCP")]
TARGET = [("http", 8080, "TCP")]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ep_ips(i: int, m: int) -> list[str]:
    """m endpoint addresses of Service i (10.240-10.255 x.y: nothing answers; only rules are measured)."""
    return [f"10.{240 + k % 16}.{i // 250 + 16 * (k // 16)}.{i % 250 + 1}" for k in range(m)]


async def create_services(kubeconfig: Path, n: int, m: int) -> tuple[list[dict], list[dict], float]:
    client = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(kubeconfig)))
    sem = asyncio.Semaphore(32)
    started = time.monotonic()

    async def one(i: int) -> None:
        async with sem:
            await client.create(SERVICES, service(f"svc-{i}", PORTS, namespace=NS), NS)
            await client.create(ENDPOINTSLICES, endpoint_slice(f"svc-{i}", [{"ip": ip} for ip in ep_ips(i, m)],
                                                               TARGET, namespace=NS), NS)
    try:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await asyncio.gather(*(one(i) for i in range(n)))
        took = time.monotonic() - started
        services, _ = await client.list_all(SERVICES, NS)
        slices, _ = await client.list_all(ENDPOINTSLICES, NS)
        return services, slices, took
    finally:
        await client.close()


def bench_programming(services: list[dict], slices: list[dict], rounds: int) -> dict[str, float]:
    cfg = RuleConfig(prefix=PREFIX, cluster_cidrs=("10.240.0.0/12",))
    names = ChainNames(PREFIX)
    syncs, plans, restores, floors = [], [], [], []
    lines = 0
    for _ in range(rounds):
        cleanup(names)
        p = IptablesProxier(cfg, "bench-node")
        for s in services:
            p.update_service(s)
        for s in slices:
            p.update_slice(s)
        t0 = time.perf_counter()
        plan = p.plan(full=True, existing=p.owned_chains())
        t1 = time.perf_counter()
        p.apply(plan)
        t2 = time.perf_counter()
        p.commit(plan)
        plans.append(t1 - t0)
        restores.append(t2 - t1)
        syncs.append(t2 - t0)
        lines = plan.text.count("\n")
        cleanup(names)
        t3 = time.perf_counter()
        subprocess.run(["iptables-restore", "-w", "--noflush"], input=plan.text, text=True, check=True)
        floors.append(time.perf_counter() - t3)
        cleanup(names)
    return {"sync": median(syncs), "plan": median(plans), "apply": median(restores), "floor": median(floors),
            "lines": lines}


def svc_chain(i: int) -> str:
    from kapal.kube.proxy.model import ServicePort, ServicePortName

    return ChainNames(PREFIX).svc(ServicePort(ServicePortName(NS, f"svc-{i}", "http"), "TCP", 80, ""))


def chain_has(chain: str, text: str) -> bool:
    out = subprocess.run(["iptables", "-w", "-t", "nat", "-S", chain], capture_output=True, text=True).stdout
    return text in out


async def bench_changes(kubeconfig: Path, n: int, m: int, changes: int) -> list[float]:
    client = ApiClient(ClientConfig.from_kubeconfig(load_kubeconfig(kubeconfig)))
    delays = []
    try:
        for c in range(changes):
            i = random.randrange(n)
            new_ip = f"10.239.{c // 250}.{c % 250 + 1}"
            body = endpoint_slice(f"svc-{i}", [{"ip": ip} for ip in ep_ips(i, m)] + [{"ip": new_ip}], TARGET,
                                  namespace=NS)
            live = await client.get(ENDPOINTSLICES, f"svc-{i}-test", NS)
            body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            chain = svc_chain(i)
            await client.replace(ENDPOINTSLICES, body)
            t0 = time.perf_counter()
            while not await asyncio.to_thread(chain_has, chain, f"-> {new_ip}:8080"):
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError(f"endpoint {new_ip} of svc-{i} never showed up in {chain}")
                await asyncio.sleep(0.002)
            delays.append(time.perf_counter() - t0)
            await asyncio.sleep(1.2)  # past --iptables-min-sync-period, so no change waits on the previous one
    finally:
        await client.close()
    return delays


async def qps(server: tuple[str, int], names: list[str], total: int,
              window: int = 64) -> tuple[float, int, float]:
    """Queries/s with `window` queries outstanding over one UDP socket; (qps, lost or failed answers, median
    answer time of the answered ones). A query unanswered after 1 s counts as lost and is replaced.
    Queries are packed once up front (only the id changes), so the client spends its time on the socket."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(server)
    bodies = [bytes(DNSRecord.question(name).pack())[2:] for name in names]
    pending: dict[int, float] = {}
    done = failures = sent = 0
    finished = asyncio.Event()
    answer_times: list[float] = []

    def send() -> None:
        nonlocal sent
        if sent >= total:
            return
        qid = sent % 65535 + 1
        pending[qid] = time.monotonic()
        sock.send(struct.pack("!H", qid) + bodies[sent % len(bodies)])
        sent += 1

    def readable() -> None:
        nonlocal done, failures
        while True:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                return
            sent_at = pending.pop(struct.unpack("!H", data[:2])[0], None)
            if sent_at is None:
                continue
            answer_times.append(time.monotonic() - sent_at)
            if (data[3] & 0x0F) not in (0, 3):  # NOERROR / NXDOMAIN
                failures += 1
            done += 1
            if done >= total:
                finished.set()
                return
            send()

    loop.add_reader(sock.fileno(), readable)
    started = time.monotonic()
    for _ in range(window):
        send()
    try:
        while not finished.is_set():
            try:
                await asyncio.wait_for(finished.wait(), 0.5)
            except TimeoutError:
                now = time.monotonic()
                for rid, t in list(pending.items()):  # lost: count it, send another
                    if now - t > 1.0:
                        pending.pop(rid)
                        failures += 1
                        done += 1
                        send()
                if done >= total:
                    break
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return total / (time.monotonic() - started), failures, median(answer_times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--queries", type=int, default=5000)
    args = ap.parse_args()
    n, m = args.services, args.endpoints
    tmp = Path(tempfile.mkdtemp(prefix="kapal-bench-services-"))
    cidr_bits = max(20, 32 - (n + 16).bit_length() - 1)
    cidr = f"10.253.{random.randrange(0, 256, 2 ** max(0, 24 - cidr_bits))}.0/{cidr_bits}"
    print(f"bench/services: {n} Services x {m} endpoints, service range {cidr}, chain prefix {PREFIX}")
    procs: list[KapalProcess] = []
    try:
        with api_server(tmp, service_cluster_ip_range=cidr) as cluster:
            services, slices, took = asyncio.run(create_services(cluster.kubeconfig, n, m))
            print(f"  created {len(services)} Services + {len(slices)} EndpointSlices through the API in {took:.1f}s")

            r = bench_programming(services, slices, args.rounds)
            print(f"\n1. program {n} x {m} ({r['lines']} iptables-restore lines), median of {args.rounds}:")
            print(f"   kapal proxy full sync      {r['sync']:7.3f} s  (render {r['plan']:.3f} s, restore+jumps "
                  f"{r['apply']:.3f} s)")
            ratio = r["sync"] / r["floor"]
            print(f"   bare iptables-restore      {r['floor']:7.3f} s  (same rules)   ratio {ratio:.2f}x")

            proxy = KapalProcess("proxy", ["--kubeconfig", str(cluster.kubeconfig), "--chain-prefix", PREFIX,
                                           "--hostname-override", "bench-node", "--cluster-cidr", "10.240.0.0/12",
                                           "--healthz-bind-address", "", "--metrics-bind-address", "", "-v", "1"],
                                 tmp / "proxy.log")
            procs.append(proxy)
            t0 = time.perf_counter()
            proxy.start()
            while "full sync" not in proxy.log():
                if not proxy.alive():
                    raise RuntimeError(f"kapal proxy exited: {proxy.log()[-2000:]}")
                time.sleep(0.02)
            print(f"   `kapal proxy` start -> first full sync: {time.perf_counter() - t0:.2f} s (process, list, "
                  "watch, sync)")

            time.sleep(1.2)  # past --iptables-min-sync-period after that first sync
            delays = asyncio.run(bench_changes(cluster.kubeconfig, n, m, args.changes))
            delays.sort()
            print(f"\n2. EndpointSlice update -> its rule in iptables ({args.changes} changes, {n} Services loaded):")
            print(f"   median {median(delays) * 1000:.0f} ms, p90 {delays[int(len(delays) * 0.9) - 1] * 1000:.0f} ms,"
                  f" max {delays[-1] * 1000:.0f} ms")

            host = [ip for ip in nameservers(open("/etc/resolv.conf").read())
                    if not ipaddress.ip_address(ip).is_loopback]
            port = free_port()
            dns_args = ["--kubeconfig", str(cluster.kubeconfig), "--dns-address", "127.0.0.1", "--dns-port",
                        str(port), "--metrics-address", "", "--health-address", "", "--ready-address", "",
                        "--hostname-override", "bench-node"]
            for ip in host[:1]:
                dns_args += ["--upstream", ip]
            dns = KapalProcess("dns", dns_args, tmp / "dns.log")
            procs.append(dns)
            dns.start()
            probe = f"svc-{n - 1}.{NS}.svc.cluster.local"
            deadline = time.monotonic() + 60
            while True:
                try:
                    reply = DNSRecord.parse(DNSRecord.question(probe).send("127.0.0.1", port, timeout=1))
                    if reply.rr:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kapal dns never answered: {dns.log()[-2000:]}")
                time.sleep(0.1)
            cluster_names = [f"svc-{random.randrange(n)}.{NS}.svc.cluster.local" for _ in range(200)]
            outside = ["kubernetes.io"]
            print(f"\n3. DNS queries/s ({args.queries} queries per kapal row, up to 1000 for the host's; one Python "
                  "client; window = queries in flight):")
            targets = [("kapal dns, cluster names", ("127.0.0.1", port), cluster_names),
                       ("kapal dns, outside name (cached)", ("127.0.0.1", port), outside)]
            if host:
                targets.append((f"host resolver {host[0]}", (host[0], 53), outside))
            else:
                print("   (no non-loopback resolver in /etc/resolv.conf to compare with)")
            results: dict[tuple[str, int], float] = {}
            for window in (1, 8, 64):
                for label, where, qnames in targets:
                    # the host's resolver may drop queries (each costs the 1 s timeout): ask it fewer
                    count = args.queries if where[0] == "127.0.0.1" else min(args.queries, 1000)
                    rate, failed, answer = asyncio.run(qps(where, qnames, count, window))
                    results[(label, window)] = rate
                    print(f"   window {window:2d}  {label:<34} {rate:8.0f} q/s  median answer "
                          f"{answer * 1000:6.2f} ms  ({failed} lost or failed)")
            if host:
                hl = f"host resolver {host[0]}"
                for window in (1, 8, 64):
                    print(f"   window {window:2d}  ratio kapal/host: cluster names "
                          f"{results[('kapal dns, cluster names', window)] / results[(hl, window)]:.2f}x, outside "
                          f"name {results[('kapal dns, outside name (cached)', window)] / results[(hl, window)]:.2f}x")
    finally:
        for p in procs:
            p.stop()
        cleanup(ChainNames(PREFIX))
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
