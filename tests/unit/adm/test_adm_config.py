"""InitConfiguration/ClusterConfiguration parsing, defaults, flags and kubeadm's validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from kapal.errors import Invalid, Unsupported
from kapal.kube.adm.config import (
    DEFAULT_DATASTORE_DIR,
    cluster_configuration,
    format_duration,
    from_cluster_configuration,
    load_init_config,
    parse_duration,
)

BASE_FLAGS = {"apiserver-advertise-address": "192.0.2.10", "node-name": "node-a"}

V1BETA3 = """
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
- token: abcdef.0123456789abcdef
  ttl: 2h
  description: mine
nodeRegistration:
  name: cp-1
  kubeletExtraArgs:
    v: "2"
  ignorePreflightErrors: [Swap]
localAPIEndpoint:
  advertiseAddress: 192.0.2.20
  bindPort: 7443
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
clusterName: lab
networking:
  podSubnet: 10.50.0.0/16
  serviceSubnet: 10.60.0.0/16
  dnsDomain: example.internal
apiServer:
  certSANs: [api.example.com, 203.0.113.7]
  extraArgs:
    event-ttl: 2h
controllerManager:
  extraArgs:
    node-cidr-mask-size: "25"
"""

V1BETA4 = """
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 192.0.2.30
nodeRegistration:
  kubeletExtraArgs:
  - name: v
    value: "3"
  - name: node-labels
    value: a=b
timeouts:
  controlPlaneComponentHealthCheck: 1m30s
skipPhases: [addon/kube-proxy]
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
apiServer:
  extraArgs:
  - name: event-ttl
    value: 30m
etcd:
  local:
    dataDir: /srv/kapal-db
