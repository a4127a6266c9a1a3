"""`kapal kubelet --config`: kubeadm's KubeletConfiguration, unknown fields refused, flags over the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from kapal.cli.kubelet import config_from, parser
from kapal.errors import Invalid
from kapal.kube.kubelet.configfile import duration

KUBEADM = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {cacheTTL: 0s, enabled: true}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 0s, cacheUnauthorizedTTL: 0s}
cgroupDriver: cgroupfs
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
containerRuntimeEndpoint: ""
cpuManagerReconcilePeriod: 0s
evictionPressureTransitionPeriod: 0s
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
httpCheckFrequency: 0s
imageMaximumGCAge: 0s
imageMinimumGCAge: 0s
logging: {flushFrequency: 0, options: {json: {infoBufferSize: "0"}, text: {infoBufferSize: "0"}}, verbosity: 0}
memorySwap: {}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
resolvConf: /etc/resolv.conf
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
"""


def load(tmp_path: Path, text: str, *flags: str):
    f = tmp_path / "config.yaml"
    f.write_text(text)
    return config_from(parser().parse_args(["--config", str(f), *flags]))


def test_kubeadm_file(tmp_path):
    c = load(tmp_path, KUBEADM)
    assert c.pod_manifest_path == Path("/etc/kubernetes/manifests") and c.cluster_dns == ["10.96.0.10"]
    assert (c.anonymous_auth, c.authentication_token_webhook, c.authorization_mode) == (False, True, "Webhook")
    assert c.client_ca_file == Path("/etc/kubernetes/pki/ca.crt") and (c.healthz_bind_address, c.healthz_port) == (
        "127.0.0.1", 10248)
    assert c.sync_frequency == 60.0  # 0s means the default


def test_flags_win_over_the_file(tmp_path):
    c = load(tmp_path, KUBEADM, "--cluster-dns", "10.0.0.10,10.0.0.11", "--anonymous-auth=true", "--port", "11250")
    assert c.cluster_dns == ["10.0.0.10", "10.0.0.11"] and c.anonymous_auth is True and c.port == 11250


def test_unknown_fields_are_refused_by_name(tmp_path):
    with pytest.raises(Invalid, match='unknown field "staticPodPaht"'):
        load(tmp_path, KUBEADM.replace("staticPodPath", "staticPodPaht"))
    with pytest.raises(Invalid, match='unknown field "authentication.anonymus"'):
        load(tmp_path, KUBEADM.replace("anonymous: {enabled: false}", "anonymus: {enabled: false}"))
    with pytest.raises(Invalid, match="KubeletConfiguration"):
        load(tmp_path, "apiVersion: v1\nkind: Pod\n")


def test_durations():
    assert duration("1m30s", "x") == 90.0 and duration("0s", "x") == 0.0 and duration("1h2m3.5s", "x") == 3723.5
    assert duration("500ms", "x") == 0.5
    with pytest.raises(Invalid, match="invalid duration"):
        duration("10 seconds", "x")
