"""Authentication and RBAC as users meet them: client certificates, group bindings, tokens, 401 and 403."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kapal.kube import pki


def _client(server, cert: pki.CertKey | None = None, token: str | None = None):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server.url
    cfg.ssl_ca_cert = str(server.data_dir / "pki" / "ca.crt")
    if cert is not None:
        d = server.data_dir / "users"
        d.mkdir(exist_ok=True)
        cert_path, key_path = d / f"{cert.common_name}.crt", d / f"{cert.common_name}.key"
        pki.write(cert, cert_path, key_path)
        cfg.cert_file, cfg.key_file = str(cert_path), str(key_path)
    if token is not None:
        cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def _user_cert(server, name: str, groups: list[str]) -> pki.CertKey:
    ca = pki.load(server.data_dir / "pki" / "ca.crt", server.data_dir / "pki" / "ca.key")
    return pki.issue(ca, name, organizations=groups, client=True)


def _admin(server):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(str(server.kubeconfig)))


@pytest.fixture(scope="module")
def team(apiserver):
    from kubernetes import client, config

    api = config.new_client_from_config(str(apiserver.kubeconfig))
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    for ns in ("team", "other"):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    rbac.create_namespaced_role_binding("team", {
        "metadata": {"name": "dev-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "dev"}]})
    return "team"


def test_dev_group_member_works_in_its_namespace(apiserver, team):
    from kubernetes import client

    alice = client.CoreV1Api(_client(apiserver, _user_cert(apiserver, "alice", ["dev"])))
    alice.create_namespaced_config_map(team, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="mine")))
    assert [c.metadata.name for c in alice.list_namespaced_config_map(team).items] == ["mine"]
    apps = client.AppsV1Api(alice.api_client)
    apps.create_namespaced_deployment(team, {
        "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    alice.delete_namespaced_config_map("mine", team)


def test_dev_group_member_is_forbidden_elsewhere(apiserver, team):
    from kubernetes import client

    alice = client.CoreV1Api(_client(apiserver, _user_cert(apiserver, "alice", ["dev"])))
    with pytest.raises(client.ApiException) as e:
        alice.list_namespaced_config_map("other")
    assert e.value.status == 403
    st = json.loads(e.value.body)
    assert st["reason"] == "Forbidden"
    assert st["message"] == ('configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" '
                             'in the namespace "other"')
    with pytest.raises(client.ApiException) as e:
        alice.list_namespace()
    assert e.value.status == 403
    assert json.loads(e.value.body)["message"] == ('namespaces is forbidden: User "alice" cannot list resource '
                                                   '"namespaces" in API group "" at the cluster scope')
    with pytest.raises(client.ApiException) as e:
        alice.read_namespaced_secret("nope", "other")
    assert json.loads(e.value.body)["message"] == ('secrets "nope" is forbidden: User "alice" cannot get resource '
                                                   '"secrets" in API group "" in the namespace "other"')
    rbac = client.RbacAuthorizationV1Api(alice.api_client)
    with pytest.raises(client.ApiException) as e:
        rbac.list_namespaced_role(team)
    assert e.value.status == 403


def test_self_subject_access_review_reflects_bindings(apiserver, team):
    from kubernetes import client

    authz = client.AuthorizationV1Api(_client(apiserver, _user_cert(apiserver, "bob", ["dev"])))

    def can(verb, resource, ns):
        review = authz.create_self_subject_access_review({"spec": {"resourceAttributes": {
            "verb": verb, "resource": resource, "namespace": ns}}})
        return review.status.allowed

    assert can("create", "pods", team) and can("delete", "secrets", team)
    assert not can("create", "pods", "other")
    assert not can("create", "roles", team)
    rules = authz.create_self_subject_rules_review({"spec": {"namespace": team}})
    assert any("pods" in r.resources and "create" in r.verbs for r in rules.status.resource_rules)


def test_no_credentials_get_401(apiserver):
    ctx = ssl.create_default_context(cafile=str(apiserver.data_dir / "pki" / "ca.crt"))
    for path in ("/api/v1/namespaces/team/configmaps", "/apis", "/openapi/v3", "/metrics"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(apiserver.url + path, context=ctx, timeout=10)
        assert e.value.code == 401
        assert json.loads(e.value.read())["reason"] == "Unauthorized"


def test_bad_token_is_401_and_unknown_cert_is_refused(apiserver, tmp_path: Path):
    from kubernetes import client

    bad = client.CoreV1Api(_client(apiserver, token="not-a-real-token"))
    with pytest.raises(client.ApiException) as e:
        bad.list_namespace()
    assert e.value.status == 401
    stranger_ca = pki.new_ca("stranger")
    stranger = pki.issue(stranger_ca, "mallory", organizations=["system:masters"], client=True)
    pki.write(stranger, tmp_path / "m.crt", tmp_path / "m.key")
    ctx = ssl.create_default_context(cafile=str(apiserver.data_dir / "pki" / "ca.crt"))
    ctx.load_cert_chain(tmp_path / "m.crt", tmp_path / "m.key")
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(apiserver.url + "/api/v1/namespaces", context=ctx, timeout=10).read()


def test_service_account_token_request_and_review(apiserver, team):
    from kubernetes import client

    admin = _admin(apiserver)
    admin.create_namespaced_service_account(team, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="bot")))
    tr = admin.create_namespaced_service_account_token("bot", team, {"spec": {"expirationSeconds": 3600}})
    token = tr.status.token
    assert token.count(".") == 2 and tr.status.expiration_timestamp
    bot = client.CoreV1Api(_client(apiserver, token=token))
    with pytest.raises(client.ApiException) as e:
        bot.list_namespaced_config_map(team)
    assert e.value.status == 403
    assert 'User "system:serviceaccount:team:bot" cannot list' in json.loads(e.value.body)["message"]
    authn = client.AuthenticationV1Api(admin.api_client)
    review = authn.create_token_review({"spec": {"token": token}})
    assert review.status.authenticated
    assert review.status.user.username == "system:serviceaccount:team:bot"
    assert "system:serviceaccounts:team" in review.status.user.groups
    who = client.AuthenticationV1Api(bot.api_client).create_self_subject_review({})
    assert who.status.user_info.username == "system:serviceaccount:team:bot"
    admin.delete_namespaced_service_account("bot", team)
    review = authn.create_token_review({"spec": {"token": token}})
    assert not review.status.authenticated


def test_bootstrap_token_authenticates_as_bootstrapper(apiserver):
    from kubernetes import client

    admin = _admin(apiserver)
    admin.create_namespaced_secret("kube-system", client.V1Secret(
        metadata=client.V1ObjectMeta(name="bootstrap-token-abcdef"), type="bootstrap.kubernetes.io/token",
        string_data={"token-id": "abcdef", "token-secret": "0123456789abcdef",
                     "usage-bootstrap-authentication": "true",
                     "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}))
    joiner = client.AuthenticationV1Api(_client(apiserver, token="abcdef.0123456789abcdef"))
    who = joiner.create_self_subject_review({})
    assert who.status.user_info.username == "system:bootstrap:abcdef"
    assert "system:bootstrappers:kubeadm:default-node-token" in who.status.user_info.groups
    with pytest.raises(client.ApiException) as e:
        client.CoreV1Api(_client(apiserver, token="abcdef.ffffffffffffffff")).list_namespace()
    assert e.value.status == 401