dns:
  disabled: true
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
maxPods: 50
"""


def test_v1beta3_documents_become_one_config():
    cfg = load_init_config(V1BETA3)
    assert (cfg.node_name, cfg.advertise_address, cfg.bind_port) == ("cp-1", "192.0.2.20", 7443)
    assert cfg.bootstrap_tokens[0].token == "abcdef.0123456789abcdef"
    assert cfg.bootstrap_tokens[0].ttl == 7200 and cfg.bootstrap_tokens[0].description == "mine"
    assert cfg.ignore_preflight_errors == {"swap"}
    assert (cfg.cluster_name, cfg.pod_subnet, cfg.service_subnet, cfg.dns_domain) == (
        "lab", "10.50.0.0/16", "10.60.0.0/16", "example.internal")
    assert cfg.api_server.cert_sans == ["api.example.com", "203.0.113.7"]
    assert [(a.name, a.value) for a in cfg.api_server.extra_args] == [("event-ttl", "2h")]
    assert [(a.name, a.value) for a in cfg.kubelet_extra_args] == [("v", "2")]
    assert cfg.api_endpoint == "192.0.2.20:7443"
    assert cfg.dns_service_ip == "10.60.0.10"


def test_v1beta4_lists_timeouts_datastore_and_kubelet_configuration():
    cfg = load_init_config(V1BETA4, {"node-name": "x"})
    assert [(a.name, a.value) for a in cfg.kubelet_extra_args] == [("v", "3"), ("node-labels", "a=b")]
    assert cfg.control_plane_timeout == 90
    assert cfg.skip_phases == ["addon/kube-proxy"]
    assert cfg.datastore_dir == Path("/srv/kapal-db")
    assert cfg.dns_disabled and not cfg.proxy_disabled
    assert cfg.kubelet_configuration["maxPods"] == 50


def test_defaults_without_a_file():
    cfg = load_init_config(None, BASE_FLAGS)
    assert cfg.pod_subnet == "10.244.0.0/16" and cfg.service_subnet == "10.96.0.0/12"
    assert cfg.cert_dir == Path("/etc/kubernetes/pki") and cfg.datastore_dir == DEFAULT_DATASTORE_DIR
    assert cfg.image_repository == "kapal.local" and cfg.kubernetes_version == "v1.33.0"
    token = cfg.bootstrap_tokens[0]
    assert token.ttl == 24 * 3600 and token.usages == ("signing", "authentication")
    assert token.groups == ("system:bootstrappers:kubeadm:default-node-token",)
    import re

    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token.token)


def test_flags_override_defaults():
    cfg = load_init_config(None, {**BASE_FLAGS, "pod-network-cidr": "10.70.0.0/16", "service-cidr": "10.80.0.0/16",
                                  "cert-dir": "/tmp/pki", "skip-phases": ["addon,mark-control-plane"],
                                  "ignore-preflight-errors": ["NumCPU,Mem"], "token-ttl": "0"})
    assert (cfg.pod_subnet, cfg.service_subnet, cfg.cert_dir) == ("10.70.0.0/16", "10.80.0.0/16", Path("/tmp/pki"))
    assert cfg.skip_phases == ["addon", "mark-control-plane"]
    assert cfg.ignore_preflight_errors == {"numcpu", "mem"}
    assert cfg.bootstrap_tokens[0].ttl is None


def test_config_cannot_mix_with_most_flags():
    with pytest.raises(Invalid, match=r"can not mix '--config' with arguments \['pod-network-cidr'\]"):
        load_init_config(V1BETA3, {"pod-network-cidr": "10.1.0.0/16", "dry-run": True})
    assert load_init_config(V1BETA3, {"dry-run": True, "ignore-preflight-errors": ["all"]}).dry_run


@pytest.mark.parametrize("doc, message", [
    ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nfoo: 1\n", 'unknown field "foo"'),
    ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking: {podCIDR: x}\n",
     'unknown field "networking.podCIDR"'),
    ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: Frobnicate\n", 'no kind "Frobnicate"'),
    ("apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\ntimeouts: {}\n", 'unknown field "timeouts"'),
    ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens: [{token: nope}]\n",
     "the bootstrap token is invalid"),
    ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking: {podSubnet: 10.96.0.0/16}\n",
     "overlaps with the service subnet"),
])
def test_strict_decoding_and_validation_name_the_problem(doc, message):
    with pytest.raises(Invalid, match=message):
        load_init_config(doc, {})


@pytest.mark.parametrize("doc, message", [
    ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd: {local: {imageTag: x}}\n",
     "etcd.local.imageTag is not supported"),
    ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nencryptionAlgorithm: ECDSA-P256\n",
     'encryptionAlgorithm "ECDSA-P256" is not supported'),
    ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.30.0\n",
     "this kapal provides Kubernetes v1.33.0"),
    ("apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n", "v1beta2 is not supported"),
])
def test_unsupported_settings_fail_by_name(doc, message):
    with pytest.raises(Unsupported, match=message):
        load_init_config(doc, BASE_FLAGS if "kind: Init" in doc else {})


def test_bad_flags_are_invalid_with_field_paths():
    with pytest.raises(Invalid, match='localAPIEndpoint.advertiseAddress: Invalid value: "127.0.0.1"'):
        load_init_config(None, {**BASE_FLAGS, "apiserver-advertise-address": "127.0.0.1"})
    with pytest.raises(Invalid, match="nodeRegistration.name"):
        load_init_config(None, {**BASE_FLAGS, "node-name": "Bad_Name"})


def test_durations_round_trip_go_syntax():
    assert parse_duration("24h0m0s") == 86400 and parse_duration("1h30m") == 5400 and parse_duration("500ms") == 0.5
    assert format_duration(86400) == "24h0m0s" and format_duration(240) == "4m0s" and format_duration(0) == "0s"
    with pytest.raises(Invalid):
        parse_duration("tomorrow")


def test_stored_cluster_configuration_reads_back():
    import yaml

    cfg = load_init_config(V1BETA4, {"node-name": "x"})
    doc = cluster_configuration(cfg)
    assert doc["apiVersion"] == "kubeadm.k8s.io/v1beta4" and doc["kind"] == "ClusterConfiguration"
    assert doc["etcd"] == {"local": {"dataDir": "/srv/kapal-db"}}
    back = from_cluster_configuration(yaml.safe_dump(doc), "x", "192.0.2.30")
    assert back.datastore_dir == Path("/srv/kapal-db") and back.dns_disabled
    assert [(a.name, a.value) for a in back.api_server.extra_args] == [("event-ttl", "30m")]
