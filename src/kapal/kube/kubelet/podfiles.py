"""The files a pod sees at /etc/hosts, /etc/resolv.conf and /etc/hostname, as the upstream kubelet writes them.

Pure functions of the pod, the node's DNS settings and the host's own resolv.conf; the sandbox writes them
under the pod's directory and every container bind-mounts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kapal.errors import Invalid

MAX_NAMESERVERS = 3
MAX_SEARCH = 32
HOST_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        key, *values = line.split()
        if key == "nameserver" and values:
            nameservers.append(values[0])
        elif key in ("search", "domain"):
            searches = list(values)
        elif key == "options":
            options += values
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def host_resolv_conf(path: str = HOST_RESOLV_CONF) -> ResolvConf:
    """The host's resolver; a loopback stub (systemd-resolved's 127.0.0.53) is unreachable from pods, so its
    upstream list is used instead when present."""
    try:
        conf = parse_resolv_conf(open(path).read())
    except FileNotFoundError:
        return ResolvConf()
    if path == HOST_RESOLV_CONF and any(ns.startswith("127.") for ns in conf.nameservers):
        try:
            return parse_resolv_conf(open(SYSTEMD_RESOLV_CONF).read())
        except FileNotFoundError:
            pass
    return conf


@dataclass(frozen=True)
class ClusterDns:
    servers: tuple[str, ...] = ()
    domain: str = "cluster.local"
    host: ResolvConf = field(default_factory=ResolvConf)


def _merge_options(base: list[str], extra: list[dict[str, Any]]) -> list[str]:
    opts: dict[str, str] = {}
    for o in base:
        name, sep, value = o.partition(":")
        opts[name] = f"{name}:{value}" if sep else name
    for o in extra:
        name = o.get("name") or ""
        if not name:
            continue
        value = o.get("value")
        opts[name] = f"{name}:{value}" if value is not None else name
    return list(opts.values())


def pod_resolv_conf(pod: dict[str, Any], dns: ClusterDns) -> tuple[ResolvConf, str | None]:
    """(resolv.conf, warning): ClusterFirst without --cluster-dns falls back to the host's, with a warning."""
    spec = pod.get("spec") or {}
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_net = bool(spec.get("hostNetwork"))
    warning = None
    if policy == "ClusterFirst" and host_net:
        policy = "Default"
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    if policy in ("ClusterFirst",) and not dns.servers:
        warning = ("pod has DNS policy ClusterFirst but the kubelet has no --cluster-dns; "
                   "falling back to the \"Default\" policy")
        policy = "Default"
    nameservers: list[str]
    searches: list[str]
    options: list[str]
    if policy == "ClusterFirst":
        nameservers = list(dns.servers)
        searches = [f"{ns}.svc.{dns.domain}", f"svc.{dns.domain}", dns.domain, *dns.host.searches]
        options = ["ndots:5"]
    elif policy == "Default":
        nameservers = list(dns.host.nameservers)
        searches = list(dns.host.searches)
        options = list(dns.host.options)
    elif policy == "None":
        nameservers, searches, options = [], [], []
    else:
        raise Invalid(f'spec.dnsPolicy: Unsupported value: "{policy}"')
    config = spec.get("dnsConfig") or {}
    nameservers += [n for n in config.get("nameservers") or [] if n not in nameservers]
    searches += [s for s in config.get("searches") or [] if s not in searches]
    options = _merge_options(options, config.get("options") or [])
    unique_searches = list(dict.fromkeys(s.rstrip(".") for s in searches if s))
    return ResolvConf(tuple(nameservers[:MAX_NAMESERVERS]), tuple(unique_searches[:MAX_SEARCH]),
                      tuple(options)), warning


def pod_hostname(pod: dict[str, Any], cluster_domain: str) -> tuple[str, str | None]:
    """(hostname, fqdn or None): spec.hostname or the pod name (cut to 63 characters), FQDN with a subdomain."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    name = (spec.get("hostname") or meta.get("name") or "").rstrip("-.")[:63].rstrip("-.")
    sub = spec.get("subdomain")
    fqdn = f"{name}.{sub}.{meta.get('namespace') or 'default'}.svc.{cluster_domain}" if sub else None
    return name, fqdn


MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
_LOCAL = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
          "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")


def _aliases(pod: dict[str, Any]) -> str:
    entries = (pod.get("spec") or {}).get("hostAliases") or []
    if not entries:
        return ""
    lines = ["\n# Entries added by HostAliases.\n"]
    for e in entries:
        lines.append(e.get("ip", "") + "\t" + "\t".join(e.get("hostnames") or []) + "\n")
    return "".join(lines)


def pod_hosts(pod: dict[str, Any], ips: list[str], cluster_domain: str, host_hosts: str | None = None) -> str:
    """/etc/hosts: the kubelet's managed file, or the host's own for hostNetwork pods (plus hostAliases)."""
    if (pod.get("spec") or {}).get("hostNetwork"):
        header = "# Kubernetes-managed hosts file (host network).\n"
        return header + (host_hosts or "") + _aliases(pod)
    hostname, fqdn = pod_hostname(pod, cluster_domain)
    out = [MANAGED_HOSTS_HEADER, _LOCAL]
    for ip in ips:
        out.append(f"{ip}\t{fqdn}\t{hostname}\n" if fqdn else f"{ip}\t{hostname}\n")
    return "".join(out) + _aliases(pod)
