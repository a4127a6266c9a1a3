"""The host's names and addresses, for certificate SANs and node addresses.

Read from /proc (this network namespace's local IPv4 and IPv6 addresses) and
the resolver; every source is optional, so a broken lookup never fails a
caller, it only yields fewer names.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class HostAddresses:
    names: tuple[str, ...]
    ips: tuple[IPAddress, ...]


def _local_ipv4(fib_trie: str = "/proc/net/fib_trie") -> list[ipaddress.IPv4Address]:
    """Addresses the kernel routes as local (`/32 host LOCAL` entries of the fib trie)."""
    found: list[ipaddress.IPv4Address] = []
    try:
        with open(fib_trie) as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for prev, line in zip(lines, lines[1:]):
        if line.strip() == "/32 host LOCAL" and "|--" in prev:
            try:
                ip = ipaddress.IPv4Address(prev.split("|--", 1)[1].strip())
            except ValueError:
                continue
            if ip not in found:
                found.append(ip)
    return found


def _local_ipv6(if_inet6: str = "/proc/net/if_inet6") -> list[ipaddress.IPv6Address]:
    """Global and loopback IPv6 addresses (link-local ones are useless in a certificate)."""
    found: list[ipaddress.IPv6Address] = []
    try:
        with open(if_inet6) as f:
            rows = [line.split() for line in f]
    except OSError:
        return found
    for row in rows:
        if len(row) < 4:
            continue
        try:
            ip = ipaddress.IPv6Address(int(row[0], 16))
        except ValueError:
            continue
        if not ip.is_link_local and ip not in found:
            found.append(ip)
    return found


def _names() -> list[str]:
    names: list[str] = []
    try:
        hostname = socket.gethostname()
    except OSError:
        return ["localhost"]
    for candidate in (hostname, hostname.split(".")[0]):
        if candidate and candidate not in names:
            names.append(candidate)
    try:
        # /etc/hosts first (nsswitch); a slow DNS would only delay, and only when the name is not there.
        canonical, aliases, _ = socket.gethostbyname_ex(hostname)
        for n in (canonical, *aliases):
            if n and n not in names and not _is_ip(n):
                names.append(n)
    except OSError:
        pass
    if "localhost" not in names:
        names.append("localhost")
    return [n.lower() for n in names]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_addresses() -> HostAddresses:
    """This host's names (hostname, short name, resolver aliases, localhost) and local IPs
    (IPv4 first, loopback included)."""
    ips: list[IPAddress] = [*_local_ipv4(), *_local_ipv6()]
    for loopback in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")):
        if loopback not in ips and (loopback.version == 4 or ips):
            ips.append(loopback)
    return HostAddresses(tuple(dict.fromkeys(_names())), tuple(ips))


def primary_ipv4() -> ipaddress.IPv4Address | None:
    """The source address of the default route (what a node reports as InternalIP), else the first
    non-loopback local IPv4, else None. Sends no packet."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("203.0.113.1", 9))  # TEST-NET-3: only a route lookup happens
            ip = ipaddress.IPv4Address(s.getsockname()[0])
            if not ip.is_loopback and not ip.is_unspecified:
                return ip
    except OSError:
        pass
    for ip in _local_ipv4():
        if not ip.is_loopback:
            return ip
    return None
