"""Names outside the cluster go to the host's resolvers, with a small cache in front.

Upstreams come from a resolv.conf (or are given explicitly as IP[:PORT]). A nameserver that is this
server itself would make queries loop, so it is skipped: an address we listen on, or any loopback or
unspecified address when we listen on every address (a loopback stub such as systemd-resolved's
127.0.0.53 is fine while we listen elsewhere). When only such entries remain, systemd-resolved's real
upstream list is tried, as the kubelet does.

Queries go over UDP to the first upstream (2 s, then the next); a truncated answer is asked again over
TCP. Answers are cached by (name, type, class): positive ones for their smallest TTL capped at
`max_ttl` (30 s), negative ones (NXDOMAIN, NODATA) for at most `negative_ttl` (5 s).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, DNSRecord

from kapal import errors

log = logging.getLogger(__name__)

SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"
UDP_TIMEOUT = 2.0


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Upstream:
        text = text.strip()
        host, port = text, 53
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif text.count(":") == 1:
            host, _, p = text.partition(":")
            port = int(p)
        try:
            ipaddress.ip_address(host)
        except ValueError as e:
            raise errors.Invalid(f"upstream resolver {text!r} must be IP[:PORT]") from e
        return cls(host, port)


def nameservers(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append(words[1].split("%", 1)[0])
    return out


def _loops(ip: str, listen: list[tuple[str, int]]) -> bool:
    addr = ipaddress.ip_address(ip)
    for host, port in listen:
        if port != 53:
            continue
        if host in ("", "0.0.0.0", "::"):
            if addr.is_loopback or addr.is_unspecified:
                return True
        elif ipaddress.ip_address(host) == addr:
            return True
    return False


def upstreams_from_resolv_conf(path: str, listen: list[tuple[str, int]]) -> list[Upstream]:
    """The usable nameservers of `path` (see the module docstring); [] when none is usable."""
    for candidate in (path, SYSTEMD_RESOLV_CONF):
        try:
            text = open(candidate).read()
        except OSError:
            continue
        found = [Upstream(ip) for ip in nameservers(text) if not _loops(ip, listen)]
        if found:
            return found
        if candidate != path:
            break
    return []


class AnswerCache:
    def __init__(self, size: int = 10000, max_ttl: float = 30.0, negative_ttl: float = 5.0) -> None:
        self.size = size
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self._items: OrderedDict[tuple[str, int, int], tuple[float, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int, int]) -> bytes | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self.misses += 1
            if item is not None:
                del self._items[key]
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: tuple[str, int, int], reply: DNSRecord, raw: bytes) -> None:
        rcode = reply.header.rcode
        if rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN) or reply.header.tc:
            return
        if reply.rr:
            ttl = min(min(rr.ttl for rr in reply.rr), self.max_ttl)
        else:
            soa = [rr for rr in reply.auth if rr.rtype == QTYPE.SOA]
            ttl = min(min((min(rr.ttl, rr.rdata.times[-1]) for rr in soa), default=self.negative_ttl),
                      self.negative_ttl)
        if ttl <= 0:
            return
        self._items[key] = (time.monotonic() + ttl, raw)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class _UdpExchange(asyncio.DatagramProtocol):
    def __init__(self, waiter: asyncio.Future[bytes], qid: int) -> None:
        self.waiter = waiter
        self.qid = qid

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == self.qid and not self.waiter.done():
            self.waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.waiter.done():
            self.waiter.set_exception(exc)


class Forwarder:
    def __init__(self, upstreams: list[Upstream], cache: AnswerCache | None = None) -> None:
        self.upstreams = upstreams
        self.cache = cache if cache is not None else AnswerCache()

    async def _udp(self, up: Upstream, packet: bytes, qid: int) -> bytes:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpExchange(waiter, qid),
                                                          remote_addr=(up.host, up.port))
        try:
            transport.sendto(packet)
            return await asyncio.wait_for(waiter, UDP_TIMEOUT)
        finally:
            transport.close()

    async def _tcp(self, up: Upstream, packet: bytes) -> bytes:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(up.host, up.port), UDP_TIMEOUT)
        try:
            writer.write(struct.pack("!H", len(packet)) + packet)
            await writer.drain()
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), UDP_TIMEOUT))[0]
            return await asyncio.wait_for(reader.readexactly(size), UDP_TIMEOUT)
        finally:
            writer.close()

    async def resolve(self, request: DNSRecord) -> DNSRecord | None:
        """The upstream's answer with the request's id, or None when no upstream answered."""
        q = request.q
        key = (str(q.qname).lower(), q.qtype, q.qclass)
        cached = self.cache.get(key)
        if cached is not None:
            reply = DNSRecord.parse(cached)
            reply.header.id = request.header.id
            return reply
        ask = DNSRecord(request.header, questions=[q])
        ask.header.id = request.header.id
        packet = ask.pack()
        for up in self.upstreams:
            try:
                raw = await self._udp(up, packet, request.header.id)
                reply = DNSRecord.parse(raw)
                if reply.header.tc:
                    raw = await self._tcp(up, packet)
                    reply = DNSRecord.parse(raw)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                log.debug("upstream %s failed for %s: %s", up, key[0], e)
                continue
            except Exception as e:  # dnslib parse errors
                log.debug("upstream %s sent a bad answer for %s: %s", up, key[0], e)
                continue
            self.cache.put(key, reply, raw)
            return reply
        return None
