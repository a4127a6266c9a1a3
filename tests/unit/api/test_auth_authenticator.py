"""Authentication over a real watch cache: certificate subjects, the static token file, bootstrap tokens."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from kapal.errors import Invalid, Unauthorized
from kapal.kube.api.authn import Authenticator, load_token_file
from kapal.kube.api.cache import WatchCache, object_key
from kapal.kube.storage.memory import MemoryBackend


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _cache(secrets: list[dict]) -> WatchCache:
    async def body():
        b = MemoryBackend()
        for s in secrets:
            await b.create(object_key(("", "secrets"), "kube-system", s["metadata"]["name"]), json.dumps(s).encode())
        c = WatchCache(b)
        await c.start()
        return c

    return asyncio.run(body())


def _bootstrap(token_id: str, secret: str, **extra: str) -> dict:
    data = {"token-id": token_id, "token-secret": secret, "usage-bootstrap-authentication": "true", **extra}
    return {"metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token", "data": {k: _b64(v) for k, v in data.items()}}


def test_certificate_subject_is_user_and_groups():
    a = Authenticator(_cache([]))
    user = a.from_certificate({"subject": ((("commonName", "alice"),), (("organizationName", "dev"),),
                                           (("organizationName", "ops"),))})
    assert user.name == "alice" and user.groups == ("dev", "ops", "system:authenticated")
    assert a.authenticate(None, None) is None


def test_static_token_file(tmp_path):
    f = tmp_path / "tokens.csv"
    f.write_text('# comment\nsecret1,bob,u-1,"dev,ops"\nsecret2,carol,u-2\n')
    a = Authenticator(_cache([]), static_tokens=load_token_file(f))
    bob = a.authenticate("Bearer secret1", None)
    assert (bob.name, bob.uid, bob.groups) == ("bob", "u-1", ("dev", "ops", "system:authenticated"))
    assert a.authenticate("Bearer secret2", None).groups == ("system:authenticated",)
    with pytest.raises(Unauthorized):
        a.authenticate("Bearer nope", None)
    f.write_text("onlytoken\n")
    with pytest.raises(Invalid):
        load_token_file(f)


def test_bootstrap_tokens():
    a = Authenticator(_cache([
        _bootstrap("abcdef", "0123456789abcdef", **{"auth-extra-groups": "system:bootstrappers:x,evil"}),
        _bootstrap("oldtok", "0123456789abcdef", expiration="2001-01-01T00:00:00Z"),
    ]))
    user = a.authenticate("Bearer abcdef.0123456789abcdef", None)
    assert user.name == "system:bootstrap:abcdef"
    assert user.groups == ("system:bootstrappers", "system:bootstrappers:x", "system:authenticated")
    for bad in ("abcdef.ffffffffffffffff", "oldtok.0123456789abcdef", "zzzzzz.0123456789abcdef"):
        with pytest.raises(Unauthorized):
            a.authenticate(f"Bearer {bad}", None)
