"""Certificates and keys shaped the way kubeadm shapes them.

kubeadm (1.31+) makes every certificate with an RSA 2048 key and a random
63-bit serial, backdated by 5 minutes against clock jumps. CAs:
CA:TRUE (critical), keyUsage digitalSignature+keyEncipherment+keyCertSign
(critical), a subjectKeyIdentifier, the CN repeated as a DNS SAN, 10 years.
Leaves: CA:FALSE (critical), keyUsage digitalSignature+keyEncipherment
(critical), extendedKeyUsage serverAuth and/or clientAuth, the CA's key id as
authorityKeyIdentifier, DNS SANs sorted and deduplicated, IP SANs
deduplicated in order, 1 year. Private keys are PKCS#1 PEM
("RSA PRIVATE KEY"), as kubeadm writes them. With algorithm ECDSA-P256
(kubeadm's encryptionAlgorithm, k3s's default) keys are P-256, SEC1 PEM
("EC PRIVATE KEY"), and keyUsage drops keyEncipherment.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kapal.errors import Invalid, NotFound

from ._files import write_atomic

RSA_KEY_SIZE = 2048
# kubeadm's encryptionAlgorithm values kapal makes keys for. ECDSA-P256 (k3s's choice) costs ~0.1 ms a key and a
# cheap TLS handshake, RSA-2048 ~40 ms a key: `kapal up` makes its cluster's keys ECDSA, `kapal adm` RSA.
KEY_ALGORITHMS = ("RSA-2048", "ECDSA-P256")
CA_DAYS = 3650
LEAF_DAYS = 365
BACKDATE = dt.timedelta(minutes=5)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key (the key may be a CA's signing key)."""

    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return private_key_pem(self.key)

    @property
    def common_name(self) -> str:
        return common_name(self.cert)

    @property
    def is_ca(self) -> bool:
        return is_ca(self.cert)


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#1 for RSA, SEC1 for EC: the 'traditional' PEM kubeadm and openssl write."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def new_private_key(algorithm: str = "RSA-2048") -> PrivateKey:
    if algorithm == "RSA-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    if algorithm == "ECDSA-P256":
        return ec.generate_private_key(ec.SECP256R1())
    raise Invalid(f"key algorithm {algorithm!r} is not supported; use one of {', '.join(KEY_ALGORITHMS)}")


def new_rsa_keypair_pem() -> tuple[bytes, bytes]:
    """A fresh RSA 2048 key pair as (private PKCS#1 PEM, public PKIX PEM): sa.key and sa.pub."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_key_pem(key), public


def _serial() -> int:
    return secrets.randbelow(2**63 - 2) + 1


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    # Go's pkix.Name puts O before CN, one RDN per value.
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_usage(cert_sign: bool, public_key: object) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),  # as kubeadm: an ECDSA key enciphers nothing
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_ca(common_name: str, days: int = CA_DAYS, *, organizations: Iterable[str] = (),
           algorithm: str = "RSA-2048") -> CertKey:
    """A self-signed CA as kubeadm makes it (kubernetes, front-proxy-ca, etcd-ca)."""
    if not common_name:
        raise Invalid("a CA needs a common name")
    key = new_private_key(algorithm)
    now = _now()
    subject = _name(common_name, organizations)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_key_usage(cert_sign=True, public_key=key.public_key()), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert, key)


def _alt_names(dns_names: Iterable[str], ip_addresses: Iterable[str | IPAddress]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted({d for d in dns_names if d})]
    seen: set[IPAddress] = set()
    for raw in ip_addresses:
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError as e:
            raise Invalid(f"{raw!r} is not an IP address for a certificate's SANs") from e
        if ip not in seen:
            seen.add(ip)
            names.append(x509.IPAddress(ip))
    return names


def _ca_key_id(ca: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key())  # type: ignore[arg-type]


def issue(
    ca: CertKey,
    common_name: str,
    *,
    organizations: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str | IPAddress] = (),
    server: bool = False,
    client: bool = False,
    days: int = LEAF_DAYS,
    key: PrivateKey | None = None,
    algorithm: str = "RSA-2048",
) -> CertKey:
    """A leaf certificate signed by `ca`, with a new key (of `algorithm`) unless `key` is given."""
    if not server and not client:
        raise Invalid(f"certificate {common_name!r} needs a usage: server, client or both")
    key = key or new_private_key(algorithm)
    alt = _alt_names(dns_names, ip_addresses)
    cert = _sign(ca, key.public_key(), common_name, tuple(organizations), alt, server, client, days)
    return CertKey(cert, key)


def _sign(
    ca: CertKey,
    public_key,
    common_name: str,
    organizations: tuple[str, ...],
    alt_names: list[x509.GeneralName],
    server: bool,
    client: bool,
    days: int,
) -> x509.Certificate:
    if not common_name:
        raise Invalid("a certificate needs a common name")
    if not ca.is_ca:
        raise Invalid(f"certificate {ca.common_name!r} is not a CA and cannot sign {common_name!r}")
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_key_usage(cert_sign=False, public_key=public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_ca_key_id(ca.cert), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def new_csr(
    common_name: str,
    *,
    organizations: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str | IPAddress] = (),
) -> tuple[bytes, bytes]:
    """A certificate signing request and its new key, as (CSR PEM, key PEM): the kubelet's TLS bootstrap."""
    key = new_private_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name, organizations))
    alt = _alt_names(dns_names, ip_addresses)
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), private_key_pem(key)


