"""Image references parsed and normalised exactly as Docker does.

`busybox` → `docker.io/library/busybox:latest`; `localhost:5000/x` keeps its
registry; `name:tag@sha256:…` keeps both. The familiar form (`busybox:latest`,
`foo/bar`) is what users see in `images` and `ps`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kapal.errors import Invalid

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_ANCHORED_DOMAIN = re.compile(rf"^{_DOMAIN}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_TAG_RE = re.compile(rf"^{_TAG}$")
NAME_TOTAL_LENGTH_MAX = 255


@dataclass(frozen=True)
class Reference:
    """A normalised reference: domain and path always set, tag and/or digest optional."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """What Docker shows: `busybox`, `foo/bar`, `localhost:5000/x`."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith(OFFICIAL_REPO_PREFIX) and self.path.count("/") == 1:
                return self.path[len(OFFICIAL_REPO_PREFIX) :]
            return self.path
        return self.name

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        out = self.familiar_name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise Invalid(f"invalid tag format: {tag!r}")
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    def tagged_or_latest(self) -> Reference:
        """`busybox` → `busybox:latest`; a reference with a tag or a digest is unchanged."""
        if self.tag or self.digest:
            return self
        return Reference(self.domain, self.path, DEFAULT_TAG, None)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def parse(text: str) -> Reference:
    """Parse and normalise like Docker's ParseNormalizedNamed; no default tag is added."""
    if not text:
        raise Invalid("invalid reference format: repository name must not be empty")
    if _HEX64.match(text):
        raise Invalid(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    name_part, _, digest_part = text.partition("@")
    # Split off the tag: a ':' after the last '/' belongs to a tag, before it to a port.
    slash = name_part.rfind("/")
    colon = name_part.rfind(":")
    tag_part = None
    if colon > slash:
        name_part, tag_part = name_part[:colon], name_part[colon + 1 :]
    domain, path = _split_domain(name_part)
    if path.lower() != path:
        raise Invalid(f"invalid reference format: repository name ({domain}/{path}) must be lowercase")
    full = f"{domain}/{path}"
    if tag_part is not None:
        full += f":{tag_part}"
    if digest_part:
        full += f"@{digest_part}"
    match = _REFERENCE.match(full)
    if not match or match.group("domain") != domain or not _ANCHORED_DOMAIN.match(domain):
        raise Invalid(f"invalid reference format: {text!r}")
    if len(f"{domain}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise Invalid(
            f"invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    digest = match.group("digest")
    if digest:
        algo, _, hexpart = digest.partition(":")
        if algo == "sha256" and len(hexpart) != 64:
            raise Invalid(f"invalid reference format: {text!r}: invalid checksum digest length")
    return Reference(domain, path, match.group("tag"), digest)


def parse_tagged(text: str) -> Reference:
    """Parse and add `:latest` when neither a tag nor a digest is given (what `pull`/`run` do)."""
    return parse(text).tagged_or_latest()


def is_image_id(text: str) -> bool:
    """A full or `sha256:`-prefixed image id (not a repository name)."""
    return bool(_HEX64.match(text.removeprefix("sha256:")))
