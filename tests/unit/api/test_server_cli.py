"""`kapal apiserver` flags, with kube-apiserver's names, become the server's configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kapal.cli.apiserver import config_from_args


def test_flags_map_to_config(tmp_path):
    config, verbosity = config_from_args([
        "--data-dir", str(tmp_path), "--secure-port", "7443", "--authorization-mode", "Node,RBAC",
        "--service-account-issuer", "https://a", "--service-account-issuer", "https://b",
        "--service-cluster-ip-range", "10.0.0.0/16", "--service-node-port-range", "31000-31999",
        "--token-auth-file", "/etc/tokens.csv", "--event-ttl", "30m", "--api-audiences", "x,y", "-v", "2"])
    assert config.data_dir == tmp_path and config.secure_port == 7443
    assert config.authorization_modes == ["Node", "RBAC"]
    assert config.service_account_issuer == ["https://a", "https://b"] and config.api_audiences == ["x", "y"]
    assert config.service_cluster_ip_range == "10.0.0.0/16" and config.service_node_port_range == "31000-31999"
    assert config.token_auth_file == Path("/etc/tokens.csv") and config.event_ttl == 1800 and verbosity == 2
    assert config.storage_dsn == f"sqlite://{tmp_path / 'state.db'}"
    etcd, _ = config_from_args(["--etcd-servers", "https://10.0.0.1:2379,https://10.0.0.2:2379"])
    assert etcd.storage_dsn == "etcd://10.0.0.1:2379,10.0.0.2:2379"


def test_tls_flags_go_together(tmp_path):
    with pytest.raises(SystemExit):
        config_from_args(["--tls-cert-file", str(tmp_path / "c")])


def test_unsupported_storage_fails_loudly(tmp_path):
    p = subprocess.run([sys.executable, "-m", "kapal.cli.main", "apiserver", "--data-dir", str(tmp_path),
                        "--secure-port", "0", "--etcd-servers", "http://127.0.0.1:2379"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "etcd storage backend" in p.stderr and "not implemented" in p.stderr
