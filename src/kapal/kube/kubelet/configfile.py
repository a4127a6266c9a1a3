"""`kapal kubelet --config FILE`: a kubelet.config.k8s.io/v1beta1 KubeletConfiguration, as kubeadm writes one.

Fields kapal acts on map onto KubeletConfig; fields it accepts but has no use for yet (kubeadm's zero
durations, logging, rotateCertificates...) are listed in IGNORED; anything else is refused by name, as
upstream's strict decoding does. Durations use Go's syntax ("1m30s", "0s"); zero means "the default".
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from kapal.errors import Invalid, Unsupported

from .config import KubeletConfig

API_VERSION = "kubelet.config.k8s.io/v1beta1"
IGNORED = frozenset({
    "cpuManagerReconcilePeriod", "evictionPressureTransitionPeriod", "httpCheckFrequency", "imageMaximumGCAge",
    "imageMinimumGCAge", "logging", "memorySwap", "rotateCertificates", "runtimeRequestTimeout",
    "shutdownGracePeriod", "shutdownGracePeriodCriticalPods", "streamingConnectionIdleTimeout",
    "volumeStatsAggPeriod", "serverTLSBootstrap", "enableServer", "hairpinMode", "oomScoreAdj", "readOnlyPort",
    "kubeAPIQPS", "kubeAPIBurst", "eventRecordQPS", "eventBurst", "enableDebuggingHandlers", "containerLogMaxSize",
    "containerLogMaxFiles", "imageGCHighThresholdPercent", "imageGCLowThresholdPercent", "featureGates",
    "evictionHard", "enforceNodeAllocatable", "protectKernelDefaults", "tlsCipherSuites", "tlsMinVersion",
})
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def duration(text: Any, field: str) -> float:
    """Go's time.Duration text -> seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if s in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise Invalid(f'{field}: invalid duration "{text}" (use e.g. 10s, 1m30s)')
    return total


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise Invalid(f"{field}: want true or false, not {value!r}")


def _check_keys(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise Invalid(f"{where}: want an object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise Invalid(f'strict decoding error: unknown field "{where + "." if where else ""}{unknown[0]}"')
    return obj


def apply(config: KubeletConfig, doc: dict[str, Any]) -> KubeletConfig:
    """`config` with the file's settings applied."""
    if doc.get("kind") != "KubeletConfiguration" or doc.get("apiVersion") != API_VERSION:
        raise Invalid(f"kubelet config file: want kind KubeletConfiguration, apiVersion {API_VERSION}; got kind "
                      f"{doc.get('kind')!r}, apiVersion {doc.get('apiVersion')!r}")
    simple = {
        "staticPodPath": ("pod_manifest_path", Path), "clusterDomain": ("cluster_domain", str),
        "cgroupDriver": ("cgroup_driver", str), "cgroupRoot": ("cgroup_root", str), "address": ("address", str),
        "port": ("port", int), "healthzBindAddress": ("healthz_bind_address", str),
        "healthzPort": ("healthz_port", int), "resolvConf": ("resolv_conf", str), "maxPods": ("max_pods", int),
        "tlsCertFile": ("tls_cert_file", Path), "tlsPrivateKeyFile": ("tls_private_key_file", Path),
        "podCIDR": ("pod_cidr", str), "providerID": ("provider_id", str),
        "containerRuntimeEndpoint": ("container_runtime_endpoint", str),
    }
    bools = {"failSwapOn": "fail_swap_on", "serializeImagePulls": "serialize_image_pulls",
             "registerNode": "register_node"}
    durations = {"syncFrequency": "sync_frequency", "fileCheckFrequency": "file_check_frequency",
                 "nodeStatusUpdateFrequency": "node_status_update_frequency",
                 "nodeStatusReportFrequency": "node_status_report_frequency"}
    structured = {"apiVersion", "kind", "clusterDNS", "authentication", "authorization", "registerWithTaints",
                  "nodeLeaseDurationSeconds", "systemReserved", "kubeReserved"}
    _check_keys(doc, set(simple) | set(bools) | set(durations) | structured | IGNORED, "")
    changes: dict[str, Any] = {}
    for key, (attr, kind) in simple.items():
        if doc.get(key) not in (None, ""):
            changes[attr] = kind(doc[key])
    for key, attr in bools.items():
        if key in doc:
            changes[attr] = _bool(doc[key], key)
    for key, attr in durations.items():
        if key in doc:
            seconds = duration(doc[key], key)
            if seconds > 0:
                changes[attr] = seconds
    if doc.get("clusterDNS") is not None:
        changes["cluster_dns"] = [str(x) for x in doc["clusterDNS"]]
    if doc.get("nodeLeaseDurationSeconds"):
        changes["node_lease_duration"] = int(doc["nodeLeaseDurationSeconds"])
    if doc.get("registerWithTaints"):
        changes["register_with_taints"] = list(doc["registerWithTaints"])
    reserved = {**(doc.get("kubeReserved") or {}), **(doc.get("systemReserved") or {})}
    if reserved:
        changes["system_reserved"] = {k: str(v) for k, v in reserved.items()}
    authn = _check_keys(doc.get("authentication"), {"anonymous", "webhook", "x509"}, "authentication")
    if "anonymous" in authn:
        anon = _check_keys(authn["anonymous"], {"enabled"}, "authentication.anonymous")
        if "enabled" in anon:
            changes["anonymous_auth"] = _bool(anon["enabled"], "authentication.anonymous.enabled")
    if "webhook" in authn:
        hook = _check_keys(authn["webhook"], {"enabled", "cacheTTL"}, "authentication.webhook")
        if "enabled" in hook:
            changes["authentication_token_webhook"] = _bool(hook["enabled"], "authentication.webhook.enabled")
    if "x509" in authn:
        x509 = _check_keys(authn["x509"], {"clientCAFile"}, "authentication.x509")
        if x509.get("clientCAFile"):
            changes["client_ca_file"] = Path(x509["clientCAFile"])
    authz = _check_keys(doc.get("authorization"), {"mode", "webhook"}, "authorization")
    if authz.get("mode"):
        if authz["mode"] not in ("AlwaysAllow", "Webhook"):
            raise Unsupported(f"authorization.mode {authz['mode']!r}: kapal's kubelet has AlwaysAllow and Webhook")
        changes["authorization_mode"] = authz["mode"]
    _check_keys(authz.get("webhook"), {"cacheAuthorizedTTL", "cacheUnauthorizedTTL"}, "authorization.webhook")
    return replace(config, **changes)


def load(path: Path, config: KubeletConfig) -> KubeletConfig:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise Invalid(f"--config {path}: no such file") from None
    except yaml.YAMLError as e:
        raise Invalid(f"--config {path}: not YAML: {e}") from e
    if not isinstance(doc, dict):
        raise Invalid(f"--config {path}: want a KubeletConfiguration object")
    try:
        return apply(config, doc)
    except Invalid as e:
        raise Invalid(f"--config {path}: {e}") from e
