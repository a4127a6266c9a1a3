"""Forget UDP conntrack entries that still point at a removed endpoint (ctnetlink, no `conntrack` binary).

A UDP "connection" through a Service is DNATed once, when conntrack first sees it; later datagrams of the
same 5-tuple follow that entry even after the endpoint left the Service, until the entry times out (30 s,
120 s once replied); and datagrams sent before a Service had endpoints left un-NATed entries that outlive the
new rules the same way. kube-proxy deletes both kinds of entries; so does the proxy, through
NETLINK_NETFILTER: a dump of the IPv4 table (IPCTNL_MSG_CT_GET), filtered here, then one
IPCTNL_MSG_CT_DELETE per match, addressed by its original tuple.

Message layout (linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h): nlmsghdr, nfgenmsg {family, version,
res_id}, then attributes: CTA_TUPLE_ORIG/REPLY (nested) -> CTA_TUPLE_IP {CTA_IP_V4_SRC, CTA_IP_V4_DST} and
CTA_TUPLE_PROTO {CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT} (ports big-endian).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY = 1, 2
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}


@dataclass(frozen=True)
class Tuple:
    src: str
    dst: str
    proto: int
    sport: int
    dport: int


@dataclass(frozen=True)
class Entry:
    orig: Tuple
    reply: Tuple | None


@dataclass(frozen=True)
class StaleFlow:
    """Entries to forget: to `dst`:`dport` (dst None: any address) over `protocol`, answered by `endpoint`;
    with endpoint None, the entries nobody DNATed (sent while the Service had no endpoints or no rules yet)."""

    protocol: str
    dst: str | None
    dport: int
    endpoint: str | None

    def matches(self, e: Entry) -> bool:
        o = e.orig
        if o.proto != PROTOCOLS[self.protocol] or o.dport != self.dport or e.reply is None:
            return False
        if self.dst is not None and o.dst != self.dst:
            return False
        if self.endpoint is None:
            return self.dst is not None and e.reply.src == self.dst
        return e.reply.src == self.endpoint


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    i = 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            return
        yield kind & ~NLA_F_NESTED, data[i + 4:i + length]
        i += (length + 3) & ~3


def _attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind | (NLA_F_NESTED if nested else 0))
    return head + payload + b"\0" * ((4 - len(payload) % 4) % 4)


def _tuple(data: bytes) -> Tuple | None:
    src = dst = None
    proto = sport = dport = 0
    for kind, value in _attrs(data):
        if kind == CTA_TUPLE_IP:
            for k, v in _attrs(value):
                if k == CTA_IP_V4_SRC:
                    src = socket.inet_ntoa(v[:4])
                elif k == CTA_IP_V4_DST:
                    dst = socket.inet_ntoa(v[:4])
        elif kind == CTA_TUPLE_PROTO:
            for k, v in _attrs(value):
                if k == CTA_PROTO_NUM:
                    proto = v[0]
                elif k == CTA_PROTO_SRC_PORT:
                    sport = struct.unpack("!H", v[:2])[0]
                elif k == CTA_PROTO_DST_PORT:
                    dport = struct.unpack("!H", v[:2])[0]
    if src is None or dst is None:
        return None
    return Tuple(src, dst, proto, sport, dport)


def _encode_tuple(t: Tuple) -> bytes:
    ip = _attr(CTA_IP_V4_SRC, socket.inet_aton(t.src)) + _attr(CTA_IP_V4_DST, socket.inet_aton(t.dst))
    proto = (_attr(CTA_PROTO_NUM, bytes([t.proto])) + _attr(CTA_PROTO_SRC_PORT, struct.pack("!H", t.sport)) +
             _attr(CTA_PROTO_DST_PORT, struct.pack("!H", t.dport)))
    return _attr(CTA_TUPLE_IP, ip, nested=True) + _attr(CTA_TUPLE_PROTO, proto, nested=True)


class Conntrack:
    """One netlink socket to the kernel's IPv4 connection tracking table."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conntrack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, msg_type: int, flags: int, payload: bytes) -> int:
        self.seq += 1
        body = struct.pack("=BBH", socket.AF_INET, 0, 0) + payload
        kind = (NFNL_SUBSYS_CTNETLINK << 8) | msg_type
        self.sock.send(struct.pack("=IHHII", 16 + len(body), kind, flags, self.seq, 0) + body)
        return self.seq

    def _messages(self, seq: int) -> Iterator[tuple[int, bytes]]:
        while True:
            data = self.sock.recv(1 << 20)
            i = 0
            while i + 16 <= len(data):
                length, kind, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, i)
                payload = data[i + 16:i + length]
                i += (length + 3) & ~3
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, f"conntrack: {errno.errorcode.get(code, code)}")
                    return
                yield kind, payload

    def entries(self) -> list[Entry]:
        seq = self._send(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, b"")
        out = []
        for _kind, payload in self._messages(seq):
            orig = reply = None
            for k, v in _attrs(payload[4:]):
                if k == CTA_TUPLE_ORIG:
                    orig = _tuple(v)
                elif k == CTA_TUPLE_REPLY:
                    reply = _tuple(v)
            if orig is not None:
                out.append(Entry(orig, reply))
        return out

    def delete(self, orig: Tuple) -> bool:
        """Remove one entry by its original tuple; False when it is already gone."""
        seq = self._send(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK,
                         _attr(CTA_TUPLE_ORIG, _encode_tuple(orig), nested=True))
        try:
            for _ in self._messages(seq):
                pass
        except OSError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True


def clear(flows: Iterable[StaleFlow]) -> int:
    """Delete every IPv4 entry matching one of `flows`; how many went."""
    wanted = [f for f in flows if ipaddress.ip_address(f.endpoint or f.dst or "0.0.0.0").version == 4]
    if not wanted:
        return 0
    removed = 0
    with Conntrack() as ct:
        for e in ct.entries():
            if any(f.matches(e) for f in wanted) and ct.delete(e.orig):
                removed += 1
    return removed