def sign_csr(
    ca: CertKey, csr_pem: bytes, *, server: bool = False, client: bool = False, days: int = LEAF_DAYS
) -> bytes:
    """Sign a CSR (as the CSR signing controller does): subject and SANs come from the request."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise Invalid(f"the certificate signing request is not valid PEM: {e}") from e
    if not csr.is_signature_valid:
        raise Invalid("the certificate signing request's signature does not match its key")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = tuple(str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    try:
        alt = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        alt = []
    if not server and not client:
        raise Invalid("a signed certificate needs a usage: server, client or both")
    cert = _sign(ca, csr.public_key(), str(cns[0].value) if cns else "", orgs, alt, server, client, days)
    return cert.public_bytes(serialization.Encoding.PEM)


# ---- reading and writing -------------------------------------------------------------------------


def load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    """The first certificate of a PEM file (the leaf comes first in a bundle)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise NotFound(f"certificate file {path} does not exist") from e
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except ValueError as e:
        raise Invalid(f"{path} does not hold a PEM certificate: {e}") from e


@functools.lru_cache(maxsize=32)
def private_key_from_pem(data: bytes) -> PrivateKeyTypes:
    """An unencrypted PEM private key. Parsing checks an RSA key's primes (~30 ms of CPU); one process (`kapal up`)
    reads the same CA and service-account keys several times, so a key is parsed once per distinct content."""
    return serialization.load_pem_private_key(data, password=None)


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise NotFound(f"key file {path} does not exist") from e
    try:
        key = private_key_from_pem(data)
    except (ValueError, TypeError) as e:
        raise Invalid(f"{path} does not hold an unencrypted PEM private key: {e}") from e
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise Invalid(f"the private key in {path} is neither RSA nor ECDSA")
    return key


def load(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> CertKey:
    """A certificate and its key from disk; refuses a key that does not belong to the certificate."""
    cert = load_cert(cert_path)
    key = load_private_key(key_path)
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise Invalid(f"the key {key_path} does not belong to the certificate {cert_path}")
    return CertKey(cert, key)


def write(certkey: CertKey, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
    """Write key (0600) then certificate (0644), each atomically (temp file, fsync, rename)."""
    write_atomic(key_path, certkey.key_pem(), 0o600)
    write_atomic(cert_path, certkey.cert_pem(), 0o644)


def write_cert(cert: x509.Certificate, path: str | os.PathLike[str]) -> None:
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_keypair(private_pem: bytes, public_pem: bytes, key_path: str | os.PathLike[str],
                  pub_path: str | os.PathLike[str]) -> None:
    """sa.key (0600) and sa.pub (0644)."""
    write_atomic(key_path, private_pem, 0o600)
    write_atomic(pub_path, public_pem, 0o644)


# ---- facts about a certificate ---------------------------------------------------------------------


def _public_der(public) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_sha256(cert: x509.Certificate | bytes) -> str:
    """'sha256:<hex>' of the DER SubjectPublicKeyInfo: kubeadm's --discovery-token-ca-cert-hash."""
    if isinstance(cert, bytes):
        cert = x509.load_pem_x509_certificate(cert)
    return "sha256:" + hashlib.sha256(_public_der(cert.public_key())).hexdigest()


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def organizations(cert: x509.Certificate) -> tuple[str, ...]:
    return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def alt_names(cert: x509.Certificate) -> tuple[list[str], list[IPAddress]]:
    """(DNS names, IP addresses) of the subjectAltName extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.IPAddress)


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when `ca` issued `cert` (name match and a valid signature)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
