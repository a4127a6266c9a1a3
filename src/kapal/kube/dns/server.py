"""The DNS server: UDP and TCP on one address and port, answers from ClusterRecords, the rest forwarded.

Cluster answers are built synchronously on the event loop (no task per query); only forwarded queries
await their upstream. UDP answers larger than the client accepts (512 bytes, or its EDNS size up to
1232) are truncated with TC set, so the client asks again over TCP.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable
from typing import Any

from dnslib import AAAA, CNAME, EDNS0, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSHeader, DNSRecord

from kapal.kube.meta import prometheus

from .forward import Forwarder
from .records import NXDOMAIN, ClusterRecords, Lookup, Record

log = logging.getLogger(__name__)

EDNS_SIZE = 1232
TCP_IDLE = 10.0


class DnsMetrics:
    def __init__(self, records: ClusterRecords, forwarder: Forwarder | None) -> None:
        self.registry = r = prometheus.Registry()
        self.requests = r.counter("coredns_dns_requests_total", "Counter of DNS requests made per zone, protocol "
                                  "and family.", ("server", "zone", "proto", "family", "type"))
        self.responses = r.counter("coredns_dns_responses_total", "Counter of response status codes.",
                                   ("server", "zone", "rcode", "plugin"))
        self.duration = r.histogram("coredns_dns_request_duration_seconds", "Histogram of the time (in seconds) "
                                    "each request took per zone.", ("server", "zone", "type"),
                                    buckets=(0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128,
                                             0.256, 0.512, 1.024, 2.048, 4.096, 8.192))
        cache = forwarder.cache if forwarder is not None else None
        r.gauge("coredns_cache_entries", "The number of elements in the cache.",
                read=lambda: len(cache) if cache is not None else 0)
        r.gauge("coredns_cache_hits_total", "The count of cache hits.",
                read=lambda: cache.hits if cache is not None else 0)
        r.gauge("coredns_cache_misses_total", "The count of cache misses.",
                read=lambda: cache.misses if cache is not None else 0)
        r.gauge("coredns_kubernetes_services", "Services the DNS server knows.", read=lambda: len(records.services))


def _rr(rec: Record, ttl: int, serial: int) -> RR:
    rtype = getattr(QTYPE, rec.rtype)
    if rec.rtype == "A":
        rdata: Any = A(rec.data)
    elif rec.rtype == "AAAA":
        rdata = AAAA(rec.data)
    elif rec.rtype == "CNAME":
        rdata = CNAME(rec.data + ".")
    elif rec.rtype == "PTR":
        rdata = PTR(rec.data + ".")
    elif rec.rtype == "SRV":
        prio, weight, port, target = rec.data
        rdata = SRV(prio, weight, port, target + ".")
    else:  # SOA
        mname, rname = rec.data
        rdata = SOA(mname + ".", rname + ".", (serial, 7200, 1800, 86400, ttl))
    return RR(rec.name + ".", rtype, rdata=rdata, ttl=ttl)


class DnsServer:
    def __init__(self, records: ClusterRecords, forwarder: Forwarder | None, server_name: str = "dns://:53") -> None:
        self.records = records
        self.forwarder = forwarder
        self.server_name = server_name
        self.metrics = DnsMetrics(records, forwarder)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self.address: tuple[str, int] = ("", 0)
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- answering ---------------------------------------------------------------------------------------------

    def answer(self, data: bytes, proto: str) -> bytes | Awaitable[bytes] | None:
        """The reply to one message: bytes at once, an awaitable for forwarded names, None to stay silent."""
        started = time.monotonic()
        try:
            request = DNSRecord.parse(data)
        except Exception:
            if len(data) < 2:
                return None
            reply = DNSRecord(DNSHeader(id=struct.unpack("!H", data[:2])[0], qr=1, rcode=RCODE.FORMERR))
            return bytes(reply.pack())
        family = "1"
        if request.header.qr:
            return None
        if request.header.opcode != 0 or len(request.questions) != 1:
            reply = request.reply()
            reply.header.rcode = RCODE.NOTIMP if request.header.opcode != 0 else RCODE.FORMERR
            return self._finish(request, reply, proto, started, "")
        q = request.q
        qtype = QTYPE.get(q.qtype, str(q.qtype))
        self.metrics.requests.inc(self.server_name, ".", proto, family, qtype if qtype in _TYPES else "other")
        lookup = self.records.lookup(str(q.qname), qtype) if q.qclass == 1 else None
        if lookup is None:
            return self._forward(request, proto, started)
        reply = self._authoritative(request, lookup)
        if lookup.chase:
            return self._chase(request, reply, lookup.chase, q.qtype, proto, started)
        return self._finish(request, reply, proto, started, self.records.domain + ".")

    def _authoritative(self, request: DNSRecord, lookup: Lookup) -> DNSRecord:
        ttl = self.records.ttl
        reply = request.reply(ra=1, aa=1)
        reply.header.rcode = RCODE.NXDOMAIN if lookup.rcode == NXDOMAIN else RCODE.NOERROR
        for rec in lookup.answers:
            reply.add_answer(_rr(rec, ttl, self.records.serial))
        for rec in lookup.additional:
            reply.add_ar(_rr(rec, ttl, self.records.serial))
        if not lookup.answers:
            reply.add_auth(_rr(self.records.soa(), ttl, self.records.serial))
        return reply

    async def _chase(self, request: DNSRecord, reply: DNSRecord, target: str, qtype: int, proto: str,
                     started: float) -> bytes:
        """An ExternalName's CNAME, followed by what its target resolves to."""
        follow = DNSRecord.question(target, QTYPE.get(qtype, "A"))
        follow.header.id = request.header.id
        inner = self.records.lookup(target, QTYPE.get(qtype, "A"))
        if inner is not None:
            answers = [_rr(r, self.records.ttl, self.records.serial) for r in inner.answers]
        elif self.forwarder is not None:
            got = await self.forwarder.resolve(follow)
            answers = list(got.rr) if got is not None else []
        else:
            answers = []
        for rr in answers:
            reply.add_answer(rr)
        return self._finish(request, reply, proto, started, self.records.domain + ".")

    async def _forward(self, request: DNSRecord, proto: str, started: float) -> bytes:
        got = await self.forwarder.resolve(request) if self.forwarder is not None else None
        if got is None:
            reply = request.reply(ra=1)
            reply.header.rcode = RCODE.SERVFAIL
        else:
            reply = got
            reply.header.id = request.header.id
        return self._finish(request, reply, proto, started, ".", plugin="forward")

    def _finish(self, request: DNSRecord, reply: DNSRecord, proto: str, started: float, zone: str,
                plugin: str = "kubernetes") -> bytes:
        edns = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
        if edns is not None and not any(rr.rtype == QTYPE.OPT for rr in reply.ar):
            reply.add_ar(EDNS0(udp_len=EDNS_SIZE))
        packed = bytes(reply.pack())
        if proto == "udp":
            limit = max(512, min(edns.rclass, EDNS_SIZE)) if edns is not None else 512
            if len(packed) > limit:
                reply = DNSRecord(DNSHeader(id=reply.header.id, qr=1, aa=reply.header.aa, ra=1, tc=1,
                                            rcode=reply.header.rcode), questions=request.questions)
                packed = bytes(reply.pack())
        rcode = RCODE.get(reply.header.rcode, str(reply.header.rcode))
        self.metrics.responses.inc(self.server_name, zone or ".", rcode, plugin)
        qtype = QTYPE.get(request.q.qtype, "other") if request.questions else "other"
        self.metrics.duration.observe(time.monotonic() - started, self.server_name, zone or ".",
                                      qtype if qtype in _TYPES else "other")
        return packed

    # --- sockets -----------------------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on UDP and TCP `host:port` (port 0: one free port for both)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(20):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                udp.bind((host, port))
                tcp.bind((host, udp.getsockname()[1]))
            except OSError as e:
                udp.close()
                tcp.close()
                if port == 0:
                    continue
                from kapal import errors

                raise errors.FailedPrecondition(f"cannot listen on {host}:{port} for DNS: {e.strerror}; is another "
                                                "DNS server there? pick another --dns-address/--dns-port") from None
            break
        else:
            raise OSError("no free port for both UDP and TCP")
        tcp.listen(256)
        tcp.setblocking(False)
        udp.setblocking(False)
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=udp)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        self.address = (host, udp.getsockname()[1])
        return self.address

    def _spawn(self, awaitable: Awaitable[bytes], send: Any) -> None:
        async def run() -> None:
            try:
                send(await awaitable)
            except Exception:
                log.exception("DNS query failed")

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", head)[0]), TCP_IDLE)
                out = self.answer(data, "tcp")
                if out is None:
                    continue
                if not isinstance(out, bytes):
                    out = await out
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


_TYPES = frozenset({"A", "AAAA", "SRV", "PTR", "CNAME", "MX", "NS", "SOA", "TXT", "ANY"})


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out = self.server.answer(data, "udp")
        if out is None or self.transport is None:
            return
        if isinstance(out, bytes):
            self.transport.sendto(out, addr)
        else:
            transport = self.transport
            self.server._spawn(out, lambda b: transport.sendto(b, addr))
