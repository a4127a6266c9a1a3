"""Reference parsing and normalisation, checked against what Docker prints."""

from __future__ import annotations

import pytest

from kapal.errors import Invalid
from kapal.image import reference
from kapal.image.digest import chain_ids

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text, full, familiar",
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("foo/bar", "docker.io/foo/bar:latest", "foo/bar:latest"),
        ("index.docker.io/library/x", "docker.io/library/x:latest", "x:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
        ("localhost/x:1", "localhost/x:1", "localhost/x:1"),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000/a/b/c:v1"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
        (f"quay.io/x/y:t@{D}", f"quay.io/x/y:t@{D}", f"quay.io/x/y:t@{D}"),
        ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    ],
)
def test_normalises_like_docker(text, full, familiar):
    ref = reference.parse_tagged(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


@pytest.mark.parametrize(
    "text, why",
    [
        ("Busybox", "must be lowercase"),
        ("a" * 64, "64-byte hexadecimal"),
        ("busybox:", "invalid reference format"),
        ("-x", "invalid reference format"),
        ("x@sha256:abc", "invalid reference format"),
        ("", "must not be empty"),
        ("x:" + "t" * 129, "invalid reference format"),
    ],
)
def test_refuses_malformed(text, why):
    with pytest.raises(Invalid, match=why):
        reference.parse(text)


def test_uppercase_domain_is_a_registry():
    assert reference.parse("Example.com/x").domain == "Example.com"


def test_no_default_tag_without_parse_tagged():
    ref = reference.parse("busybox")
    assert ref.tag is None and ref.name == "docker.io/library/busybox"


def test_chain_ids():
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    ids = chain_ids([a, b])
    assert ids[0] == a
    import hashlib

    assert ids[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
